"""A fleet of replicas, each with its own prefix cache, behind a router.

Requests are routed one at a time (a Python loop per request, never per block) by a router that sees only what a
real router sees: the request, its own bookkeeping of what it sent where, and an estimate of each replica's load.
Then each replica's requests are fed to its own :class:`~cachesim.replay.Simulator` in one batch, in trace order,
and the replicas are replayed in parallel. Routing never waits on the engines, exactly as sgl-router's approximate
tree and Dynamo's approximate (``--no-kv-events``) mode route from their own record of what they sent.

Load model (documented in docs/interference.md): each replica is one FIFO server. A request's work is
``(prompt_tokens - hit_tokens) / prefill_tokens_per_s + output_tokens / decode_tokens_per_s`` seconds, where the
decode rate is the replica's aggregate decode throughput (the share of a continuous batch one request's decode
takes). It starts at ``max(arrival, when the previous request on that replica finished)``; its time to first token
is the wait plus its prefill time. The router runs this model with the hits its own index predicts; the reported
TTFT and utilisation run it again with the hits the replica's cache actually gave.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from cachesim._contract import OUTPUT_FIELDS, ratio
from cachesim.interference import replay_requests
from cachesim.replay import CacheConfig, Result
from cachesim.trace import Trace, first_counted

__all__ = ["ROUTERS", "FleetResult", "LoadModel", "RouterConfig", "fifo_schedule", "route", "run_fleet"]

ROUTERS = ("round-robin", "random", "session", "prefix-hash", "least-loaded", "cache-aware", "cost")
ROUTER_DESCRIPTIONS = {
    "round-robin": "request i to replica i mod N",
    "random": "a uniformly random replica (seeded)",
    "session": "sticky per session; new sessions and session-less requests round-robin",
    "prefix-hash": "hash of the first K blocks' key plus a routing key; above ~15 requests/min per routing key "
                   "spills round-robin over ceil(rate/15) replicas (OpenAI)",
    "least-loaded": "fewest requests in flight (router's estimate)",
    "cache-aware": "longest prefix match above a match-rate threshold unless load is imbalanced, else the "
                   "smallest index (sgl-router cache_aware)",
    "cost": "argmin of w x prefill blocks + decode blocks (Dynamo KV router)",
}
ROUTING_KEYS = ("tenant", "session", "none")


@dataclass(frozen=True)
class LoadModel:
    """Throughputs of one replica (see the module docstring)."""

    prefill_tokens_per_s: float = 20_000.0
    decode_tokens_per_s: float = 2_000.0    # aggregate over a replica's running batch
    default_output_tokens: int = 256        # for requests whose trace gives no output length

    def __post_init__(self):
        if not (self.prefill_tokens_per_s > 0 and self.decode_tokens_per_s > 0):
            raise ValueError("prefill and decode throughputs must be positive tokens/s")
        if self.default_output_tokens < 0:
            raise ValueError("default_output_tokens must not be negative")

    def output_tokens(self, trace: Trace) -> np.ndarray:
        out = np.asarray(trace.output_tokens, dtype=np.int64)
        return np.where(out >= 0, out, self.default_output_tokens)


@dataclass(frozen=True)
class RouterConfig:
    """A router and its parameters (defaults from ENGINES.md / PROVIDERS.md)."""

    name: str = "round-robin"
    seed: int = 0
    prefix_blocks: int = 1                  # prefix-hash: K leading blocks hashed (OpenAI: ~256 tokens)
    routing_key: str = "tenant"             # prefix-hash: what plays prompt_cache_key
    overflow_per_min: float = 15.0          # prefix-hash: requests/min per routing key before spilling
    cache_threshold: float = 0.5            # cache-aware (sgl-router defaults)
    balance_abs_threshold: int = 32
    balance_rel_threshold: float = 1.0001
    overlap_weight: float = 1.0             # cost: w in w x prefill_blocks + decode_blocks (Dynamo default 1)

    def __post_init__(self):
        if self.name not in ROUTERS:
            raise ValueError(f"unknown router {self.name!r}; choose one of {', '.join(ROUTERS)}")
        if self.routing_key not in ROUTING_KEYS:
            raise ValueError(f"unknown routing key {self.routing_key!r}; choose one of {', '.join(ROUTING_KEYS)}")
        if self.prefix_blocks < 1:
            raise ValueError("prefix_blocks must be at least 1")
        if not self.overflow_per_min > 0:
            raise ValueError("overflow_per_min must be positive")


# -- the router's own view ---------------------------------------------------------------------------------------

class _PrefixIndex:
    """What the router believes one replica caches: the keys of the requests it sent there.

    Bounded like the replica's cache by two generations of dicts (key -> last use time): inserts go to the current
    one, which becomes the previous one once it holds half the capacity, so the index keeps roughly the most recent
    half-to-whole capacity of keys, an approximate LRU. Whole requests are inserted, so the index is prefix-closed
    and the longest match is found by binary search (O(log n) look-ups per request, no loop over blocks).
    """

    def __init__(self, capacity_blocks: int | None, ttl_s: float | None):
        self.half = None if capacity_blocks is None else max(1, capacity_blocks // 2)
        self.ttl_s = ttl_s
        self.current: dict[int, float] = {}
        self.previous: dict[int, float] = {}

    def _live(self, key: int, t: float) -> bool:
        used = self.current.get(key)
        if used is None:
            used = self.previous.get(key)
            if used is None:
                return False
        return self.ttl_s is None or used + self.ttl_s > t

    def match(self, keys: list[int], t: float) -> int:
        lo, hi = 0, len(keys)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._live(keys[mid - 1], t):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def insert(self, keys: list[int], t: float) -> None:
        self.current.update(dict.fromkeys(keys, t))
        if self.half is not None and len(self.current) >= self.half:
            self.previous, self.current = self.current, {}

    @property
    def size(self) -> int:
        return len(self.current) + len(self.previous)


class _Load:
    """The router's estimate of one replica's queue under the load model."""

    __slots__ = ("free_at", "inflight", "inflight_blocks", "prefill_tokens", "prefilling")

    def __init__(self):
        self.free_at = 0.0
        self.inflight: deque = deque()      # (finish time, blocks), finish times non-decreasing (FIFO)
        self.inflight_blocks = 0
        self.prefilling: deque = deque()    # (prefill end, uncached tokens)
        self.prefill_tokens = 0

    def advance(self, t: float) -> None:
        while self.inflight and self.inflight[0][0] <= t:
            self.inflight_blocks -= self.inflight.popleft()[1]
        while self.prefilling and self.prefilling[0][0] <= t:
            self.prefill_tokens -= self.prefilling.popleft()[1]

    def add(self, t: float, prefill_s: float, decode_s: float, blocks: int, uncached_tokens: int) -> None:
        start = max(t, self.free_at)
        self.free_at = start + prefill_s + decode_s
        self.inflight.append((self.free_at, blocks))
        self.inflight_blocks += blocks
        self.prefilling.append((start + prefill_s, uncached_tokens))
        self.prefill_tokens += uncached_tokens


def route(trace: Trace, n_replicas: int, router: RouterConfig | str = "round-robin", *,
          config: CacheConfig | None = None, load: LoadModel | None = None) -> np.ndarray:
    """The replica (int32) each request of ``trace`` goes to."""
    return _route(trace, n_replicas, router, config, load)[0]


def _route(trace: Trace, n_replicas: int, router: RouterConfig | str, config: CacheConfig | None,
           load: LoadModel | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Replicas, and the hit tokens the router's index predicted on each (None for routers without an index)."""
    trace = trace.keyed()  # routers hash the block keys: dense ids would route differently
    router = RouterConfig(router) if isinstance(router, str) else router
    if n_replicas < 1:
        raise ValueError(f"a fleet needs at least one replica, got {n_replicas}")
    config = config or CacheConfig()
    load = load or LoadModel()
    n = trace.n_requests
    if router.name == "round-robin":
        return (np.arange(n) % n_replicas).astype(np.int32), None
    if router.name == "random":
        return np.random.default_rng(router.seed).integers(0, n_replicas, size=n).astype(np.int32), None
    if router.name == "session":
        return _route_session(trace, n_replicas), None
    if router.name == "prefix-hash":
        return _route_prefix_hash(trace, n_replicas, router), None
    return _route_stateful(trace, n_replicas, router, config, load)


