"""The compiled core against the reference model, step by step, with the invariants of SEMANTICS §3-4."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import cachesim
from cachesim._contract import POLICIES, TENANT_FIELDS
from cachesim.requests import TokenRequests
from cachesim.testing import engine_keys
from conftest import MOONCAKE_CONVERSATION, require_shared
from strategies import prompts, token_request_streams

OUTPUTS = ("hit_tokens", "hit_blocks", "inserted_blocks", "evicted_blocks", "expired_blocks", "uncached_blocks")
TENANT_HIT_BLOCKS = TENANT_FIELDS.index("hit_blocks")
# the state machine feeds request by request, so it draws the policies that need no future
ONLINE_POLICIES = [name for name, spec in POLICIES.items() if not spec.offline]
OFFLINE_POLICIES = [name for name, spec in POLICIES.items() if spec.offline]
# parameters away from the defaults, at the small capacities the machine draws
POLICIES_WITH_PARAMETERS = ["s3fifo:small-size-ratio=0.5,move-to-main-threshold=1,ghost-size-ratio=0.5",
                            "s3fifo:small-size-ratio=0.3,move-to-main-threshold=3,ghost-size-ratio=2",
                            "slru:n-seg=2", "slru:n-seg=3", "clock:n-bit-counter=2,init-freq=1",
                            "gdsf:attention-tokens=0", "gdsf:attention-tokens=3",
                            "twoq:Ain-size-ratio=0.5,Aout-size-ratio=0.25", "twoq:Ain-size-ratio=0.1,Aout-size-ratio=2"]


class CoreMatchesReference(RuleBasedStateMachine):
    """Random requests (tenants, shared prefixes, gaps, tiny and large capacities, TTLs, every policy) into both
    engines: the shared contract every policy passes against the reference model.

    The compiled engine serves LRU without interference tracking or ghosts in loops of their own: one-block batches
    in _one_block_lru (its lean variant when one tenant, no per-request outputs, TTL or hit cap), and, without a
    TTL or victims="any", multi-block batches in _prefix_lru. So interference, per-request outputs, the number of
    tenants and the warm-up are drawn too, LRU is drawn more often, and batches of several one-block requests come
    in as well as single requests."""

    @initialize(capacity=st.sampled_from([None, 1, 2, 3, 5, 8, 13, 40, 1000]),
                ttl_s=st.sampled_from([None, None, 0.5, 2.0, 7.0]),
                hit_cap=st.sampled_from([None, None, "prompt-1"]),
                block_size=st.integers(1, 3),
                isolation=st.sampled_from([None, None, "tenant"]),
                policy=st.sampled_from(["lru", "lru", "lru", *ONLINE_POLICIES, *POLICIES_WITH_PARAMETERS]),
                victims=st.sampled_from(["leaves", "leaves", "any"]),
                ghost_blocks=st.sampled_from([None, None, 0, 1, 3]),
                interference=st.booleans(),
                per_request=st.booleans(),
                n_tenants=st.sampled_from([1, 3]),
                warmup_requests=st.sampled_from([0, 0, 2]))
    def setup(self, capacity, ttl_s, hit_cap, block_size, isolation, policy, victims, ghost_blocks, interference,
              per_request, n_tenants, warmup_requests):
        self.config = cachesim.CacheConfig(capacity_blocks=capacity, ttl_s=ttl_s, hit_cap=hit_cap,
                                           isolation=isolation, policy=policy, victims=victims,
                                           interference=interference, ghost_blocks=ghost_blocks,
                                           warmup_requests=warmup_requests)
        self.block_size = block_size
        self.n_tenants = n_tenants
        self.core = cachesim.Simulator(self.config, impl="core", keep_per_request=per_request)
        self.reference = cachesim.Simulator(self.config, impl="reference", keep_per_request=per_request)
        self.pool: list[list[int]] = []
        self.t = 0.0
        self.parent: dict[int, int | None] = {}   # engine key -> engine key of its parent block (None at the root)
        self.ever_cached: set[int] = set()

    def feed_both(self, prompts_, times, tenants):
        """One batch into both engines: the same outputs, and every hit a prefix some earlier request inserted."""
        names = [f"tenant-{tenant}" for tenant in tenants]
        trace = cachesim.compile_trace(TokenRequests.from_lists(prompts_, t=times, tenant=names), self.block_size)
        keys = [engine_keys(trace, r, self.config.isolation) for r in range(trace.n_requests)]
        for request_keys in keys:
            for i, key in enumerate(request_keys):
                self.parent[key] = request_keys[i - 1] if i else None
        before = set(self.ever_cached)
        hits_before = self.core.result().tenant_stats[:, TENANT_HIT_BLOCKS].sum()
        got = self.core.feed(trace)
        want = self.reference.feed(trace)
        if got is None or want is None:  # no per-request outputs: the statistics are compared by the invariants
            assert got is None and want is None
            hit_blocks = [int(self.core.result().tenant_stats[:, TENANT_HIT_BLOCKS].sum() - hits_before)]
            if len(keys) > 1:  # counted hits of a batch: at most what its requests could hit, all told
                assert hit_blocks[0] <= sum(len(k) for k in keys)
                hit_blocks = [0] * len(keys)
        else:
            for field in OUTPUTS:
                assert got[field].tolist() == want[field].tolist(), field
            hit_blocks = got["hit_blocks"].tolist()
        # a hit is always a prefix that some earlier request inserted (earlier in this batch, or before it)
        for request_keys, hits in zip(keys, hit_blocks, strict=True):
            assert all(k in before for k in request_keys[:int(hits)])
            before.update(request_keys)
        self.ever_cached.update(int(k) for k in self.core.engine.cached_keys())

    @rule(data=st.data(), gap=st.sampled_from([0.0, 0.0, 0.25, 1.0, 3.0]), tenant=st.integers(0, 2))
    def request(self, data, gap, tenant):
        prompt = data.draw(prompts(self.pool, max_tokens=24))
        self.t += gap
        self.feed_both([prompt], [self.t], [tenant % self.n_tenants])

    @rule(data=st.data(), n=st.integers(1, 6), gap=st.sampled_from([0.0, 0.25, 1.0]),
          one_block=st.sampled_from([True, True, False]))
    def batch(self, data, n, gap, one_block):
        """Several requests in one batch: with one_block, a plain key stream (the one-block loop's batches)."""
        max_tokens = self.block_size if one_block else 24
        batch, times, tenants = [], [], []
        for _ in range(n):
            batch.append(data.draw(prompts(self.pool, max_tokens=max_tokens)))
            self.t += gap
            times.append(self.t)
            tenants.append(data.draw(st.integers(0, self.n_tenants - 1)))
        self.feed_both(batch, times, tenants)

    @invariant()
    def same_state_and_statistics(self):
        if self.core.engine is None:
            return
        assert self.core.engine.cached_keys().tolist() == self.reference.engine.cached_keys().tolist()
        assert self.core.engine.cached_owners().tolist() == self.reference.engine.cached_owners().tolist()
        a, b = self.core.result(), self.reference.result()
        assert np.array_equal(a.tenant_stats, b.tenant_stats)
        assert np.array_equal(a.hits_from, b.hits_from)
        assert a.peak_occupancy == b.peak_occupancy
        assert a.orphaned_blocks == b.orphaned_blocks
        if self.config.interference:
            assert np.array_equal(a.lost_to, b.lost_to)
            assert np.array_equal(a.evictions_by, b.evictions_by)
        else:
            assert a.lost_to is b.lost_to is None and a.evictions_by is b.evictions_by is None

    @invariant()
    def attributed_losses_never_exceed_misses(self):
        if self.core.engine is None or not self.config.interference:
            return
        r = self.core.result()
        missed = r.tenant_stats[:, r.tenant_fields.index("prompt_tokens")] - \
            r.tenant_stats[:, r.tenant_fields.index("hit_tokens")]
        assert np.all(r.lost_to.sum(axis=1) <= missed)

    @invariant()
    def capacity_is_never_exceeded(self):
        if self.core.engine is not None and self.config.capacity_blocks is not None:
            assert self.core.engine.occupancy <= self.config.capacity_blocks

    @invariant()
    def leaf_victims_keep_the_cache_prefix_closed(self):
        if self.core.engine is None or self.config.victims == "any":
            return
        cached = set(int(k) for k in self.core.engine.cached_keys())
        for key in cached:
            parent = self.parent[key]
            assert parent is None or parent in cached


TestCoreMatchesReference = pytest.mark.core(CoreMatchesReference.TestCase)
TestCoreMatchesReference.settings = settings(stateful_step_count=25)


@given(requests=token_request_streams(max_requests=25), block_size=st.integers(1, 3),
       hit_cap=st.sampled_from([None, "prompt-1"]))
def test_lru_hits_never_fall_as_capacity_grows(requests, block_size, hit_cap):
    """LRU with reverse stamping is a stack algorithm: a larger cache holds a superset, request by request."""
    trace = cachesim.compile_trace(requests, block_size)
    previous = None
    for capacity in (1, 2, 3, 4, 6, 9, 14, 25, 60, None):
        hits = cachesim.replay(trace, capacity_blocks=capacity, hit_cap=hit_cap).per_request["hit_tokens"]
        if previous is not None:
            assert np.all(hits >= previous)
        previous = hits


@given(requests=token_request_streams(max_requests=20), capacity=st.sampled_from([None, 2, 5]),
       ttl_s=st.sampled_from([None, 1.0, 4.0]))
def test_batch_boundaries_do_not_change_anything(requests, capacity, ttl_s):
    trace = cachesim.compile_trace(requests, 1)
    whole = cachesim.replay(trace, capacity_blocks=capacity, ttl_s=ttl_s)
    sim = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=capacity, ttl_s=ttl_s))
    for batch in trace.batches(max_blocks=7):
        sim.feed(batch)
    streamed = sim.result()
    for field in OUTPUTS:
        assert np.array_equal(whole.per_request[field], streamed.per_request[field])
    assert streamed.summary() == whole.summary()


