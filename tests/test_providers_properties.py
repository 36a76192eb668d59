"""Property tests: the compiled loops agree with the plain-Python reference on random traffic, and the invariants
of any prompt cache hold (reads never exceed the prompt, a repeat within the TTL is a full read, the cache never
costs more than the write premium)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachesim.providers import ProviderInput, load_prices, make_rules, simulate
from cachesim.requests import TokenRequests, offsets_from_lengths

PRICES = load_prices()
FIELDS = ("read", "write_short", "write_long", "flags", "error", "cause", "uncached", "evicted_by", "hit_from")


def random_input(seed: int, n: int, max_len: int, ttl_hint: float) -> ProviderInput:
    """Agent-like random traffic: a request extends an earlier one (its old end becomes a block end), repeats
    one, or cuts a prefix of one of two base prompts; times with gaps around the TTL; random cache markers (1h
    ones first, now and then in the wrong order) and block ends."""
    rng = np.random.default_rng(seed)
    bases = [rng.integers(0, 50, max_len) for _ in range(2)]
    prompts, bps, longs, bounds = [], [], [], []
    for i in range(n):
        roll = rng.random()
        if i and roll < 0.5:
            j = int(rng.integers(0, i))
            tail = rng.integers(0, 50, int(rng.integers(1, max_len // 2 + 2)))
            p = np.concatenate([prompts[j], tail])
            bd = np.concatenate([bounds[j], [len(prompts[j])]])
        elif i and roll < 0.65:
            j = int(rng.integers(0, i))
            p, bd = prompts[j].copy(), bounds[j].copy()
        else:
            base = bases[rng.integers(0, 2)]
            cut = int(rng.integers(0, max_len))
            p = np.concatenate([base[:cut], rng.integers(0, 50, int(rng.integers(1, max_len // 3 + 2)))])
            bd = np.zeros(0, np.int64)
        p = p.astype(np.int64)
        prompts.append(p)
        bd = np.concatenate([bd, rng.integers(1, len(p) + 1, int(rng.integers(0, 6))),
                             np.arange(16, len(p) + 1, 16 * int(rng.integers(1, 4)))])
        bounds.append(np.unique(bd).astype(np.int64))
        k = int(rng.integers(0, 4))
        pos = np.unique(rng.choice(bounds[-1], k)) if k and len(bounds[-1]) else np.zeros(0, np.int64)
        bps.append(pos)
        long = (np.arange(len(pos)) < rng.integers(0, len(pos) + 1)).astype(np.int8)   # 1h ones first
        if rng.random() < 0.05:
            long = long[::-1].copy()                                                   # now and then: rejected
        longs.append(long)
    gaps = rng.choice([0.0, 0.5, 1.0, 2.0, 5.0, 10.0, ttl_hint - 1, ttl_hint, ttl_hint + 1, 4 * ttl_hint], n)
    t = np.cumsum(gaps)
    lengths = np.array([len(p) for p in prompts])
    req = TokenRequests.from_arrays(np.concatenate(prompts), offsets_from_lengths(lengths), t=t,
                                    tenant=rng.integers(0, 3, n), session=rng.integers(0, 3, n),
                                    output_tokens=rng.integers(0, 50, n))
    cat = lambda rows: np.concatenate(rows).astype(np.int64)   # noqa: E731
    return ProviderInput(requests=req, breakpoints=cat(bps),
                         breakpoint_offsets=offsets_from_lengths(np.array([len(b) for b in bps])),
                         breakpoint_long=np.concatenate(longs).astype(np.int8), boundaries=cat(bounds),
                         boundary_offsets=offsets_from_lengths(np.array([len(b) for b in bounds])))


def rule_sets(ttft: float, isolation: str, miss: float):
    """Small-scale versions of every rule set (low minimums and short lookbacks so random traffic reaches them)."""
    common = dict(ttft_s=ttft, isolation=isolation, miss_probability=miss)
    return [
        make_rules("anthropic", min_tokens=24, lookback_blocks=3, ttl_5m_s=60, ttl_1h_s=240, **common),
        make_rules("anthropic", min_tokens=24, refresh_whole_path=True, ttl_5m_s=60, ttl_1h_s=240,
                   automatic_ttl="1h", **common),
        make_rules("anthropic", min_tokens=20, per_segment_minimum=True, grace_s=1.0, ttl_5m_s=60, **common),
        make_rules("openai", "gpt-5.4", min_tokens=32, unit_tokens=16, retention="in_memory",
                   in_memory_idle_s=60, requests_per_minute=2, routing_prefix_tokens=8, cache_key="session",
                   **common),
        make_rules("openai", "gpt-5.5", min_tokens=40, unit_tokens=32, hidden_tokens=7, extended_idle_s=60,
                   extended_max_age_s=150, requests_per_minute=3, routing_prefix_tokens=20, **common),
        make_rules("openai-5.6", min_tokens=24, ttl_s=60, max_writes=2, requests_per_minute=4, **common),
        make_rules("openai-5.6", min_tokens=24, ttl_s=60, implicit=False, requests_per_minute=100, **common),
        make_rules("gemini", min_tokens=24, idle_ttl_s=60, **common),
        make_rules("gemini", min_tokens=24, block_tokens=32, idle_ttl_s=60, **common),
        make_rules("gemini", min_tokens=24, idle_ttl_s=60, capacity_tokens=64 * 5, **common),
        make_rules("openai", "gpt-5.4", min_tokens=32, unit_tokens=16, capacity_tokens=16 * 14, in_memory_idle_s=60,
                   retention="in_memory", requests_per_minute=6, routing_prefix_tokens=1, **common),
        make_rules("gemini-explicit", min_tokens=24, ttl_s=60, **common),
        make_rules("deepseek", unit_tokens=8, interval_tokens=40, idle_ttl_s=60, delay_s=0.5, response_s=0.5,
                   **common),
    ]


@pytest.mark.core
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), max_len=st.integers(8, 300),
       ttft=st.sampled_from([0.0, 1.0]), isolation=st.sampled_from(["shared", "tenant"]),
       miss=st.sampled_from([0.0, 0.3]), forget_s=st.sampled_from([0.0, 30.0, 6 * 3600.0]))
def test_core_matches_reference(seed, n, max_len, ttft, isolation, miss, forget_s):
    # forget_s small: expired entries are forgotten (and dropped when a table grows) within the trace
    inp = random_input(seed, n, max_len, 60.0)
    for rules in rule_sets(ttft, isolation, miss):
        core = simulate(inp, rules, prices=PRICES, forget_s=forget_s)
        ref = simulate(inp, rules, prices=PRICES, impl="reference", forget_s=forget_s)
        for f in FIELDS:
            assert np.array_equal(getattr(core, f), getattr(ref, f)), (rules, f)
        assert np.allclose(core.cost, ref.cost)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 14), max_len=st.integers(8, 200),
       ttft=st.sampled_from([0.0, 1.0]))
def test_reads_never_exceed_the_prompt_and_cost_is_bounded_by_the_write_premium(seed, n, max_len, ttft):
    inp = random_input(seed, n, max_len, 60.0)
    for rules in rule_sets(ttft, "shared", 0.0):
        res = simulate(inp, rules, prices=PRICES)
        assert (res.read <= res.prompt_tokens).all()
        assert (res.uncached >= 0).all() and (res.write_short >= 0).all() and (res.write_long >= 0).all()
        # cost - cost without cache = writes * (write rate - input) + reads * (read rate - input) <= the premium
        (row, *_) = PRICES.candidates(rules.provider, rules.model, period="off-peak")
        rates = [getattr(row, f) for f in rules.write_fields] + [0.0, 0.0]
        premium = (res.write_short * max(rates[0] - row.input, 0) + res.write_long * max(rates[1] - row.input, 0))
        premium = premium * getattr(rules, "cost_multiplier", 1.0) / 1e6
        if res.storage_cost is not None:     # explicit caches: creation and storage are the premium
            premium = premium + res.storage_cost
        assert (res.cost <= res.cost_uncached + premium + 1e-12).all()


@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 3000))
def test_a_repeat_within_the_ttl_is_a_full_read(seed, length):
    # the same prompt sent twice, 2 s apart (after the first response began), at default rules: above the minimum
    # the second request reads everything the rule can cache: the whole prompt, or for OpenAI < 5.6 the prompt
    # rounded down to its 128-token units
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, 1000, length).tolist()
    inp = ProviderInput.from_lists([prompt, prompt], t=[0.0, 2.0], boundaries=[[length], [length]])
    for rules, minimum, cacheable in (
            (make_rules("anthropic", "claude-opus-5"), 512, length),
            (make_rules("openai", "gpt-5.4"), 1024, length // 128 * 128),
            (make_rules("openai", "gpt-5.6-sol"), 1024, length),
            (make_rules("gemini", "gemini-2.5-pro"), 2048, length),
            (make_rules("deepseek", delay_s=0.5, response_s=0.5), 64, length)):
        res = simulate(inp, rules, prices=PRICES)
        assert res.read[1] == (cacheable if length >= minimum else 0), rules


@pytest.mark.core
def test_reference_keys_match_the_compiled_keys():
    from cachesim import _providers
    from cachesim.providers import _reference

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 2**32, 500, dtype=np.uint64).astype(np.uint32)
    offsets = np.array([0, 100, 100, 500], np.int64)
    pos = np.array([1, 15, 16, 17, 100, 0, 1, 399, 400], np.int64)
    pos_off = np.array([0, 5, 5, 9], np.int64)
    assert np.array_equal(_providers.prefix_keys(tokens, offsets, pos, pos_off),
                          _reference.prefix_keys(tokens, offsets, pos, pos_off))
    for key, ns in ((0, 0), (2**64 - 1, 3), (12345, 2**63)):
        assert _providers.nskey(key, ns) == _reference.nskey(key, ns)


@pytest.mark.parametrize("field", ["ttft_s", "miss_probability"])
def test_rule_options_are_validated(field):
    with pytest.raises(ValueError):
        dataclasses.replace(make_rules("anthropic"), **{field: -1.0})
