"""Trace readers: one module per format, one registry that sniffs the content and dispatches.

Every format yields bounded batches of raw requests with their file lines (:mod:`cachesim.readers._base`);
:class:`TraceStream` compiles them batch by batch for a streaming replay, :func:`read_trace` reads a whole
file into one compiled :class:`~cachesim.trace.Trace`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cachesim._contract import DEFAULT_TOKEN_BLOCK_SIZE
from cachesim.readers import (
    apilog,
    azure,
    claude_code,
    codex,
    dynamo,
    kvcache_tester,
    lcp,
    lcs,
    lmbench,
    mooncake,
    native,
    oracle,
    parquet,
    qwen,
    servegen,
)
from cachesim.readers._base import DEFAULT_BATCH_BYTES, ReadOptions, ReadResult, Source, concat, first_record, read_head
from cachesim.requests import TokenRequests, TraceError
from cachesim.trace import Trace, compile_trace

__all__ = [
    "DEFAULT_TOKEN_BLOCK_SIZE",
    "FORMATS",
    "ReadOptions",
    "ReadResult",
    "TraceStream",
    "detect_format",
    "iter_requests",
    "read_requests",
    "read_trace",
]

# name -> module with NAME, sniff(first, head) and batches(source, options); sniffed in this order: binary magics
# first, dynamo before mooncake (a Mooncake row with sessions or delays is Dynamo's), oracleGeneral (no magic) by name
FORMATS = {module.NAME: module for module in (parquet, lcp, lcs, native, qwen, lmbench, dynamo, mooncake, claude_code,
                                              codex, apilog, azure, servegen, kvcache_tester, oracle)}


def detect_format(path: str | Path) -> str:
    """The name of the format whose sniffer accepts the file's first record (or first bytes)."""
    for module in (oracle, lcs):  # libCacheSim's binary traces are named for their format (oracleGeneral has no magic)
        if module.names(path):
            return module.NAME
    head = read_head(path)
    if not head.strip():
        raise TraceError("no requests: the file is empty", file=str(path))
    first = first_record(head)
    for name, module in FORMATS.items():
        if module.sniff(first, head):
            return name
    first_line = head.split(b"\n", 1)[0][:60]
    what = (f"the first record has fields {sorted(first)[:8]}" if first is not None
            else f"the first line starts {first_line!r}")
    raise TraceError(f"unknown format: {what}; known formats: {', '.join(FORMATS)} (choose one with --format)",
                     file=str(path))


def _format(path: str | Path, name: str | None):
    name = name or detect_format(path)
    if name not in FORMATS:
        raise TraceError(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}", file=str(path))
    return FORMATS[name]


def iter_requests(path: str | Path, format: str | None = None, options: ReadOptions | None = None,
                  source: Source | None = None) -> Iterator[ReadResult]:
    """Bounded batches of raw requests with their file lines."""
    options = options or ReadOptions()
    module = _format(path, format)
    return module.batches(source or Source(path), options)


def _empty(path: str | Path, options: ReadOptions) -> TraceError:
    if options.skipped:
        return TraceError(f"no valid requests: all {options.skipped:,} records were invalid "
                          f"(first: {options.skip_examples[0]})", file=str(path))
    return TraceError("no requests: the file is empty", file=str(path))


def read_requests(path: str | Path, format: str | None = None, block_size: int | None = None,
                  skip_invalid: bool = False, tenant_field: str | None = None,
                  tokenizer: str | None = None, lengths: str = "strict", sizes: str = "observed") -> ReadResult:
    """The whole file as one batch of raw requests."""
    options = ReadOptions(block_size=block_size, skip_invalid=skip_invalid, tenant_field=tenant_field,
                          tokenizer=tokenizer, lengths=lengths, sizes=sizes)
    results = list(iter_requests(path, format, options))
    options.report_skips()
    if not results:
        raise _empty(path, options)
    return concat(results)


def _compile(result: ReadResult, block_size: int | None, default_block_size: int, sort: bool,
             partial_tail: bool, impl: str | None, time_field: str = "t") -> Trace:
    tokens = isinstance(result.requests, TokenRequests)
    try:
        trace = compile_trace(result.requests, (block_size or default_block_size) if tokens else None,
                              partial_tail=partial_tail, sort=sort, impl=impl)
    except TraceError as exc:
        if exc.field == "t":  # name the file's own field
            exc = TraceError(exc.message, field=time_field, file=exc.file, line=exc.line)
        raise result.locate(exc) from None
    if result.extras:
        t = result.requests.t
        moved = bool(len(t)) and bool(np.any(np.diff(t) < 0))
        trace.meta.update(result.subset(np.argsort(t, kind="stable")).extras if moved else result.extras)
    return trace


def _refuse_disorder(result: ReadResult, time_field: str) -> None:
    t = result.requests.t
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise TraceError(f"arrival time {float(t[i])!r} s is before the previous request's {float(t[i - 1])!r} s "
                         "(--keep-order refuses to reorder; drop it to sort stably)", field=time_field,
                         file=result.path, line=int(result.lines[i]))


def read_trace(path: str | Path, format: str | None = None, block_size: int | None = None,
               partial_tail: bool = False, impl: str | None = None, *, skip_invalid: bool = False,
               keep_order: bool = False, default_block_size: int = DEFAULT_TOKEN_BLOCK_SIZE,
               tenant_field: str | None = None, tokenizer: str | None = None, lengths: str = "strict",
               sizes: str = "observed") -> Trace:
    """Read and compile a whole trace file (sorted stably by time unless keep_order); errors name file:line.

    A compiled ``.npz`` (from ``cachesim convert`` or :meth:`Trace.save`) is loaded as it is.
    """
    if Path(path).suffix == ".npz":
        return Trace.load(path, mmap=True)
    result = read_requests(path, format, block_size, skip_invalid, tenant_field, tokenizer, lengths, sizes)
    time_field = getattr(_format(path, format), "TIME_FIELD", "t")
    if keep_order:
        _refuse_disorder(result, time_field)
    trace = _compile(result, block_size, default_block_size, not keep_order, partial_tail, impl, time_field)
    trace.meta["path"] = str(path)
    return trace


