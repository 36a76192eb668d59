"""Property-testing tools for cache policies: hypothesis strategies and invariant checkers.

Use them on your own policy (``pip install 'cachesim[test]'`` brings hypothesis)::

    from hypothesis import given
    from cachesim.testing import cache_configs, check_invariants, token_request_streams

    @given(requests=token_request_streams(), config=cache_configs(policy=MyPolicy()))
    def test_my_policy_keeps_the_invariants(requests, config):
        check_invariants(requests, config, impl="reference")

:func:`check_invariants` replays a stream one request at a time and, after every request, checks that the cache
never holds more than its capacity, that with leaf victims it stays prefix-closed (no block cached without its
parent), and that every hit is a prefix some earlier request inserted. :func:`check_deterministic`,
:func:`check_monotone_in_capacity` (a property of stack algorithms such as LRU, not of FIFO-like policies:
Belady's anomaly) and :func:`check_matches_reference` (core against reference: built-in policies and HookPolicy
ones) complete the set. Each raises AssertionError naming the request and the invariant. :class:`PythonLru` is
LRU written with the hook protocol (cachesim.HookPolicy): a template for your own, and what the suite checks the
protocol with.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import xxhash
from hypothesis import strategies as st

from cachesim._contract import HIT_CAPS, OUTPUT_FIELDS, POLICY_NAMES
from cachesim.policies import HookPolicy
from cachesim.replay import CacheConfig, Result, Simulator, replay, tenant_seed
from cachesim.requests import TokenRequests
from cachesim.trace import Trace, compile_trace

__all__ = ["PythonLru", "cache_configs", "chain_keys", "check_deterministic", "check_invariants",
           "check_matches_reference", "check_monotone_in_capacity", "prompts", "token_request_streams"]

# -- strategies ---------------------------------------------------------------------------------------------------

@st.composite
def prompts(draw, pool: list[list[int]], max_tokens: int = 40) -> list[int]:
    """A prompt that often extends or branches off an earlier one in ``pool`` (so prefixes are shared)."""
    if pool and draw(st.booleans()):
        base = draw(st.sampled_from(pool))
        prompt = base[:draw(st.integers(0, len(base)))]
    else:
        prompt = []
    extra = draw(st.lists(st.integers(0, 6), min_size=0 if prompt else 1, max_size=max_tokens))
    prompt = (prompt + extra)[:max_tokens] or [0]
    pool.append(prompt)
    return prompt


@st.composite
def token_request_streams(draw, max_requests: int = 30, max_tenants: int = 3, max_tokens: int = 40) -> TokenRequests:
    """Request streams with shared prefixes, several tenants and gaps in time (seconds 0 to 10)."""
    n = draw(st.integers(1, max_requests))
    pool: list[list[int]] = []
    texts = [draw(prompts(pool, max_tokens)) for _ in range(n)]
    gaps = draw(st.lists(st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 10.0]), min_size=n, max_size=n))
    tenants = draw(st.lists(st.integers(0, max_tenants - 1), min_size=n, max_size=n))
    return TokenRequests.from_lists(texts, t=np.cumsum(gaps), tenant=np.array(tenants, dtype=np.int32),
                                    tenant_names=[f"tenant-{i}" for i in range(max_tenants)])


@st.composite
def cache_configs(draw, policy: Any = None, capacities: Sequence[int | None] = (None, 1, 2, 3, 5, 8, 13, 40),
                  ttls_s: Sequence[float | None] = (None, None, 0.5, 2.0, 7.0)) -> CacheConfig:
    """Cache configurations: tiny and large capacities, TTLs, hit caps, victim modes; ``policy`` fixed or drawn."""
    return CacheConfig(capacity_blocks=draw(st.sampled_from(capacities)), ttl_s=draw(st.sampled_from(ttls_s)),
                       policy=policy if policy is not None else draw(st.sampled_from(POLICY_NAMES)),
                       hit_cap=draw(st.sampled_from(HIT_CAPS)),
                       # leaves, the default, twice as often
                       victims=draw(st.sampled_from(["leaves", "leaves", "any"])))


def chain_keys(tokens: Sequence[int], block_size: int, seed: int = 0, partial_tail: bool = False) -> list[int]:
    """SEMANTICS §2 written out with xxhash alone, independently of both implementations."""
    keys, key = [], seed
    for start in range(0, len(tokens), block_size):
        block = tokens[start:start + block_size]
        if len(block) < block_size and not partial_tail:
            break
        key = xxhash.xxh3_64_intdigest(b"".join(int(t).to_bytes(4, "little") for t in block), seed=key)
        keys.append(key)
    return keys


# -- checkers -----------------------------------------------------------------------------------------------------

def _trace(requests: TokenRequests | Trace, block_size: int) -> Trace:
    return requests if isinstance(requests, Trace) else compile_trace(requests, block_size)


def engine_keys(trace: Trace, request: int, isolation: str | None) -> list[int]:
    """The keys the engine stores for one request's blocks (relabelled per tenant under isolation)."""
    keys = [int(k) for k in trace.block_keys[trace.block_offsets[request]:trace.block_offsets[request + 1]]]
    if isolation == "tenant":
        seed = tenant_seed(trace.tenant_names[trace.tenant[request]])
        keys = [xxhash.xxh3_64_intdigest(k.to_bytes(8, "little"), seed=seed) for k in keys]
    return keys


