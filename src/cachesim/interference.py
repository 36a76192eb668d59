"""Tenants sharing one cache: merged traces, counterfactual isolation, and remedies side by side.

Everything here is built from whole replays of (parts of) a trace, never from a second engine: a *partition* is a
set of tenants that share one cache of a given capacity, and every arrangement compared here is a list of
partitions replayed independently (in parallel) and read back per tenant.

- ``shared``: one partition holding every tenant at the full capacity.
- ``namespace``: the same, with ``isolation="tenant"`` (per-tenant salted keys; no cross-tenant hits, but the
  tenants still compete for the same LRU).
- ``quotas``: one partition per tenant with its own capacity (an isolated LRU per tenant, as LMCache's per-salt
  quotas); by default each tenant gets an equal share of the capacity.
- ``priority``: the prioritised tenant gets a reserved partition of ``reserve`` x capacity to itself; the other
  tenants share the remainder (one LRU among them).
- counterfactual ``alone``: one partition per tenant at the *same* capacity as the shared cache (or at its share):
  the hit ratio each tenant would have had without the others (SEMANTICS §6).

Warmup is translated into a request index of the whole trace (the first request counted) so that every partition
counts exactly the requests the shared replay counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cachesim import parallel
from cachesim._contract import ratio
from cachesim.replay import CacheConfig, Result, Simulator

# the trace operations live in trace.py; imported here they stay importable from this module (__all__)
from cachesim.trace import Trace, first_counted, merge_traces, select_tenants, take_requests

__all__ = [
    "InterferenceReport",
    "Partition",
    "PartitionedResult",
    "Remedy",
    "compare_remedies",
    "counterfactual",
    "first_counted",
    "merge_traces",
    "remedy_plans",
    "replay_partitions",
    "replay_requests",
    "select_tenants",
    "take_requests",
]

# -- replaying parts of a trace ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    trace: Trace
    config: CacheConfig
    impl: str | None
    keep_per_request: bool


def _run_job(job: _Job) -> Result:
    return Simulator(job.config, impl=job.impl, keep_per_request=job.keep_per_request).run(job.trace)


def replay_requests(trace: Trace, config: CacheConfig, index_sets: Sequence[np.ndarray],
                    configs: Sequence[CacheConfig] | None = None, *, impl: str | None = None,
                    keep_per_request: bool = False, workers: int | None = None,
                    executor: str = "thread") -> list[Result]:
    """Replay each subset of requests (ascending indices into ``trace``) through its own cache, in parallel.

    ``configs`` (one per subset, default ``config``) give capacity and isolation; warmup always comes from
    ``config`` and is translated so each subset counts exactly the requests the whole trace would count.
    """
    start = first_counted(trace, config)
    jobs = []
    for i, index in enumerate(index_sets):
        cfg = configs[i] if configs is not None else config
        warm = int(np.searchsorted(index, start, side="left"))
        cfg = replace(cfg, warmup_requests=warm, warmup_s=0.0)
        jobs.append(_Job(take_requests(trace, index), cfg, impl, keep_per_request))
    # threads by default: the core releases the GIL, and threads share the sub-traces processes would pickle
    return parallel.map(_run_job, jobs, executor, workers=workers)


@dataclass(frozen=True)
class Partition:
    """Tenants that share one cache of ``capacity_blocks`` (None = unbounded)."""

    tenants: tuple[str, ...]
    capacity_blocks: int | None
    isolation: str | None = None


@dataclass
class PartitionedResult:
    """Per-tenant totals of a trace replayed as partitions, with the tenant x tenant ``hits_from`` matrix."""

    tenant_names: list[str]
    partitions: list[Partition]
    per_tenant: dict[str, dict[str, Any]]
    hits_from: np.ndarray                 # int64 [R, O] over tenant_names (zero across partitions)
    results: list[Result] = field(repr=False, default_factory=list)

    def totals(self) -> dict[str, Any]:
        keys = ("requests", "prompt_tokens", "hit_tokens", "blocks", "hit_blocks")
        out = {k: sum(row[k] for row in self.per_tenant.values()) for k in keys}
        out["token_hit_ratio"] = ratio(out["hit_tokens"], out["prompt_tokens"])
        out["block_hit_ratio"] = ratio(out["hit_blocks"], out["blocks"])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "partitions": [{"tenants": list(p.tenants), "capacity_blocks": p.capacity_blocks,
                            "isolation": p.isolation} for p in self.partitions],
            "total": self.totals(),
            "per_tenant": self.per_tenant,
            "hits_from": {"tenants": self.tenant_names, "tokens": self.hits_from.tolist()},
        }


_ROW_KEYS = ("requests", "prompt_tokens", "hit_tokens", "token_hit_ratio", "blocks", "hit_blocks", "block_hit_ratio",
             "inserted_blocks", "evictions", "evicted_owned")


def _empty_row() -> dict[str, Any]:
    return {"requests": 0, "prompt_tokens": 0, "hit_tokens": 0, "token_hit_ratio": 0.0, "blocks": 0,
            "hit_blocks": 0, "block_hit_ratio": 0.0, "inserted_blocks": 0,
            "evictions": {"capacity": 0, "ttl": 0}, "evicted_owned": {"capacity": 0, "ttl": 0}}


def replay_partitions(trace: Trace, config: CacheConfig, partitions: Sequence[Partition], *,
                      impl: str | None = None, workers: int | None = None,
                      executor: str = "thread") -> PartitionedResult:
    """Replay each partition's tenants through its own cache (in parallel) and gather the totals per tenant."""
    return _run_plans(trace, config, [list(partitions)], impl, workers, executor)[0]


