"""Hand-computed cases for each eviction policy and for harm attribution, against both implementations.

With block_size=1 every token is a block; [1, 2] caches the prefixes "1" and "12".
"""

import pytest

import cachesim
from cachesim.requests import TokenRequests


def run(impl, prompts, t=None, tenant=None, **options):
    return cachesim.replay(TokenRequests.from_lists(prompts, t=t, tenant=tenant), block_size=1, impl=impl, **options)


def col(result, name):
    return result.per_request[name].tolist()


def test_fifo_evicts_the_oldest_inserted_leaf_whatever_its_use(impl):
    # capacity 3: A=[1,2] B=[5] C=[1,2] (hits, but FIFO ignores use) D=[7] evicts the oldest leaf "12" (not "1":
    # it has a child). E=[1,2] then hits "1" only and must evict "5".
    prompts = [[1, 2], [5], [1, 2], [7], [1, 2]]
    fifo = run(impl, prompts, capacity_blocks=3, policy="fifo")
    assert col(fifo, "hit_blocks") == [0, 0, 2, 0, 1]
    assert col(fifo, "evicted_blocks") == [0, 0, 0, 1, 1]
    lru = run(impl, prompts, capacity_blocks=3, policy="lru")   # LRU evicts "5" at D and keeps both
    assert col(lru, "hit_blocks") == [0, 0, 2, 0, 2]


def test_victims_any_may_strand_children_and_counts_them(impl):
    # FIFO over all entries: D evicts "1" itself (oldest), orphaning "12"
    r = run(impl, [[1, 2], [5], [7], [1, 2]], capacity_blocks=3, policy="fifo", victims="any")
    assert col(r, "hit_blocks") == [0, 0, 0, 0]
    assert col(r, "evicted_blocks") == [0, 0, 1, 2]
    assert r.summary()["orphaned_blocks"] == 1
    assert run(impl, [[1, 2], [5], [7], [1, 2]], capacity_blocks=3, policy="fifo").orphaned_blocks == 0


def test_lfu_keeps_the_frequent_entry_lru_would_drop(impl):
    prompts = [[1], [1], [2], [3], [2]]
    lfu = run(impl, prompts, capacity_blocks=2, policy="lfu")
    assert col(lfu, "hit_blocks") == [0, 1, 0, 0, 0]      # C evicts "2" (used once), E misses it again
    assert col(lfu, "evicted_blocks") == [0, 0, 0, 1, 1]
    lru = run(impl, prompts, capacity_blocks=2, policy="lru")
    assert col(lru, "hit_blocks") == [0, 1, 0, 0, 1]      # LRU evicts "1" at C instead


def test_slru_evicts_probation_before_protected(impl):
    # "1" is used by two requests (protected); "2" and "3" once. D=[4] evicts the older probationary "2".
    r = run(impl, [[1], [2], [1], [3], [4], [1], [2]], capacity_blocks=3, policy="slru")
    assert col(r, "hit_blocks") == [0, 0, 1, 0, 0, 1, 0]
    assert col(r, "evicted_blocks") == [0, 0, 0, 0, 1, 0, 1]


def test_priority_evicts_deep_rarely_shared_blocks_first(impl):
    # capacity 4: [1,2,3] and [9]; all used once. A new block must go: the deepest leaf "123" goes, not "9".
    r = run(impl, [[1, 2, 3], [9], [7], [9], [1, 2, 3]], capacity_blocks=4, policy="priority")
    assert col(r, "evicted_blocks") == [0, 0, 1, 0, 1]
    assert col(r, "hit_blocks") == [0, 0, 0, 1, 2]
    lru = run(impl, [[1, 2, 3], [9], [7], [9], [1, 2, 3]], capacity_blocks=4, policy="lru")
    assert col(lru, "hit_blocks") == [0, 0, 0, 1, 2]


