"""Hand-computed cases for each eviction policy and for harm attribution, against both implementations.

With block_size=1 every token is a block; [1, 2] caches the prefixes "1" and "12".
"""

import re

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


def test_two_class_evicts_probation_before_protected(impl):
    # "1" is used by two requests (protected); "2" and "3" once. D=[4] evicts the older probationary "2".
    r = run(impl, [[1], [2], [1], [3], [4], [1], [2]], capacity_blocks=3, policy="two-class")
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
    # capacity 4, small share 2, ghost 2 ids (libCacheSim's rules). 1 2 fill the small queue, so 3 4 go to main
    # while the cache fills. 5 evicts the small tail 1 (to the ghost); 1 comes back from the ghost into main (the
    # small tail 2 goes); its use there keeps it through 6 (main over its share: its tail 3 goes), 7 and 8 (small
    # evictions).
    prompts = [[1], [2], [3], [4], [5], [1], [1], [6], [7], [8], [1]]
    r = run(impl, prompts, capacity_blocks=4, policy="s3fifo:small-size-ratio=0.5,ghost-size-ratio=0.5")
    assert col(r, "hit_blocks") == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert col(r, "evicted_blocks") == [0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0]


def test_s3fifo_small_queue_emptied_by_promotions_hands_over_to_main(impl):
    # capacity 4, small share 2, promoted after 1 use. 1 2 small, 3 4 main; 1 and 2 are used. 5: both small
    # entries move to main, the small queue is empty, so main's tail 3 goes. 3: main holds 3 > 2, its tail 4
    # goes. 4: the small tail 5 goes.
    prompts = [[1], [2], [3], [4], [1], [2], [5], [1], [2], [3], [4]]
    policy = "s3fifo:small-size-ratio=0.5,move-to-main-threshold=1"
    r = run(impl, prompts, capacity_blocks=4, policy=policy)
    assert col(r, "hit_blocks") == [0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0]
    assert col(r, "evicted_blocks") == [0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1]
    engine = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=4, policy=policy), impl=impl)
    for prompt in prompts:
        engine.feed(cachesim.compile_trace(TokenRequests.from_lists([prompt]), 1))
    assert sorted(engine.engine.cached_keys().tolist()) == sorted(
        cachesim.compile_trace(TokenRequests.from_lists([[1], [2], [3], [4]]), 1).block_keys.tolist())


def test_slru_moves_a_used_block_up_a_segment_and_cools_the_full_one(impl):
    # capacity 4, 2 segments of 2. 1 2 enter segment 0, 3 4 segment 1 (the lowest with room). 1 is used: up to
    # segment 1, which is over its share, so its LRU block 3 cools to segment 0. 5 evicts the LRU of segment 0:
    # 2 (not 3, cooled later), and enters segment 0. 6 evicts 3.
    prompts = [[1], [2], [3], [4], [1], [5], [6], [3], [2], [1]]
    r = run(impl, prompts, capacity_blocks=4, policy="slru:n-seg=2")
    assert col(r, "hit_blocks") == [0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    assert col(r, "evicted_blocks") == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0]
    lru = run(impl, prompts, capacity_blocks=4, policy="lru")   # LRU keeps 3 (used after 2) and evicts 4
    assert col(lru, "hit_blocks") == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]


def test_clock_gives_a_used_block_a_second_chance_per_counter_unit(impl):
    # capacity 3. 1 is used twice: with a 1-bit counter (saturating at 1) the hand spares it once, so 4 evicts 2
    # and 5 evicts 3, then 6 evicts 1; with 2 bits it is spared twice (6 evicts 4 instead).
    prompts = [[1], [2], [3], [1], [1], [4], [5], [6], [1]]
    one_bit = run(impl, prompts, capacity_blocks=3, policy="clock")
    assert col(one_bit, "hit_blocks") == [0, 0, 0, 1, 1, 0, 0, 0, 0]
    two_bits = run(impl, prompts, capacity_blocks=3, policy="clock:n-bit-counter=2")
    assert col(two_bits, "hit_blocks") == [0, 0, 0, 1, 1, 0, 0, 0, 1]


def test_arc_keeps_a_reused_block_through_a_scan_and_adapts_to_ghost_hits(impl):
    # capacity 3 (libCacheSim's ARC gives the same hits). 1 is used twice: into T2. 4 evicts T1's LRU 2 (into B1)
    # where LRU evicts 1. 2 is a B1 hit: p rises to 1, T1 (3, 4) is over it, so 3 goes into B1 and 2 enters T2.
    # 5: T1 (4) is at p, so T2's LRU 1 goes (into B2). 4 is a hit. 1 is a B2 hit: p falls to 0 and T1's 5 goes.
    prompts = [[1], [1], [2], [3], [4], [1], [2], [5], [4], [1]]
    r = run(impl, prompts, capacity_blocks=3, policy="arc")
    assert col(r, "hit_blocks") == [0, 1, 0, 0, 0, 1, 0, 0, 1, 0]
    assert col(r, "evicted_blocks") == [0, 0, 0, 0, 1, 0, 1, 1, 0, 1]
    lru = run(impl, prompts, capacity_blocks=3, policy="lru")
    assert col(lru, "hit_blocks") == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]


