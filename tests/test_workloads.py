"""Synthetic agent workloads: shape, determinism, and the cache-relevant properties of each harness style.

Expected values come from the config (hand arithmetic) or from plain comparisons of prompts, never from the
generator's own helpers.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from cachesim.requests import TokenRequests
from cachesim.workloads import AgentWorkload, AgentWorkloadConfig, agent_workload, summary

DEFAULT = AgentWorkloadConfig()
STABLE = DEFAULT.system_tokens + DEFAULT.tools_tokens   # 9000: the native stable prefix


@pytest.fixture(scope="module")
def native() -> AgentWorkload:
    return agent_workload()


@pytest.fixture(scope="module")
def chatty() -> AgentWorkload:
    return agent_workload(style="chatty")


def prompts(w: AgentWorkload) -> list[np.ndarray]:
    off = w.requests.token_offsets
    return [w.requests.tokens[off[i]:off[i + 1]] for i in range(len(off) - 1)]


def sessions(w: AgentWorkload) -> dict[int, list[int]]:
    """Request indices of each session, in trace (= time) order."""
    out: dict[int, list[int]] = {}
    for i, s in enumerate(w.requests.session.tolist()):
        out.setdefault(s, []).append(i)
    return out


def extends(a: np.ndarray, b: np.ndarray) -> bool:
    """b starts with all of a and is longer."""
    return len(b) > len(a) and np.array_equal(b[:len(a)], a)


def test_columns(native):
    r = native.requests
    n = r.n_requests
    assert isinstance(r, TokenRequests)
    assert r.tokens.dtype == np.uint32 and r.token_offsets.dtype == np.int64
    assert r.t.dtype == np.float64 and r.tenant.dtype == np.int32
    assert r.session.dtype == np.int64 and r.output_tokens.dtype == np.int64
    assert native.query.dtype == np.int64 and native.breakpoints.dtype == np.int64
    assert len(r.token_offsets) == n + 1 and r.token_offsets[0] == 0 and r.token_offsets[-1] == len(r.tokens)
    assert len(r.tenant) == len(r.session) == len(r.output_tokens) == len(native.query) == n
    assert len(native.breakpoint_offsets) == n + 1 and native.breakpoint_offsets[-1] == len(native.breakpoints)
    assert r.tenant_names == [f"user-{u}" for u in range(8)]
    assert sorted(set(r.tenant.tolist())) == list(range(8))
    # 8 users x 4 queries, global ids 0..31, each with at least one request
    assert sorted(set(native.query.tolist())) == list(range(32))
    assert int(r.tokens.max()) < DEFAULT.vocab_size
    assert (r.output_tokens >= 1).all() and (np.diff(r.token_offsets) > STABLE).all()


def test_default_size(native):
    s = summary(native)
    assert 150 <= s["requests"] <= 400
    assert 1_000_000 <= s["prompt_tokens"] <= 20_000_000


@pytest.mark.parametrize("style", ["native", "chatty"])
def test_deterministic_and_seeded(style):
    small = AgentWorkloadConfig(n_users=3, queries_per_user=3, style=style, seed=3)
    a, b = agent_workload(small), agent_workload(small)
    ra, rb = a.requests, b.requests
    for x, y in [(ra.tokens, rb.tokens), (ra.token_offsets, rb.token_offsets), (ra.t, rb.t), (ra.tenant, rb.tenant),
                 (ra.session, rb.session), (ra.output_tokens, rb.output_tokens), (a.query, b.query),
                 (a.breakpoints, b.breakpoints), (a.breakpoint_offsets, b.breakpoint_offsets)]:
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
    c = agent_workload(small, seed=4)
    assert c.requests.tokens[:STABLE].tobytes() != ra.tokens[:STABLE].tobytes()
    assert c.requests.t.tobytes() != ra.t.tobytes()


@pytest.mark.parametrize("style", ["native", "chatty"])
def test_times(style, native, chatty):
    w = native if style == "native" else chatty
    t = w.requests.t
    assert (t >= 0).all() and (np.diff(t) >= 0).all()
    # users interleave: the trace is not one user after another
    assert (np.diff(w.requests.tenant) != 0).sum() > 2 * DEFAULT.n_users
    for idx in sessions(w).values():   # one conversation never sends two requests at once
        assert (np.diff(t[idx]) > 0).all()


def test_native_history_is_append_only(native):
    p = prompts(native)
    # the defaults never compact, so every request of a session extends the previous one
    assert max(len(x) for x in p) <= DEFAULT.compaction_limit_tokens
    pairs = 0
    for idx in sessions(native).values():
        for i, j in itertools.pairwise(idx):
            assert extends(p[i], p[j]), (i, j)
            pairs += 1
    assert pairs > 100


def test_native_prefix_shared_by_everyone(native):
    p = prompts(native)
    head = p[0][:STABLE]
    assert all(np.array_equal(x[:STABLE], head) for x in p)
    # ...and beyond it users diverge: their conversations are their own
    firsts = [p[idx[0]] for idx in sessions(native).values()]
    assert len({x[STABLE:STABLE + 16].tobytes() for x in firsts}) == len(firsts)


def test_chatty_prefix_breaks_early(chatty):
    p = prompts(chatty)
    ts_end = DEFAULT.timestamp_offset_tokens + DEFAULT.timestamp_tokens
    for idx in sessions(chatty).values():
        for i, j in itertools.pairwise(idx):
            diff = np.flatnonzero(p[i][:STABLE] != p[j][:STABLE])
            assert diff.size and diff[0] < ts_end, (i, j)   # broken inside the system prompt
    # the head before the timestamp is still shared by everyone
    assert all(np.array_equal(x[:DEFAULT.timestamp_offset_tokens], p[0][:DEFAULT.timestamp_offset_tokens]) for x in p)


def test_chatty_tools_reshuffled_per_query(chatty):
    p = prompts(chatty)
    tools = [x[DEFAULT.system_tokens:STABLE] for x in p]
    same_set = np.sort(tools[0])
    assert all(np.array_equal(np.sort(x), same_set) for x in tools)   # the same definitions, reordered
    main = sessions(chatty)[0]
    by_query: dict[int, list[int]] = {}
    for i in main:
        by_query.setdefault(int(chatty.query[i]), []).append(i)
    orders = []
    for idx in by_query.values():
        assert all(np.array_equal(tools[i], tools[idx[0]]) for i in idx)   # stable within a query
        orders.append(tools[idx[0]].tobytes())
    assert len(set(orders)) == len(orders) == DEFAULT.queries_per_user


def test_chatty_sends_more_requests_for_the_same_plan(native, chatty):
    sn, sc = summary(native), summary(chatty)
    assert sc["queries"] == sn["queries"] and sc["sessions"] == sn["sessions"]
    assert sc["requests_per_query"] > 1.5 * sn["requests_per_query"]
    assert sc["prompt_tokens_per_query"] > sn["prompt_tokens_per_query"]


@pytest.mark.parametrize("style", ["native", "chatty"])
def test_breakpoints(style, native, chatty):
    w = native if style == "native" else chatty
    lengths = np.diff(w.requests.token_offsets)
    for i in range(w.n_requests):
        bp = w.breakpoints[w.breakpoint_offsets[i]:w.breakpoint_offsets[i + 1]]
        assert (np.diff(bp) > 0).all() and bp[0] > 0 and bp[-1] <= lengths[i]
        expected = [STABLE, lengths[i]] if style == "native" else [lengths[i]]
        assert bp.tolist() == expected


def test_compaction():
    limit = 20_000
    cfg = AgentWorkloadConfig(n_users=3, queries_per_user=4, compaction_limit_tokens=limit, seed=1)
    w = agent_workload(cfg)
    p = prompts(w)
    compactions = 0
    for idx in sessions(w).values():
        for i, j in itertools.pairwise(idx):
            if extends(p[i], p[j]):
                continue
            # history replaced: only after a request over the limit, and back to system + tools + summary
            compactions += 1
            assert len(p[i]) > limit
            assert len(p[j]) == STABLE + cfg.summary_tokens
            assert np.array_equal(p[j][:STABLE], p[i][:STABLE])
        for k, i in enumerate(idx):
            if len(p[i]) > limit:   # over the limit only by the last round's growth: the request before was under
                assert k > 0 and len(p[idx[k - 1]]) <= limit
                assert w.requests.output_tokens[i] == cfg.summary_tokens
    assert compactions >= 2


def test_rounds_wait_for_the_model_and_the_tool(native):
    r, cfg = native.requests, DEFAULT
    tool_times = []
    for idx in sessions(native).values():
        for i, j in itertools.pairwise(idx):
            if native.query[i] == native.query[j]:
                # the next round comes after the model has written its output and the tool has run
                latency = cfg.model_overhead_s + r.output_tokens[i] / cfg.output_tokens_per_s
                tool_times.append(r.t[j] - r.t[i] - latency)
    tool_times = np.asarray(tool_times)
    assert (tool_times > 1e-6).all()
    assert 1.0 < np.median(tool_times) < 4.0   # lognormal with median tool_time_median_s = 2 s


def test_some_think_times_exceed_five_minutes(native):
    t, q = native.requests.t, native.query
    gaps = []
    for idx in sessions(native).values():
        for i, j in itertools.pairwise(idx):
            if q[i] != q[j]:
                gaps.append(t[j] - t[i])
    gaps = np.asarray(gaps)
    assert len(gaps) == DEFAULT.n_users * (DEFAULT.queries_per_user - 1)
    assert (gaps > 300).any() and (gaps <= 300).mean() > 0.5


def test_subagents_run_inside_their_parent_query(native):
    r = native.requests
    by_session = sessions(native)
    main = {int(r.tenant[idx[0]]): idx for idx in by_session.values() if len(set(native.query[idx].tolist())) > 1}
    subs = [idx for idx in by_session.values() if len(set(native.query[idx].tolist())) == 1]
    assert len(main) == DEFAULT.n_users and subs
    for idx in subs:
        (query,) = set(native.query[idx].tolist())
        (tenant,) = set(r.tenant[idx].tolist())
        parent = [i for i in main[tenant] if native.query[i] == query]
        # spawned by a parent request, and the parent resumes only when the sub-agent has answered
        assert r.t[parent[0]] < r.t[idx[0]] and r.t[idx[-1]] < r.t[parent[-1]]


def test_users_do_not_disturb_each_other():
    a, b = agent_workload(n_users=2), agent_workload(n_users=3)
    pa, pb = prompts(a), prompts(b)
    ua = [pa[i].tobytes() for i in np.flatnonzero(a.requests.tenant == 0)]
    ub = [pb[i].tobytes() for i in np.flatnonzero(b.requests.tenant == 0)]
    assert ua == ub


def test_summary_counts(native):
    s = summary(native)
    lengths = [len(x) for x in prompts(native)]
    assert s["requests"] == len(lengths)
    assert s["queries"] == 32
    assert s["prompt_tokens"] == sum(lengths)
    assert s["requests_per_query"] == pytest.approx(len(lengths) / 32)
    assert s["prompt_tokens_per_query"] == pytest.approx(sum(lengths) / 32)


def test_config_overrides_and_validation():
    assert agent_workload(n_users=2, queries_per_user=1).config.n_users == 2
    base = AgentWorkloadConfig(n_users=1, queries_per_user=1)
    w = agent_workload(base, seed=9)
    assert w.config == dataclasses.replace(base, seed=9)
    assert set(w.requests.tenant_names) == {"user-0"}
    with pytest.raises(ValueError):
        AgentWorkloadConfig(style="verbose")
    with pytest.raises(ValueError):
        AgentWorkloadConfig(compaction_limit_tokens=10_000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.seed = 1  # type: ignore[misc]
