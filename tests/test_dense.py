"""Dense ids (Trace.dense): the engine indexes them by array, and every result equals the keyed replay's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cachesim
from cachesim import _core, _reference
from cachesim.requests import TraceError
from strategies import cache_configs, token_request_streams

COMPARED = ("tenant_stats", "hits_from", "lost_to", "evictions_by")


@pytest.mark.parametrize("module", [_core, _reference], ids=["core", "reference"])
def test_dense_ids_number_keys_by_first_appearance(module):
    ids, distinct = module.dense_ids(np.array([5, 9, 5, 7, 9, 1], dtype=np.uint64))
    assert ids.tolist() == [0, 1, 0, 2, 1, 3]
    assert distinct.tolist() == [5, 9, 7, 1]


@pytest.mark.core
def test_dense_ids_survive_table_growth():
    keys = np.random.default_rng(1).integers(0, 2**64 - 1, 50_000, dtype=np.uint64)
    keys = np.concatenate([keys, keys[::3]])  # repeats after the table has grown many times
    ids, distinct = _core.dense_ids(keys)
    assert len(distinct) == len(np.unique(keys))
    assert np.array_equal(distinct[ids], keys)
    assert ids.max() == len(distinct) - 1


def _replay(trace, config, max_blocks, keep_per_request=True):
    sim = cachesim.Simulator(config, impl="core", keep_per_request=keep_per_request)
    if sim.offline:   # belady: the whole trace's future first, then its batches
        sim.plan(trace)
    for batch in trace.batches(max_blocks):
        sim.feed(batch)
    return sim


@pytest.mark.core
@given(requests=token_request_streams(max_requests=40), config=cache_configs(),
       interference=st.booleans(), isolation=st.sampled_from([None, None, "tenant"]),
       block_size=st.integers(1, 3), max_blocks=st.sampled_from([1, 4, 1 << 16]))
def test_dense_replay_equals_keyed_replay(requests, config, interference, isolation, block_size, max_blocks):
    config = config.__class__(**{**config.__dict__, "interference": interference, "isolation": isolation})
    trace = cachesim.compile_trace(requests, block_size)
    dense = trace.dense()
    keyed_sim, dense_sim = _replay(trace, config, max_blocks), _replay(dense, config, max_blocks)
    assert dense_sim.engine.direct_keys == (isolation is None)
    keyed, got = keyed_sim.result(), dense_sim.result()
    for name, column in keyed.per_request.items():
        assert np.array_equal(column, got.per_request[name]), name
    for name in COMPARED:
        assert np.array_equal(getattr(keyed, name), getattr(got, name)), name
    assert (keyed.peak_occupancy, keyed.orphaned_blocks) == (got.peak_occupancy, got.orphaned_blocks)
    # without per-request outputs the engine writes none, and counts the same
    counts = _replay(dense, config, max_blocks, keep_per_request=False).result()
    assert counts.per_request is None
    for name in COMPARED:
        assert np.array_equal(getattr(keyed, name), getattr(counts, name)), name
    if isolation is None:  # the same blocks are cached, in the same recency order
        cached = dense_sim.engine.cached_keys()
        assert dense.distinct_keys[cached].tolist() == keyed_sim.engine.cached_keys().tolist()


def _small_trace():
    requests = cachesim.TokenRequests.from_lists([[1, 2, 3, 4], [1, 2, 5, 6], [1, 2, 3, 4, 7, 8]],
                                                 t=[0.0, 1.0, 2.0])
    return cachesim.compile_trace(requests, 2)


def test_saved_dense_trace_loads_dense(tmp_path):
    dense = _small_trace().dense()
    dense.save(tmp_path / "t.npz")
    loaded = cachesim.Trace.load(tmp_path / "t.npz", mmap=True)
    assert np.load(tmp_path / "t.npz")["header"][0] == 3  # format 2 readers refuse it rather than misread ids
    assert loaded.distinct_keys.tolist() == dense.distinct_keys.tolist()
    assert loaded.block_keys.tolist() == [0, 1, 0, 2, 0, 1, 3]
    want = cachesim.replay(_small_trace(), capacity_blocks=3)
    got = cachesim.replay(loaded, capacity_blocks=3)
    assert got.per_request["hit_blocks"].tolist() == want.per_request["hit_blocks"].tolist() == [0, 1, 2]


def test_batches_mixing_ids_and_keys_are_refused():
    trace = _small_trace()
    sim = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=3))
    sim.feed(trace.dense().slice(0, 1))
    with pytest.raises(TraceError, match="mix dense ids"):
        sim.feed(trace.slice(1, 2))


@pytest.mark.core
def test_direct_engine_refuses_keys_that_are_not_ids():
    engine = _core.Engine(capacity_blocks=4, direct_keys=True)
    with pytest.raises(ValueError, match="not a dense id"):
        engine.feed(np.zeros(1), np.zeros(1, np.int32), np.ones(1, np.int64), np.array([0, 1], np.int64),
                    np.array([2**40], np.uint64), np.ones(1, np.uint32))


def _mooncake_like_trace():
    blocks = [[1, 2, 3], [1, 2, 4], [5, 6], [1, 2, 3, 7], [5, 6, 8], [9], [1, 2]]
    requests = cachesim.BlockRequests.from_lists(blocks, [16 * len(b) for b in blocks], 16,
                                                 t=[0, 1, 2, 3, 4, 5, 6], tenant=["a", "b", "a", "b", "a", "b", "a"])
    return cachesim.compile_trace(requests)


def test_keyed_restores_the_keys():
    trace = _mooncake_like_trace()
    assert trace.dense().keyed().block_keys.tolist() == trace.block_keys.tolist()
    assert trace.keyed() is trace


@pytest.mark.parametrize("router", ["prefix-hash", "cache-aware"])
def test_routers_and_sampled_curves_see_the_keys_of_a_dense_trace(router):
    # both hash block keys; given dense ids they would route and sample differently
    trace = _mooncake_like_trace()
    config = cachesim.CacheConfig(capacity_blocks=4)
    keyed, dense = (cachesim.fleet.route(t, 3, router, config=config) for t in (trace, trace.dense()))
    assert keyed.tolist() == dense.tolist()
    a, b = (cachesim.run_fleet(t, 3, router, config=config) for t in (trace, trace.dense()))
    assert a.replica.tolist() == b.replica.tolist()
    curves = [cachesim.hit_ratio_curve(t, [2, 4, None], sample_rate=0.5, always_tokens=0)
              for t in (trace, trace.dense())]
    assert curves[0].hit_blocks.tolist() == curves[1].hit_blocks.tolist()


def test_merging_dense_traces_merges_their_keys():
    a = _mooncake_like_trace()
    b = cachesim.compile_trace(cachesim.BlockRequests.from_lists([[7, 8], [1, 2, 3]], [32, 48], 16, t=[0.5, 2.5]))
    want = cachesim.merge_traces([("a", a), ("b", b)])
    got = cachesim.merge_traces([("a", a.dense()), ("b", b.dense())])
    assert got.distinct_keys is None
    assert got.block_keys.tolist() == want.block_keys.tolist()


def test_batches_numbered_apart_are_refused():
    # numbered one by one, both batches would call their first block 0: a false hit
    requests = cachesim.TokenRequests.from_lists([[1] * 4, [2] * 4, [3] * 4, [3] * 4], t=[0, 1, 2, 3])
    trace = cachesim.compile_trace(requests, 4)
    a, b = trace.slice(0, 2), trace.slice(2, 4)
    assert cachesim.replay([a, b]).summary()["hit_blocks"] == 1
    assert cachesim.replay([trace.dense().slice(0, 2), trace.dense().slice(2, 4)]).summary()["hit_blocks"] == 1
    with pytest.raises(TraceError, match="numbered apart"):
        cachesim.replay([a.dense(), b.dense()])