# -- the real trace ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mooncake_trace():
    from cachesim.readers import read_trace

    return read_trace(require_shared(MOONCAKE_CONVERSATION))


def test_mooncake_infinite_lru_reference_figure(mooncake_trace, impl):
    summary = cachesim.replay(mooncake_trace, impl=impl).summary()
    assert (summary["hit_blocks"], summary["blocks"]) == (105_710, 288_500)
    assert round(summary["block_hit_ratio"], 4) == 0.3664
    assert summary["requests"] == 12_031


@pytest.mark.core
@pytest.mark.parametrize(("capacity", "ttl_s"), [(1_000, None), (10_000, None), (1_000, 300.0), (10_000, 300.0),
                                                  (None, 300.0)])
def test_mooncake_core_and_reference_agree_on_every_request(mooncake_trace, capacity, ttl_s):
    core = cachesim.replay(mooncake_trace, capacity_blocks=capacity, ttl_s=ttl_s, impl="core", interference=True)
    reference = cachesim.replay(mooncake_trace, capacity_blocks=capacity, ttl_s=ttl_s, impl="reference",
                                interference=True)
    for field in OUTPUTS:
        assert np.array_equal(core.per_request[field], reference.per_request[field]), field
    assert core.summary() == reference.summary()
    assert np.array_equal(core.lost_to, reference.lost_to)
    assert core.lost_to.sum() > 0
    if capacity:
        assert core.summary()["peak_occupancy_blocks"] <= capacity