def _route_session(trace: Trace, n_replicas: int) -> np.ndarray:
    out = np.empty(trace.n_requests, dtype=np.int32)
    home: dict[int, int] = {}
    turn = 0
    for i, s in enumerate(trace.session.tolist()):
        r = home.get(s) if s >= 0 else None
        if r is None:
            r = turn % n_replicas
            turn += 1
            if s >= 0:
                home[s] = r
        out[i] = r
    return out


def _routing_key(trace: Trace, router: RouterConfig) -> np.ndarray:
    """Per request: the chained key of its first K blocks (a key names its whole prefix), mixed with the
    routing key (tenant, session or nothing) and the seed, as uint64."""
    offsets = trace.block_offsets
    n_blocks = np.diff(offsets)
    last = offsets[:-1] + np.minimum(n_blocks, router.prefix_blocks) - 1
    prefix = np.where(n_blocks > 0, trace.block_keys[np.maximum(last, 0)] if trace.n_blocks else 0, 0)
    if router.routing_key == "tenant":
        extra = trace.tenant.astype(np.uint64)
    elif router.routing_key == "session":
        extra = trace.session.astype(np.uint64)
    else:
        extra = np.zeros(trace.n_requests, dtype=np.uint64)
    pairs = np.stack([np.asarray(prefix, dtype=np.uint64), extra], axis=1)
    return np.fromiter((xxhash.xxh3_64_intdigest(row.tobytes(), seed=router.seed) for row in pairs),
                       dtype=np.uint64, count=trace.n_requests)