def check_invariants(requests: TokenRequests | Trace, config: CacheConfig, block_size: int = 1,
                     impl: str | None = None) -> Result:
    """Replay request by request, checking capacity, prefix-closure (leaf victims) and hits after each."""
    trace = _trace(requests, block_size)
    sim = Simulator(config, impl=impl)
    if sim.offline:
        sim.plan(trace)
    parent: dict[int, int | None] = {}
    ever_cached: set[int] = set()
    for r in range(trace.n_requests):
        keys = engine_keys(trace, r, config.isolation)
        for i, key in enumerate(keys):
            parent[key] = keys[i - 1] if i else None
        before = set(ever_cached)
        out = sim.feed(trace.slice(r, r + 1))
        hit = keys[:int(out["hit_blocks"][0])]
        missing = [k for k in hit if k not in before]
        assert not missing, f"request {r}: hit {len(missing)} block(s) no earlier request inserted"
        cached = [int(k) for k in sim.engine.cached_keys()]
        if config.capacity_blocks is not None:
            assert len(cached) <= config.capacity_blocks, \
                f"request {r}: {len(cached)} blocks cached, capacity {config.capacity_blocks}"
        if config.victims == "leaves":
            cached_set = set(cached)
            orphan = next((k for k in cached if parent[k] is not None and parent[k] not in cached_set), None)
            assert orphan is None, f"request {r}: block {orphan:#x} is cached without its parent"
        ever_cached.update(cached)
    return sim.result()


def check_deterministic(requests: TokenRequests | Trace, config: CacheConfig, block_size: int = 1,
                        impl: str | None = None) -> None:
    """The same stream and configuration give identical per-request outputs and statistics."""
    trace = _trace(requests, block_size)
    a, b = (_replay(trace, config, impl) for _ in range(2))
    _assert_same(a, b, "a second replay")


def check_monotone_in_capacity(requests: TokenRequests | Trace, capacities: Sequence[int | None],
                               block_size: int = 1, impl: str | None = None, **config) -> None:
    """Per request, hit tokens never fall as capacity grows (true of stack algorithms such as LRU)."""
    trace = _trace(requests, block_size)
    previous = None
    for capacity in capacities:
        hits = replay(trace, capacity_blocks=capacity, impl=impl, **config).per_request["hit_tokens"]
        if previous is not None:
            worse = np.flatnonzero(hits < previous)
            assert not worse.size, f"request {int(worse[0])}: fewer hit tokens at capacity {capacity}"
        previous = hits


def check_matches_reference(requests: TokenRequests | Trace, config: CacheConfig, block_size: int = 1) -> None:
    """The compiled core and the reference model agree on every output and statistic."""
    trace = _trace(requests, block_size)
    _assert_same(_replay(trace, config, "core"), _replay(trace, config, "reference"), "the reference model")


def _replay(trace: Trace, config: CacheConfig, impl: str | None) -> Result:
    return Simulator(config, impl=impl).run(trace)


def _assert_same(a: Result, b: Result, other: str) -> None:
    for name in OUTPUT_FIELDS:
        differ = np.flatnonzero(a.per_request[name] != b.per_request[name])
        assert not differ.size, f"request {int(differ[0])}: {name} differs from {other}"
    assert np.array_equal(a.tenant_stats, b.tenant_stats), f"tenant statistics differ from {other}"
    assert np.array_equal(a.hits_from, b.hits_from), f"hits_from differs from {other}"


class PythonLru(HookPolicy):
    """LRU as a HookPolicy: O(1) a notification, and a victim found at the front of the order (past the blocks
    the current request uses, which is_candidate refuses). It replays exactly as the built-in ``lru``."""

    name = "python-lru"

    def __init__(self):
        self.order: OrderedDict[int, None] = OrderedDict()   # least recently used first

    def used(self, key: int, inserted_now: bool) -> None:
        self.order[key] = None
        self.order.move_to_end(key)

    def removed(self, key: int, evicted: bool) -> None:
        del self.order[key]

    def victim(self, is_candidate) -> int | None:
        # the oldest is a leaf: a block's parent is used (and stamped after it) whenever the block is
        for key in self.order:
            if is_candidate(key):
                return key
        return None
