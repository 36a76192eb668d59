"""The engine's recency order is a log of uses, compacted in place (see "Recency" in _core.pyx).

The hypothesis tests elsewhere use short streams. These drive streams long enough to compact the log hundreds of
times and to grow it, through each serve loop, against the reference model; and they pin what the log costs in
memory.
"""

from __future__ import annotations

import numpy as np
import pytest

from cachesim import _core, _reference

OUTPUTS = _core.OUTPUT_FIELDS


def _state(engine):
    return (engine.cached_keys().tolist(), engine.cached_owners().tolist(), engine.tenant_stats.tolist(),
            engine.hits_from.tolist(), engine.peak_occupancy, engine.occupancy, engine.requests_seen)


def _conversation_stream(seed, n_requests, conversations, max_blocks, n_tenants=1, gap_s=1.0):
    """Requests re-sending a prefix of one of a few conversations: block i of conversation c has key
    c * 1000 + i + 1, so prefixes chain. Returns the feed columns (block size 2, one token past the blocks)."""
    rng = np.random.default_rng(seed)
    conversation = rng.integers(0, conversations, n_requests)
    lengths = rng.integers(1, max_blocks + 1, n_requests)
    keys = np.concatenate([c * 1000 + np.arange(1, k + 1) for c, k in zip(conversation, lengths, strict=True)])
    return (np.cumsum(rng.exponential(gap_s, n_requests)),
            rng.integers(0, n_tenants, n_requests).astype(np.int32),
            (2 * lengths + 1).astype(np.int64),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            keys.astype(np.uint64),
            np.full(len(keys), 2, dtype=np.uint32))


def _slice(columns, r0, r1):
    t, tenant, prompt_tokens, offsets, keys, block_tokens = columns
    b0, b1 = offsets[r0], offsets[r1]
    return (t[r0:r1], tenant[r0:r1], prompt_tokens[r0:r1], offsets[r0:r1 + 1] - b0, keys[b0:b1],
            block_tokens[b0:b1])


def _replay_against_reference(core, reference, columns, per_request, step=700):
    """Feed both engines the stream in batches; after each, the outputs and the whole state must agree."""
    n = len(columns[0])
    for r0 in range(0, n, step):
        part = _slice(columns, r0, min(r0 + step, n))
        got, want = core.feed(*part, per_request=per_request), reference.feed(*part)
        if per_request:
            for field in OUTPUTS:
                assert got[field].tolist() == want[field].tolist(), field
        assert _state(core) == _state(reference)
        assert core.occupancy <= core.capacity_blocks


# Each case takes a different serve loop: _prefix_lru (hashed, dense), _one_block_lru (full and lean variants), and
# the general loop (TTL, interference ghosts, a heap policy, SIEVE).
CASES = {
    "prefix lru": (dict(), dict(max_blocks=8)),
    "prefix lru, dense ids": (dict(direct_keys=True), dict(max_blocks=8)),
    "one-block lru": (dict(), dict(max_blocks=1)),
    "one-block lru with a ttl": (dict(ttl_s=40.0), dict(max_blocks=1)),
    "general loop, ttl": (dict(ttl_s=30.0), dict(max_blocks=8)),
    "general loop, ghosts": (dict(interference=True, n_tenants=2), dict(max_blocks=8, n_tenants=2)),
    "general loop, lfu": (dict(policy="lfu"), dict(max_blocks=8)),
    "general loop, sieve": (dict(policy="sieve"), dict(max_blocks=8)),
}