def _indices_by_tenant(trace: Trace) -> list[np.ndarray]:
    """Each tenant's request indices, ascending, from one stable sort (not one scan of the trace per partition)."""
    order = np.argsort(trace.tenant, kind="stable")
    counts = np.bincount(trace.tenant, minlength=len(trace.tenant_names))
    return np.split(order, np.cumsum(counts)[:-1])


def _requests_of(codes: Sequence[int], by_tenant: Sequence[np.ndarray]) -> np.ndarray:
    if len(codes) == 1:
        return by_tenant[codes[0]]
    return np.sort(np.concatenate([by_tenant[c] for c in codes]))


def _run_plans(trace: Trace, config: CacheConfig, plans: Sequence[Sequence[Partition]], impl: str | None,
               workers: int | None, executor: str) -> list[PartitionedResult]:
    """Every partition of every plan replayed in one parallel pass, then gathered per plan."""
    names = list(trace.tenant_names)
    code_of = {name: i for i, name in enumerate(names)}
    by_tenant = _indices_by_tenant(trace)
    index_sets, configs, owners = [], [], []
    for i, plan in enumerate(plans):
        seen: set[str] = set()
        for p in plan:
            for name in p.tenants:
                if name not in code_of:
                    raise ValueError(f"unknown tenant {name!r}; the trace has {', '.join(names)}")
                if name in seen:
                    raise ValueError(f"tenant {name!r} is in two partitions")
                seen.add(name)
            index = _requests_of([code_of[n] for n in p.tenants], by_tenant)
            if len(index):  # a partition without requests has nothing to replay (its tenants report zeros)
                index_sets.append(index)
                configs.append(replace(config, capacity_blocks=p.capacity_blocks,
                                       isolation=p.isolation if p.isolation is not None else config.isolation))
                owners.append((i, p))
    replays = replay_requests(trace, config, index_sets, configs, impl=impl, workers=workers, executor=executor)
    out = []
    for i, plan in enumerate(plans):
        per_tenant = {name: _empty_row() for name in names}
        hits_from = np.zeros((len(names), len(names)), dtype=np.int64)
        mine = [(r, p) for r, (owner, p) in zip(replays, owners, strict=True) if owner == i]
        for result, p in mine:
            rows = result.per_tenant()  # every tenant of the trace is named; only p's have requests here
            for name in p.tenants:
                per_tenant[name] = {k: rows[name][k] for k in _ROW_KEYS}
            local = [code_of[n] for n in result.tenant_names]
            hits_from[np.ix_(local, local)] += result.hits_from
        out.append(PartitionedResult(names, list(plan), per_tenant, hits_from, [r for r, _ in mine]))
    return out


# -- remedies and the counterfactual ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Remedy:
    name: str
    description: str
    partitions: tuple[Partition, ...]