@settings(deadline=None)
@given(requests=token_request_streams(max_requests=30), capacity=st.sampled_from([1, 2, 3, 5, 8, 13]),
       policy=st.sampled_from(OFFLINE_POLICIES), victims=st.sampled_from(["leaves", "any"]),
       ttl_s=st.sampled_from([None, 2.0]), block_size=st.integers(1, 3))
def test_offline_policies_core_equals_reference_and_keep_the_invariants(requests, capacity, policy, victims, ttl_s,
                                                                        block_size):
    from cachesim.testing import check_invariants, check_matches_reference

    config = cachesim.CacheConfig(capacity_blocks=capacity, policy=policy, victims=victims, ttl_s=ttl_s)
    check_matches_reference(requests, config, block_size=block_size)
    for impl in ("core", "reference"):
        check_invariants(requests, config, block_size=block_size, impl=impl)


@settings(deadline=None)
@given(ids=st.lists(st.integers(0, 12), min_size=1, max_size=120), capacity=st.integers(1, 10))
def test_belady_never_misses_more_than_any_policy_on_a_key_stream(ids, capacity):
    trace = cachesim.compile_trace(cachesim.BlockRequests.from_lists([[i] for i in ids], [1] * len(ids), 1))
    hits = {policy: cachesim.replay(trace, capacity_blocks=capacity, policy=policy, keep_per_request=False)
            .summary()["hit_requests"] for policy in [*POLICIES, *POLICIES_WITH_PARAMETERS]}
    assert hits["belady"] == max(hits.values()), hits


@pytest.mark.core
@settings(deadline=None)
@given(keys=st.lists(st.integers(0, 40), min_size=0, max_size=80), cuts=st.lists(st.integers(0, 80), max_size=20))
def test_next_uses_core_equals_reference(keys, cuts):
    # requests of any length (empty ones too), a key repeated within a request and across requests
    from cachesim import _core, _reference

    offsets = np.array(sorted({0, len(keys), *[c for c in cuts if c <= len(keys)]}), dtype=np.int64)
    ids = np.array(keys, dtype=np.uint64)
    assert _core.next_uses(ids, offsets).tolist() == _reference.next_uses(ids, offsets).tolist()


@pytest.mark.core
def test_next_uses_past_its_first_table_size_equals_reference():
    # 300,000 blocks over 100,000 keys: the table starts at 65,536 slots, at most half full, so it grows twice
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 100_000, 300_000).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    offsets = np.concatenate([[0], np.sort(rng.choice(np.arange(1, 300_000), 60_000, replace=False)), [300_000]])
    from cachesim import _core, _reference

    assert np.array_equal(_core.next_uses(ids, offsets.astype(np.int64)),
                          _reference.next_uses(ids, offsets.astype(np.int64)))