@pytest.mark.parametrize("per_request", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_long_streams_compact_the_log_and_keep_the_reference_order(case, per_request):
    options, stream = CASES[case]
    # capacity 40 and about 13,000 stamps (one-block: 3,000): the log, at most max(75, 56) records, is compacted
    # every few dozen requests
    columns = _conversation_stream(seed=len(case), n_requests=3000, conversations=30, **stream)
    core = _core.Engine(capacity_blocks=40, block_size=2, **options)
    _replay_against_reference(core, _reference.Engine(capacity_blocks=40, block_size=2, **options), columns,
                              per_request)
    assert core.tenant_stats[:, 5].sum() > 1000  # hit blocks: the stream re-uses its prefixes


# the serve loops that renumber the pool (Engine._defragment): plain LRU without ghosts
RENUMBERING_CASES = {
    "prefix lru": (dict(), dict(max_blocks=8)),
    "prefix lru, dense ids": (dict(direct_keys=True), dict(max_blocks=8)),
    "prefix lru, two tenants": (dict(n_tenants=2), dict(max_blocks=8, n_tenants=2)),
    "one-block lru": (dict(), dict(max_blocks=1)),
    "one-block lru, dense ids, two tenants": (dict(direct_keys=True, n_tenants=2), dict(max_blocks=1, n_tenants=2)),
    "one-block lru with a ttl": (dict(ttl_s=40.0), dict(max_blocks=1)),  # expiry leaves free entries
}


@pytest.mark.parametrize("per_request", [True, False])
@pytest.mark.parametrize("every", [1, 7, 100])
@pytest.mark.parametrize("case", sorted(RENUMBERING_CASES))
def test_renumbering_the_pool_changes_no_result(case, every, per_request):
    # every few evictions the engine renumbers its entries in use order: the order, owners, expiry times and the
    # index must all follow, so that nothing the reference model computes differs
    options, stream = RENUMBERING_CASES[case]
    columns = _conversation_stream(seed=every, n_requests=3000, conversations=300 if stream["max_blocks"] == 1 else 30,
                                   **stream)
    core = _core.Engine(capacity_blocks=40, block_size=2, **options)
    core._defragment_every(every)
    _replay_against_reference(core, _reference.Engine(capacity_blocks=40, block_size=2, **options), columns,
                              per_request)
    assert core.tenant_stats[:, 7].sum() > 500  # evictions caused: many renumberings


def test_renumbering_with_free_entries_rebuilds_the_free_list():
    # key 4 takes key 1's entry (0) as the last request of a one-block batch, so a renumbering is due when the
    # next one-block batch starts. In between, multi-block requests (the general loop) refresh key 2 (entry 1)
    # and expire keys 3 and 4, freeing entries 2 and 0. The renumbering makes key 2 entry 0, so the free list
    # must be rebuilt (1, 2): the stale one would hand key 9 the live entry 0
    def batch(t, offsets, keys):
        n = len(t)
        return (np.asarray(t, dtype=float), np.zeros(n, np.int32), np.diff(offsets).astype(np.int64),
                np.asarray(offsets, np.int64), np.asarray(keys, np.uint64), np.ones(len(keys), np.uint32))

    batches = [batch([0.0, 1.0, 2.0, 3.0], [0, 1, 2, 3, 4], [1, 2, 3, 4]),
               batch([9.0], [0, 2], [2, 2]),
               batch([13.5], [0, 2], [2, 2]),
               batch([14.0, 14.5, 15.0, 15.5, 16.0], [0, 1, 2, 3, 4, 5], [9, 10, 11, 2, 12])]
    core = _core.Engine(capacity_blocks=3, ttl_s=10.0)
    core._defragment_every(1)
    reference = _reference.Engine(capacity_blocks=3, ttl_s=10.0)
    for part in batches:
        got, want = core.feed(*part), reference.feed(*part)
        for field in OUTPUTS:
            assert got[field].tolist() == want[field].tolist(), field
        assert _state(core) == _state(reference)
    assert core.tenant_stats[0, 9] == 2  # expired_owned: keys 3 and 4
    assert core.cached_keys().tolist() == [12, 2, 11]


def test_the_log_grows_while_its_ring_has_wrapped():
    # capacity 3,000: the log starts at 2,048 records, grows to 4,096 while the cache fills, and may reach
    # 1.875 * 3,000 - 512 = 5,113. Then each step inserts a new key (evicting the oldest, so the ring's start moves
    # on) and uses a recent one again (a stale record left behind): the end comes round the ring after about 550
    # steps, and the window fills, and grows, after about 1,100, wrapped
    keys = list(range(1, 3001))
    for i in range(3000):
        keys += [10_000 + i, 10_000 + i - 5]
    n = len(keys)
    core = _core.Engine(capacity_blocks=3000)
    reference = _reference.Engine(capacity_blocks=3000)
    memory = []
    for r0 in range(0, n, 500):
        part = keys[r0:r0 + 500]
        m = len(part)
        columns = (np.zeros(m), np.zeros(m, dtype=np.int32), np.ones(m, dtype=np.int64),
                   np.arange(m + 1, dtype=np.int64), np.asarray(part, dtype=np.uint64), np.ones(m, dtype=np.uint32))
        got, want = core.feed(*columns), reference.feed(*columns)
        for field in OUTPUTS:
            assert got[field].tolist() == want[field].tolist(), field
        assert _state(core) == _state(reference)
        memory.append(core.memory_bytes())
    assert memory[-1] - memory[7] == 4 * (5113 - 4096)  # the log grew (by its records) once the cache was full


def test_an_unbounded_cache_grows_its_log_and_keeps_the_order():
    n = 200_000
    engine = _core.Engine()
    keys = np.arange(1, n + 1, dtype=np.uint64)
    ones = np.ones(n)
    engine.feed(np.zeros(n), np.zeros(n, dtype=np.int32), ones.astype(np.int64), np.arange(n + 1, dtype=np.int64),
                keys, ones.astype(np.uint32), per_request=False)
    # use the first 1,000 again, newest last: they lead the order, newest first, and everything is still cached
    again = keys[:1000]
    out = engine.feed(np.zeros(1000), np.zeros(1000, dtype=np.int32), np.ones(1000, dtype=np.int64),
                      np.arange(1001, dtype=np.int64), again, np.ones(1000, dtype=np.uint32))
    assert out["hit_blocks"].sum() == 1000
    cached = engine.cached_keys()
    assert engine.occupancy == n
    assert cached[:1000].tolist() == again[::-1].tolist()
    assert cached[1000:].tolist() == keys[1000:][::-1].tolist()


CAPACITY = 1 << 16


@pytest.mark.parametrize(("ttl_s", "bytes_per_block"), [
    # entry 16 + slots 8 / 0.5 + log 4 * (1.875 records, less 512 for the engine's fixed state); with a TTL:
    # entry 16 + expiry 8 + slots 8 / 0.75 + log 4 * (1.25 records, less 512, but never below 1.25 and 16 more)
    (None, 16 + 16 + 4 * 1.875 - 4 * 512 / CAPACITY),
    (1e9, 16 + 8 + 8 / 0.75 + 4 * 1.25 + 4 * 16 / CAPACITY),
])
def test_a_full_cache_takes_at_most_40_bytes_a_block(ttl_s, bytes_per_block):
    capacity = CAPACITY
    engine = _core.Engine(capacity_blocks=capacity, ttl_s=ttl_s)
    n = 4 * capacity  # enough uses for the log to reach its full length
    ones = np.ones(n)
    engine.feed(np.zeros(n), np.zeros(n, dtype=np.int32), ones.astype(np.int64), np.arange(n + 1, dtype=np.int64),
                np.arange(n, dtype=np.uint64), ones.astype(np.uint32), per_request=False)
    assert engine.occupancy == capacity
    assert engine.memory_bytes() / capacity == pytest.approx(bytes_per_block, abs=0.01)
    assert engine.memory_bytes() / capacity <= 40