def test_sieve_hand_spares_visited_entries_once(impl):
    # capacity 3: 1,2,3 inserted; D hits 1 (visited). E=[4]: the hand clears 1 and evicts 2, resting at 3.
    # F hits 3. G=[5]: the hand clears 3 and evicts 4 (never reused), then H misses 4 where LRU would hit.
    prompts = [[1], [2], [3], [1], [4], [3], [5], [4]]
    sieve = run(impl, prompts, capacity_blocks=3, policy="sieve")
    assert col(sieve, "hit_blocks") == [0, 0, 0, 1, 0, 1, 0, 0]
    lru = run(impl, prompts, capacity_blocks=3, policy="lru")
    assert col(lru, "hit_blocks") == [0, 0, 0, 1, 0, 1, 0, 1]


def test_s3fifo_promotes_a_ghost_hit_to_the_main_queue(impl):
    # capacity 3: the small queue's share is 1 block, the ghost remembers 2 keys. D evicts 1 (to the ghost);
    # E brings 1 back from the ghost into the main queue, so the small-queue churn of G and H never evicts it.
    prompts = [[1], [2], [3], [4], [1], [1], [5], [6], [1]]
    r = run(impl, prompts, capacity_blocks=3, policy="s3fifo")
    assert col(r, "hit_blocks") == [0, 0, 0, 0, 0, 1, 0, 0, 1]
    assert col(r, "evicted_blocks") == [0, 0, 0, 1, 1, 0, 1, 1, 0]


def test_s3fifo_small_queue_emptied_by_promotions_hands_over_to_main(impl):
    # capacity 2 (small share 1). 1 2 3: 3 evicts 1 (to the ghost). 3 2 3: both small entries are used again.
    # 1: the small tail 2, then 3, move to the main queue with their counts reset; the small queue is empty, so
    # the main queue's tail 2 goes; 1 comes back from the ghost into main. 2: the main tail 3 (count 0) goes.
    prompts = [[1], [2], [3], [3], [2], [3], [1], [2]]
    r = run(impl, prompts, capacity_blocks=2, policy="s3fifo")
    assert col(r, "hit_blocks") == [0, 0, 0, 1, 1, 1, 0, 0]
    assert col(r, "evicted_blocks") == [0, 0, 1, 0, 0, 0, 1, 1]
    engine = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=2, policy="s3fifo"), impl=impl)
    for prompt in prompts:
        engine.feed(cachesim.compile_trace(TokenRequests.from_lists([prompt]), 1))
    assert sorted(engine.engine.cached_keys().tolist()) == sorted(
        cachesim.compile_trace(TokenRequests.from_lists([[1], [2]]), 1).block_keys.tolist())


@pytest.mark.parametrize("policy", cachesim.POLICIES)
def test_every_policy_refuses_to_evict_the_requests_own_blocks(impl, policy):
    r = run(impl, [[1, 2, 3], [1, 2, 3]], capacity_blocks=2, policy=policy)
    assert col(r, "uncached_blocks") == [1, 1]
    assert col(r, "hit_blocks") == [0, 2]


def test_lost_to_names_the_evicting_tenant(impl):
    # capacity 2: a caches "1","12"; b's two requests evict both; a's return misses 2 tokens, both b's doing
    r = run(impl, [[1, 2], [5], [6], [1, 2]], tenant=["a", "b", "b", "a"], capacity_blocks=2, interference=True)
    a, b = r.tenant_names.index("a"), r.tenant_names.index("b")
    assert r.lost_to[a, 1 + b] == 2 and r.lost_to[a].sum() == 2
    assert r.evictions_by[b, a] == 2 and r.evictions_by[a, b] == 2
    assert r.per_tenant()["a"]["lost_to"] == {"b": 2}


def test_lost_to_ttl_and_the_run_stops_at_a_never_cached_block(impl):
    r = run(impl, [[1, 2], [1, 2, 3]], t=[0, 10], ttl_s=10, interference=True)
    assert r.lost_to[0, 0] == 2          # "1" and "12" expired; "123" was never cached: not a loss
    assert r.per_tenant()["default"]["lost_to"] == {"ttl": 2}


def test_without_interference_tracking_there_is_no_lost_to(impl):
    r = run(impl, [[1], [2]], capacity_blocks=1)
    assert r.lost_to is None and "lost_to" not in r.to_dict()