def _route_prefix_hash(trace: Trace, n_replicas: int, router: RouterConfig) -> np.ndarray:
    keys = _routing_key(trace, router)
    home = (keys % np.uint64(n_replicas)).astype(np.int64)
    out = np.empty(trace.n_requests, dtype=np.int32)
    recent: dict[int, deque] = {}
    spills: dict[int, int] = {}
    window_s = 60.0
    for i, (key, t) in enumerate(zip(keys.tolist(), trace.t.tolist(), strict=True)):
        arrivals = recent.setdefault(key, deque())
        arrivals.append(t)
        while arrivals[0] <= t - window_s:
            arrivals.popleft()
        k = min(n_replicas, math.ceil(len(arrivals) / router.overflow_per_min))
        if k <= 1:
            out[i] = home[i]
        else:  # spill round-robin over the home replica and the k - 1 after it
            turn = spills.get(key, 0)
            spills[key] = turn + 1
            out[i] = (home[i] + turn % k) % n_replicas
    return out


def _route_stateful(trace: Trace, n_replicas: int, router: RouterConfig, config: CacheConfig,
                    load: LoadModel) -> tuple[np.ndarray, np.ndarray]:
    """least-loaded, cache-aware and cost: decisions that read the router's index and load estimate."""
    out = np.empty(trace.n_requests, dtype=np.int32)
    predicted = np.empty(trace.n_requests, dtype=np.int64)
    indexes = [_PrefixIndex(config.capacity_blocks, config.ttl_s) for _ in range(n_replicas)]
    loads = [_Load() for _ in range(n_replicas)]
    offsets = trace.block_offsets.tolist()
    keys_all = trace.block_keys
    # prefix sums of block tokens give matched tokens for any match length without a loop over blocks
    token_cum = np.concatenate([[0], np.cumsum(trace.block_tokens, dtype=np.int64)]).tolist()
    prompt = trace.prompt_tokens.tolist()
    output = load.output_tokens(trace).tolist()
    pre_rate, dec_rate = load.prefill_tokens_per_s, load.decode_tokens_per_s
    block_size = trace.block_size
    replicas = range(n_replicas)
    for i, t in enumerate(trace.t.tolist()):
        b0, b1 = offsets[i], offsets[i + 1]
        keys = keys_all[b0:b1].tolist()
        for ld in loads:
            ld.advance(t)
        if router.name == "least-loaded":
            counts = [len(ld.inflight) for ld in loads]
            r = counts.index(min(counts))
            matched = indexes[r].match(keys, t)
        elif router.name == "cache-aware":
            counts = [len(ld.inflight) for ld in loads]
            lo, hi = min(counts), max(counts)
            if hi - lo > router.balance_abs_threshold and hi > lo * router.balance_rel_threshold:
                r = counts.index(lo)
                matched = indexes[r].match(keys, t)
            else:
                matches = [ix.match(keys, t) for ix in indexes]
                best = max(matches)
                if keys and best / len(keys) > router.cache_threshold:
                    r = matches.index(best)
                else:
                    sizes = [ix.size for ix in indexes]
                    r = sizes.index(min(sizes))
                matched = matches[r]
        else:  # cost (Dynamo): lower is better
            matches = [ix.match(keys, t) for ix in indexes]
            costs = [router.overlap_weight * (prompt[i] - (token_cum[b0 + matches[j]] - token_cum[b0])
                                              + loads[j].prefill_tokens) / block_size + loads[j].inflight_blocks
                     for j in replicas]
            r = costs.index(min(costs))
            matched = matches[r]
        predicted[i] = token_cum[b0 + matched] - token_cum[b0]
        uncached = prompt[i] - predicted[i]
        loads[r].add(t, uncached / pre_rate, output[i] / dec_rate, b1 - b0, uncached)
        indexes[r].insert(keys, t)
        out[i] = r
    return out, predicted


