"""The replay API: configure a cache, stream a trace through it, read the result."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import orjson
import xxhash

from cachesim import _impl
from cachesim._contract import (
    DEFAULT_TOKEN_BLOCK_SIZE,
    HIT_CAPS,
    ISOLATIONS,
    POLICY_NAMES,
    RATIO_DEFINITIONS,
    TENANT_FIELDS,
    VICTIMS,
    check_engine_config,
    is_hook_policy,
    parse_policy,
    ratio,
    resolve_policy,
)
from cachesim._contract import POLICIES as POLICY_SPECS
from cachesim.policies import describe
from cachesim.presets import get_preset
from cachesim.requests import BlockRequests, TokenRequests, TraceError
from cachesim.trace import Trace, compile_trace, validate
from cachesim.units import parse_warmup

__all__ = ["CacheConfig", "Simulator", "Result", "replay", "POLICIES", "RATIO_DEFINITIONS", "parse_warmup",
           "HIT_CAPS", "ISOLATIONS", "VICTIMS"]

# The registry's names, re-exported under the names this module has always offered.
POLICIES = POLICY_NAMES

@dataclass(frozen=True)
class CacheConfig:
    """How the emulated cache behaves (SEMANTICS §3-4). Validated on construction."""

    capacity_blocks: int | None = None   # block slots; None = unbounded
    policy: Any = "lru"                  # a built-in name (POLICIES) or a custom cachesim.Policy (reference only)
    ttl_s: float | None = None           # uniform TTL refreshed on use; None = no expiry
    hit_cap: str | None = None           # "prompt-1": leave at least one prompt token to compute
    isolation: str | None = None         # "tenant": tenants never share entries
    warmup_requests: int = 0             # leave the first N requests out of the counts
    warmup_s: float = 0.0                # leave requests before first_t + warmup_s out of the counts
    victims: str = "leaves"              # "leaves": evict only leaf entries (prefix-closed); "any": lift that
    interference: bool = False           # track who evicted whom (lost_to, evictions_by; SEMANTICS §6)
    ghost_blocks: int | None = None      # evicted keys remembered for attribution (default: the capacity)

    def __post_init__(self):
        check_engine_config(capacity_blocks=self.capacity_blocks, policy=self.policy, ttl_s=self.ttl_s,
                            hit_cap=self.hit_cap, isolation=self.isolation, warmup_requests=self.warmup_requests,
                            warmup_s=self.warmup_s, victims=self.victims, ghost_blocks=self.ghost_blocks)


def tenant_seed(name: str) -> int:
    """The namespace seed of a tenant under isolation="tenant": XXH3_64 of its UTF-8 name."""
    return xxhash.xxh3_64_intdigest(name.encode("utf-8"))



def _same_numbering(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two batches' distinct_keys are one numbering (slices of one dense trace share the very array; a
    numbering read again from its file is equal)."""
    return a is b or (len(a) == len(b) and bool(np.array_equal(a, b)))


def _own_copy(policy):
    """A HookPolicy's copy for one cache (copy.deepcopy), or a ValueError that says what to do instead."""
    try:
        return copy.deepcopy(policy)
    except Exception as exc:
        raise ValueError(f"policy {describe(policy)!r}: every cache gets its own copy of a HookPolicy "
                         f"(copy.deepcopy), which failed ({type(exc).__name__}: {exc}); give the class a "
                         "__deepcopy__, or name it as FILE.py:CLASS so that each cache makes a new one") from exc


