"""Fleet routers and the load model: each router by hand on a small trace, and a one-replica fleet = plain replay."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import cachesim
from cachesim import BlockRequests, CacheConfig, compile_trace
from cachesim.fleet import ROUTERS, LoadModel, RouterConfig, _PrefixIndex, fifo_schedule, route, run_fleet

BS = 4  # tokens per block in the hand-computed traces


def block_trace(rows, output=0):
    """rows: (t, tenant, ids[, session]); full blocks of BS tokens; every output length ``output``."""
    ids = [list(r[2]) for r in rows]
    return compile_trace(BlockRequests.from_lists(
        ids, [len(b) * BS for b in ids], BS, t=[r[0] for r in rows], tenant=[r[1] for r in rows],
        session=[r[3] if len(r) > 3 else -1 for r in rows], output_tokens=[output] * len(rows)))


# prefill 4 tokens/s: a block of 4 tokens takes 1 s; decode 1 token/s; no output tokens unless a test says so
LOAD = LoadModel(prefill_tokens_per_s=4.0, decode_tokens_per_s=1.0)

SMALL = [
    (0.0, "A", [1, 2], 0),
    (1.0, "A", [3], 1),
    (2.0, "B", [1, 2, 5], 0),
    (3.0, "B", [3, 4]),
    (4.0, "A", [1, 2, 6], 1),
]


def test_round_robin():
    assert route(block_trace(SMALL), 2, "round-robin").tolist() == [0, 1, 0, 1, 0]


def test_random_is_seeded_and_uniform():
    trace = block_trace([(float(i), "A", [i]) for i in range(2000)])
    a = route(trace, 4, RouterConfig("random", seed=7))
    assert a.tolist() == np.random.default_rng(7).integers(0, 4, size=2000).tolist()   # the documented draw
    assert a.tolist() == route(trace, 4, RouterConfig("random", seed=7)).tolist()
    assert a.tolist() != route(trace, 4, RouterConfig("random", seed=8)).tolist()
    counts = np.bincount(a, minlength=4)
    assert counts.min() > 400 and counts.max() < 600     # 500 each expected; 4+ sigma either side


def test_session_affinity():
    # s0 -> 0 (first new session), s1 -> 1, s0 again -> 0, no session -> next turn (0), s1 again -> 1
    assert route(block_trace(SMALL), 2, "session").tolist() == [0, 1, 0, 0, 1]


def test_least_loaded_by_hand():
    # t0: both idle -> 0; 8 uncached tokens = 2 s, in flight until 2.
    # t1: counts [1, 0] -> 1 (until 2).   t2: both finished -> 0; matches [1,2] there, 4 uncached = 1 s (until 3).
    # t3: both free -> 0 (no match, until 5).   t4: counts [1, 0] -> 1.
    assert route(block_trace(SMALL), 2, "least-loaded", load=LOAD).tolist() == [0, 1, 0, 0, 1]


CACHE = [
    (0.0, "A", [1, 2]),
    (1.0, "A", [1, 2, 3]),
    (2.0, "A", [5]),
    (3.0, "A", [1, 9]),
    (4.0, "A", [1, 2, 3, 4]),
]


def test_cache_aware_by_hand():
    # t0: no match -> smallest index (tie) 0.   t1: 2 of 3 blocks on 0 (0.67 > 0.5) -> 0.
    # t2: no match -> smallest index: 0 holds 3 keys, 1 none -> 1.
    # t3: [1] matches on 0, 1 of 2 = 0.5, not above the threshold -> smallest index: 1 (1 key) -> 1.
    # t4: 3 of 4 on 0 -> 0.
    assert route(block_trace(CACHE), 2, "cache-aware", load=LOAD).tolist() == [0, 0, 1, 1, 0]


def test_cache_aware_balances_first_when_load_is_imbalanced():
    # prefill 1 token/s keeps everything in flight; thresholds 0 and 1.0 make any difference an imbalance.
    # t0 -> 0.  t1: counts [1, 0] imbalanced -> 1 despite the match on 0.  t2: counts [1, 1]; [1,2,3,4] matches
    # 2 blocks on 0 and 3 on 1 -> 1.
    router = RouterConfig("cache-aware", balance_abs_threshold=0, balance_rel_threshold=1.0)
    slow = LoadModel(prefill_tokens_per_s=1.0, decode_tokens_per_s=1.0)
    trace = block_trace([(0.0, "A", [1, 2]), (1.0, "A", [1, 2, 3]), (2.0, "A", [1, 2, 3, 4])])
    assert route(trace, 2, router, load=slow).tolist() == [0, 1, 1]


def test_cost_router_by_hand():
    # cost = (prompt - matched tokens + pending prefill tokens) / 4 + in-flight blocks
    # t0: 2 vs 2 -> 0 (prefill 2 s, until 2).
    # t1: on 0: (12 - 8 + 8)/4 + 2 = 5; on 1: 12/4 = 3 -> 1 (until 4).
    # t2: 0 is done: 4/4 = 1; on 1: (4 + 12)/4 + 3 = 7 -> 0 (until 3).
    # t3: on 0 (free): [1] matches, (8 - 4)/4 = 1; on 1: (8 - 4 + 12)/4 + 3 = 7 -> 0 (until 4).
    # t4: both free; 0 matches [1,2]: (16 - 8)/4 = 2; 1 matches [1,2,3]: (16 - 12)/4 = 1 -> 1.
    assert route(block_trace(CACHE), 2, "cost", load=LOAD).tolist() == [0, 1, 0, 0, 1]


def test_cost_router_weight_trades_hits_for_load():
    # a weight of 0 ignores prefill entirely: the fewest in-flight blocks wins (ties -> lowest index)
    router = RouterConfig("cost", overlap_weight=0.0)
    slow = LoadModel(prefill_tokens_per_s=1.0, decode_tokens_per_s=1.0)
    trace = block_trace([(0.0, "A", [1, 2]), (1.0, "A", [1, 2, 3]), (2.0, "A", [1, 2, 3, 4])])
    # t0 -> 0 (2 blocks in flight).  t1: 2 vs 0 -> 1 (3 blocks).  t2: 2 vs 3 -> 0.
    assert route(trace, 2, router, load=slow).tolist() == [0, 1, 0]


def test_prefix_hash_sticks_below_the_rate_and_spills_above_it():
    # 20 requests with one prefix, 1 s apart: the first 15 in a minute stay home; from the 16th, ceil(n/15) = 2
    # replicas take turns (home, home+1, ...); after a quiet minute, back home.
    rows = [(float(i), "A", [1, 2, i + 10]) for i in range(20)] + [(200.0, "A", [1, 2, 99])]
    a = route(block_trace(rows), 4, RouterConfig("prefix-hash", prefix_blocks=2)).tolist()
    home = a[0]
    assert a[:15] == [home] * 15
    assert a[15:20] == [home, (home + 1) % 4, home, (home + 1) % 4, home]
    assert a[20] == home


def test_prefix_hash_home_is_the_documented_hash():
    # home = XXH3_64(little-endian uint64 pair (key of the first K blocks, tenant code), seed) mod N, the key chained
    # as SEMANTICS §2 says: key0 = XXH3(id 1, seed 0), key1 = XXH3(id 2, seed key0)
    key0 = xxhash.xxh3_64_intdigest(struct.pack("<Q", 1), seed=0)
    key1 = xxhash.xxh3_64_intdigest(struct.pack("<Q", 2), seed=key0)
    rows = [(0.0, "A", [1, 2, 3]), (1.0, "B", [1, 2])]
    a = route(block_trace(rows), 7, RouterConfig("prefix-hash", prefix_blocks=2, seed=5)).tolist()
    assert a == [xxhash.xxh3_64_intdigest(struct.pack("<QQ", key1, tenant), seed=5) % 7 for tenant in (0, 1)]


def test_prefix_hash_key_and_prefix_length():
    # two tenants with one prefix: with routing key "none" they share a replica; K=1 ignores the second block
    rows = [(0.0, "A", [1, 2]), (1.0, "B", [1, 2]), (2.0, "A", [1, 3])]
    trace = block_trace(rows)
    none = route(trace, 1000, RouterConfig("prefix-hash", prefix_blocks=2, routing_key="none")).tolist()
    assert none[0] == none[1] and none[2] != none[0]
    tenant = route(trace, 1000, RouterConfig("prefix-hash", prefix_blocks=2)).tolist()
    assert tenant[0] != tenant[1]
    one = route(trace, 1000, RouterConfig("prefix-hash", prefix_blocks=1)).tolist()
    assert one[0] == one[2]


def test_prefix_index_is_an_approximate_lru_of_two_generations():
    ix = _PrefixIndex(capacity_blocks=4, ttl_s=None)   # a generation holds 2 keys
    ix.insert([1, 2], 0.0)                              # full: becomes the previous generation
    ix.insert([3], 1.0)
    assert ix.match([1, 2], 2.0) == 2 and ix.match([1, 5], 2.0) == 1 and ix.match([3], 2.0) == 1
    ix.insert([4], 2.0)                                 # current full again: [1, 2] falls out
    assert ix.match([1, 2], 3.0) == 0 and ix.match([3], 3.0) == 1
    ttl = _PrefixIndex(capacity_blocks=None, ttl_s=5.0)
    ttl.insert([1, 2], 0.0)
    ttl.insert([1], 3.0)
    assert ttl.match([1, 2], 4.0) == 2 and ttl.match([1, 2], 6.0) == 1 and ttl.match([1, 2], 9.0) == 0


def test_fifo_schedule_by_hand():
    first, finish = fifo_schedule(np.array([0.0, 1.0, 1.5, 10.0]), np.array([2.0, 1.0, 0.5, 1.0]),
                                  np.array([1.0, 0.0, 0.0, 0.0]))
    assert first.tolist() == [2.0, 4.0, 4.5, 11.0]
    assert finish.tolist() == [3.0, 4.0, 4.5, 11.0]


def test_fleet_ttft_utilisation_and_hits_by_hand():
    # round-robin on 2 replicas, unbounded caches; outputs of 2 tokens = 2 s of decode each
    rows = [(0.0, "A", [1, 2]), (0.0, "A", [7]), (1.0, "A", [1, 2, 3])]
    fleet = run_fleet(block_trace(rows, output=2), 2, "round-robin", load=LOAD)
    # replica 0: r0 prefill 2 s -> first token 2, finish 4; r2 arrives at 1, hits [1,2] (8 tokens), prefill 1 s
    # after waiting until 4 -> first token 5 (TTFT 4), finish 7.  replica 1: r1 prefill 1 s, finish 3.
    assert fleet.replica.tolist() == [0, 1, 0]
    assert fleet.per_request["hit_tokens"].tolist() == [0, 0, 8]
    assert fleet.per_request["ttft_s"].tolist() == [2.0, 1.0, 4.0]
    rows_out = fleet.per_replica()
    # makespan 0..7: replica 0 busy 4 + 3 = 7 s, replica 1 busy 3 s
    assert [r["utilisation"] for r in rows_out] == [1.0, 3 / 7]
    assert [r["requests"] for r in rows_out] == [2, 1]
    s = fleet.summary()
    assert s["token_hit_ratio"] == 8 / 24
    assert s["request_imbalance"] == 2 / 1.5


# -- invariants ---------------------------------------------------------------------------------------------------

@st.composite
def traces(draw):
    n = draw(st.integers(1, 25))
    rows, t = [], 0.0
    for _ in range(n):
        t += draw(st.sampled_from([0.0, 0.5, 3.0, 40.0]))
        ids = draw(st.lists(st.integers(0, 3), min_size=1, max_size=5))
        rows.append((t, draw(st.sampled_from(["A", "B"])), ids, draw(st.integers(-1, 3))))
    return rows


@pytest.mark.parametrize("impl", ["core", "reference"])
@given(rows=traces(), cap=st.one_of(st.none(), st.integers(1, 10)), ttl=st.sampled_from([None, 5.0]),
       warm=st.integers(0, 3), router=st.sampled_from(ROUTERS))
def test_one_replica_fleet_is_the_plain_replay(impl, rows, cap, ttl, warm, router):
    trace = block_trace(rows, output=3)
    plain = cachesim.replay(trace, capacity_blocks=cap, ttl_s=ttl, warmup=warm, impl=impl)
    fleet = run_fleet(trace, 1, RouterConfig(router, seed=3), config=CacheConfig(capacity_blocks=cap, ttl_s=ttl,
                                                                                 warmup_requests=warm), load=LOAD,
                      impl=impl)
    assert fleet.replica.tolist() == [0] * len(rows)
    for name in ("hit_tokens", "hit_blocks", "inserted_blocks", "evicted_blocks", "expired_blocks",
                 "uncached_blocks"):
        assert fleet.per_request[name].tolist() == plain.per_request[name].tolist(), name
    replica = fleet.replicas[0]
    assert replica.tenant_stats.tolist() == plain.tenant_stats.tolist()
    assert replica.hits_from.tolist() == plain.hits_from.tolist()
    assert fleet.summary()["token_hit_ratio"] == plain.summary()["token_hit_ratio"]


@given(rows=traces(), n=st.integers(1, 4), router=st.sampled_from(ROUTERS))
def test_every_request_is_served_once_and_hits_add_up(rows, n, router):
    trace = block_trace(rows)
    fleet = run_fleet(trace, n, router, config=CacheConfig(capacity_blocks=6), load=LOAD)
    assert set(fleet.replica.tolist()) <= set(range(n))
    served = sum(r.summary()["requests"] for r in fleet.replicas if r is not None)
    assert served == len(rows) == fleet.summary()["requests"]
    assert sum(r.summary()["hit_tokens"] for r in fleet.replicas if r is not None) == fleet.summary()["hit_tokens"]
    pr = fleet.per_request
    # a first token never comes before the uncached part of the prompt is prefilled
    assert np.all(pr["ttft_s"] >= (pr["prompt_tokens"] - pr["hit_tokens"]) / LOAD.prefill_tokens_per_s - 1e-9)


@pytest.mark.parametrize("kwargs", [{"name": "nope"}, {"routing_key": "org"}, {"prefix_blocks": 0}])
def test_bad_router_settings_are_named(kwargs):
    with pytest.raises(ValueError):
        RouterConfig(**kwargs)


def test_cli_fleet_compares_routers(tmp_path, capsys):
    from cachesim.cli import main

    path = tmp_path / "small.npz"
    block_trace(SMALL).save(path)
    assert main(["fleet", str(path), "--replicas", "2", "--router", "round-robin,session", "--json", "-"]) == 0
    import orjson

    data = orjson.loads(capsys.readouterr().out)
    assert [r["router"]["name"] for r in data["routers"]] == ["round-robin", "session"]
    assert [row["requests"] for row in data["routers"][1]["per_replica"]] == [3, 2]
    assert main(["fleet", str(path), "--replicas", "2", "--per-replica"]) == 0
    assert "per replica — cost" in capsys.readouterr().out
    # B's [1,2,5] would hit A's [1,2] on replica 0 (session s0); salted per tenant it hits nothing
    assert main(["fleet", str(path), "--replicas", "2", "--router", "session", "--json", "-"]) == 0
    assert orjson.loads(capsys.readouterr().out)["routers"][0]["per_tenant"]["B"]["hit_tokens"] == 8
    assert main(["fleet", str(path), "--replicas", "2", "--router", "session", "--isolation", "tenant",
                 "--json", "-"]) == 0
    assert orjson.loads(capsys.readouterr().out)["routers"][0]["per_tenant"]["B"]["hit_tokens"] == 0
    with pytest.raises(SystemExit) as stopped:  # an argparse error now: the router list is read at the edge
        main(["fleet", str(path), "--router", "fastest"])
    assert stopped.value.code == 2
    assert "unknown router" in capsys.readouterr().err


def test_fleet_per_tenant_totals_by_hand():
    # round-robin on 2 replicas: A's [1,2] twice lands on 0 both times (requests 0 and 2): its second visit hits 8
    rows = [(0.0, "A", [1, 2]), (1.0, "B", [1, 2]), (2.0, "A", [1, 2]), (3.0, "B", [1, 2, 3])]
    fleet = run_fleet(block_trace(rows), 2, "round-robin", load=LOAD)
    assert fleet.per_tenant() == {
        "A": {"requests": 2, "prompt_tokens": 16, "hit_tokens": 8, "token_hit_ratio": 0.5},
        "B": {"requests": 2, "prompt_tokens": 20, "hit_tokens": 8, "token_hit_ratio": 0.4},
    }


@given(rows=traces(), n=st.integers(1, 4), router=st.sampled_from(["least-loaded", "cache-aware", "cost"]))
def test_router_index_predicts_exactly_when_caches_are_unbounded(rows, n, router):
    # unbounded caches without TTL keep everything a replica was sent, and so does the router's index
    fleet = run_fleet(block_trace(rows), n, router, load=LOAD)
    assert fleet.per_request["predicted_hit_tokens"].tolist() == fleet.per_request["hit_tokens"].tolist()
    assert fleet.summary()["predicted_hit_tokens"] == fleet.summary()["hit_tokens"]


def test_routers_without_an_index_predict_nothing():
    fleet = run_fleet(block_trace(SMALL), 2, "session", load=LOAD)
    assert fleet.summary()["predicted_hit_tokens"] is None
    assert set(fleet.per_request["predicted_hit_tokens"].tolist()) == {-1}


@given(gaps=st.lists(st.floats(0, 10), min_size=1, max_size=30), data=st.data())
def test_fifo_schedule_matches_the_sequential_recurrence(gaps, data):
    t = np.cumsum(gaps)
    prefill = np.asarray(data.draw(st.lists(st.floats(0, 5), min_size=len(t), max_size=len(t))))
    decode = np.asarray(data.draw(st.lists(st.floats(0, 5), min_size=len(t), max_size=len(t))))
    first, finish = fifo_schedule(t, prefill, decode)
    free = 0.0
    for i in range(len(t)):
        start = max(t[i], free)
        assert first[i] == pytest.approx(start + prefill[i], abs=1e-9)
        free = start + prefill[i] + decode[i]
        assert finish[i] == pytest.approx(free, abs=1e-9)
