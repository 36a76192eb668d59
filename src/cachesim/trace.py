"""The compiled, columnar trace: requests with their chained block keys, ready to replay."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from cachesim import _impl
from cachesim.requests import BlockRequests, TokenRequests, TraceError

__all__ = ["Trace", "compile_trace"]

_FORMAT_VERSION = 1


@dataclass
class Trace:
    """Requests in arrival order, each a CSR run of blocks with chained keys (SEMANTICS §1-2)."""

    t: np.ndarray                 # float64 [n]: arrival, seconds, non-decreasing
    tenant: np.ndarray            # int32 [n]: index into tenant_names
    tenant_names: list[str]
    session: np.ndarray           # int64 [n]: -1 = none
    prompt_tokens: np.ndarray     # int64 [n]: prompt length in tokens (including an uncacheable partial tail)
    output_tokens: np.ndarray     # int64 [n]: -1 = unknown
    block_offsets: np.ndarray     # int64 [n+1]: CSR into the block columns
    block_keys: np.ndarray        # uint64 [m]: chained XXH3 keys
    block_tokens: np.ndarray      # uint32 [m]: tokens in each block
    block_size: int               # tokens per full block
    block_source: str = "tokens"  # "tokens" (cut from token ids) or "ids" (block ids given by the trace)
    meta: dict = field(default_factory=dict)

    @property
    def n_requests(self) -> int:
        return len(self.t)

    @property
    def n_blocks(self) -> int:
        return len(self.block_keys)

    def __len__(self) -> int:
        return self.n_requests

    def __repr__(self) -> str:
        return (f"Trace({self.n_requests:,} requests, {self.n_blocks:,} blocks of {self.block_size} tokens "
                f"from {self.block_source}, {len(self.tenant_names)} tenants)")

    def slice(self, start: int, stop: int) -> "Trace":
        """Requests [start, stop) as a trace of views (block offsets rebased to 0)."""
        b0, b1 = int(self.block_offsets[start]), int(self.block_offsets[stop])
        return replace(self, t=self.t[start:stop], tenant=self.tenant[start:stop], session=self.session[start:stop],
                       prompt_tokens=self.prompt_tokens[start:stop], output_tokens=self.output_tokens[start:stop],
                       block_offsets=self.block_offsets[start:stop + 1] - b0, block_keys=self.block_keys[b0:b1],
                       block_tokens=self.block_tokens[b0:b1])

    def batches(self, max_blocks: int = 1 << 20) -> Iterator["Trace"]:
        """Consecutive slices of about max_blocks blocks each (at least one request)."""
        start = 0
        while start < self.n_requests:
            limit = self.block_offsets[start] + max_blocks
            stop = max(int(np.searchsorted(self.block_offsets, limit, side="right")) - 1, start + 1)
            stop = min(stop, self.n_requests)
            yield self.slice(start, stop)
            start = stop

    # -- persistence ----------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Save as an uncompressed .npz (loadable memory-mapped)."""
        np.savez(path, t=self.t, tenant=self.tenant, session=self.session, prompt_tokens=self.prompt_tokens,
                 output_tokens=self.output_tokens, block_offsets=self.block_offsets, block_keys=self.block_keys,
                 block_tokens=self.block_tokens, tenant_names=np.array(self.tenant_names, dtype=str),
                 header=np.array([_FORMAT_VERSION, self.block_size], dtype=np.int64),
                 block_source=np.array(self.block_source))

    @classmethod
    def load(cls, path: str | Path) -> "Trace":
        with np.load(path, allow_pickle=False) as z:
            version, block_size = (int(x) for x in z["header"])
            if version != _FORMAT_VERSION:
                raise TraceError(f"compiled trace format {version} is not {_FORMAT_VERSION}", file=str(path))
            return cls(t=z["t"], tenant=z["tenant"], tenant_names=[str(s) for s in z["tenant_names"]],
                       session=z["session"], prompt_tokens=z["prompt_tokens"], output_tokens=z["output_tokens"],
                       block_offsets=z["block_offsets"], block_keys=z["block_keys"], block_tokens=z["block_tokens"],
                       block_size=block_size, block_source=str(z["block_source"]))


def _check_times(t: np.ndarray, sort: bool) -> np.ndarray | None:
    """Validate arrival times; return a stable sorting permutation when they are out of order and sort is on."""
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise TraceError(f"arrival time must be a finite number, got {float(t[bad[0]])!r}", field="t", line=int(bad[0]))
    if t.size and t.min() < 0:
        raise TraceError(f"arrival time must not be negative, got {float(t.min())!r}", field="t",
                         line=int(np.argmin(t)))
    back = np.flatnonzero(np.diff(t) < 0)
    if not back.size:
        return None
    if not sort:
        i = int(back[0]) + 1
        raise TraceError(f"arrival time {float(t[i])!r} is before the previous request's {float(t[i - 1])!r} "
                         "(pass sort=True to sort stably)", field="t", line=i)
    warnings.warn(f"{back.size} requests arrived out of order; sorted stably by time", stacklevel=3)
    return np.argsort(t, kind="stable")


