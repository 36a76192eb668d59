"""Replaying token-level requests through a provider's prompt cache, and billing them.

:func:`simulate` takes a :class:`ProviderInput` (prompts as token ids, the harness's cache markers, content-block
ends) and a rule set from :mod:`cachesim.providers.rules`, runs the compiled serve loop (``impl="core"``) or the
plain-Python twin (``impl="reference"``), and prices every request from the registry. The result keeps per-request
token counts, dollars and a miss cause; :mod:`cachesim.providers.report` aggregates them.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

from cachesim import _impl
from cachesim._contract import ratio
from cachesim.providers import rules as R
from cachesim.providers.prices import PriceTable, load_prices
from cachesim.requests import TokenRequests, TraceError, offsets_from_lengths

__all__ = ["ProviderInput", "ProviderResult", "simulate", "CAUSES", "PRICE_TIERS"]

# miss causes, in the order reports list them (index = code)
CAUSES = ("none", "cold", "below_minimum", "ttl_expired", "prefix_changed", "outside_lookback", "replica_overflow",
          "not_yet_available", "server_miss", "rejected", "evicted")
C_NONE, C_COLD, C_BELOW, C_TTL, C_PREFIX, C_LOOKBACK, C_OVERFLOW, C_NOT_READY, C_SERVER, C_REJECTED, C_EVICTED = (
    range(11))
# flags set by the serve loops (the same values in _providers.pyx and _reference.py)
FLAG_BELOW_MIN, FLAG_EXPIRED, FLAG_LOOKBACK, FLAG_OVERFLOW, FLAG_NOT_READY, FLAG_ERROR, FLAG_SERVER_MISS = (
    1, 2, 4, 8, 16, 32, 64)
FLAG_EVICTED = 128
# flag -> cause, lowest priority first (a later one wins when several apply)
_FLAG_CAUSES = ((FLAG_NOT_READY, C_NOT_READY), (FLAG_OVERFLOW, C_OVERFLOW), (FLAG_LOOKBACK, C_LOOKBACK),
                (FLAG_EVICTED, C_EVICTED), (FLAG_EXPIRED, C_TTL), (FLAG_SERVER_MISS, C_SERVER),
                (FLAG_BELOW_MIN, C_BELOW),
                (FLAG_ERROR, C_REJECTED))
PRICE_TIERS = "above_input_tokens"
# how long an expired entry is remembered to name `ttl_expired` as a miss cause (an emulator setting, not a rule)
FORGET_S = 6 * 3600.0


@dataclass
class ProviderInput:
    """Token-level requests plus what the harness told the provider.

    ``breakpoints`` are cache-marker positions (exclusive end offsets, strictly increasing per request, CSR by
    ``breakpoint_offsets``), ``breakpoint_long`` marks 1-hour ones (Anthropic), ``boundaries`` are content-block
    ends (the 20-block lookback counts them). ``observed_read`` / ``observed_write`` (-1 = unknown) are usage
    figures a real trace may carry, for predicted-against-observed reports.
    """

    requests: TokenRequests
    breakpoints: np.ndarray
    breakpoint_offsets: np.ndarray
    breakpoint_long: np.ndarray | None = None
    boundaries: np.ndarray | None = None
    boundary_offsets: np.ndarray | None = None
    query: np.ndarray | None = None
    observed_read: np.ndarray | None = None
    observed_write: np.ndarray | None = None
    observed_input: np.ndarray | None = None        # the billed prompt (uncached + reads + writes), -1 unknown
    observed_write_long: np.ndarray | None = None   # of the writes, those with the 1-hour TTL, -1 unknown

    @classmethod
    def from_workload(cls, workload, long_ttl: str = "none") -> ProviderInput:
        """From an :class:`~cachesim.workloads.AgentWorkload`. ``long_ttl="first"`` marks the first of several
        breakpoints 1h (a stable prefix kept for an hour), ``"none"`` keeps every one at 5m."""
        bp_long = np.zeros(len(workload.breakpoints), dtype=np.int8)
        if long_ttl == "first":
            off = workload.breakpoint_offsets
            several = np.flatnonzero(np.diff(off) >= 2)
            bp_long[off[several]] = 1
        elif long_ttl != "none":
            raise ValueError("long_ttl must be 'none' or 'first'")
        return cls(requests=workload.requests, breakpoints=workload.breakpoints,
                   breakpoint_offsets=workload.breakpoint_offsets, breakpoint_long=bp_long,
                   boundaries=workload.boundaries, boundary_offsets=workload.boundary_offsets,
                   query=workload.query)

    @classmethod
    def from_lists(cls, prompts, t=None, breakpoints=None, boundaries=None, long=None, tenant=None,
                   session=None, output_tokens=None, tenant_names=None, observed_read=None,
                   observed_write=None) -> ProviderInput:
        """Small inputs for tests: ``breakpoints``/``boundaries``/``long`` are one list per request."""
        req = TokenRequests.from_lists(prompts, t=t, tenant=tenant, session=session, output_tokens=output_tokens,
                                       tenant_names=tenant_names)
        n = len(prompts)
        breakpoints = breakpoints if breakpoints is not None else [[] for _ in range(n)]
        bp, bp_off = _csr(breakpoints)
        long_flat = _csr(long)[0].astype(np.int8) if long is not None else np.zeros(len(bp), np.int8)
        bd, bd_off = _csr(boundaries) if boundaries is not None else (None, None)
        return cls(requests=req, breakpoints=bp, breakpoint_offsets=bp_off, breakpoint_long=long_flat,
                   boundaries=bd, boundary_offsets=bd_off,
                   observed_read=None if observed_read is None else np.asarray(observed_read, np.int64),
                   observed_write=None if observed_write is None else np.asarray(observed_write, np.int64))

    @classmethod
    def from_read(cls, result) -> ProviderInput:
        """From what a reader read (:func:`cachesim.readers.read_requests`): any token-level trace — API logs,
        Claude Code transcripts, native JSONL with breakpoints, boundaries and usage. A breakpoint whose TTL is an
        hour or more is a 1-hour one; content-block ends are the file's ``boundaries``, or else the ends of its
        segments; observed reads and writes come with the log. Requests out of time order are sorted stably (a
        warning counts them); errors name the file and line."""
        if not isinstance(result.requests, TokenRequests):
            raise TraceError("holds block ids, not token ids: prompt-cache billing needs each request's tokens, "
                             "breakpoints and content blocks (replay and mrc read block-id traces)", file=result.path)
        result = result.in_time_order()
        extras, n = result.extras, result.requests.n_requests
        marks = extras.get("breakpoints")
        if marks is not None:
            breakpoints, bp_offsets = marks.columns["tokens"].astype(np.int64), marks.offsets
            bp_long = (marks.columns["ttl_s"] >= 3600).astype(np.int8)   # NaN (no TTL given): the default 5 minutes
        else:
            breakpoints, bp_offsets, bp_long = np.zeros(0, np.int64), np.zeros(n + 1, np.int64), np.zeros(0, np.int8)
        ends = extras.get("boundaries")
        if ends is not None:
            boundaries, bd_offsets = ends.columns["tokens"].astype(np.int64), ends.offsets
        elif extras.get("segments") is not None:
            segments = extras["segments"]
            tokens = segments.columns["tokens"].astype(np.int64)
            running = np.cumsum(tokens)
            before = np.concatenate([[0], running])[segments.offsets[:-1]]   # tokens before each request's first
            boundaries = running - np.repeat(before, np.diff(segments.offsets))
            bd_offsets = segments.offsets
        else:
            boundaries = bd_offsets = None

        def observed(name: str) -> np.ndarray | None:
            values = extras.get(name)
            return values if values is not None and (values >= 0).any() else None

        inp = cls(requests=result.requests, breakpoints=breakpoints, breakpoint_offsets=bp_offsets,
                  breakpoint_long=bp_long, boundaries=boundaries, boundary_offsets=bd_offsets,
                  observed_read=observed("observed_cache_read_tokens"),
                  observed_write=observed("observed_cache_write_tokens"),
                  observed_input=observed("observed_input_tokens"),
                  observed_write_long=observed("observed_cache_write_1h_tokens"))
        try:
            _validate(inp)
        except TraceError as exc:
            raise result.locate(exc) from None
        return inp

    @property
    def n_requests(self) -> int:
        return self.requests.n_requests

    def lengths(self) -> np.ndarray:
        return np.diff(self.requests.token_offsets)


def _csr(rows) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter((x for r in rows for x in r), dtype=np.int64, count=int(lengths.sum()))
    return flat, offsets_from_lengths(lengths)


@dataclass
class ProviderResult:
    """Per-request outcome of a provider replay (all arrays have one row per request)."""

    rules: object
    model: str
    prompt_tokens: np.ndarray        # N
    read: np.ndarray                 # cache reads
    write_short: np.ndarray          # writes of the short TTL class (5m; 30m for GPT-5.6+)
    write_long: np.ndarray           # writes of the long TTL class (1h)
    uncached: np.ndarray             # N - read - writes (billed at the input rate)
    output_tokens: np.ndarray        # unknown (-1) counts as 0
    flags: np.ndarray
    error: np.ndarray                # 0, or the reason a request was rejected (nothing billed)
    cause: np.ndarray                # index into CAUSES
    cost: np.ndarray                 # USD with the cache
    cost_uncached: np.ndarray        # USD without it
    tenant: np.ndarray
    tenant_names: list[str]
    session: np.ndarray
    query: np.ndarray | None
    impl: str
    price_rows: list = field(default_factory=list)
    replica: np.ndarray | None = None
    evicted_by: np.ndarray | None = None     # the tenant whose insertion evicted the entry a request missed, -1
    hit_from: np.ndarray | None = None       # the request whose write this request's cache read came from, -1
    created: np.ndarray | None = None        # Gemini explicit: tokens put in a new cached-content object
    storage_cost: np.ndarray | None = None   # Gemini explicit: USD of creation + storage (inside `cost`)
    observed_read: np.ndarray | None = None
    observed_write: np.ndarray | None = None

    @property
    def n_requests(self) -> int:
        return len(self.prompt_tokens)

    def from_other_tenant(self) -> np.ndarray:
        """Per request: its cache read came from an entry another tenant's request wrote."""
        src = self.hit_from
        if src is None:
            return np.zeros(self.n_requests, bool)
        known = src >= 0
        out = np.zeros(self.n_requests, bool)
        out[known] = self.tenant[src[known]] != self.tenant[known]
        return out

    @property
    def write_labels(self) -> tuple[str, str]:
        fields = getattr(self.rules, "write_fields", ())
        names = [f.replace("write_", "write ") for f in fields] + ["write"] * (2 - len(fields))
        return names[0], names[1]

    def summary(self) -> dict:
        prompt = int(self.prompt_tokens.sum())
        read = int(self.read.sum())
        cost = float(self.cost.sum())
        base = float(self.cost_uncached.sum())
        out = {
            "provider": self.rules.provider, "model": self.model, "requests": self.n_requests,
            "prompt_tokens": prompt, "read_tokens": read, "write_short_tokens": int(self.write_short.sum()),
            "write_long_tokens": int(self.write_long.sum()), "uncached_tokens": int(self.uncached.sum()),
            "output_tokens": int(self.output_tokens.sum()),
            "token_hit_ratio": ratio(read, prompt),
            "cost_usd": cost, "cost_uncached_usd": base, "savings_usd": base - cost,
            "savings_ratio": (base - cost) / base if base else 0.0,
            "rejected_requests": int(np.count_nonzero(self.error)),
            "read_from_other_tenants_tokens": int(self.read[self.from_other_tenant()].sum()),
            "created_tokens": int(self.created.sum()) if self.created is not None else 0,
            "storage_cost_usd": float(self.storage_cost.sum()) if self.storage_cost is not None else 0.0,
            "miss_causes": {name: int(np.count_nonzero(self.cause == code)) for code, name in enumerate(CAUSES)},
        }
        if self.query is not None and self.n_requests:
            queries = int(np.unique(self.query).size)
            out["queries"] = queries
            out["requests_per_query"] = self.n_requests / queries
            out["prompt_tokens_per_query"] = prompt / queries
            out["cost_per_query_usd"] = cost / queries
            out["cost_uncached_per_query_usd"] = base / queries
        return out