def _shares(capacity: int, tenants: Sequence[str], quotas: Mapping[str, int] | None) -> dict[str, int]:
    """Capacity per tenant: the named quotas, the rest of the capacity split equally among the other tenants."""
    quotas = dict(quotas or {})
    unknown = set(quotas) - set(tenants)
    if unknown:
        raise ValueError(f"quota for unknown tenant(s) {', '.join(sorted(unknown))}")
    rest = [t for t in tenants if t not in quotas]
    left = capacity - sum(quotas.values())
    if rest:
        each = left // len(rest)
        if each < 1:
            given = f"after the quotas given ({sum(quotas.values()):,} blocks) " if quotas else ""
            raise ValueError(f"a capacity of {capacity:,} blocks leaves {given}{left:,} for {len(rest)} tenant(s) "
                             "without a quota: each needs at least one block (raise the capacity or set quotas)")
        quotas.update({t: each for t in rest})
    for t, q in quotas.items():
        if q < 1:
            raise ValueError(f"quota of {t!r} must be at least one block, got {q}")
    return {t: quotas[t] for t in tenants}


def remedy_plans(tenants: Sequence[str], capacity_blocks: int | None, *, priority: str | None = None,
                 reserve: float = 0.5, quotas: Mapping[str, int] | None = None) -> list[Remedy]:
    """The arrangements compared by :func:`compare_remedies`, as partitions (see the module docstring)."""
    tenants = tuple(tenants)
    c = capacity_blocks
    plans = [
        Remedy("shared", "one LRU cache shared by every tenant", (Partition(tenants, c),)),
        Remedy("namespace", "one shared LRU, keys salted per tenant (isolation=tenant): no cross-tenant hits, "
               "same competition for capacity", (Partition(tenants, c, "tenant"),)),
    ]
    if c is None:
        shares = {t: None for t in tenants}
        quota_text = "unbounded"
    else:
        shares = _shares(c, tenants, quotas)
        quota_text = ", ".join(f"{t} {q:,}" for t, q in shares.items())
    plans.append(Remedy("quotas", f"an isolated LRU per tenant with its quota in blocks ({quota_text})",
                        tuple(Partition((t,), shares[t], "tenant") for t in tenants)))
    if priority is not None:
        if priority not in tenants:
            raise ValueError(f"unknown priority tenant {priority!r}; the trace has {', '.join(tenants)}")
        if not 0.0 < reserve < 1.0:
            raise ValueError(f"reserve must be a fraction strictly between 0 and 1, got {reserve}")
        others = tuple(t for t in tenants if t != priority)
        if c is None:
            own, rest = None, None
        else:
            own = max(1, min(c - 1, round(reserve * c))) if others else c
            rest = c - own
        parts = [Partition((priority,), own, "tenant")]
        if others:
            parts.append(Partition(others, rest))
        def blocks(n):
            return "unbounded" if n is None else f"{n:,}"

        plans.append(Remedy("priority", f"{priority} gets a reserved {blocks(own)} blocks to itself; the other "
                            f"tenants share the remaining {blocks(rest)}", tuple(parts)))
    return plans


def counterfactual_plan(tenants: Sequence[str], capacity_blocks: int | None, capacity: str = "same") -> Remedy:
    """Each tenant alone: at the same capacity as the shared cache, or at an equal share of it."""
    if capacity == "same":
        parts = tuple(Partition((t,), capacity_blocks) for t in tenants)
        return Remedy("alone", "each tenant replayed alone at the full capacity (counterfactual)", parts)
    if capacity == "share":
        shares = _shares(capacity_blocks, tenants, None) if capacity_blocks is not None else dict.fromkeys(tenants)
        parts = tuple(Partition((t,), shares[t]) for t in tenants)
        return Remedy("alone-share", "each tenant replayed alone at an equal share of the capacity", parts)
    raise ValueError(f"counterfactual capacity must be 'same' or 'share', got {capacity!r}")


def counterfactual(trace: Trace, config: CacheConfig, *, capacity: str = "same", impl: str | None = None,
                   workers: int | None = None, executor: str = "thread") -> dict[str, dict[str, Any]]:
    """Per tenant: token and block hit ratio shared vs alone, and the interference cost (alone - shared)."""
    names = list(trace.tenant_names)
    plans = [(Partition(tuple(names), config.capacity_blocks),),
             counterfactual_plan(names, config.capacity_blocks, capacity).partitions]
    shared, alone = _run_plans(trace, config, plans, impl, workers, executor)
    return _cost_rows(shared.per_tenant, alone.per_tenant)