def test_twoq_keeps_a_block_seen_again_after_a1in_through_a_scan(impl):
    # capacity 4, A1in's share 2, A1out 2 ids (libCacheSim's TwoQ gives the same hits). 1-4 fill A1in; 5 evicts
    # its oldest, 1 (into A1out); 1 comes back from A1out into Am (A1in still over its share: 2 goes). The scan
    # 6-9 evicts from A1in only, so 1 stays where LRU loses it; 2 has left A1out meanwhile and misses.
    prompts = [[1], [2], [3], [4], [5], [1], [1], [6], [7], [8], [9], [1], [2]]
    r = run(impl, prompts, capacity_blocks=4, policy="twoq:Ain-size-ratio=0.5,Aout-size-ratio=0.5")
    assert col(r, "hit_blocks") == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert col(r, "evicted_blocks") == [0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1]
    lru = run(impl, prompts, capacity_blocks=4, policy="lru")
    assert col(lru, "hit_blocks") == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]


def test_belady_evicts_the_block_used_farthest_ahead(impl):
    # capacity 2: at 3, block 1 is used again at request 3 and 2 at request 5, so 2 goes; at 4, 3 (never used
    # again) goes; LRU would have evicted 1 at 3.
    prompts = [[1], [2], [3], [1], [4], [2]]
    r = run(impl, prompts, capacity_blocks=2, policy="belady")
    assert col(r, "hit_blocks") == [0, 0, 0, 1, 0, 0]
    assert col(r, "evicted_blocks") == [0, 0, 1, 0, 1, 1]
    assert sum(col(run(impl, prompts, capacity_blocks=2, policy="lru"), "hit_blocks")) == 0


def test_gdsf_keeps_the_deeper_block_that_costs_more_to_recompute(impl):
    # block_size 1, attention-tokens 2: a block at depth d costs 1 + (d + 1/2) / 2, so "12" (depth 1) is worth 1.75
    # and "5" 1.25. [7] must evict a leaf: GDSF drops "5"; LRU (and GDSF with uniform cost, its tie broken by
    # recency) drops the older "12".
    prompts = [[1, 2], [5], [7], [1, 2]]
    assert col(run(impl, prompts, capacity_blocks=3, policy="gdsf:attention-tokens=2"), "hit_blocks") == [0, 0, 0, 2]
    assert col(run(impl, prompts, capacity_blocks=3, policy="gdsf:attention-tokens=0"), "hit_blocks") == [0, 0, 0, 1]
    assert col(run(impl, prompts, capacity_blocks=3, policy="lru"), "hit_blocks") == [0, 0, 0, 1]


def test_gdsf_ages_what_is_not_used_again(impl):
    # uniform cost, capacity 2: "1" used three times has priority 3; each eviction raises L to the victim's
    # priority, so newcomers enter at L + 1 and, once L reaches 3, "1" goes as LRU would have it go
    prompts = [[1], [1], [1], [2], [3], [4], [5], [1]]
    r = run(impl, prompts, capacity_blocks=2, policy="gdsf:attention-tokens=0")
    assert col(r, "hit_blocks") == [0, 1, 1, 0, 0, 0, 0, 0]
    assert col(r, "evicted_blocks") == [0, 0, 0, 0, 1, 1, 1, 1]


def test_belady_refuses_a_stream_of_batches(impl):
    trace = cachesim.compile_trace(TokenRequests.from_lists([[1], [2], [1]]), 1)
    with pytest.raises(ValueError, match="whole trace"):
        cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=1, policy="belady"), impl=impl).run(
            iter([trace.slice(0, 2), trace.slice(2, 3)]))
    simulator = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=1, policy="belady"), impl=impl)
    simulator.feed(trace.slice(0, 2))
    with pytest.raises(ValueError, match="in one call"):
        simulator.feed(trace.slice(2, 3))


@pytest.mark.parametrize(("policy", "message"), [
    ("s3fifo:small-size-ratio=2", "small-size-ratio=2 is outside 0.0..1.0"),
    ("s3fifo:move-to-main=1", "policy s3fifo has no parameter 'move-to-main'"),
    ("slru:n-seg=two", "n-seg='two' is not a whole number"),
    ("lru:x=1", "policy lru has no parameter 'x' (its parameters: none)"),
    ("clock:n-bit-counter", "is not key=value"),
    ("arcs", "unknown policy 'arcs'"),
])
def test_bad_policy_parameters_name_the_policy_and_the_key(policy, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cachesim.CacheConfig(capacity_blocks=10, policy=policy)


def test_policy_lists_keep_parameters_together():
    from cachesim._contract import policy_label, split_policies

    assert split_policies("lru,s3fifo:small-size-ratio=0.2,move-to-main-threshold=1,sieve") == [
        "lru", "s3fifo:small-size-ratio=0.2,move-to-main-threshold=1", "sieve"]
    assert policy_label("s3fifo:move-to-main-threshold=2,small-size-ratio=0.2") == "s3fifo:small-size-ratio=0.2"
    assert policy_label("slru:n-seg=4") == "slru"


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


@pytest.mark.core
@pytest.mark.parametrize("policy", [p for p in cachesim.POLICIES if p != "belady"])
def test_memory_bytes_counts_what_the_policy_holds(policy):
    # what the engine says it holds, against what the allocator saw it take (the policy's own arrays included)
    import tracemalloc

    trace = cachesim.compile_trace(TokenRequests.from_lists([[i % 97, i % 89, i] for i in range(6000)]), 1)
    simulator = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=5000, policy=policy), keep_per_request=False)
    tracemalloc.start()
    simulator.run(trace)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert simulator.engine.occupancy == 5000
    assert simulator.engine.memory_bytes() == pytest.approx(held, rel=0.05)
