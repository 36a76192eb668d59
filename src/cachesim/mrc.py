"""Hit-ratio curves for the LRU prefix cache in one pass: every capacity, and every (capacity, TTL) pair.

    >>> from cachesim.mrc import CurveStream, stack_profile
    >>> profile = stack_profile(trace)                      # one pass over a trace in memory
    >>> curve = profile.curve([1_000, 10_000, 100_000])     # = replay(trace, capacity_blocks=C) for each C
    >>> table = profile.table([10_000, 100_000], [300, 3600])
    >>> stream = CurveStream([10_000, None], [None, 300]).run(TraceStream("big.jsonl"))   # any size, streamed
    >>> stream.table().hit_blocks

Why it is exact (docs/mrc.md has the argument): under LRU with reverse-order stamping (SEMANTICS §3), the cache
of capacity C before a request holds exactly the C most recently stamped distinct keys that have not expired —
also when a request is longer than the cache, because such a request leaves exactly its first C blocks cached,
which are also the top C of the stack. A block hits iff it and every block before it in its request are within
depth C and were stamped less than the TTL ago, so one pass that records each block's stack depth and last-stamp
time answers every capacity and TTL. (A key repeated inside one request, the one case where this could differ
from a replay, is refused by :func:`cachesim.trace.validate`.)

Streaming: :class:`StackStream` keeps the pass's stack between batches, so a batch's depths are those of the
whole-trace pass; :class:`CurveStream` folds each batch into hit counts at a (capacity x TTL) grid fixed up front
and drops the per-block record, so it holds the stack (it grows with the distinct keys) and a small table, never
anything per block of the trace. docs/memory.md gives the bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from cachesim import _impl
from cachesim._contract import RATIO_DEFINITIONS, check_engine_config
from cachesim.replay import tenant_seed
from cachesim.requests import TraceError
from cachesim.trace import Trace, validate
from cachesim.units import first_counted, parse_warmup

__all__ = [
    "FINE_CAPACITIES",
    "CapacityHistogram",
    "Curve",
    "CurveStream",
    "CurveTable",
    "StackProfile",
    "StackStream",
    "default_capacities",
    "hit_ratio_curve",
    "hit_ratio_table",
    "stack_profile",
]

DEFAULT_ALWAYS_TOKENS = 2048   # sampling tracks every key of the first 2048 tokens: shared system prompts
GRID_PER_DECADE = 40           # capacities 10^(1/40) = 6% apart
# The grid a CurveStream bins without capacities of its own, from 1 block past any depth the pass reaches (2^31
# stamp positions, each key weighing at most 1 / rate); default_capacities picks its report from it.
FINE_CAPACITIES: tuple[int, ...] = tuple(
    int(x) for x in np.unique(np.round(10 ** (np.arange(16 * GRID_PER_DECADE + 1) / GRID_PER_DECADE))))


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
    policy: str = "lru"             # the eviction policy (its canonical text, with parameters)
    method: str = "one-pass"        # one-pass (LRU's stack), replays (one per capacity) or miniature (sampled)

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
        return {"policy": self.policy, "method": self.method,
                "ttl_s": self.ttl_s, "sample_rate": self.sample_rate, "block_size": self.block_size,
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
    """One pass over a trace (or one batch of a stream): each block's stack depth and last-stamp time (prefix max
    / min within its request).

    Query it with :meth:`curve` and :meth:`table` as often as you like; each query is one linear scan.
    """

    t: np.ndarray                 # float64 [requests]
    block_offsets: np.ndarray     # int64 [requests + 1]
    block_tokens: np.ndarray      # uint32 [blocks]
    counted: np.ndarray           # uint8 [requests]: 0 for warmup requests
    hit_cap_blocks: np.ndarray    # int64 [requests]: most blocks a request may hit
    depth: np.ndarray             # float64 [blocks]: prefix-max stack depth; inf = cold, -1 = not sampled
    stamp_t: np.ndarray           # float64 [blocks]: oldest last-stamp time in the prefix; inf = cold or not sampled
    distinct_keys: float          # distinct keys the pass has seen, up to the end of these requests (estimated
                                  # when sampling)
    sample_rate: float
    always_blocks: int            # sampling tracks every key in the first always_blocks of a request
    block_size: int
    prompt_tokens: int            # counted requests
    blocks: int                   # counted requests
    block_token_total: int        # tokens in the counted requests' blocks
    longest_request_blocks: int

    def curve(self, capacities: Sequence[int | None] | None = None, ttl_s: float | None = None) -> Curve:
        """Hit counts at each capacity (block slots; None = unbounded) for one TTL (None = no expiry).

        Without ``capacities``: every capacity where the curve steps (plus the unbounded end), i.e. the whole
        curve. Exact (equal to a replay at each capacity) when the profile is not sampled.
        """
        if capacities is None:
            capacities = self.step_capacities()
        return self.table(capacities, [ttl_s]).curve(0)

    def table(self, capacities: Sequence[int | None], ttls_s: Sequence[float | None]) -> CurveTable:
        """Hit counts for every (capacity, TTL) pair; None in ``ttls_s`` = no expiry."""
        grid = _Grid(capacities, ttls_s)
        hits, tracked = grid.bin(self)
        return _table(grid, hits, tracked, capacities, ttls_s, math.inf, blocks=self.blocks,
                      prompt_tokens=self.prompt_tokens, block_token_total=self.block_token_total,
                      sample_rate=self.sample_rate, block_size=self.block_size)

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


def _ttl_list(ttls_s: Sequence[float | None]) -> list[float | None]:
    ttl_list = [_check_ttl(x) for x in ttls_s]
    if not ttl_list:
        raise ValueError("give at least one TTL (None for no expiry)")
    return ttl_list


def _ttl_values(ttl_list: list[float | None]) -> np.ndarray:
    return np.array([math.inf if x is None else x for x in ttl_list], dtype=np.float64)


class _Grid:
    """A capacity x TTL grid as the kernel bins it: each ascending and unique, with the unbounded capacity."""

    def __init__(self, capacities: Sequence[int | None], ttls_s: Sequence[float | None]):
        caps = _capacity_grid(capacities)
        self.capacities = np.unique(np.append(np.where(caps < 0, np.inf, caps.astype(np.float64)), np.inf))
        self.ttls = np.unique(_ttl_values(_ttl_list(ttls_s)))

    def bin(self, profile: StackProfile) -> tuple[np.ndarray, np.ndarray]:
        """The profile's hit counts at every point of the grid, and its tracked blocks (``_mrc.bin_hits``)."""
        return _load_kernel().bin_hits(profile.t, profile.block_offsets, profile.block_tokens, profile.counted,
                                       profile.hit_cap_blocks, profile.depth, profile.stamp_t, self.capacities,
                                       self.ttls, profile.always_blocks)

    def rows(self, capacities: np.ndarray, deepest: float) -> np.ndarray:
        """The row of each capacity (-1 = unbounded). A capacity off the grid reads the unbounded row when it is at
        least ``deepest``, the deepest depth binned: every block with a depth fits there, as in an unbounded cache."""
        eff = np.where(capacities < 0, np.inf, capacities.astype(np.float64))
        last = len(self.capacities) - 1
        idx = np.minimum(np.searchsorted(self.capacities, eff), last)
        idx = np.where(self.capacities[idx] == eff, idx, np.where(eff >= deepest, last, -1))
        if np.any(idx < 0):
            raise ValueError(f"capacity {int(capacities[idx < 0][0]):,} was not in the grid fixed before the pass "
                             f"and is below its deepest depth {deepest:,.0f}; give it up front")
        return idx

    def cols(self, ttl_list: list[float | None]) -> np.ndarray:
        values = _ttl_values(ttl_list)
        idx = np.minimum(np.searchsorted(self.ttls, values), len(self.ttls) - 1)
        if np.any(self.ttls[idx] != values):
            raise ValueError(f"TTL {ttl_list[int(np.flatnonzero(self.ttls[idx] != values)[0])]!r} was not among the "
                             "TTLs fixed before the pass; give it up front")
        return idx