# ---------------------------------------------------------------------------------------------------------------


def _impl_module(impl: str):
    if impl == "core":
        from cachesim import _providers
        return _providers
    if impl == "reference":
        from cachesim.providers import _reference
        return _reference
    raise ValueError(f"impl must be 'core' or 'reference', not {impl!r}")


def _validate(inp: ProviderInput) -> None:
    n = inp.n_requests
    lengths = inp.lengths()
    for name, values, offsets in (("breakpoints", inp.breakpoints, inp.breakpoint_offsets),
                                  ("boundaries", inp.boundaries, inp.boundary_offsets)):
        if values is None:
            continue
        if len(offsets) != n + 1 or offsets[-1] != len(values):
            raise TraceError(f"offsets do not match the {n} requests", field=name)
        rows = np.repeat(np.arange(n), np.diff(offsets))
        bad = (values < 1) | (values > lengths[rows])
        if name == "breakpoints":
            same_row = rows[1:] == rows[:-1]
            step_bad = np.zeros(len(values), bool)
            step_bad[1:] = same_row & (values[1:] <= values[:-1])
            bad |= step_bad
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TraceError(f"position {int(values[i])} is outside 1..{int(lengths[rows[i]])} or out of order",
                             field=name, line=int(rows[i]))
    if inp.breakpoint_long is not None and len(inp.breakpoint_long) != len(inp.breakpoints):
        raise TraceError("one TTL class per breakpoint expected", field="breakpoint_long")


