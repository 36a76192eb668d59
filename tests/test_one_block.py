"""The engine's path for batches of one-block requests (plain key streams) against the reference model.

The compiled engine serves a batch whose every request is one block, under LRU without interference tracking, in
a loop of its own (Engine._serve_one_block_lru). These tests pin that it keeps the contract of the general loop:
per-request outputs, statistics and cache contents equal the reference's, across batches and around mixed ones.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachesim import _core, _reference

OUTPUTS = _core.OUTPUT_FIELDS

pytestmark = pytest.mark.core   # the compiled engine's one-block loop, against the reference


def _columns(keys, t=None, tenant=None, prompt_tokens=None, block_tokens=None):
    n = len(keys)
    return (np.asarray(t if t is not None else np.zeros(n), dtype=np.float64),
            np.asarray(tenant if tenant is not None else np.zeros(n), dtype=np.int32),
            np.asarray(prompt_tokens if prompt_tokens is not None else np.ones(n), dtype=np.int64),
            np.arange(n + 1, dtype=np.int64),
            np.asarray(keys, dtype=np.uint64),
            np.asarray(block_tokens if block_tokens is not None else np.ones(n), dtype=np.uint32))


def _state(engine):
    return (engine.cached_keys().tolist(), engine.cached_owners().tolist(), engine.tenant_stats.tolist(),
            engine.hits_from.tolist(), engine.peak_occupancy, engine.occupancy, engine.requests_seen)


def test_hand_computed_lru_stream():
    # capacity 2: a b a c b -> a and b miss, a hits (and becomes newest), c evicts b, b evicts a
    engine = _core.Engine(capacity_blocks=2)
    out = engine.feed(*_columns([1, 2, 1, 3, 2]))
    assert out["hit_blocks"].tolist() == [0, 0, 1, 0, 0]
    assert out["inserted_blocks"].tolist() == [1, 1, 0, 1, 1]
    assert out["evicted_blocks"].tolist() == [0, 0, 0, 1, 1]
    assert engine.cached_keys().tolist() == [2, 3]
    stats = dict(zip(_core.TENANT_FIELDS, engine.tenant_stats[0].tolist(), strict=True))
    assert (stats["requests"], stats["hit_blocks"], stats["inserted_blocks"], stats["evictions_caused"],
            stats["evicted_owned"]) == (5, 1, 4, 2, 2)


def test_capacity_one_replaces_its_only_entry():
    engine = _core.Engine(capacity_blocks=1)
    out = engine.feed(*_columns([7, 7, 8, 7]))
    assert out["hit_blocks"].tolist() == [0, 1, 0, 0]
    assert out["evicted_blocks"].tolist() == [0, 0, 1, 1]
    assert engine.cached_keys().tolist() == [7]


@st.composite
def one_block_streams(draw):
    n = draw(st.integers(1, 60))
    keys = draw(st.lists(st.integers(1, 12), min_size=n, max_size=n))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.0, 0.25, 1.0, 3.0]), min_size=n, max_size=n))
    tenants = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    block_size = draw(st.integers(1, 3))
    # a one-block request's prompt may end inside its block (partial tail) or run past it (uncacheable rest)
    prompt = draw(st.lists(st.integers(1, 2 * block_size), min_size=n, max_size=n))
    block_tokens = [min(p, block_size) for p in prompt]
    cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=4))))  # batch boundaries
    return keys, np.cumsum(gaps), tenants, prompt, block_tokens, block_size, cuts


@given(stream=one_block_streams(),
       capacity=st.sampled_from([None, 1, 2, 3, 5, 8]),
       ttl_s=st.sampled_from([None, None, 0.5, 2.0]),
       hit_cap=st.sampled_from([None, "prompt-1"]),
       warmup_requests=st.sampled_from([0, 0, 3]), warmup_s=st.sampled_from([0.0, 0.0, 1.5]),
       then_multi_block=st.booleans(), direct_keys=st.booleans(), renumber_every=st.sampled_from([None, None, 1, 3]))
def test_one_block_batches_match_the_reference(stream, capacity, ttl_s, hit_cap, warmup_requests, warmup_s,
                                               then_multi_block, direct_keys, renumber_every):
    keys, t, tenants, prompt, block_tokens, block_size, cuts = stream
    # the keys are small integers, so they are valid dense ids for the core's array index too
    engines = [module.Engine(capacity_blocks=capacity, ttl_s=ttl_s, hit_cap=hit_cap, block_size=block_size,
                             warmup_requests=warmup_requests, warmup_s=warmup_s, n_tenants=3,
                             direct_keys=direct_keys)
               for module in (_core, _reference)]
    # and a core engine asked for no per-request outputs, which must count the same
    counts_only = _core.Engine(capacity_blocks=capacity, ttl_s=ttl_s, hit_cap=hit_cap, block_size=block_size,
                               warmup_requests=warmup_requests, warmup_s=warmup_s, n_tenants=3,
                               direct_keys=direct_keys)
    if renumber_every:  # the pool renumbered in use order every so many evictions: nothing may change
        for engine in (engines[0], counts_only):
            engine._defragment_every(renumber_every)
    columns = _columns(keys, t, tenants, prompt, block_tokens)
    bounds = [0, *cuts, len(keys)] if cuts[-1:] != [len(keys)] else [0, *cuts]
    for r0, r1 in itertools.pairwise(bounds):
        part = [c[r0:r1] for c in columns]
        part[3] = np.arange(r1 - r0 + 1, dtype=np.int64)
        got, want = (engine.feed(*part) for engine in engines)
        for field in OUTPUTS:
            assert got[field].tolist() == want[field].tolist(), field
        assert _state(engines[0]) == _state(engines[1])
        assert counts_only.feed(*part, per_request=False) is None
        assert _state(counts_only) == _state(engines[0])
    if then_multi_block:  # the general loop goes on from the state the one-block loop left
        last = float(t[-1]) + 0.25
        multi = (np.array([last, last]), np.array([0, 1], dtype=np.int32), np.array([3, 2], dtype=np.int64),
                 np.array([0, 3, 5], dtype=np.int64), np.array([keys[0], 99, 98, 12, 97], dtype=np.uint64),
                 np.ones(5, dtype=np.uint32))
        got, want = (engine.feed(*multi) for engine in engines)
        for field in OUTPUTS:
            assert got[field].tolist() == want[field].tolist(), field
        assert _state(engines[0]) == _state(engines[1])


@given(stream=one_block_streams(), capacity=st.sampled_from([None, 1, 2, 3, 5, 8]),
       warmup_requests=st.sampled_from([0, 0, 1, 3, 70]), warmup_s=st.sampled_from([0.0, 0.0, 0.25, 1.5]),
       direct_keys=st.booleans())
def test_counts_only_one_tenant_matches_the_reference(stream, capacity, warmup_requests, warmup_s, direct_keys):
    # one tenant, statistics only, no TTL or hit cap: the lean loop, from where the warm-up ends (mid-batch or at
    # a batch boundary) and after the one request the full loop serves to set the peak
    keys, t, _, prompt, block_tokens, _, cuts = stream
    core = _core.Engine(capacity_blocks=capacity, warmup_requests=warmup_requests, warmup_s=warmup_s,
                        direct_keys=direct_keys)
    reference = _reference.Engine(capacity_blocks=capacity, warmup_requests=warmup_requests, warmup_s=warmup_s)
    columns = _columns(keys, t, None, prompt, block_tokens)
    bounds = [0, *cuts, len(keys)] if cuts[-1:] != [len(keys)] else [0, *cuts]
    for r0, r1 in itertools.pairwise(bounds):
        part = [c[r0:r1] for c in columns]
        part[3] = np.arange(r1 - r0 + 1, dtype=np.int64)
        assert core.feed(*part, per_request=False) is None
        reference.feed(*part)
        assert _state(core) == _state(reference)


def test_counts_only_peak_starts_where_the_warm_up_ends():
    # capacity 3, the first 4 requests uncounted: the cache fills to 3 during the warm-up; counted requests then
    # only hit or evict, so the peak (over counted requests) is the occupancy the warm-up left, 3
    engine = _core.Engine(capacity_blocks=3, warmup_requests=4)
    engine.feed(*_columns([1, 2, 3, 1]), per_request=False)
    assert engine.peak_occupancy == 0
    engine.feed(*_columns([1, 4, 1, 5]), per_request=False)
    assert engine.peak_occupancy == 3
    stats = dict(zip(_core.TENANT_FIELDS, engine.tenant_stats[0].tolist(), strict=True))
    # counted: 1 hit, 4 evicts 2, 1 hit, 5 evicts 3
    assert (stats["requests"], stats["hit_blocks"], stats["inserted_blocks"], stats["evictions_caused"]) == \
        (4, 2, 2, 2)


@pytest.mark.parametrize("bad, field", [("nan", "t"), ("earlier", "t"), ("tenant", "tenant")])
def test_bad_request_mid_batch_keeps_what_was_served(bad, field):
    keys = [1, 2, 1, 3, 2, 4, 1]
    t = np.arange(7, dtype=np.float64)
    tenant = np.zeros(7, dtype=np.int32)
    if bad == "nan":
        t[4] = np.nan
    elif bad == "earlier":
        t[4] = 0.5
    else:
        tenant[4] = 5
    engine = _core.Engine(capacity_blocks=2)
    with pytest.raises(_core.EngineInputError) as info:
        engine.feed(*_columns(keys, t, tenant))
    assert (info.value.request, info.value.field) == (4, field)
    clean = _core.Engine(capacity_blocks=2)
    want = clean.feed(*_columns(keys[:4], np.arange(4.0)))
    for name in OUTPUTS:
        assert info.value.partial[name].tolist() == want[name].tolist()
    assert _state(engine) == _state(clean)
    # serving goes on after the error as if the bad request had never come
    rest = _columns(keys[5:], np.arange(5.0, 7.0))
    assert engine.feed(*rest)["hit_blocks"].tolist() == clean.feed(*rest)["hit_blocks"].tolist()
    assert _state(engine) == _state(clean)


def test_counts_only_feed_keeps_what_was_served_on_bad_input():
    t = np.arange(5, dtype=np.float64)
    t[3] = np.nan
    engine, clean = _core.Engine(capacity_blocks=2), _core.Engine(capacity_blocks=2)
    with pytest.raises(_core.EngineInputError) as info:
        engine.feed(*_columns([1, 2, 1, 3, 2], t), per_request=False)
    assert (info.value.request, info.value.partial) == (3, None)
    clean.feed(*_columns([1, 2, 1], np.arange(3.0)))
    assert _state(engine) == _state(clean)


def _large_stream_parts():
    """150,000 one-block requests of two tenants in batches of 30,000 (the batch's own request offsets)."""
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 400_000, 150_000).astype(np.uint64)
    tenant = rng.integers(0, 2, len(keys)).astype(np.int32)
    t = np.sort(rng.random(len(keys)) * 100)
    columns = _columns(keys, t, tenant)
    for r0 in range(0, len(keys), 30_000):
        part = [c[r0:r0 + 30_000] for c in columns]
        part[3] = np.arange(len(part[0]) + 1, dtype=np.int64)
        yield part