def _cost_rows(shared: Mapping[str, dict], alone: Mapping[str, dict]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, s in shared.items():
        a = alone[name]
        out[name] = {
            "requests": s["requests"], "prompt_tokens": s["prompt_tokens"],
            "token_hit_ratio_shared": s["token_hit_ratio"], "token_hit_ratio_alone": a["token_hit_ratio"],
            "token_cost": a["token_hit_ratio"] - s["token_hit_ratio"],
            "block_hit_ratio_shared": s["block_hit_ratio"], "block_hit_ratio_alone": a["block_hit_ratio"],
            "block_cost": a["block_hit_ratio"] - s["block_hit_ratio"],
            "hit_tokens_shared": s["hit_tokens"], "hit_tokens_alone": a["hit_tokens"],
        }
    return out


@dataclass
class InterferenceReport:
    """Remedies compared on one trace, with the counterfactual each tenant alone."""

    tenant_names: list[str]
    config: CacheConfig
    remedies: list[Remedy]
    results: dict[str, PartitionedResult]        # by remedy name, plus the counterfactual's name
    counterfactual_name: str

    @property
    def shared(self) -> PartitionedResult:
        return self.results["shared"]

    @property
    def alone(self) -> PartitionedResult:
        return self.results[self.counterfactual_name]

    def cost(self) -> dict[str, dict[str, Any]]:
        """Per tenant: hit ratios shared vs alone and the interference cost (alone - shared)."""
        return _cost_rows(self.shared.per_tenant, self.alone.per_tenant)

    def lost_to(self) -> dict[str, dict[str, int]] | None:
        """Per tenant, in the shared cache: tokens it missed because each other tenant (or the TTL, "ttl")
        evicted them (SEMANTICS §6); None unless the replay tracked interference."""
        results = self.shared.results
        if len(results) != 1 or results[0].lost_to is None:
            return None
        return {name: row["lost_to"] for name, row in results[0].per_tenant().items()}

    def recovered(self, remedy: str, tenant: str, ratio: str = "token_hit_ratio") -> float | None:
        """Share of the tenant's loss (alone - shared) that the remedy gives back; None when it lost nothing."""
        shared = self.shared.per_tenant[tenant][ratio]
        loss = self.alone.per_tenant[tenant][ratio] - shared
        if loss <= 0:
            return None
        return (self.results[remedy].per_tenant[tenant][ratio] - shared) / loss

    def to_dict(self) -> dict[str, Any]:
        remedies = {}
        for plan in self.remedies:
            data = self.results[plan.name].to_dict()
            data["description"] = plan.description
            data["recovered"] = {t: self.recovered(plan.name, t) for t in self.tenant_names}
            remedies[plan.name] = data
        return {
            "tenants": self.tenant_names,
            "config": {"capacity_blocks": self.config.capacity_blocks, "ttl_s": self.config.ttl_s,
                       "hit_cap": self.config.hit_cap, "isolation": self.config.isolation,
                       "warmup_requests": self.config.warmup_requests, "warmup_s": self.config.warmup_s},
            "remedies": remedies,
            "counterfactual": {"name": self.counterfactual_name, **self.alone.to_dict(), "cost": self.cost()},
            "shared_lost_to": self.lost_to(),
            "definitions": {
                "cost": "hit ratio alone - hit ratio shared (positive: the other tenants cost this tenant hits)",
                "recovered": "(remedy - shared) / (alone - shared): the share of the loss a remedy gives back "
                             "(null when the tenant lost nothing)",
            },
        }


def compare_remedies(trace: Trace, config: CacheConfig, *, priority: str | None = None, reserve: float = 0.5,
                     quotas: Mapping[str, int] | None = None, alone_capacity: str = "same",
                     impl: str | None = None, workers: int | None = None,
                     executor: str = "thread") -> InterferenceReport:
    """Shared cache, namespace isolation, per-tenant quotas and (with ``priority``) a reserved partition, side by
    side on ``trace``, with the counterfactual (each tenant alone) as the reference. One parallel pass."""
    names = list(trace.tenant_names)
    plans = remedy_plans(names, config.capacity_blocks, priority=priority, reserve=reserve, quotas=quotas)
    alone = counterfactual_plan(names, config.capacity_blocks, alone_capacity)
    results = _run_plans(trace, config, [p.partitions for p in plans] + [alone.partitions], impl, workers, executor)
    by_name = {plan.name: res for plan, res in zip(plans + [alone], results, strict=True)}
    return InterferenceReport(names, config, plans, by_name, alone.name)