def _merged_boundaries(inp: ProviderInput, with_end: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per request: sorted unique block ends = boundaries ∪ breakpoints (∪ the prompt end)."""
    n = inp.n_requests
    lengths = inp.lengths()
    parts_pos = [inp.breakpoints]
    parts_row = [np.repeat(np.arange(n), np.diff(inp.breakpoint_offsets))]
    if inp.boundaries is not None:
        parts_pos.append(inp.boundaries)
        parts_row.append(np.repeat(np.arange(n), np.diff(inp.boundary_offsets)))
    if with_end:
        keep = lengths > 0
        parts_pos.append(lengths[keep])
        parts_row.append(np.flatnonzero(keep))
    pos = np.concatenate(parts_pos).astype(np.int64)
    row = np.concatenate(parts_row).astype(np.int64)
    span = int(lengths.max(initial=0)) + 1
    keys = np.unique(row * span + pos)
    rows = keys // span
    return (keys % span).astype(np.int64), offsets_from_lengths(np.bincount(rows, minlength=n).astype(np.int64))


def _draws(rules, n: int) -> np.ndarray:
    if rules.miss_probability <= 0:
        return np.zeros(0, np.float64)
    return np.random.default_rng(rules.seed).random(n)


def _isolation_ns(rules, req: TokenRequests) -> np.ndarray:
    """The cache namespace per request: one for the whole trace, or one per tenant."""
    if rules.isolation == "tenant":
        return req.tenant.astype(np.uint64) + np.uint64(1)
    return np.zeros(req.n_requests, np.uint64)


def _cache_keys(rules, req: TokenRequests) -> np.ndarray:
    """The routing-key salt per request: organization (isolation) and prompt_cache_key."""
    n = req.n_requests
    if rules.cache_key == "tenant":
        key = req.tenant.astype(np.int64)
    elif rules.cache_key == "session":
        key = req.session.astype(np.int64)
    else:
        key = np.full(n, -1, np.int64)
    if rules.isolation != "tenant":
        return key + 1
    # one organisation's keys must never name another's: hash the pair (organisation, key) as a chained key of
    # two ids (SEMANTICS §2), where packing bits into one word let a 64-bit key reach across organisations
    pairs = np.empty(2 * n, np.uint64)
    pairs[0::2] = req.tenant.astype(np.uint64)
    pairs[1::2] = (key + 1).astype(np.uint64)
    chained = _impl.load().compile_id_blocks(pairs, np.arange(0, 2 * n + 1, 2, dtype=np.int64))
    return np.ascontiguousarray(chained[1::2]).view(np.int64)


def _serve(inp: ProviderInput, rules, impl: str, forget_s: float = FORGET_S) -> dict:
    mod = _impl_module(impl)
    req = inp.requests
    n = req.n_requests
    tokens = np.ascontiguousarray(req.tokens, dtype=np.uint32)
    offsets = np.ascontiguousarray(req.token_offsets, dtype=np.int64)
    t = np.ascontiguousarray(req.t, dtype=np.float64)
    if n and (np.isnan(t).any() or (np.diff(t) < 0).any()):
        bad = int(np.flatnonzero(np.isnan(t))[0]) if np.isnan(t).any() else int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
        raise TraceError("request times must be numbers in non-decreasing order", field="t", line=bad)
    if n >= 2**31:
        raise ValueError(f"{n:,} requests: the provider loops index requests with 32-bit integers; split the trace")
    draws = _draws(rules, n)
    out: dict = {"replica": None}
    if isinstance(rules, (R.Anthropic, R.OpenAI56)):
        automatic = rules.automatic if isinstance(rules, R.Anthropic) else rules.implicit
        bnd, bnd_off = _merged_boundaries(inp, with_end=automatic)
        bp_long = inp.breakpoint_long if inp.breakpoint_long is not None else np.zeros(len(inp.breakpoints), np.int8)
        if isinstance(rules, R.Anthropic):
            ns = _isolation_ns(rules, req)
            args = (mod.MODE_ANTHROPIC, rules.minimum, rules.lookback_blocks, rules.max_breakpoints,
                    rules.ttl_5m_s + rules.grace_s, rules.ttl_1h_s + rules.grace_s, int(rules.automatic_ttl == "1h"),
                    rules.refresh_whole_path)
            per_segment = rules.per_segment_minimum
        else:
            _, replica, _, _, ns = mod.route(tokens, offsets, t, _cache_keys(rules, req),
                                             rules.routing_prefix_tokens, rules.requests_per_minute, 60.0,
                                             rules.seed)
            out["replica"] = replica
            bp_long = np.zeros(len(inp.breakpoints), np.int8)
            args = (mod.MODE_OPENAI56, rules.min_tokens, 20, rules.max_writes, rules.ttl_s, rules.ttl_s, 0, False)
            per_segment = False
        mode, minimum, lookback, max_bps, ttl_s, ttl_l, auto_long, refresh_path = args
        read, ws, wl, flags, error, hit_from = mod.serve_breakpoints(
            mode, tokens, offsets, t, np.ascontiguousarray(ns, np.uint64), bnd, bnd_off,
            np.ascontiguousarray(inp.breakpoints, np.int64), np.ascontiguousarray(bp_long, np.int8),
            np.ascontiguousarray(inp.breakpoint_offsets, np.int64), automatic, auto_long, minimum, lookback,
            max_bps, ttl_s, ttl_l, rules.ttft_s, refresh_path, draws, rules.miss_probability, forget_s, per_segment)
        out.update(read=read, write_short=ws, write_long=wl, flags=flags, error=error, hit_from=hit_from)
    elif isinstance(rules, (R.OpenAI, R.Gemini)):
        empty_i32 = np.zeros(0, np.int32)
        if isinstance(rules, R.OpenAI):
            rk, replica, _, kmax, ns = mod.route(tokens, offsets, t, _cache_keys(rules, req),
                                                 rules.routing_prefix_tokens, rules.requests_per_minute, 60.0,
                                                 rules.seed)
            out["replica"] = replica
            extended = rules.effective_retention == "24h"
            idle = rules.extended_idle_s if extended else rules.in_memory_idle_s
            max_age = rules.extended_max_age_s if extended else np.inf
            params = (rules.unit, rules.hidden_tokens, 128, False, rules.min_tokens, idle, max_age)
            routing = (rk, replica, kmax)
            unit_size = rules.unit
        else:
            ns = _isolation_ns(rules, req)
            exact = rules.block_tokens == 1
            unit = 64 if exact else rules.block_tokens   # exact: 64-token units, then token by token
            params = (unit, 0, 1 if exact else unit, exact, rules.minimum, rules.idle_ttl_s, np.inf)
            routing = (np.zeros(0, np.uint64), empty_i32, empty_i32)
            unit_size = unit
        unit, hidden, round_to, exact, minimum, idle, max_age = params
        capacity_units = 0
        if rules.capacity_tokens is not None:
            capacity_units = max(int(rules.capacity_tokens) // unit_size, 1)
        read, flags, evicted_by, hit_from = mod.serve_units(
            tokens, offsets, t, np.ascontiguousarray(ns, np.uint64), *routing, unit, hidden, round_to, exact,
            minimum, idle, max_age, rules.ttft_s, draws, rules.miss_probability, forget_s,
            np.ascontiguousarray(req.tenant, np.int32), capacity_units)
        zeros = np.zeros(n, np.int64)
        out.update(read=read, write_short=zeros, write_long=zeros.copy(), flags=flags, error=np.zeros(n, np.int8),
                   evicted_by=evicted_by, hit_from=hit_from)
    elif isinstance(rules, R.GeminiExplicit):
        out.update(_serve_explicit(inp, rules, mod, draws))
    elif isinstance(rules, R.DeepSeek):
        ns = _isolation_ns(rules, req)
        read, flags, hit_from = mod.serve_deepseek(tokens, offsets, t, np.ascontiguousarray(ns, np.uint64),
                                                   rules.unit_tokens,
                                         rules.interval_tokens, rules.response_s + rules.delay_s, rules.idle_ttl_s,
                                         draws, rules.miss_probability, forget_s)
        zeros = np.zeros(n, np.int64)
        out.update(read=read, write_short=zeros, write_long=zeros.copy(), flags=flags, error=np.zeros(n, np.int8),
                   hit_from=hit_from)
    else:
        raise ValueError(f"not a provider rule set: {rules!r}")
    return out


def _serve_explicit(inp: ProviderInput, rules, mod, draws: np.ndarray) -> dict:
    """Gemini explicit caches: one object per (project, prefix), created on demand, living ``ttl_s``.

    Per request, not per token: the prefix keys come from the compiled key function, then a dict of objects."""
    req = inp.requests
    n = req.n_requests
    off = inp.breakpoint_offsets
    has = np.diff(off) > 0
    first = np.zeros(n, np.int64)
    first[has] = inp.breakpoints[off[:-1][has]]
    positions = first            # requests without a marker hash the empty prefix (unused)
    keys = mod.prefix_keys(np.ascontiguousarray(req.tokens, np.uint32),
                           np.ascontiguousarray(req.token_offsets, np.int64), positions,
                           np.arange(n + 1, dtype=np.int64))
    tenant = req.tenant if rules.isolation == "tenant" else np.zeros(n, np.int32)
    read = np.zeros(n, np.int64)
    created = np.zeros(n, np.int64)
    flags = np.zeros(n, np.int32)
    expiry: dict[tuple[int, int], float] = {}
    creator: dict[tuple[int, int], int] = {}
    hit_from = np.full(n, -1, np.int64)
    use_draws = len(draws) == n and rules.miss_probability > 0
    rows = zip(first.tolist(), keys.tolist(), tenant.tolist(), req.t.tolist(), strict=True)
    for r, (k, key, ten, t) in enumerate(rows):
        if not has[r]:
            continue
        if k < rules.minimum:
            flags[r] = FLAG_BELOW_MIN
            continue
        if use_draws and draws[r] < rules.miss_probability:
            flags[r] = FLAG_SERVER_MISS
            continue
        ends = expiry.get((ten, key))
        if ends is None or t >= ends:
            if ends is not None:
                flags[r] = FLAG_EXPIRED
            expiry[(ten, key)] = t + rules.ttl_s
            creator[(ten, key)] = r
            created[r] = k
        read[r] = k
        hit_from[r] = creator[(ten, key)]
    zeros = np.zeros(n, np.int64)
    return dict(read=read, write_short=zeros, write_long=zeros.copy(), flags=flags, error=np.zeros(n, np.int8),
                created=created, hit_from=hit_from)


def _causes(inp: ProviderInput, read: np.ndarray, flags: np.ndarray, impl: str) -> np.ndarray:
    """One miss cause per request: the loop's flags first, then the session history (prefix changed, cold)."""
    req = inp.requests
    n = req.n_requests
    lengths = inp.lengths()
    prev = np.full(n, -1, np.int64)
    if n:
        # a session label is its tenant's own: two organisations that reuse a label never chain their causes
        order = np.lexsort((np.arange(n), req.session, req.tenant))
        session, tenant = req.session[order], req.tenant[order]
        same = (session[1:] == session[:-1]) & (tenant[1:] == tenant[:-1]) & (session[1:] >= 0)
        prev[order[1:][same]] = order[:-1][same]
    lcp = _impl_module(impl).common_prefix(np.ascontiguousarray(req.tokens, np.uint32),
                                           np.ascontiguousarray(req.token_offsets, np.int64), prev)
    cause = np.full(n, C_NONE, np.int8)
    cause[read == 0] = C_COLD
    changed = (prev >= 0) & (lcp < lengths[np.maximum(prev, 0)])
    cause[changed] = C_PREFIX
    for flag, code in _FLAG_CAUSES:
        cause[(flags & flag) != 0] = code
    return cause


def _when(rules, t: np.ndarray, table: PriceTable) -> np.ndarray | None:
    """Wall-clock time of each request where the rule set prices by time of day (DeepSeek), else None."""
    if not isinstance(rules, R.DeepSeek):
        return None
    start = _dt.datetime.fromisoformat(rules.start_utc.replace("Z", "+00:00"))
    return np.datetime64(start.replace(tzinfo=None), "us") + (t * 1e6).astype("timedelta64[us]")


def _peak(rules, when: np.ndarray) -> np.ndarray:
    """DeepSeek peak hours: Mon-Fri 01-04 and 06-10 UTC, except the listed holidays (PROVIDERS.md §5)."""
    days = when.astype("datetime64[D]")
    weekday = (days.astype(np.int64) + 3) % 7          # 1970-01-01 was a Thursday (3, Monday = 0)
    hour = ((when - days) // np.timedelta64(1, "h")).astype(np.int64)
    peak = (weekday < 5) & (((hour >= 1) & (hour < 4)) | ((hour >= 6) & (hour < 10)))
    if rules.holidays:
        peak &= ~np.isin(days, np.array(rules.holidays, dtype="datetime64[D]"))
    return peak


def _price(res: dict, rules, inp: ProviderInput, table: PriceTable,
           lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """Dollars with and without the cache, per request, from the model's rate rows (prompts of ``lengths``
    tokens: the input's unless given)."""
    lengths = inp.lengths() if lengths is None else lengths
    n_tok = lengths.astype(np.float64)
    out_tok = np.maximum(inp.requests.output_tokens, 0).astype(np.float64)
    uncached = (lengths - res["read"] - res["write_short"] - res["write_long"]).astype(np.float64)
    write_fields = tuple(rules.write_fields) + (None, None)
    n = len(n_tok)
    cost = np.zeros(n)
    base = np.zeros(n)
    extra = np.zeros(n)
    used = []
    groups: list[tuple[np.ndarray, list]] = []
    when = _when(rules, inp.requests.t, table)
    if when is None:
        groups.append((np.ones(n, bool), table.candidates(rules.provider, rules.model)))
    else:
        # DeepSeek: the period and the rows valid at each request's time
        peak = _peak(rules, when)
        stamps = when.astype("datetime64[D]")
        for day in np.unique(stamps):
            d = _dt.datetime.fromisoformat(str(day)).replace(tzinfo=_dt.timezone.utc)
            in_day = stamps == day
            # rows change at most at an hour boundary: split the day by hour
            hours = ((when[in_day] - day) // np.timedelta64(1, "h")).astype(np.int64)
            for hour in np.unique(hours):
                moment = d + _dt.timedelta(hours=int(hour))
                mask = np.zeros(n, bool)
                mask[np.flatnonzero(in_day)[hours == hour]] = True
                periodic = table.has_periods(rules.provider, rules.model, moment)
                for is_peak in (True, False):
                    sub = mask & (peak == is_peak)
                    if sub.any():
                        period = ("peak" if is_peak else "off-peak") if periodic else "flat"
                        groups.append((sub, table.candidates(rules.provider, rules.model, moment, period)))
    for mask, rows in groups:
        tier = np.zeros(n, np.int64)
        for k, row in enumerate(rows):
            tier[n_tok > row.above_input_tokens] = k
        for k, row in enumerate(rows):
            sel = mask & (tier == k)
            if not sel.any():
                continue
            used.append(row)
            rates = []
            for f, column in ((write_fields[0], "write_short"), (write_fields[1], "write_long")):
                value = getattr(row, f) if f else None
                if value is None:
                    if res[column][sel].any():
                        raise ValueError(f"price row of {row.provider} {row.model} has no {f or 'write'} rate "
                                         f"({row.origin})")
                    value = 0.0
                rates.append(value)
            cost[sel] = (uncached[sel] * row.input + res["write_short"][sel] * rates[0]
                         + res["write_long"][sel] * rates[1] + res["read"][sel] * row.read
                         + out_tok[sel] * row.output) / 1e6
            if "created" in res:
                # a new cached-content object: K at the input rate (if billed) + storage K x its lifetime
                if row.storage_per_hour is None:
                    raise ValueError(f"price row of {row.provider} {row.model} has no storage_per_hour ({row.origin})")
                k_tok = res["created"][sel].astype(np.float64)
                extra[sel] = (k_tok * row.input * rules.bill_creation
                              + k_tok * rules.ttl_s / 3600.0 * row.storage_per_hour) / 1e6
                cost[sel] += extra[sel]
            base[sel] = (n_tok[sel] * row.input + out_tok[sel] * row.output) / 1e6
    multiplier = getattr(rules, "cost_multiplier", 1.0)
    error = res["error"] != 0
    cost[error] = 0.0
    base[error] = 0.0
    unique_rows = list(dict.fromkeys(used))
    res["storage_cost"] = extra * multiplier
    return cost * multiplier, base * multiplier, unique_rows


def combine(parts: list[tuple[np.ndarray, ProviderResult]], n_requests: int) -> ProviderResult:
    """Results of disjoint request subsets (``index``: each part's positions in the whole trace) as one result in
    the trace's order: a log whose requests went to several models, each model its own cache and prices. Its
    rules are the first part's (the model with most requests); ``model`` names them all."""
    import dataclasses

    if len(parts) == 1:
        return parts[0][1]
    first = parts[0][1]
    names = list(dict.fromkeys(name for _, r in parts for name in r.tenant_names))
    merged: dict = {}
    for f in dataclasses.fields(ProviderResult):
        values = [getattr(r, f.name) for _, r in parts]
        if not any(isinstance(v, np.ndarray) for v in values):
            continue
        fill = 0 if f.name in ("created", "storage_cost") else -1   # a part without the column: unknown, or none
        values = [v if isinstance(v, np.ndarray) else np.full(r.n_requests, fill) for v, (_, r) in zip(values, parts,
                                                                                                     strict=True)]
        out = np.empty(n_requests, dtype=np.result_type(*values))
        for (index, result), v in zip(parts, values, strict=True):
            if f.name == "tenant":
                v = np.asarray([names.index(t) for t in result.tenant_names], dtype=v.dtype)[v] if len(v) else v
            elif f.name == "evicted_by":   # a tenant code too (-1 none)
                table = np.asarray([names.index(t) for t in result.tenant_names] + [-1], dtype=v.dtype)
                v = table[v]
            elif f.name == "hit_from":     # a request number within the part
                v = np.where(v >= 0, index[np.maximum(v, 0)], -1)
            out[index] = v
        merged[f.name] = out
    models = ", ".join(dict.fromkeys(r.model for _, r in parts))
    return dataclasses.replace(first, **merged, tenant_names=names, model=models,
                               price_rows=list(dict.fromkeys(row for _, r in parts for row in r.price_rows)))


def observed_cost(inp: ProviderInput, rules, prices: PriceTable | None = None) -> np.ndarray | None:
    """What the log's own usage bills at the same prices, per request (NaN where the log gives no cache figures):
    the invoice a prediction is tied out against. None when the log has no usage, or shows writes the model's
    price rows have no rate for."""
    if inp.observed_read is None or inp.observed_write is None:
        return None
    n = inp.n_requests
    known = (inp.observed_read >= 0) & (inp.observed_write >= 0)
    write = np.where(known, inp.observed_write, 0)
    long = np.zeros(n, np.int64) if inp.observed_write_long is None else np.maximum(inp.observed_write_long, 0)
    long = np.minimum(long, write)   # older logs give no TTL split: their writes are all 5-minute ones
    res = {"read": np.where(known, inp.observed_read, 0), "write_short": write - long, "write_long": long,
           "error": np.zeros(n, np.int8)}
    lengths = inp.lengths()
    if inp.observed_input is not None:
        lengths = np.where(inp.observed_input >= 0, inp.observed_input, lengths)
    try:
        cost, _, _ = _price(res, rules, inp, prices or load_prices(), lengths=lengths)
    except ValueError:
        return None
    cost[~known] = np.nan
    return cost


def simulate(inp: ProviderInput, rules, prices: PriceTable | None = None, impl: str = "core",
             forget_s: float = FORGET_S) -> ProviderResult:
    """Replay ``inp`` through the provider cache of ``rules``; bill with ``prices`` (the shipped registry if None).
    ``forget_s``: how long after expiry an entry still explains a miss as ``ttl_expired`` (memory bound)."""
    _validate(inp)
    table = prices or load_prices()
    res = _serve(inp, rules, impl, forget_s)
    cause = _causes(inp, res["read"], res["flags"], impl)
    cost, base, rows = _price(res, rules, inp, table)
    req = inp.requests
    lengths = inp.lengths()
    return ProviderResult(
        rules=rules, model=rules.model, prompt_tokens=lengths, read=res["read"], write_short=res["write_short"],
        write_long=res["write_long"], uncached=lengths - res["read"] - res["write_short"] - res["write_long"],
        output_tokens=np.maximum(req.output_tokens, 0), flags=res["flags"], error=res["error"], cause=cause,
        cost=cost, cost_uncached=base, tenant=req.tenant, tenant_names=list(req.tenant_names), session=req.session,
        query=inp.query, impl=impl, price_rows=rows, replica=res["replica"], created=res.get("created"),
        evicted_by=res.get("evicted_by"), hit_from=res["hit_from"],
        storage_cost=res["storage_cost"] if "created" in res else None,
        observed_read=inp.observed_read, observed_write=inp.observed_write)