@pytest.fixture(scope="module")
def large_stream_reference():
    """The reference model's outputs for each batch of the large stream, and its final states (two tenants with a
    TTL; one tenant, statistics only). The reference ignores direct_keys (a dict serves ids and keys alike), so
    both variants of the test below compare against this one replay rather than each repeating it."""
    want = _reference.Engine(capacity_blocks=100_000, ttl_s=60.0, n_tenants=2)
    lean_want = _reference.Engine(capacity_blocks=100_000)
    outputs = []
    for part in _large_stream_parts():
        b = want.feed(*part)
        outputs.append({name: np.array(b[name], copy=True) for name in OUTPUTS})
        part[1] = np.zeros_like(part[1])
        lean_want.feed(*part)
    return outputs, _state(want), _state(lean_want)


@pytest.mark.parametrize("direct_keys", [False, True])
def test_large_stream_with_prefetching_matches_the_reference(direct_keys, large_stream_reference):
    # once the cache holds ~100,000 entries its pool and index (or id array) pass 3 MB, more than twice the L2 of
    # the machines this runs on, so the later batches prefetch (the small streams above never do)
    want_outputs, want_state, lean_want_state = large_stream_reference
    got = _core.Engine(capacity_blocks=100_000, ttl_s=60.0, n_tenants=2, direct_keys=direct_keys)
    # and one tenant, statistics only (the lean loop)
    lean = _core.Engine(capacity_blocks=100_000, direct_keys=direct_keys)
    parts = list(_large_stream_parts())
    assert len(parts) == len(want_outputs) == 5
    for part, b in zip(parts, want_outputs, strict=True):
        a = got.feed(*part)
        assert all(np.array_equal(a[name], b[name]) for name in OUTPUTS)
        part[1] = np.zeros_like(part[1])
        assert lean.feed(*part, per_request=False) is None
    assert got.memory_bytes() > 3_000_000
    assert _state(got) == want_state
    assert _state(lean) == lean_want_state
