"""Provider isolation by construction: under ``isolation="tenant"`` one organisation's traffic never changes what
another reads, where its reads come from, or which miss cause it is told — whatever session ids it sends.

The property: an organisation's results in a shared run equal its results replayed alone. It holds for every
rule set without a shared capacity (a bounded cache is one pool whose evictions organisations do share; their
contents stay apart, which the second property checks on every rule set).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from tests.test_providers_properties import random_input, rule_sets

from cachesim.providers import ProviderInput, load_prices, simulate
from cachesim.requests import TokenRequests, offsets_from_lengths

PRICES = load_prices()
SAME_ALONE = ("read", "write_short", "write_long", "flags", "cause", "uncached")

# session ids an organisation might send: small labels shared by both, 64-bit ids, and ones shaped like the old
# packing (org << 40) ^ (session + 1) of another organisation
SESSION_IDS = st.sampled_from([-1, 0, 1, 2, 2**40, (1 << 40) ^ 1, (2 << 40) ^ 3, 2**62 + 7, 2**63 - 1])


def _csr_rows(values, offsets, rows):
    lengths = np.diff(offsets)[rows]
    starts = offsets[:-1][rows]
    index = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
    return values[index.astype(np.int64)], offsets_from_lengths(lengths)


def _subset(inp: ProviderInput, rows: np.ndarray) -> ProviderInput:
    req = inp.requests
    tokens, token_offsets = _csr_rows(req.tokens, req.token_offsets, rows)
    sub_req = TokenRequests.from_arrays(tokens, token_offsets, t=req.t[rows], tenant=req.tenant[rows],
                                        session=req.session[rows], output_tokens=req.output_tokens[rows],
                                        tenant_names=req.tenant_names)
    bp, bp_off = _csr_rows(inp.breakpoints, inp.breakpoint_offsets, rows)
    long, _ = _csr_rows(inp.breakpoint_long, inp.breakpoint_offsets, rows)
    bd, bd_off = _csr_rows(inp.boundaries, inp.boundary_offsets, rows)
    return ProviderInput(requests=sub_req, breakpoints=bp, breakpoint_offsets=bp_off, breakpoint_long=long,
                         boundaries=bd, boundary_offsets=bd_off)


def _with_sessions(inp: ProviderInput, sessions) -> ProviderInput:
    n = inp.n_requests
    session = np.array([sessions[i % len(sessions)] for i in range(n)], dtype=np.int64)
    return dataclasses.replace(inp, requests=dataclasses.replace(inp.requests, session=session))


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 24), max_len=st.integers(8, 200),
       sessions=st.lists(SESSION_IDS, min_size=1, max_size=4), ttft=st.sampled_from([0.0, 1.0]))
def test_an_organisation_alone_gets_what_it_gets_shared(seed, n, max_len, sessions, ttft):
    inp = _with_sessions(random_input(seed, n, max_len, 60.0), sessions)
    tenant = inp.requests.tenant
    for rules in rule_sets(ttft, "tenant", 0.0):
        if getattr(rules, "capacity_tokens", None) is not None:
            continue
        shared = simulate(inp, rules, prices=PRICES)
        for org in np.unique(tenant):
            rows = np.flatnonzero(tenant == org)
            alone = simulate(_subset(inp, rows), rules, prices=PRICES)
            for name in SAME_ALONE:
                assert np.array_equal(getattr(shared, name)[rows], getattr(alone, name)), (rules, org, name)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 24), max_len=st.integers(8, 200),
       sessions=st.lists(SESSION_IDS, min_size=1, max_size=4), ttft=st.sampled_from([0.0, 1.0]),
       miss=st.sampled_from([0.0, 0.3]))
def test_no_read_comes_from_another_organisation(seed, n, max_len, sessions, ttft, miss):
    inp = _with_sessions(random_input(seed, n, max_len, 60.0), sessions)
    tenant = inp.requests.tenant
    for rules in rule_sets(ttft, "tenant", miss):
        res = simulate(inp, rules, prices=PRICES)
        src = res.hit_from
        read = np.flatnonzero(src >= 0)
        assert (tenant[src[read]] == tenant[read]).all(), rules


def test_a_64_bit_session_id_cannot_name_another_organisations_cache():
    # organisation 1 (code 0) writes a long prompt under session 0; organisation 2 (code 1) sends the same prompt
    # with the session id that, packed as (org << 40) ^ (session + 1), collided with organisation 1's key
    prompt = list(range(3000))
    collide = ((1 << 40) ^ 1 ^ (2 << 40)) - 1
    for provider in ("openai", "openai-5.6"):
        from cachesim.providers import make_rules

        rules = make_rules(provider, isolation="tenant", cache_key="session")
        inp = ProviderInput.from_lists([prompt, prompt], t=[0.0, 5.0], tenant=[0, 1], session=[0, collide],
                                       boundaries=[[3000], [3000]], tenant_names=["org-a", "org-b"])
        res = simulate(inp, rules, prices=PRICES)
        assert res.read[1] == 0, provider