# -- replaying the fleet ------------------------------------------------------------------------------------------

def fifo_schedule(t: np.ndarray, prefill_s: np.ndarray, decode_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One FIFO server: (first-token time, finish time) per request, arrivals ``t`` non-decreasing.

    finish[i] = max(t[i], finish[i-1]) + work[i], unrolled: finish[i] = S[i] + max_{j<=i}(t[j] - S[j-1]) with S the
    running sum of work, so no Python loop is needed.
    """
    work = prefill_s + decode_s
    s = np.cumsum(work)
    before = s - work
    finish = s + np.maximum.accumulate(t - before) if len(t) else s
    start = finish - work
    return start + prefill_s, finish


@dataclass
class FleetResult:
    """A fleet replay: which replica served each request, what each replica's cache gave, and the load model."""

    router: RouterConfig
    n_replicas: int
    config: CacheConfig
    load: LoadModel
    replica: np.ndarray                       # int32 [n]: replica of each request
    replicas: list[Result | None]             # per replica (None when it got no request)
    per_request: dict[str, np.ndarray] = field(repr=False)   # engine outputs, ttft_s, finish_s, counted, in trace order
    tenant_names: list[str] = field(default_factory=lambda: ["default"])

    def summary(self) -> dict[str, Any]:
        pr = self.per_request
        counted = pr["counted"]
        prompt = int(pr["prompt_tokens"][counted].sum())
        hit = int(pr["hit_tokens"][counted].sum())
        blocks = int(pr["blocks"][counted].sum())
        hit_blocks = int(pr["hit_blocks"][counted].sum())
        ttft = pr["ttft_s"][counted]
        per_replica = self.per_replica()
        n_req = np.asarray([row["requests"] for row in per_replica], dtype=np.float64)
        util = [row["utilisation"] for row in per_replica]
        return {
            "router": self.router.name, "replicas": self.n_replicas, "requests": int(counted.sum()),
            "prompt_tokens": prompt, "hit_tokens": hit, "token_hit_ratio": ratio(hit, prompt),
            "blocks": blocks, "hit_blocks": hit_blocks, "block_hit_ratio": hit_blocks / blocks if blocks else 0.0,
            "ttft_mean_s": float(ttft.mean()) if len(ttft) else 0.0,
            "ttft_p50_s": float(np.percentile(ttft, 50)) if len(ttft) else 0.0,
            "ttft_p99_s": float(np.percentile(ttft, 99)) if len(ttft) else 0.0,
            "utilisation_max": max(util) if util else 0.0,
            "utilisation_mean": float(np.mean(util)) if util else 0.0,
            "request_imbalance": float(n_req.max() / n_req.mean()) if n_req.sum() else 0.0,
            # the router's index against the caches: hit tokens it expected vs those the replicas delivered
            "predicted_hit_tokens": (int(pr["predicted_hit_tokens"][counted].sum())
                                     if len(pr["predicted_hit_tokens"]) and pr["predicted_hit_tokens"][0] >= 0
                                     else None),
        }

    def per_replica(self) -> list[dict[str, Any]]:
        """Per replica: counted requests, hit ratio, utilisation (busy / makespan), TTFT, peak occupancy."""
        pr = self.per_request
        counted = pr["counted"]
        t0 = float(pr["t"].min()) if len(pr["t"]) else 0.0
        span = float(pr["finish_s"].max()) - t0 if len(pr["t"]) else 0.0
        rows = []
        for r in range(self.n_replicas):
            mine = pr["replica"] == r
            c = mine & counted
            prompt = int(pr["prompt_tokens"][c].sum())
            hit = int(pr["hit_tokens"][c].sum())
            busy = float(pr["work_s"][mine].sum())
            ttft = pr["ttft_s"][c]
            res = self.replicas[r]
            rows.append({
                "replica": r, "requests": int(c.sum()), "prompt_tokens": prompt, "hit_tokens": hit,
                "token_hit_ratio": ratio(hit, prompt),
                "utilisation": busy / span if span > 0 else 0.0,
                "ttft_mean_s": float(ttft.mean()) if len(ttft) else 0.0,
                "ttft_p99_s": float(np.percentile(ttft, 99)) if len(ttft) else 0.0,
                "peak_occupancy_blocks": res.peak_occupancy if res is not None else 0,
                "evictions": res.summary()["evictions"]["capacity"] if res is not None else 0,
            })
        return rows

    def per_tenant(self) -> dict[str, dict[str, Any]]:
        """Per tenant over the whole fleet: counted requests, prompt and hit tokens, token hit ratio."""
        pr = self.per_request
        counted = pr["counted"]
        n = len(self.tenant_names)
        tenant = pr["tenant"][counted]
        requests = np.bincount(tenant, minlength=n)
        prompt = np.bincount(tenant, weights=pr["prompt_tokens"][counted], minlength=n)
        hit = np.bincount(tenant, weights=pr["hit_tokens"][counted], minlength=n)
        return {name: {"requests": int(requests[i]), "prompt_tokens": int(prompt[i]), "hit_tokens": int(hit[i]),
                       "token_hit_ratio": ratio(float(hit[i]), float(prompt[i]))}
                for i, name in enumerate(self.tenant_names)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "router": {"name": self.router.name, "description": ROUTER_DESCRIPTIONS[self.router.name],
                       **{k: v for k, v in self.router.__dict__.items() if k != "name"}},
            "load_model": dict(self.load.__dict__),
            "cache": {"capacity_blocks": self.config.capacity_blocks, "ttl_s": self.config.ttl_s,
                      "hit_cap": self.config.hit_cap, "isolation": self.config.isolation},
            "summary": self.summary(),
            "per_replica": self.per_replica(),
            "per_tenant": self.per_tenant(),
        }


def run_fleet(trace: Trace, n_replicas: int, router: RouterConfig | str = "round-robin", *,
              config: CacheConfig | None = None, load: LoadModel | None = None, impl: str | None = None,
              workers: int | None = None, executor: str = "thread") -> FleetResult:
    """Route every request, replay each replica's requests through its own cache (in parallel), apply the load
    model with the hits each replica really gave."""
    router = RouterConfig(router) if isinstance(router, str) else router
    config = config or CacheConfig()
    load = load or LoadModel()
    replica, predicted = _route(trace, n_replicas, router, config, load)
    index_sets = [np.flatnonzero(replica == r) for r in range(n_replicas)]
    busy = [ix for ix in index_sets if len(ix)]
    results = iter(replay_requests(trace, config, busy, impl=impl, keep_per_request=True, workers=workers,
                                   executor=executor))
    replicas: list[Result | None] = [next(results) if len(ix) else None for ix in index_sets]

    n = trace.n_requests
    per_request = {name: np.zeros(n, dtype=np.int64) for name in OUTPUT_FIELDS}
    for ix, res in zip(index_sets, replicas, strict=True):
        if res is not None:
            for name in OUTPUT_FIELDS:
                per_request[name][ix] = res.per_request[name]
    per_request["t"] = np.asarray(trace.t, dtype=np.float64)
    per_request["replica"] = replica
    per_request["tenant"] = np.asarray(trace.tenant)
    per_request["prompt_tokens"] = np.asarray(trace.prompt_tokens, dtype=np.int64)
    per_request["blocks"] = np.diff(trace.block_offsets)
    counted = np.zeros(n, dtype=bool)
    counted[first_counted(trace, config):] = True
    per_request["counted"] = counted
    prefill_s = (per_request["prompt_tokens"] - per_request["hit_tokens"]) / load.prefill_tokens_per_s
    decode_s = load.output_tokens(trace) / load.decode_tokens_per_s
    ttft, finish = np.zeros(n), np.zeros(n)
    for ix in index_sets:
        first, done = fifo_schedule(per_request["t"][ix], prefill_s[ix], decode_s[ix])
        ttft[ix] = first - per_request["t"][ix]
        finish[ix] = done
    # what the router's own index expected each request to hit (-1: the router keeps no index)
    per_request["predicted_hit_tokens"] = predicted if predicted is not None else np.full(n, -1, dtype=np.int64)
    per_request["ttft_s"] = ttft
    per_request["finish_s"] = finish
    per_request["work_s"] = prefill_s + decode_s
    return FleetResult(router, n_replicas, config, load, replica, replicas, per_request, list(trace.tenant_names))