class Simulator:
    """A cache fed a trace in batches; state carries over between batches, so traces of any size stream."""

    def __init__(self, config: CacheConfig | None = None, *, impl: str | None = None,
                 keep_per_request: bool = True):
        self.config = config or CacheConfig()
        self.impl = impl or _impl.default_impl()
        # a HookPolicy keeps state: the one in the config is a template, and each cache gets its own copy of it
        # (replicas of a fleet, repeated replays and sweep points would otherwise share one and corrupt it); a
        # plugin spec (FILE.py:CLASS) gives each cache a new instance
        policy = resolve_policy(self.config.policy)
        self.policy = _own_copy(policy) if is_hook_policy(policy) and policy is self.config.policy else policy
        if not isinstance(self.policy, str) and not is_hook_policy(self.policy) and self.impl != "reference":
            raise ValueError(f"custom policy {describe(self.policy)!r} has no victim(is_candidate) method: a "
                             "choose(candidates) policy runs on the reference engine only (the slow path, see "
                             "cachesim.policies): pass impl='reference', or write it as a cachesim.HookPolicy")
        self._module = _impl.load(self.impl)
        self.keep_per_request = keep_per_request
        self.tenant_names: list[str] = []
        self._tenant_index: dict[str, int] = {}
        self._tenant_seeds: list[int] = []
        self._engine = None
        self.block_size: int | None = None
        self.block_source: str | None = None
        self.dense_keys: bool | None = None   # fed Trace.dense() batches (ids, not keys)
        self._distinct_keys: np.ndarray | None = None  # the numbering of those batches
        self._parts: list[dict[str, np.ndarray]] = []
        self.requests_fed = 0
        self.blocks_fed = 0
        # an offline policy (belady) sees the future: every block's next use in the whole trace (see plan)
        self.offline = isinstance(self.policy, str) and POLICY_SPECS[parse_policy(self.policy)[0]].offline
        self._future: np.ndarray | None = None        # planned: each block's next use, global request index
        self._future_keys: np.ndarray | None = None   # planned: the engine keys it was found for

    @property
    def engine(self):
        """The underlying engine (core or reference), for inspection in tests."""
        return self._engine

    def _global_tenants(self, trace: Trace) -> np.ndarray:
        codes = []
        for name in trace.tenant_names:
            code = self._tenant_index.get(name)
            if code is None:
                code = self._tenant_index[name] = len(self.tenant_names)
                self.tenant_names.append(name)
                self._tenant_seeds.append(tenant_seed(name))
            codes.append(code)
        return np.asarray(codes, dtype=np.int32)[trace.tenant] if len(trace.tenant) else trace.tenant

    def feed(self, trace: Trace) -> dict[str, np.ndarray] | None:
        """Serve every request of ``trace`` in order; return its per-request outputs (None when the simulator
        keeps no per-request outputs: the engine then writes none).

        On bad input the error names the request, and everything before it stays served and counted.
        """
        try:
            trace = validate(trace)   # nothing reaches the engine's unchecked loops without this
        except TraceError as exc:
            sound = getattr(exc, "valid_requests", 0)
            if sound:  # serve the sound requests before the fault, then report it
                self.feed(trace.slice(0, sound))
                raise TraceError(f"{exc.message} (the {self.requests_fed:,} requests before it were served)",
                                 field=exc.field, line=exc.line) from None
            raise
        dense = trace.distinct_keys is not None
        if self.offline and self._future is None:
            if self._engine is not None:
                raise ValueError(f"policy {self.config.policy} evicts by each block's next use over the whole "
                                 "trace: replay the trace in one call (cachesim.replay, Simulator.run), or "
                                 "plan(trace) before feeding its slices")
            self.plan(trace)   # this batch is all the future there is
        if self._engine is None:
            cfg = self.config
            self.block_size, self.block_source, self.dense_keys = trace.block_size, trace.block_source, dense
            self._distinct_keys = trace.distinct_keys
            # tenant isolation relabels keys by hashing them, so relabelled ids are no longer dense
            self._engine = self._module.Engine(capacity_blocks=cfg.capacity_blocks, ttl_s=cfg.ttl_s,
                                               hit_cap=cfg.hit_cap, block_size=trace.block_size,
                                               warmup_requests=cfg.warmup_requests, warmup_s=cfg.warmup_s,
                                               policy=self.policy, victims=cfg.victims,
                                               interference=cfg.interference, ghost_blocks=cfg.ghost_blocks,
                                               direct_keys=dense and cfg.isolation != "tenant")
        elif trace.block_size != self.block_size:
            raise TraceError(f"batch has {trace.block_size}-token blocks, earlier batches {self.block_size}",
                             field="block_size")
        elif dense != self.dense_keys:
            raise TraceError("batches mix dense ids (Trace.dense()) and block keys; number the whole trace once",
                             field="block_keys")
        elif dense and not _same_numbering(trace.distinct_keys, self._distinct_keys):
            # ids of batches numbered apart collide: block 0 of one is not block 0 of the other
            raise TraceError("batches were numbered apart (Trace.dense() on each); number the whole trace once",
                             field="block_keys")
        tenant = np.ascontiguousarray(self._global_tenants(trace), dtype=np.int32)
        self._engine.ensure_tenants(len(self.tenant_names))
        keys = self._engine_keys(trace, tenant)
        offsets = np.ascontiguousarray(trace.block_offsets)
        future = {}
        if self.offline:
            planned = slice(self.blocks_fed, self.blocks_fed + trace.n_blocks)
            if not np.array_equal(self._future_keys[planned], keys):
                raise ValueError(f"policy {self.config.policy} evicts by each block's next use, and this batch is "
                                 "not the next part of the trace it was planned for: replay the trace in one call "
                                 "(cachesim.replay, Simulator.run), or plan(trace) with the whole trace first")
            future["next_use"] = np.ascontiguousarray(self._future[planned])
        try:
            outputs = self._engine.feed(np.ascontiguousarray(trace.t), tenant,
                                        np.ascontiguousarray(trace.prompt_tokens), offsets, keys,
                                        np.ascontiguousarray(trace.block_tokens),
                                        per_request=self.keep_per_request, **future)
        except self._module.EngineInputError as exc:
            served = exc.request
            self._keep(trace.slice(0, served), tenant[:served], exc.partial)
            raise TraceError(f"{exc} (the {self.requests_fed:,} requests before it were served)",
                             field=exc.field, line=served) from None
        self._keep(trace, tenant, outputs)
        return outputs

    def _engine_keys(self, trace: Trace, tenant: np.ndarray) -> np.ndarray:
        """The keys the engine stores: the trace's, relabelled per tenant under isolation="tenant"."""
        keys = np.ascontiguousarray(trace.block_keys)
        if self.config.isolation == "tenant":
            keys = self._module.relabel_keys(keys, trace.block_offsets, tenant,
                                             np.asarray(self._tenant_seeds, dtype=np.uint64))
        return np.ascontiguousarray(keys)

    def plan(self, trace: Trace) -> None:
        """Give an offline policy (belady) the whole trace before it is fed, in one slice or many: every block's
        next use, found in one backward pass. ``run`` and ``replay`` do this themselves."""
        if self._engine is not None:
            raise ValueError("plan(trace) comes before the first batch is fed")
        trace = validate(trace)
        tenant = np.ascontiguousarray(self._global_tenants(trace), dtype=np.int32)
        self._future_keys = self._engine_keys(trace, tenant)
        self._future = self._module.next_uses(self._future_keys, np.ascontiguousarray(trace.block_offsets))

    def run(self, trace: Trace | Iterable[Trace], on_batch=None) -> Result:
        """Feed a whole trace (a Trace, in bounded batches, or an iterable of Trace batches) and return the result.

        ``on_batch(batch)`` is called after each batch is served (progress, bookkeeping).
        """
        if isinstance(trace, Trace):
            # the whole trace first: its slices would rebase bad offsets and cut columns to look sound
            try:
                trace = validate(trace)
            except TraceError as exc:
                if not getattr(exc, "valid_requests", 0):
                    raise
                self.feed(trace)   # serves the sound requests before the fault, then raises it
        if self.offline:
            if not isinstance(trace, Trace):
                raise ValueError(f"policy {self.config.policy} evicts by each block's next use over the whole "
                                 "trace: give it a whole Trace, not a stream of batches")
            self.plan(trace)
        for batch in trace.batches() if isinstance(trace, Trace) else trace:
            self.feed(batch)
            if on_batch is not None:
                on_batch(batch)
        return self.result()

    def _keep(self, trace: Trace, tenant: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        self.requests_fed += trace.n_requests
        self.blocks_fed += trace.n_blocks
        if self.keep_per_request:
            part = dict(outputs)
            part["t"] = np.asarray(trace.t, dtype=np.float64)
            part["tenant"] = tenant
            part["session"] = np.asarray(trace.session)
            part["prompt_tokens"] = np.asarray(trace.prompt_tokens)
            part["blocks"] = np.diff(trace.block_offsets)
            self._parts.append(part)

    def result(self) -> Result:
        per_request = None
        if self.keep_per_request:
            names = self._parts[0].keys() if self._parts else ()
            per_request = {name: np.concatenate([p[name] for p in self._parts]) for name in names}
        engine = self._engine
        n_tenants = max(len(self.tenant_names), 1)
        stats = engine.tenant_stats[:n_tenants].copy() if engine else np.zeros((1, len(TENANT_FIELDS)),
                                                                              dtype=np.int64)
        hits_from = engine.hits_from[:n_tenants, :n_tenants].copy() if engine else np.zeros((1, 1), np.int64)
        lost_to = engine.lost_to[:n_tenants, :n_tenants + 1].copy() if engine else np.zeros((1, 2), np.int64)
        evictions_by = engine.evictions_by[:n_tenants, :n_tenants].copy() if engine else np.zeros((1, 1), np.int64)
        return Result(config=self.config, impl=self.impl, block_size=self.block_size or 0,
                      block_source=self.block_source or "", tenant_names=list(self.tenant_names) or ["default"],
                      tenant_stats=stats, tenant_fields=TENANT_FIELDS, hits_from=hits_from,
                      lost_to=lost_to if self.config.interference else None,
                      evictions_by=evictions_by if self.config.interference else None,
                      peak_occupancy=int(engine.peak_occupancy) if engine else 0,
                      orphaned_blocks=int(engine.orphaned_blocks) if engine else 0,
                      occupancy=int(engine.occupancy) if engine else 0,
                      requests_seen=self.requests_fed, per_request=per_request)


@dataclass
class Result:
    """What a replay reports (SEMANTICS §5), with per-request arrays when kept."""

    config: CacheConfig
    impl: str
    block_size: int
    block_source: str
    tenant_names: list[str]
    tenant_stats: np.ndarray            # int64 [tenants, fields], counted requests only
    tenant_fields: tuple[str, ...]
    hits_from: np.ndarray               # int64 [R, O]: tokens tenant R hit in entries tenant O inserted
    lost_to: np.ndarray | None          # int64 [R, 1 + E]: tokens R missed that TTL (col 0) / tenant E evicted
    evictions_by: np.ndarray | None     # int64 [E, O]: capacity evictions tenant E caused of O's entries
    peak_occupancy: int
    orphaned_blocks: int                # entries left without their parent (victims="any" only)
    occupancy: int
    requests_seen: int
    per_request: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def _totals(self, row: np.ndarray) -> dict[str, Any]:
        s = dict(zip(self.tenant_fields, (int(x) for x in row), strict=True))
        return {
            "requests": s["requests"],
            "prompt_tokens": s["prompt_tokens"],
            "hit_tokens": s["hit_tokens"],
            "token_hit_ratio": ratio(s["hit_tokens"], s["prompt_tokens"]),
            "blocks": s["blocks"],
            "hit_blocks": s["hit_blocks"],
            "block_hit_ratio": ratio(s["hit_blocks"], s["blocks"]),
            "hit_requests": s["hit_requests"],
            "request_hit_ratio": ratio(s["hit_requests"], s["requests"]),
            "inserted_blocks": s["inserted_blocks"],
            "evictions": {"capacity": s["evictions_caused"], "ttl": s["expired_owned"]},
            "evicted_owned": {"capacity": s["evicted_owned"], "ttl": s["expired_owned"]},
            "uncached_blocks": s["uncached_blocks"],
        }

    def summary(self) -> dict[str, Any]:
        """Totals over counted requests, every ratio with its definition."""
        out = self._totals(self.tenant_stats.sum(axis=0))
        out.update({
            "requests_seen": self.requests_seen,
            "warmup": {"requests": self.config.warmup_requests, "seconds": self.config.warmup_s,
                       "excluded_requests": self.requests_seen - out["requests"]},
            "peak_occupancy_blocks": self.peak_occupancy,
            "orphaned_blocks": self.orphaned_blocks,
            "occupancy_blocks": self.occupancy,
            "definitions": dict(RATIO_DEFINITIONS),
        })
        return out

    @property
    def token_hitratio(self) -> float:
        return self.summary()["token_hit_ratio"]

    @property
    def block_hitratio(self) -> float:
        return self.summary()["block_hit_ratio"]

    def per_tenant(self) -> dict[str, dict[str, Any]]:
        """Totals per tenant (counted requests), with the tokens each hit in entries other tenants inserted."""
        out = {}
        for i, name in enumerate(self.tenant_names):
            row = self._totals(self.tenant_stats[i])
            row["hits_from"] = {self.tenant_names[o]: int(v) for o, v in enumerate(self.hits_from[i]) if v}
            if self.lost_to is not None:
                row["lost_to"] = {("ttl" if c == 0 else self.tenant_names[c - 1]): int(v)
                                  for c, v in enumerate(self.lost_to[i]) if v}
            out[name] = row
        return out

    def to_dict(self, per_request: bool = False) -> dict[str, Any]:
        data = {
            "config": {**{f.name: getattr(self.config, f.name) for f in fields(self.config)},
                       "policy": describe(self.config.policy)},
            "impl": self.impl,
            "block_size": self.block_size,
            "block_source": self.block_source,
            "summary": self.summary(),
            "per_tenant": self.per_tenant(),
            "hits_from": {"tenants": self.tenant_names, "tokens": self.hits_from.tolist(),
                          "definition": "tokens[R][O]: tokens tenant R hit in entries inserted by tenant O"},
        }
        if self.lost_to is not None:
            data["lost_to"] = {"tenants": self.tenant_names, "evictors": ["ttl", *self.tenant_names],
                               "tokens": self.lost_to.tolist(),
                               "definition": "tokens[R][E]: tokens tenant R missed in the run after its hit whose "
                                             "blocks evictor E (or the TTL) had removed (ghost table)"}
            data["evictions_by"] = {"tenants": self.tenant_names, "blocks": self.evictions_by.tolist(),
                                    "definition": "blocks[E][O]: capacity evictions tenant E's insertions caused "
                                                  "of entries tenant O inserted"}
        if per_request and self.per_request is not None:
            data["per_request"] = {k: v.tolist() for k, v in self.per_request.items()}
        return data

    def to_json(self, per_request: bool = False) -> str:
        return orjson.dumps(self.to_dict(per_request), option=orjson.OPT_INDENT_2).decode()

    def to_pandas(self, table: str = "requests", trace: Trace | None = None):
        """A pandas DataFrame: ``"requests"`` — the per-request outputs, one row a request in replay order (needs
        ``keep_per_request``); ``"tenants"`` — the per-tenant totals, one row a tenant (nested counts flattened
        to ``evictions_capacity`` and so on; who-hit-whom is in :attr:`hits_from`).

        With ``trace`` (the compiled trace replayed), the requests table gains its per-request columns: tenant
        name, session, and what the reader kept in ``trace.meta`` (an lcp or Qwen trace's ``turn``,
        ``parent_chat_id``...), so ``df.groupby("turn").hit_tokens.sum()`` is the per-turn breakdown the ATC'25
        workload study reports."""
        import pandas as pd

        if table == "requests":
            if self.per_request is None:
                raise ValueError("per-request outputs were not kept: replay with keep_per_request=True")
            frame = pd.DataFrame({name: np.asarray(values) for name, values in self.per_request.items()})
            if trace is not None:
                if trace.n_requests != len(frame):
                    raise ValueError(f"the trace has {trace.n_requests:,} requests, the replay {len(frame):,}: "
                                     "give the trace that was replayed")
                frame["tenant_name"] = np.asarray(trace.tenant_names, dtype=object)[trace.tenant]
                frame["session"] = trace.session
                for name, values in trace.meta.items():
                    if isinstance(values, np.ndarray) and values.shape == (trace.n_requests,) and name not in frame:
                        frame[name] = values
            frame.index.name = "request"
            return frame
        if table == "tenants":
            rows = []
            for name, totals in self.per_tenant().items():
                row = {"tenant": name}
                for key, value in totals.items():
                    if key in ("hits_from", "lost_to"):
                        continue
                    if isinstance(value, dict):
                        row.update({f"{key}_{sub}": v for sub, v in value.items()})
                    else:
                        row[key] = value
                rows.append(row)
            return pd.DataFrame(rows).set_index("tenant")
        raise ValueError(f"unknown table {table!r}: 'requests' or 'tenants'")


RequestsLike = Trace | TokenRequests | BlockRequests | Iterable[Trace]


def replay(trace: RequestsLike, capacity_blocks: int | None = None, policy: str | None = None,
           ttl_s: float | None = None, block_size: int | None = None, hit_cap: str | None = None,
           isolation: str | None = None, warmup: int | str | None = None, preset: str | None = None,
           impl: str | None = None, keep_per_request: bool = True, victims: str = "leaves",
           interference: bool = False, ghost_blocks: int | None = None,
           engine_capacity: int | None = None) -> Result:
    """Replay a trace through an emulated prefix cache.

    ``trace`` is a compiled :class:`Trace`, raw :class:`TokenRequests` / :class:`BlockRequests` (compiled here
    with ``block_size``), or an iterable of Trace batches (streamed). A ``preset`` ("vllm", "sglang") supplies
    block size, hit cap and policy; explicit arguments override it. With a preset, ``engine_capacity`` is the
    capacity as the engine states it (vLLM's num_gpu_blocks, SGLang's max_total_num_tokens), in place of
    ``capacity_blocks`` (EnginePreset.capacity_blocks maps it). ``warmup`` is a number of requests or a string of
    seconds ("300s").
    """
    explicit_block_size = block_size
    if engine_capacity is not None and preset is None:
        raise ValueError("engine_capacity is an engine's own capacity number: give the preset it belongs to "
                         "(preset='vllm': num_gpu_blocks; preset='sglang': max_total_num_tokens)")
    if engine_capacity is not None and capacity_blocks is not None:
        raise ValueError("give capacity_blocks or engine_capacity, not both")
    if preset is not None:
        p = get_preset(preset)
        block_size = block_size if block_size is not None else p.block_size
        hit_cap = hit_cap if hit_cap is not None else p.hit_cap
        policy = policy if policy is not None else p.policy
        if engine_capacity is not None:
            capacity_blocks = p.capacity_blocks(engine_capacity, block_size)
    warmup_requests, warmup_s = parse_warmup(warmup)
    config = CacheConfig(capacity_blocks=capacity_blocks, policy=policy or "lru", ttl_s=ttl_s, hit_cap=hit_cap,
                         isolation=isolation, warmup_requests=warmup_requests, warmup_s=warmup_s, victims=victims,
                         interference=interference, ghost_blocks=ghost_blocks)
    if isinstance(trace, TokenRequests):
        trace = compile_trace(trace, block_size if block_size is not None else DEFAULT_TOKEN_BLOCK_SIZE, impl=impl)
    elif isinstance(trace, BlockRequests):
        trace = compile_trace(trace, explicit_block_size, impl=impl)
    if isinstance(trace, Trace) and block_size is not None and block_size != trace.block_size:
        if explicit_block_size is not None:
            raise TraceError(f"the trace is compiled with {trace.block_size}-token blocks, not {block_size}; "
                             "recompile it from token ids to change the block size", field="block_size")
        warnings.warn(f"preset {preset!r} uses {block_size}-token blocks, but this trace's blocks are fixed at "
                      f"{trace.block_size} tokens; replaying at {trace.block_size}", stacklevel=2)
    return Simulator(config, impl=impl, keep_per_request=keep_per_request).run(trace)