def _table(grid: _Grid, hits: np.ndarray, tracked: np.ndarray, capacities: Sequence[int | None],
           ttls_s: Sequence[float | None], deepest: float, *, blocks: int, prompt_tokens: int,
           block_token_total: int, sample_rate: float, block_size: int) -> CurveTable:
    """The table of binned counts (``_Grid.bin``, summed over batches) at the caller's capacities and TTLs."""
    caps, ttl_list = _capacity_grid(capacities), _ttl_list(ttls_s)
    sub = hits[:, :, grid.rows(caps, deepest)][:, :, :, grid.cols(ttl_list)]
    if sample_rate >= 1.0:   # whole numbers, exactly
        hit_blocks, hit_tokens = sub[:, 0].sum(axis=0), sub[:, 1].sum(axis=0)
    else:
        # ratio estimators: the sampled blocks' hit share, scaled to the exact totals (class 1 weighs 1 / rate)
        weight = np.array([1.0, 1.0 / sample_rate])
        n_blocks, n_tokens = float(weight @ tracked[:, 0]), float(weight @ tracked[:, 1])
        hb, ht = np.tensordot(weight, sub[:, 0], axes=1), np.tensordot(weight, sub[:, 1], axes=1)
        hit_blocks = hb * (blocks / n_blocks) if n_blocks else np.zeros(hb.shape)
        hit_tokens = ht * (block_token_total / n_tokens) if n_tokens else np.zeros(ht.shape)
    return CurveTable(caps, ttl_list, hit_blocks, hit_tokens, blocks, prompt_tokens, sample_rate, block_size)