class TraceStream:
    """A trace file compiled batch by batch, for replaying files of any size in bounded memory.

    Requests out of order are sorted stably by time (counted, and warned about at the end), as reading the
    whole file would: each batch is held until the next one is read, and its requests later than the next
    batch's earliest move into it. So a request may arrive up to one batch (``batch_bytes`` of input) late;
    one later than that stops the stream with a located error. ``keep_order`` refuses any disorder instead.
    """

    def __init__(self, path: str | Path, format: str | None = None, block_size: int | None = None, *,
                 default_block_size: int = DEFAULT_TOKEN_BLOCK_SIZE, skip_invalid: bool = False,
                 keep_order: bool = False, partial_tail: bool = False, impl: str | None = None,
                 batch_bytes: int = DEFAULT_BATCH_BYTES, tenant_field: str | None = None,
                 tokenizer: str | None = None, lengths: str = "strict", sizes: str = "observed"):
        self.path = str(path)
        self.module = _format(path, format)
        self.format = self.module.NAME
        self.time_field = getattr(self.module, "TIME_FIELD", "t")
        self.source = Source(path)
        self.options = ReadOptions(block_size=block_size, skip_invalid=skip_invalid, batch_bytes=batch_bytes,
                                   tenant_field=tenant_field, tokenizer=tokenizer, lengths=lengths, sizes=sizes)
        self.block_size, self.default_block_size = block_size, default_block_size
        self.keep_order, self.partial_tail, self.impl = keep_order, partial_tail, impl
        self.out_of_order = 0         # requests that arrived before their predecessor in the file
        self.requests = 0             # requests yielded so far
        self.blocks = 0
        self.last_line = 0            # the last file line of a request yielded so far
        self._fed_t = -np.inf         # the latest arrival yielded so far

    def _arrived(self, result: ReadResult, previous_t: float) -> None:
        """Count (or, with keep_order, refuse) requests earlier than the one before them in the file."""
        t = result.requests.t
        back = np.diff(t, prepend=previous_t) < 0
        if back.any() and self.keep_order:
            i = int(np.flatnonzero(back)[0])
            before = float(t[i - 1]) if i else previous_t
            raise TraceError(f"arrival time {float(t[i])!r} s is before the previous request's {before!r} s "
                             "(--keep-order refuses to reorder; drop it to sort stably)", field=self.time_field,
                             file=self.path, line=int(result.lines[i]))
        self.out_of_order += int(back.sum())

    def _emit(self, result: ReadResult) -> Trace:
        t = result.requests.t
        if t.min() < self._fed_t:
            i = int(np.argmin(t))
            raise TraceError(f"arrival time {float(t[i])!r} s is before {self._fed_t!r} s of a request already "
                             f"replayed: out of order by more than one batch, which streaming cannot sort; raise "
                             f"--batch-bytes, or sort the file (`cachesim convert` compiles it whole)",
                             field=self.time_field, file=self.path, line=int(result.lines[i]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # counted as the requests arrive, reported once at the end
            trace = _compile(result, self.block_size, self.default_block_size, True, self.partial_tail, self.impl)
        self._fed_t = float(trace.t[-1])
        moved = bool(np.any(np.diff(t) < 0))
        trace.meta["lines"] = result.lines[np.argsort(t, kind="stable")] if moved else result.lines
        trace.meta["line_unit"] = result.unit
        return trace

    def __iter__(self) -> Iterator[Trace]:
        pending: ReadResult | None = None
        previous_t = -np.inf
        reader = self.module.batches(self.source, self.options)
        while True:
            try:
                result = next(reader)
            except StopIteration:
                break
            except TraceError:
                if pending is not None:  # what was read before the bad record is replayed before the error stops it
                    yield from self._yield(pending)
                raise
            if len(result.lines) == 0:
                continue
            self._arrived(result, previous_t)
            previous_t = float(result.requests.t[-1])
            if pending is not None and pending.requests.t.max() <= result.requests.t.min():
                yield from self._yield(pending)  # the usual case: nothing to move between batches
            elif pending is not None:
                # what of the held batch is no later than this batch's earliest request goes now, in time order;
                # the rest joins this batch ahead of its requests (they came first in the file)
                order = np.argsort(pending.requests.t, kind="stable")
                n_now = int(np.searchsorted(pending.requests.t[order], result.requests.t.min(), side="right"))
                if n_now:
                    yield from self._yield(pending.subset(order[:n_now]))
                if n_now < len(order):
                    result = concat([pending.subset(order[n_now:]), result])
            pending = result
        if pending is not None:
            yield from self._yield(pending)
        if self.requests == 0:
            raise _empty(self.path, self.options)
        if self.out_of_order:
            warnings.warn(f"{self.out_of_order:,} requests arrived out of order; sorted stably by time", stacklevel=2)
        self.options.report_skips()

    def _yield(self, result: ReadResult) -> Iterator[Trace]:
        trace = self._emit(result)
        yield trace
        self.requests += trace.n_requests
        self.blocks += trace.n_blocks
        self.last_line = max(self.last_line, int(result.lines.max()))

    @property
    def skipped(self) -> int:
        return self.options.skipped