def _check_not_empty(prompt_tokens: np.ndarray) -> None:
    empty = np.flatnonzero(prompt_tokens <= 0)
    if empty.size:
        raise TraceError("empty request: a prompt needs at least one token", field="prompt",
                         line=int(empty[0]))


def compile_trace(requests: TokenRequests | BlockRequests, block_size: int | None = None, *,
                  partial_tail: bool = False, sort: bool = False, impl: str | None = None) -> Trace:
    """Compile raw requests into a :class:`Trace` (chained keys computed in the core).

    ``block_size`` is required for token requests and must match the trace's for block-id requests.
    Errors name the request index as ``line`` (readers translate it into file:line).
    """
    engine = _impl.load(impl)
    t = np.ascontiguousarray(requests.t, dtype=np.float64)
    n = len(t)
    order = _check_times(t, sort)
    if isinstance(requests, TokenRequests):
        if block_size is None:
            raise TraceError("block_size is required to cut token ids into blocks", field="block_size")
        if block_size <= 0:
            raise TraceError(f"block size must be positive, got {block_size}", field="block_size")
        offsets = np.ascontiguousarray(requests.token_offsets, dtype=np.int64)
        tokens = np.ascontiguousarray(requests.tokens, dtype=np.uint32)
        if len(offsets) != n + 1 or offsets[0] != 0 or offsets[-1] != len(tokens) or np.any(np.diff(offsets) < 0):
            raise TraceError("token_offsets must rise from 0 to len(tokens) with one entry per request + 1",
                             field="token_offsets")
        prompt_tokens = np.diff(offsets)
        _check_not_empty(prompt_tokens)
        block_offsets, keys, block_tokens = engine.compile_token_blocks(tokens, offsets, int(block_size),
                                                                        bool(partial_tail))
        source = "tokens"
    elif isinstance(requests, BlockRequests):
        if block_size is not None and block_size != requests.block_size:
            raise TraceError(f"this trace's blocks are {requests.block_size} tokens; a block size of {block_size} "
                             "needs token ids", field="block_size")
        block_size = requests.block_size
        if block_size <= 0:
            raise TraceError(f"block size must be positive, got {block_size}", field="block_size")
        block_offsets = np.ascontiguousarray(requests.block_offsets, dtype=np.int64)
        ids = np.ascontiguousarray(requests.block_ids, dtype=np.uint64)
        prompt_tokens = np.ascontiguousarray(requests.prompt_tokens, dtype=np.int64)
        if len(block_offsets) != n + 1 or block_offsets[-1] != len(ids) or len(prompt_tokens) != n:
            raise TraceError("block_offsets/prompt_tokens do not match the number of requests", field="block_offsets")
        _check_not_empty(prompt_tokens)
        n_blocks = np.diff(block_offsets)
        expected = (prompt_tokens + block_size - 1) // block_size
        bad = np.flatnonzero(n_blocks != expected)
        if bad.size:
            i = int(bad[0])
            raise TraceError(f"{n_blocks[i]} block ids for {prompt_tokens[i]} tokens; blocks of {block_size} tokens "
                             f"need ceil({prompt_tokens[i]}/{block_size}) = {expected[i]}", field="hash_ids", line=i)
        keys = engine.compile_id_blocks(ids, block_offsets)
        block_tokens = np.full(len(ids), block_size, dtype=np.uint32)
        tails = block_offsets[1:] - 1
        block_tokens[tails] = (prompt_tokens - (n_blocks - 1) * block_size).astype(np.uint32)
        source = "ids"
    else:
        raise TypeError(f"cannot compile {type(requests).__name__}; expected TokenRequests or BlockRequests")

    trace = Trace(t=t, tenant=np.ascontiguousarray(requests.tenant, dtype=np.int32),
                  tenant_names=list(requests.tenant_names),
                  session=np.ascontiguousarray(requests.session, dtype=np.int64),
                  prompt_tokens=np.ascontiguousarray(prompt_tokens, dtype=np.int64),
                  output_tokens=np.ascontiguousarray(requests.output_tokens, dtype=np.int64),
                  block_offsets=block_offsets, block_keys=keys, block_tokens=block_tokens,
                  block_size=int(block_size), block_source=source)
    if order is not None:
        trace = _take(trace, order)
    return trace


def _take(trace: Trace, order: np.ndarray) -> Trace:
    """The trace with its requests permuted (blocks moved with their requests)."""
    lengths = np.diff(trace.block_offsets)[order]
    offsets = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = trace.block_offsets[:-1][order]
    block_index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return replace(trace, t=trace.t[order], tenant=trace.tenant[order], session=trace.session[order],
                   prompt_tokens=trace.prompt_tokens[order], output_tokens=trace.output_tokens[order],
                   block_offsets=offsets, block_keys=trace.block_keys[block_index],
                   block_tokens=trace.block_tokens[block_index])
