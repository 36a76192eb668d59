"""The engine's LRU path for multi-block requests against the reference model.

Under plain LRU (no TTL, hit cap, victims="any" or interference tracking) the compiled engine serves batches of
multi-block requests in a loop of its own (_prefix_lru in _core.pyx) that keeps the hot state in locals. These
tests pin that it keeps the general loop's contract: outputs, statistics and cache contents equal the reference's.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachesim import _core, _reference

OUTPUTS = _core.OUTPUT_FIELDS

pytestmark = pytest.mark.core   # the compiled engine's _prefix_lru loop, against the reference


def _state(engine):
    return (engine.cached_keys().tolist(), engine.cached_owners().tolist(), engine.tenant_stats.tolist(),
            engine.hits_from.tolist(), engine.peak_occupancy, engine.occupancy, engine.requests_seen)


def _batch(requests, t=None, tenant=None, block_size=2, extra_tokens=None):
    """Columns of requests given as lists of keys: full blocks, and prompts longer than their blocks by
    extra_tokens (1 each unless given; 0 ends a prompt on a block boundary, where the hit cap bites)."""
    n = len(requests)
    lengths = [len(keys) for keys in requests]
    extra = extra_tokens if extra_tokens is not None else [1] * n
    return (np.asarray(t if t is not None else np.zeros(n), dtype=np.float64),
            np.asarray(tenant if tenant is not None else np.zeros(n), dtype=np.int32),
            np.asarray([block_size * k + x for k, x in zip(lengths, extra, strict=True)], dtype=np.int64),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            np.asarray([key for keys in requests for key in keys], dtype=np.uint64),
            np.full(sum(lengths), block_size, dtype=np.uint32))


@st.composite
def prefix_streams(draw):
    """Requests re-sending prefixes of a few conversations that share their first blocks: keys chain as the
    contract wants (a key names its whole prefix), so the cache stays prefix-closed."""
    n = draw(st.integers(1, 30))
    shared = draw(st.integers(0, 2))

    def key(conversation, i):
        return i + 1 if i < shared else 1000 * (conversation + 1) + i

    requests = []
    for _ in range(n):
        conversation, length = draw(st.integers(0, 3)), draw(st.integers(0, 6))
        requests.append([key(conversation, i) for i in range(length)])
    t = np.cumsum(draw(st.lists(st.sampled_from([0.0, 0.0, 0.5, 2.0]), min_size=n, max_size=n)))
    tenants = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    extra_tokens = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    cuts = sorted(set(draw(st.lists(st.integers(1, n), max_size=4))))  # batch boundaries
    return requests, t, tenants, extra_tokens, cuts


@given(stream=prefix_streams(), capacity=st.sampled_from([None, 1, 2, 3, 5, 8, 20]),
       hit_cap=st.sampled_from([None, "prompt-1"]),
       warmup_requests=st.sampled_from([0, 0, 4]), warmup_s=st.sampled_from([0.0, 0.0, 1.0]),
       one_tenant=st.booleans(), per_request=st.booleans(), direct_keys=st.booleans(),
       renumber_every=st.sampled_from([None, None, 1, 3]))
def test_lru_batches_match_the_reference(stream, capacity, hit_cap, warmup_requests, warmup_s, one_tenant,
                                         per_request, direct_keys, renumber_every):
    requests, t, tenants, extra_tokens, cuts = stream
    if one_tenant:
        tenants = [0] * len(tenants)
    n_tenants = 1 if one_tenant else 3
    core = _core.Engine(capacity_blocks=capacity, hit_cap=hit_cap, block_size=2, warmup_requests=warmup_requests,
                        warmup_s=warmup_s, n_tenants=n_tenants, direct_keys=direct_keys)
    if renumber_every:  # the pool renumbered in use order every so many evictions: nothing may change
        core._defragment_every(renumber_every)
    reference = _reference.Engine(capacity_blocks=capacity, hit_cap=hit_cap, block_size=2,
                                  warmup_requests=warmup_requests, warmup_s=warmup_s, n_tenants=n_tenants)
    bounds = [0, *cuts, len(requests)] if cuts[-1:] != [len(requests)] else [0, *cuts]
    for r0, r1 in itertools.pairwise(bounds):
        part = _batch(requests[r0:r1], t[r0:r1], tenants[r0:r1], extra_tokens=extra_tokens[r0:r1])
        got, want = core.feed(*part, per_request=per_request), reference.feed(*part)
        if per_request:
            for field in OUTPUTS:
                assert got[field].tolist() == want[field].tolist(), field
        else:
            assert got is None
        assert _state(core) == _state(reference)
        if capacity is not None:
            assert core.occupancy <= capacity


def test_hand_computed_prefix_stream():
    # capacity 3. [1,2] inserts both; [1,2,3] hits 2 and inserts 3; [1,4] hits 1, and 4 evicts the least recent
    # entry: the stamps left 1 newest, then 2, then 3, so 3 goes (a leaf); [1,2,3] then hits 2 and 3 evicts 4
    engine = _core.Engine(capacity_blocks=3)
    out = engine.feed(*_batch([[1, 2], [1, 2, 3], [1, 4], [1, 2, 3]]))
    assert out["hit_blocks"].tolist() == [0, 2, 1, 2]
    assert out["inserted_blocks"].tolist() == [2, 1, 1, 1]
    assert out["evicted_blocks"].tolist() == [0, 0, 1, 1]
    assert out["hit_tokens"].tolist() == [0, 4, 2, 4]
    assert engine.cached_keys().tolist() == [1, 2, 3]
    # a request longer than the cache: its own blocks are never victims, so the rest stays uncached
    out = engine.feed(*_batch([[7, 8, 9, 10, 11]]))
    assert out["inserted_blocks"].tolist() == [3]
    assert out["uncached_blocks"].tolist() == [2]
    assert engine.cached_keys().tolist() == [7, 8, 9]


def test_hit_cap_lowers_the_hits_but_keeps_the_blocks_used():
    # vLLM's rule: at least one prompt token is computed. [1,2] ends on a block boundary (4 tokens), so its repeat
    # hits 1 block, not 2 (both are still used: pinned and stamped); with one token more it hits both
    engine = _core.Engine(capacity_blocks=3, hit_cap="prompt-1", block_size=2)
    out = engine.feed(*_batch([[1, 2], [1, 2], [3], [1, 2]], extra_tokens=[0, 0, 1, 1]))
    assert out["hit_blocks"].tolist() == [0, 1, 0, 2]
    assert out["hit_tokens"].tolist() == [0, 2, 0, 4]
    stats = dict(zip(_core.TENANT_FIELDS, engine.tenant_stats[0].tolist(), strict=True))
    assert (stats["hit_requests"], stats["hit_blocks"], stats["inserted_blocks"]) == (2, 3, 3)


def test_a_key_repeated_within_a_request_is_pinned_once():
    # not a chained trace, but a reader may hand one over: the repeated hit must not unlink its entry twice.
    # [5,6] leaves 6 least recent; [6,6,7] hits 6 twice and fills the cache (6, 7, 5 from newest); [8] evicts 5
    for direct_keys in (False, True):
        engines = [_core.Engine(capacity_blocks=3, direct_keys=direct_keys), _reference.Engine(capacity_blocks=3)]
        outs = [engine.feed(*_batch([[5, 6], [6, 6, 7], [8]])) for engine in engines]
        for field in OUTPUTS:
            assert outs[0][field].tolist() == outs[1][field].tolist(), field
        assert outs[0]["hit_blocks"].tolist() == [0, 2, 0]
        assert outs[0]["evicted_blocks"].tolist() == [0, 0, 1]
        assert engines[0].cached_keys().tolist() == [8, 6, 7]
        assert _state(engines[0]) == _state(engines[1])
