"""Hit-ratio curves for the LRU prefix cache in one pass: every capacity, and every (capacity, TTL) pair.

    >>> from cachesim.mrc import stack_profile
    >>> profile = stack_profile(trace)                      # one pass over the trace
    >>> curve = profile.curve([1_000, 10_000, 100_000])     # = replay(trace, capacity_blocks=C) for each C
    >>> table = profile.table([10_000, 100_000], [300, 3600])

Why it is exact (docs/mrc.md has the argument): under LRU with reverse-order stamping (SEMANTICS §3), the cache
of capacity C before a request holds exactly the C most recently stamped distinct keys that have not expired —
also when a request is longer than the cache, because such a request leaves exactly its first C blocks cached,
which are also the top C of the stack. A block hits iff it and every block before it in its request are within
depth C and were stamped less than the TTL ago, so one pass that records each block's stack depth and last-stamp
time answers every capacity and TTL. Keys repeated inside one request (only 64-bit hash collisions produce them
for chained keys) are the one case where capacities below the request length may differ from a replay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cachesim import _impl
from cachesim._contract import RATIO_DEFINITIONS, check_engine_config
from cachesim.replay import tenant_seed
from cachesim.trace import Trace, validate
from cachesim.units import first_counted, parse_warmup

__all__ = [
    "Curve",
    "CurveTable",
    "StackProfile",
    "default_capacities",
    "hit_ratio_curve",
    "hit_ratio_table",
    "stack_profile",
]

DEFAULT_ALWAYS_TOKENS = 2048   # sampling tracks every key of the first 2048 tokens: shared system prompts


def _load_kernel():
    try:
        from cachesim import _mrc
    except ImportError as exc:
        raise ImportError("cachesim._mrc (the compiled stack-distance pass) is not built; run "
                          "`python setup.py build_ext --inplace` or reinstall the package") from exc
    return _mrc


@dataclass
class Curve:
    """Hit ratios at a grid of capacities (one TTL). Counts are estimates scaled up when ``sample_rate < 1``."""

    capacities_blocks: np.ndarray   # int64 [k]; -1 stands for unbounded
    hit_blocks: np.ndarray          # [k]
    hit_tokens: np.ndarray          # [k]
    blocks: int                     # cacheable prompt blocks of the counted requests
    prompt_tokens: int              # prompt tokens of the counted requests
    ttl_s: float | None
    sample_rate: float
    block_size: int

    @property
    def token_hit_ratio(self) -> np.ndarray:
        return self.hit_tokens / self.prompt_tokens if self.prompt_tokens else np.zeros(len(self.hit_tokens))

    @property
    def block_hit_ratio(self) -> np.ndarray:
        return self.hit_blocks / self.blocks if self.blocks else np.zeros(len(self.hit_blocks))

    def capacities_gb(self, kv_bytes_per_token: float) -> np.ndarray:
        """Capacity in GB (1e9 bytes): block slots x tokens per block x KV bytes per token."""
        caps = self.capacities_blocks.astype(np.float64)
        caps[self.capacities_blocks < 0] = np.inf
        return caps * self.block_size * kv_bytes_per_token / 1e9

    def to_dict(self, kv_bytes_per_token: float | None = None) -> dict[str, Any]:
        rows = []
        gb = self.capacities_gb(kv_bytes_per_token) if kv_bytes_per_token else None
        for i, cap in enumerate(self.capacities_blocks):
            row = {"capacity_blocks": None if cap < 0 else int(cap),
                   "hit_blocks": _number(self.hit_blocks[i]), "hit_tokens": _number(self.hit_tokens[i]),
                   "token_hit_ratio": float(self.token_hit_ratio[i]),
                   "block_hit_ratio": float(self.block_hit_ratio[i])}
            if gb is not None:
                row["capacity_gb"] = None if cap < 0 else float(gb[i])
            rows.append(row)
        return {"ttl_s": self.ttl_s, "sample_rate": self.sample_rate, "block_size": self.block_size,
                "blocks": self.blocks, "prompt_tokens": self.prompt_tokens, "kv_bytes_per_token": kv_bytes_per_token,
                "exact": self.sample_rate == 1.0, "points": rows, "definitions": dict(RATIO_DEFINITIONS)}


@dataclass
class CurveTable:
    """Hit counts over capacity x TTL grids; ``ttls_s`` holds None for no expiry."""

    capacities_blocks: np.ndarray   # int64 [k]; -1 = unbounded
    ttls_s: list[float | None]      # [l]
    hit_blocks: np.ndarray          # [k, l]
    hit_tokens: np.ndarray          # [k, l]
    blocks: int
    prompt_tokens: int
    sample_rate: float
    block_size: int

    @property
    def token_hit_ratio(self) -> np.ndarray:
        return self.hit_tokens / self.prompt_tokens if self.prompt_tokens else np.zeros(self.hit_tokens.shape)

    @property
    def block_hit_ratio(self) -> np.ndarray:
        return self.hit_blocks / self.blocks if self.blocks else np.zeros(self.hit_blocks.shape)

    def curve(self, ttl_index: int) -> Curve:
        """The column of one TTL as a :class:`Curve`."""
        return Curve(self.capacities_blocks, self.hit_blocks[:, ttl_index], self.hit_tokens[:, ttl_index],
                     self.blocks, self.prompt_tokens, self.ttls_s[ttl_index], self.sample_rate, self.block_size)


def _number(x) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


@dataclass
class StackProfile:
    """One pass over a trace: each block's stack depth and last-stamp time (prefix max / min within its request).

    Query it with :meth:`curve` and :meth:`table` as often as you like; each query is one linear scan.
    """

    t: np.ndarray                 # float64 [requests]
    block_offsets: np.ndarray     # int64 [requests + 1]
    block_tokens: np.ndarray      # uint32 [blocks]
    counted: np.ndarray           # uint8 [requests]: 0 for warmup requests
    hit_cap_blocks: np.ndarray    # int64 [requests]: most blocks a request may hit
    depth: np.ndarray             # float64 [blocks]: prefix-max stack depth; inf = cold, -1 = not sampled
    stamped: np.ndarray           # int32 [blocks]: request of the oldest last stamping in the prefix, -1 = none
    distinct_keys: float          # distinct keys (estimated when sampling)
    sample_rate: float
    always_blocks: int            # sampling tracks every key in the first always_blocks of a request
    block_size: int
    prompt_tokens: int            # counted requests
    blocks: int                   # counted requests
    block_token_total: int        # tokens in the counted requests' blocks
    longest_request_blocks: int

    def _hits(self, capacities: Sequence[int | None], ttls: Sequence[float | None]):
        caps = _capacity_grid(capacities)
        ttl_list = [_check_ttl(x) for x in ttls]
        if not ttl_list:
            raise ValueError("give at least one TTL (None for no expiry)")
        eff = np.where(caps < 0, np.inf, caps.astype(np.float64))
        cap_order = np.argsort(eff, kind="stable")
        ttl_values = np.array([math.inf if x is None else x for x in ttl_list], dtype=np.float64)
        ttl_order = np.argsort(ttl_values, kind="stable")
        kernel = _load_kernel()
        hb, ht, n_blocks, n_tokens = kernel.bin_hits(self.t, self.block_offsets, self.block_tokens, self.counted,
                                                     self.hit_cap_blocks, self.depth, self.stamped,
                                                     np.ascontiguousarray(eff[cap_order]),
                                                     np.ascontiguousarray(ttl_values[ttl_order]),
                                                     self.sample_rate, self.always_blocks)
        # back to the caller's order
        inv_c, inv_t = np.argsort(cap_order), np.argsort(ttl_order)
        hb, ht = hb[inv_c][:, inv_t], ht[inv_c][:, inv_t]
        if self.sample_rate < 1.0:
            # ratio estimators: the sampled blocks' hit share, scaled to the exact totals
            hit_blocks = hb * (self.blocks / n_blocks) if n_blocks else np.zeros(hb.shape)
            hit_tokens = ht * (self.block_token_total / n_tokens) if n_tokens else np.zeros(ht.shape)
        else:   # whole numbers, summed exactly in float64 (below 2^53)
            hit_blocks, hit_tokens = np.rint(hb).astype(np.int64), np.rint(ht).astype(np.int64)
        return caps, ttl_list, hit_blocks, hit_tokens

    def curve(self, capacities: Sequence[int | None] | None = None, ttl_s: float | None = None) -> Curve:
        """Hit counts at each capacity (block slots; None = unbounded) for one TTL (None = no expiry).

        Without ``capacities``: every capacity where the curve steps (plus the unbounded end), i.e. the whole
        curve. Exact (equal to a replay at each capacity) when the profile is not sampled.
        """
        if capacities is None:
            capacities = self.step_capacities()
        caps, _, hb, ht = self._hits(capacities, [ttl_s])
        return Curve(caps, hb[:, 0], ht[:, 0], self.blocks, self.prompt_tokens, _check_ttl(ttl_s),
                     self.sample_rate, self.block_size)

    def table(self, capacities: Sequence[int | None], ttls_s: Sequence[float | None]) -> CurveTable:
        """Hit counts for every (capacity, TTL) pair; None in ``ttls_s`` = no expiry."""
        caps, ttl_list, hb, ht = self._hits(capacities, ttls_s)
        return CurveTable(caps, ttl_list, hb, ht, self.blocks, self.prompt_tokens, self.sample_rate,
                          self.block_size)

    def step_capacities(self) -> list[int | None]:
        """Every capacity at which a hit count can change (the distinct depths), ascending, then None (unbounded).

        Between two of them every count is flat, so the curve at these points is the whole curve."""
        d = self.depth[(self.depth >= 0) & np.isfinite(self.depth)]
        steps = np.unique(np.ceil(d).astype(np.int64))
        return [int(x) for x in steps] + [None]


def _capacity_grid(capacities: Sequence[int | None]) -> np.ndarray:
    out = []
    for c in capacities:
        if c is None:
            out.append(-1)
            continue
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c <= 0:
            raise ValueError(f"capacities must be positive whole numbers of blocks (or None), got {c!r}")
        out.append(int(c))
    if not out:
        raise ValueError("give at least one capacity")
    return np.array(out, dtype=np.int64)


def _check_ttl(ttl_s: float | None) -> float | None:
    if ttl_s is None:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float, np.integer, np.floating)) \
            or not (ttl_s > 0 and math.isfinite(ttl_s)):
        raise ValueError(f"ttl_s must be a positive number of seconds (or None), got {ttl_s!r}")
    return float(ttl_s)


def stack_profile(trace: Trace, *, sample_rate: float = 1.0, always_tokens: int = DEFAULT_ALWAYS_TOKENS,
                  hit_cap: str | None = None, isolation: str | None = None,
                  warmup: int | str | None = None) -> StackProfile:
    """One O(n log n) pass over ``trace`` (LRU, SEMANTICS §3); see :class:`StackProfile`.

    ``hit_cap``, ``isolation`` and ``warmup`` mean what they mean to :func:`cachesim.replay`. With
    ``sample_rate < 1`` the pass tracks every key in the blocks that start within the first ``always_tokens``
    tokens of a request (the few, heavily shared keys near the trie root: system prompts) and, deeper, only keys
    whose hash falls below the rate, each weighing 1 / rate (SHARDS-style spatial sampling): an estimate, see
    docs/mrc.md for its measured error.
    """
    if isinstance(always_tokens, bool) or not isinstance(always_tokens, (int, np.integer)) or always_tokens < 0:
        raise ValueError(f"always_tokens must be a whole number >= 0, got {always_tokens!r}")
    if not isinstance(trace, Trace):
        raise TypeError(f"stack_profile needs a compiled Trace (cachesim.compile_trace), got {type(trace).__name__}")
    if not (isinstance(sample_rate, (int, float)) and 0 < sample_rate <= 1):
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    trace = validate(trace)
    warmup_requests, warmup_s = parse_warmup(warmup)
    check_engine_config(hit_cap=hit_cap, isolation=isolation, warmup_requests=warmup_requests, warmup_s=warmup_s)
    t = np.ascontiguousarray(trace.t, dtype=np.float64)
    offsets = np.ascontiguousarray(trace.block_offsets, dtype=np.int64)
    # sampling hashes the keys: dense ids (Trace.dense()) would sample a different subset
    keys = np.ascontiguousarray(trace.keyed().block_keys, dtype=np.uint64)
    if t.size and np.any(np.diff(t) < 0):
        i = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
        raise ValueError(f"request {i}: arrival time {t[i]!r} is before the previous request's {t[i - 1]!r}")
    if isolation == "tenant":
        seeds = np.array([tenant_seed(name) for name in trace.tenant_names], dtype=np.uint64)
        keys = _impl.load().relabel_keys(keys, offsets, np.ascontiguousarray(trace.tenant, dtype=np.int32),
                                               seeds)
    kernel = _load_kernel()
    always = -(-int(always_tokens) // trace.block_size) if sample_rate < 1 else 0
    depth, stamped, distinct = kernel.stack_pass(t, offsets, keys, float(sample_rate), always)

    n = len(t)
    counted = np.ones(n, dtype=np.uint8)
    counted[:first_counted(t, warmup_requests, warmup_s)] = 0
    lengths = np.diff(offsets)
    prompt_tokens = np.asarray(trace.prompt_tokens, dtype=np.int64)
    cap = np.maximum((prompt_tokens - 1) // trace.block_size, 0) if hit_cap == "prompt-1" else lengths.copy()
    block_tokens = np.ascontiguousarray(trace.block_tokens, dtype=np.uint32)
    mask = counted.astype(bool)
    if mask.all():
        block_token_total = int(block_tokens.sum(dtype=np.int64))
    else:
        block_token_total = int(block_tokens[np.repeat(mask, lengths)].sum(dtype=np.int64))
    return StackProfile(t=t, block_offsets=offsets, block_tokens=block_tokens, counted=counted,
                        hit_cap_blocks=np.ascontiguousarray(cap, dtype=np.int64), depth=depth, stamped=stamped,
                        distinct_keys=float(distinct), sample_rate=float(sample_rate), always_blocks=always,
                        block_size=trace.block_size,
                        prompt_tokens=int(prompt_tokens[mask].sum()), blocks=int(lengths[mask].sum()),
                        block_token_total=block_token_total,
                        longest_request_blocks=int(lengths.max()) if n else 0)


def hit_ratio_curve(trace: Trace, capacities: Sequence[int | None] | None = None, ttl_s: float | None = None,
                    **options) -> Curve:
    """The LRU hit-ratio curve of ``trace`` (options as for :func:`stack_profile`)."""
    return stack_profile(trace, **options).curve(capacities, ttl_s)


def hit_ratio_table(trace: Trace, capacities: Sequence[int | None], ttls_s: Sequence[float | None],
                    **options) -> CurveTable:
    """Hit counts for every (capacity, TTL) pair in one pass (options as for :func:`stack_profile`)."""
    return stack_profile(trace, **options).table(capacities, ttls_s)


def default_capacities(profile: StackProfile, points: int = 24) -> list[int | None]:
    """A log-spaced grid from 1 block to the number of distinct keys, then unbounded."""
    top = max(math.ceil(profile.distinct_keys), 1)
    grid = np.unique(np.round(np.logspace(0, math.log10(top), points)).astype(np.int64))
    return [int(x) for x in grid] + [None]