class StackStream:
    """The one pass (LRU, SEMANTICS §3), fed a trace batch by batch: :meth:`feed` returns each batch's
    :class:`StackProfile`, its depths those of one pass over the whole trace.

    ``hit_cap``, ``isolation`` and ``warmup`` mean what they mean to :func:`cachesim.replay`. With
    ``sample_rate < 1`` the pass tracks every key in the blocks that start within the first ``always_tokens``
    tokens of a request (the few, heavily shared keys near the trie root: system prompts) and, deeper, only keys
    whose hash falls below the rate, each weighing 1 / rate (SHARDS-style spatial sampling): an estimate, see
    docs/mrc.md for its measured error. What the stream holds (the kernel's ``StackPass``: hash table, stamp
    bitmaps, arrival times of the requests that stamped live keys) grows with the distinct keys, not the batches.
    """

    def __init__(self, *, sample_rate: float = 1.0, always_tokens: int = DEFAULT_ALWAYS_TOKENS,
                 hit_cap: str | None = None, isolation: str | None = None, warmup: int | str | None = None):
        if isinstance(always_tokens, bool) or not isinstance(always_tokens, (int, np.integer)) or always_tokens < 0:
            raise ValueError(f"always_tokens must be a whole number >= 0, got {always_tokens!r}")
        if isinstance(sample_rate, bool) or not (isinstance(sample_rate, (int, float)) and 0 < sample_rate <= 1):
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        self.warmup_requests, self.warmup_s = parse_warmup(warmup)
        check_engine_config(hit_cap=hit_cap, isolation=isolation, warmup_requests=self.warmup_requests,
                            warmup_s=self.warmup_s)
        self.sample_rate, self.always_tokens = float(sample_rate), int(always_tokens)
        self.hit_cap, self.isolation = hit_cap, isolation
        self.block_size: int | None = None
        self.block_source = ""
        self.always_blocks = 0
        self.requests = 0                  # fed so far, counted or not
        self.blocks = 0
        self.longest_request_blocks = 0
        self._pass = None                  # the kernel's state, made for the first batch's block size
        self._first_t: float | None = None  # the warm-up's seconds count from the first arrival
        self._last_t = -math.inf
        self._counting = False             # past the warm-up: every later request counts

    @property
    def distinct_keys(self) -> float:
        """Distinct keys stamped so far (estimated when sampling)."""
        return self._pass.distinct if self._pass is not None else 0.0

    @property
    def state_bytes(self) -> int:
        """Bytes the pass's state holds now (it grows with the distinct keys)."""
        return self._pass.nbytes if self._pass is not None else 0

    def feed(self, batch: Trace) -> StackProfile:
        """Pass ``batch`` (the requests after every batch fed before) and return its per-block record."""
        if not isinstance(batch, Trace):
            raise TypeError(f"the stack pass needs compiled Trace batches (cachesim.compile_trace), got "
                            f"{type(batch).__name__}")
        batch = validate(batch)   # nothing reaches the kernel's unchecked loops without this
        if self._pass is None:
            self.block_size, self.block_source = batch.block_size, batch.block_source
            self.always_blocks = -(-self.always_tokens // batch.block_size) if self.sample_rate < 1 else 0
            self._pass = _load_kernel().StackPass(self.sample_rate, self.always_blocks)
        elif batch.block_size != self.block_size:
            raise TraceError(f"batch has {batch.block_size}-token blocks, earlier batches {self.block_size}",
                             field="block_size")
        t, offsets = batch.t, batch.block_offsets
        if len(t) and t[0] < self._last_t:
            raise TraceError(f"arrival time {float(t[0])!r} is before the previous batch's last, {self._last_t!r}",
                             field="t", line=0)
        # sampling hashes the keys: dense ids (Trace.dense()) would sample a different subset
        keys = np.ascontiguousarray(batch.keyed().block_keys, dtype=np.uint64)
        if self.isolation == "tenant":
            seeds = np.array([tenant_seed(name) for name in batch.tenant_names], dtype=np.uint64)
            keys = _impl.load().relabel_keys(keys, offsets, batch.tenant, seeds)
        depth, stamp_t = self._pass.feed(t, offsets, keys)

        counted = self._counted(t)
        lengths = np.diff(offsets)
        cap = np.maximum((batch.prompt_tokens - 1) // batch.block_size, 0) if self.hit_cap == "prompt-1" else lengths
        mask = counted.astype(bool)
        if mask.all():
            block_token_total = int(batch.block_tokens.sum(dtype=np.int64))
        else:
            block_token_total = int(batch.block_tokens[np.repeat(mask, lengths)].sum(dtype=np.int64))
        longest = int(lengths.max()) if len(t) else 0
        self.requests += len(t)
        self.blocks += batch.n_blocks
        self.longest_request_blocks = max(self.longest_request_blocks, longest)
        if len(t):
            self._last_t = float(t[-1])
        return StackProfile(t=t, block_offsets=offsets, block_tokens=batch.block_tokens, counted=counted,
                            hit_cap_blocks=np.ascontiguousarray(cap, dtype=np.int64), depth=depth, stamp_t=stamp_t,
                            distinct_keys=float(self.distinct_keys), sample_rate=self.sample_rate,
                            always_blocks=self.always_blocks, block_size=batch.block_size,
                            prompt_tokens=int(batch.prompt_tokens[mask].sum()), blocks=int(lengths[mask].sum()),
                            block_token_total=block_token_total, longest_request_blocks=longest)

    def _counted(self, t: np.ndarray) -> np.ndarray:
        """1 for each request of the batch the warm-up counts (SEMANTICS §5), 0 for the others."""
        counted = np.ones(len(t), dtype=np.uint8)
        if self._counting or not len(t):
            return counted
        if self._first_t is None:
            self._first_t = float(t[0])
        # units.first_counted states the rule for a whole trace; the stream's first arrival rides in front of the
        # batch so that the rule reads the t[0] it is stated with, and the requests fed before count as requests
        ahead = np.concatenate(([self._first_t], t))
        start = first_counted(ahead, max(self.warmup_requests - self.requests, 0) + 1, self.warmup_s) - 1
        counted[:start] = 0
        self._counting = start < len(t)
        return counted


class CurveStream:
    """Hit counts over a (capacity x TTL) grid fixed up front, folded in batch by batch (:meth:`feed`,
    :meth:`run`): exactly what :func:`stack_profile` and a replay at each point give, while holding only the
    pass's state (it grows with the distinct keys) and the counts.

    Without ``capacities`` the grid is :data:`FINE_CAPACITIES` (40 per decade) plus unbounded, and
    :meth:`table` reports :func:`default_capacities`. Any capacity at or above the deepest depth met reads the
    unbounded counts (every block with a depth fits there), so the distinct count can be asked for too.
    Options are those of :class:`StackStream`.
    """

    def __init__(self, capacities: Sequence[int | None] | None = None,
                 ttls_s: Sequence[float | None] = (None,), **options):
        self.stack = StackStream(**options)
        self.capacities = None if capacities is None else list(capacities)
        self.ttls_s = _ttl_list(ttls_s)
        self._grid = _Grid(FINE_CAPACITIES if capacities is None else capacities, self.ttls_s)
        self._hits = np.zeros((2, 2, len(self._grid.capacities), len(self._grid.ttls)), dtype=np.int64)
        self._tracked = np.zeros((2, 2), dtype=np.int64)
        self.blocks = self.prompt_tokens = self.block_token_total = 0   # of the counted requests
        self.deepest = 0.0   # the deepest depth binned so far

    def feed(self, batch: Trace) -> None:
        profile = self.stack.feed(batch)
        hits, tracked = self._grid.bin(profile)
        self._hits += hits
        self._tracked += tracked
        self.blocks += profile.blocks
        self.prompt_tokens += profile.prompt_tokens
        self.block_token_total += profile.block_token_total
        self.deepest = max(self.deepest, float(np.max(profile.depth, where=np.isfinite(profile.depth), initial=0)))

    def run(self, batches: Iterable[Trace]) -> CurveStream:
        """Feed every batch; a Trace is fed in slices of 2^20 blocks."""
        if not isinstance(batches, Trace) and (isinstance(batches, (str, bytes, PathLike))
                                               or not isinstance(batches, Iterable)):
            raise TypeError(f"expected a compiled Trace or an iterable of Trace batches, got "
                            f"{type(batches).__name__} (a file streams as cachesim.readers.TraceStream(path))")
        for batch in batches.batches(1 << 20) if isinstance(batches, Trace) else batches:
            self.feed(batch)
        return self

    @property
    def requests(self) -> int:
        return self.stack.requests

    @property
    def n_blocks(self) -> int:
        """Blocks fed, counted or not."""
        return self.stack.blocks

    @property
    def distinct_keys(self) -> float:
        return self.stack.distinct_keys

    def table(self, capacities: Sequence[int | None] | None = None,
              ttls_s: Sequence[float | None] | None = None) -> CurveTable:
        """Hit counts at ``capacities`` (default: the grid given, else :func:`default_capacities`) and ``ttls_s``
        (default: the TTLs given), each of which must have been binned."""
        if capacities is None:
            capacities = self.capacities if self.capacities is not None else default_capacities(self)
        return _table(self._grid, self._hits, self._tracked, capacities,
                      self.ttls_s if ttls_s is None else ttls_s, self.deepest, blocks=self.blocks,
                      prompt_tokens=self.prompt_tokens, block_token_total=self.block_token_total,
                      sample_rate=self.stack.sample_rate, block_size=self.stack.block_size or 0)

    def curve(self, capacities: Sequence[int | None] | None = None, ttl_s: float | None = None) -> Curve:
        return self.table(capacities, [ttl_s]).curve(0)


class CapacityHistogram:
    """For each TTL, the hit tokens and hit blocks of a trace by the *smallest capacity at which each block hits*,
    folded in batch by batch (:meth:`feed`, :meth:`run`), exact: the count at capacity C summed up to C is what a
    replay at C gives (a block hits at C iff its prefix-max depth is at most C, SEMANTICS §3 and the module's
    docstring). So the smallest capacity reaching a target hit ratio is a search over exact counts, not a grid.

    Holds the pass's state and, per TTL, two int64 counts per depth reached (at most the distinct keys).
    Options: ``hit_cap``, ``isolation``, ``warmup`` as for :func:`cachesim.replay`; no sampling (it is exact).
    """

    def __init__(self, ttls_s: Sequence[float | None] = (None,), *, hit_cap: str | None = None,
                 isolation: str | None = None, warmup: int | str | None = None):
        self.stack = StackStream(hit_cap=hit_cap, isolation=isolation, warmup=warmup)
        self.ttls_s = _ttl_list(ttls_s)
        self._ttls = _ttl_values(self.ttls_s)
        # [ttl, capacity]: index C holds what first hits at capacity C (index 0 stays empty: depths start at 1)
        self._tokens = np.zeros((len(self.ttls_s), 1), dtype=np.int64)
        self._blocks = np.zeros((len(self.ttls_s), 1), dtype=np.int64)
        self.blocks = self.prompt_tokens = 0   # of the counted requests

    def feed(self, batch: Trace) -> None:
        self.add(self.stack.feed(batch))

    def run(self, batches: Iterable[Trace]) -> CapacityHistogram:
        """Feed every batch; a Trace is fed in slices of 2^20 blocks."""
        for batch in batches.batches(1 << 20) if isinstance(batches, Trace) else batches:
            self.feed(batch)
        return self

    def add(self, profile: StackProfile) -> None:
        """Fold in one exact profile (the batches of one pass, in order)."""
        if profile.sample_rate < 1:
            raise ValueError("a capacity histogram needs an exact (unsampled) profile")
        lengths = np.diff(profile.block_offsets)
        position = np.arange(len(profile.depth)) - np.repeat(profile.block_offsets[:-1], lengths)
        hits = (np.repeat(profile.counted.astype(bool), lengths) & np.isfinite(profile.depth)
                & (position < np.repeat(profile.hit_cap_blocks, lengths)))
        capacity = np.ceil(profile.depth[hits]).astype(np.int64)
        stamped, now = profile.stamp_t[hits], np.repeat(profile.t, lengths)[hits]
        tokens = profile.block_tokens[hits].astype(np.float64)   # sums stay far below 2^53: exact
        width = max(self._tokens.shape[1], int(capacity.max(initial=0)) + 1)
        if width > self._tokens.shape[1]:
            grow = ((0, 0), (0, width - self._tokens.shape[1]))
            self._tokens, self._blocks = np.pad(self._tokens, grow), np.pad(self._blocks, grow)
        for k, ttl in enumerate(self._ttls):
            alive = stamped + ttl > now   # the engine's own expression (see _mrc._first_ttl)
            self._tokens[k] += np.rint(np.bincount(capacity[alive], tokens[alive], width)).astype(np.int64)
            self._blocks[k] += np.bincount(capacity[alive], minlength=width)
        self.blocks += profile.blocks
        self.prompt_tokens += profile.prompt_tokens

    def _row(self, ttl_s: float | None) -> int:
        value = math.inf if _check_ttl(ttl_s) is None else ttl_s
        found = np.flatnonzero(self._ttls == value)
        if not found.size:
            raise ValueError(f"TTL {ttl_s!r} was not among the TTLs given up front ({self.ttls_s})")
        return int(found[0])

    def hit_tokens(self, ttl_s: float | None = None) -> np.ndarray:
        """``[C]`` = hit tokens at capacity C blocks (index 0: capacity 0); the last entry holds for every larger
        capacity, unbounded included."""
        return np.cumsum(self._tokens[self._row(ttl_s)])

    def hit_blocks(self, ttl_s: float | None = None) -> np.ndarray:
        return np.cumsum(self._blocks[self._row(ttl_s)])

    def min_capacity(self, token_hit_ratio: float, ttl_s: float | None = None) -> int | None:
        """The smallest capacity (blocks) whose token hit ratio (hit tokens / prompt tokens, as a replay
        computes it) is at least ``token_hit_ratio``; None when even an unbounded cache stays below it."""
        if not 0 < token_hit_ratio <= 1:
            raise ValueError(f"a target hit ratio must be in (0, 1], got {token_hit_ratio!r}")
        if not self.prompt_tokens:
            return None
        reached = np.flatnonzero(self.hit_tokens(ttl_s) / self.prompt_tokens >= token_hit_ratio)
        return int(reached[0]) if reached.size else None


def stack_profile(trace: Trace, **options) -> StackProfile:
    """One O(n log n) pass over ``trace`` in memory (LRU, SEMANTICS §3); see :class:`StackProfile`. Options
    (``sample_rate``, ``always_tokens``, ``hit_cap``, ``isolation``, ``warmup``) are those of :class:`StackStream`.
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"stack_profile needs a compiled Trace (cachesim.compile_trace), got {type(trace).__name__}")
    return StackStream(**options).feed(trace)


def hit_ratio_curve(trace: Trace | Iterable[Trace], capacities: Sequence[int | None] | None = None,
                    ttl_s: float | None = None, **options) -> Curve:
    """The LRU hit-ratio curve of ``trace`` (options as for :class:`StackStream`). A Trace is profiled in memory
    (without capacities: the whole curve, every step); an iterable of batches streams through a
    :class:`CurveStream` (without capacities: :func:`default_capacities`)."""
    if isinstance(trace, Trace):
        return stack_profile(trace, **options).curve(capacities, ttl_s)
    return CurveStream(capacities, [ttl_s], **options).run(trace).curve(capacities, ttl_s)


def hit_ratio_table(trace: Trace | Iterable[Trace], capacities: Sequence[int | None],
                    ttls_s: Sequence[float | None], **options) -> CurveTable:
    """Hit counts for every (capacity, TTL) pair in one pass (options as for :class:`StackStream`); an iterable of
    batches streams."""
    if isinstance(trace, Trace):
        return stack_profile(trace, **options).table(capacities, ttls_s)
    return CurveStream(capacities, ttls_s, **options).run(trace).table()


def default_capacities(profile: StackProfile | CurveStream, points: int = 24) -> list[int | None]:
    """About ``points`` capacities from 1 block to the number of distinct keys, then unbounded, placed where the
    curve moves: a third log-spaced (the shape over the whole range), the rest at even steps of the no-TTL token
    hit ratio (the smallest capacity reaching each step), and no capacity whose hit ratio the one below it
    already had, so a flat stretch takes one row, not a dozen.

    All but the top come from :data:`FINE_CAPACITIES`, so a :class:`CurveStream` binned them without knowing the
    distinct count in advance; the top, the distinct count, is at least every depth, where the counts are the
    unbounded ones.
    """
    top = max(math.ceil(profile.distinct_keys), 1)
    fine = np.array(FINE_CAPACITIES, dtype=np.int64)
    fine = fine[fine < top]
    if not fine.size or points <= 1:
        return [top, None]
    hits = np.asarray(profile.table([*(int(x) for x in fine), top], [None]).curve(0).hit_tokens, dtype=np.float64)
    logs = max(points // 3, 2)
    targets = np.linspace(0.0, math.log(top), logs)[:-1]
    picks = {int(x) for x in fine[np.abs(np.log(fine)[None, :] - targets[:, None]).argmin(axis=1)]}
    if hits[-1] > 0:   # even steps of the ratio: the first fine capacity at or above each level
        levels = hits[-1] * np.arange(1, points - logs + 1) / (points - logs + 1)
        at = np.searchsorted(hits[:-1], levels, side="left")
        picks |= {int(fine[i]) for i in at if i < fine.size}
    kept, last = [], None
    for capacity in sorted(picks):   # a capacity that adds no hit over the one below says nothing new
        value = hits[np.searchsorted(fine, capacity)]
        if value != last:
            kept.append(capacity)
            last = value
    return [*kept, top, None]
