"""libCacheSim's oracleGeneral binary traces: each record one request of one block; and a writer of them.

The layout, from libCacheSim (github.com/1a1a11a/libCacheSim) at d19603b3089bcede782fb4cdb7569d48c557cdbe,
``libCacheSim/traceReader/customizedReader/oracle/oracleGeneralBin.h`` (the same at develop aa0fc40914b2b7,
2024-10-07): no header and no magic, a run of packed little-endian 24-byte records

    uint32 clock_time | uint64 obj_id | uint32 obj_size | int64 next_access_vtime

Read as cachesim requests (SEMANTICS §1-2):

- ``clock_time`` is seconds: libCacheSim fills it from vscsi's microseconds divided by 10^6 (``vscsi.h``) and its lcs
  statistics call the first and last clock times "in seconds" (``lcs.h``). It becomes ``t``.
- ``obj_id`` is the id of the request's only block, so its key is ``XXH3_64(obj_id, seed=0)``: equal ids, equal keys.
- Each request is one full block of ``--block-size`` tokens, 1 by default, so hit tokens = hit blocks = hits and a
  cache of C block slots is libCacheSim's cache of C unit-size objects (``ignore_obj_size``): cachesim's misses are
  libCacheSim's. ``obj_size`` is kept per request as the extra column ``object_bytes`` (``Trace.meta``).
- A record of ``obj_size`` 0 is skipped, and counted in a note, as libCacheSim's reader skips it by default
  (``ignore_size_zero_req``).
- ``next_access_vtime`` is not read: it follows from the order of the ids.

The file's record number (1-based) stands in for a line (``ReadResult.unit == "request"``). A file whose length is
not a whole number of records is read up to its last whole record, then a located error names the cut record and
its byte offset. gzip and zstd files (``*.oracleGeneral.zst``) are decompressed on the fly, as every format is.

:func:`write_oracle_general` writes a compiled trace for libCacheSim to replay: one record per block, with
``next_access_vtime`` as libCacheSim's own converter computes it (``libCacheSim/bin/traceUtils/traceConv.cpp`` at
aa0fc40: the 1-based number of the record that next asks for the same object, -1 when none does).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from cachesim.readers._base import (
    DECOMPRESSION_ERRORS,
    MAX_SKIP_EXAMPLES,
    ReadOptions,
    ReadResult,
    Source,
    _decompressing,
    _fill,
    _open_raw,
)
from cachesim.requests import BlockRequests, TokenRequests, TraceError

NAME = "oracle-general"
TIME_FIELD = "clock_time"
RECORD = np.dtype([("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access_vtime", "<i8")])
assert RECORD.itemsize == 24
NEVER = -1                   # next_access_vtime of a last access, as libCacheSim's oracleGeneral converter writes it
_NAME_PARTS = ("oraclegeneral", "oraclegeneralbin")  # libCacheSim's names: x.oracleGeneral, x.oracleGeneral.bin|zst
_MAX_CLOCK_S = 2**32 - 1


def sniff(first: dict | None, head: bytes) -> bool:
    return False  # no magic: only its name (see names) or --format says a file is oracleGeneral


def names(path: str | Path) -> bool:
    """Whether the file name says oracleGeneral, as libCacheSim's own tools read names (a dot-separated part
    ``oracleGeneral`` or ``oracleGeneralBin``, any case: ``w.oracleGeneral``, ``w.oracleGeneral.bin``, ``.zst``)."""
    return any(part in _NAME_PARTS for part in Path(path).name.lower().split(".")[1:])


# -- reading fixed-size binary records (shared with the lcs reader) -------------------------------------------

def open_binary(source: Source) -> IO[bytes]:
    """The file's decompressed bytes; the source follows the raw file, so progress shows the bytes consumed."""
    source._raw = _open_raw(source.path)
    return _decompressing(source._raw, source.path)


def close_binary(source: Source, handle: IO[bytes]) -> None:
    handle.close()
    if source._raw is not None:
        source._raw.close()


def read_exactly(handle: IO[bytes], n_bytes: int, path: str) -> bytes:
    """Up to n_bytes from the start of the stream (fewer only where it ends), for a header."""
    buf = bytearray(n_bytes)
    try:
        n, _ = _fill(handle, memoryview(buf))
    except DECOMPRESSION_ERRORS as exc:
        raise TraceError(f"cannot decompress: {exc}", file=path) from None
    return bytes(buf[:n])


class RecordChunks:
    """``(records, number of the first)``: a binary stream's whole records, about ``options.batch_bytes`` of them
    at a time.

    The records are a view into a buffer the next chunk reuses: copy what you keep before asking for more. Data that
    stops inside a record, or a compressed stream cut before its end, is a located error after the whole records
    before it (with ``skip_invalid``: one skipped record, counted, and ``cut`` is set).
    """

    def __init__(self, handle: IO[bytes], source: Source, options: ReadOptions, dtype: np.dtype,
                 start_byte: int = 0):
        self.handle, self.source, self.options, self.dtype, self.start_byte = handle, source, options, dtype, start_byte
        self.cut = False

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        size, path = self.dtype.itemsize, self.source.path
        # no bigger than the file needs (room for 4x, should it be compressed), as Source.chunks sizes its buffer
        want = min(self.options.batch_bytes, max(4 * self.source.total_bytes, 1 << 16))
        buf = bytearray(max(want // size, 1) * size)
        done = 0  # records read so far
        while True:
            with memoryview(buf) as view:
                try:
                    n, cut_short = _fill(self.handle, view)
                except DECOMPRESSION_ERRORS as exc:
                    raise TraceError(f"cannot decompress after record {done:,}: {exc}", file=path) from None
            whole = n // size
            if whole:
                yield np.frombuffer(buf, dtype=self.dtype, count=whole), done + 1
                done += whole
            if cut_short is not None:
                self._cut(TraceError(f"truncated: {cut_short}, so record {done + 1:,} and any after it are missing",
                                     file=path, line=done + 1, unit="request"))
                return
            if n < len(buf):  # the end of the data
                if n % size:
                    self._cut(TraceError(f"truncated: record {done + 1:,} has only {n % size} of its {size} bytes "
                                         f"(the data is not a whole number of {size}-byte records; "
                                         f"{records_of(done)} before it read)", file=path,
                                         line=self.start_byte + done * size, unit="byte"))
                return

    def _cut(self, error: TraceError) -> None:
        if not self.options.skip_invalid:
            raise error
        self.options.skip(error)
        self.cut = True


def block_size(options: ReadOptions) -> int:
    """Tokens in each request's one block: --block-size, else 1 (a hit token is then a hit object)."""
    return 1 if options.block_size is None else int(options.block_size)


def one_block_requests(t: np.ndarray, obj_id: np.ndarray, first_record: int, tokens: int, path: str,
                       tenant: np.ndarray | None = None, tenant_names: list[str] | None = None,
                       extras: dict | None = None, keep: np.ndarray | None = None) -> ReadResult:
    """Records as a batch of one-block requests, every column copied out of the reader's buffer (``tenant`` and
    ``extras`` must be copies already). ``keep`` (bool per record) selects the records that are requests; the others'
    numbers go unused."""
    lines = np.arange(first_record, first_record + len(t), dtype=np.int64)
    t = t.astype(np.float64)
    obj_id = np.array(obj_id, dtype=np.uint64) if keep is None else obj_id[keep]
    extras = extras or {}
    if keep is not None:
        t, lines = t[keep], lines[keep]
        tenant = tenant[keep] if tenant is not None else None
        extras = {name: value[keep] for name, value in extras.items()}
    n = len(t)
    requests = BlockRequests(t=t, tenant=np.zeros(n, dtype=np.int32) if tenant is None else tenant,
                             tenant_names=tenant_names or ["default"], session=np.full(n, -1, dtype=np.int64),
                             output_tokens=np.full(n, -1, dtype=np.int64), block_ids=obj_id,
                             block_offsets=np.arange(n + 1, dtype=np.int64),
                             prompt_tokens=np.full(n, tokens, dtype=np.int64), block_size=tokens)
    return ReadResult(requests, lines, path, extras, unit="request")


def records_of(n: int) -> str:
    return f"{n:,} record" + ("" if n == 1 else "s")


def skip_note(n_zero: int) -> None:
    if n_zero:
        warnings.warn(f"{records_of(n_zero)} of obj_size 0 left out, as libCacheSim's reader leaves them out "
                      "(ignore_size_zero_req)", stacklevel=3)


def no_requests(path: str, n_records: int, n_zero: int, options: ReadOptions, what: str) -> TraceError | None:
    """The error of a file that gave no request, or None when it gave some."""
    if n_records == 0 and not options.skipped:
        return TraceError(f"no requests: the file holds no records ({what})", file=path)
    if n_records and n_zero == n_records:
        return TraceError(f"no requests: all {n_records:,} records have obj_size 0, which libCacheSim's reader "
                          "leaves out", file=path)
    return None


def add_skips(options: ReadOptions, errors: Iterator[TraceError], count: int) -> None:
    """Count ``count`` skipped records, keeping the first few errors as examples (built only as needed)."""
    for _ in range(min(count, max(MAX_SKIP_EXAMPLES - len(options.skip_examples), 0))):
        options.skip(next(errors))
        count -= 1
    options.skipped += count


# -- the reader -----------------------------------------------------------------------------------------------

def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    tokens = block_size(options)
    handle = open_binary(source)
    n_records = n_zero = 0
    try:
        for records, first in RecordChunks(handle, source, options, RECORD):
            size = records["obj_size"]
            keep = size != 0
            n_records += len(records)
            if keep.all():
                keep = None
            else:
                n_zero += len(records) - int(keep.sum())
                if not keep.any():
                    continue
            yield one_block_requests(records["clock_time"], records["obj_id"], first, tokens, source.path,
                                     extras={"object_bytes": size.astype(np.int64)}, keep=keep)
    finally:
        close_binary(source, handle)
    error = no_requests(source.path, n_records, n_zero, options, "an oracleGeneral file is a run of 24-byte "
                        "records")
    if error is not None:
        raise error
    skip_note(n_zero)


# -- the writer -----------------------------------------------------------------------------------------------

def next_access_vtime(obj_id: np.ndarray) -> np.ndarray:
    """For each record, the 1-based number of the next record with the same id, or -1 (NEVER): libCacheSim's
    convention. Sorting (id, record number) pairs puts each id's records together in file order, each one followed
    by its next access."""
    from cachesim import _impl

    n = len(obj_id)
    out = np.full(n, NEVER, dtype=np.int64)
    if n < 2:
        return out
    # ids numbered densely (0..m-1, m <= n) pack with the record number into one uint64, id << bits | record, when
    # n <= 2**32: a plain sort of those beats a stable argsort of the ids (20 M records: 0.4 s against 3 s)
    dense, _ = _impl.load().dense_ids(np.ascontiguousarray(obj_id, dtype=np.uint64))
    bits = np.uint64((n - 1).bit_length())
    if n <= 2**32:
        pairs = dense.astype(np.uint64) << bits | np.arange(n, dtype=np.uint64)
        pairs.sort()
        grouped, order = pairs >> bits, (pairs & ((np.uint64(1) << bits) - np.uint64(1))).astype(np.int64)
    else:
        order = np.argsort(dense, kind="stable")
        grouped = dense[order]
    same = grouped[1:] == grouped[:-1]
    out[order[:-1][same]] = order[1:][same] + 1
    return out


def write_oracle_general(path: str | Path, trace, *, ids: str = "keys", object_bytes=1,
                         block_size: int | None = None) -> int:
    """Write a trace as libCacheSim's oracleGeneral records, one per block; the number of records written.

    ``trace`` is a compiled :class:`~cachesim.trace.Trace` (its requests are written in its order, which replays
    use), or raw Token/BlockRequests (compiled here, sorted stably by time as a replay would; token ids cut at
    ``block_size``, default 16). A request of one block is one record, so a trace of one-block requests is the very
    stream cachesim replays, and libCacheSim's LRU over unit-size objects misses exactly where it does. A request of
    several blocks becomes a record per block, in prompt order, all at its time: libCacheSim then caches the blocks
    as independent objects, not as a prefix tree, so its hits need not equal cachesim's (SEMANTICS §3).

    - ``ids="keys"``: obj_id is the block's chained key (SEMANTICS §2), which names its whole prefix: the same in
      every file and every batch, so files written from parts of a trace agree. ``ids="dense"``: 0, 1, 2... by first
      appearance (:meth:`Trace.dense`): smaller numbers, which compress better, but only within this one file.
    - ``object_bytes``: obj_size of every record: one number (default 1: a libCacheSim cache of C bytes holds C
      blocks, as cachesim's C slots do), or one per request or per block (e.g. ``trace.meta["object_bytes"]`` of a
      trace read from oracleGeneral). It must be 1 to 2**32-1: libCacheSim leaves out records of size 0.
    - clock_time: the request's time in whole seconds (rounded down), which must be below 2**32.
    - next_access_vtime: the 1-based number of the record that next asks for the same obj_id, -1 when none does,
      as libCacheSim's converter writes it; its Belady and other oracle policies read it.

    A name ending in ``.zst`` is written zstd-compressed (libCacheSim reads those too). Tenants are not written
    (the format has none), so ``isolation="tenant"`` is not carried over.
    """
    from cachesim.trace import Trace, compile_trace

    if isinstance(trace, (TokenRequests, BlockRequests)):
        from cachesim._contract import DEFAULT_TOKEN_BLOCK_SIZE

        size = (block_size or DEFAULT_TOKEN_BLOCK_SIZE) if isinstance(trace, TokenRequests) else block_size
        trace = compile_trace(trace, size, sort=True)
    elif not isinstance(trace, Trace):
        raise TypeError(f"cannot write {type(trace).__name__}; expected a Trace, TokenRequests or BlockRequests")
    if ids not in ("keys", "dense"):
        raise ValueError(f"ids must be 'keys' or 'dense', got {ids!r}")
    keys = (trace.keyed() if ids == "keys" else trace.dense()).block_keys
    n_blocks = np.diff(trace.block_offsets)
    records = np.empty(len(keys), dtype=RECORD)
    records["obj_id"] = keys
    records["clock_time"] = np.repeat(_clock_times(trace.t), n_blocks)
    records["obj_size"] = _object_sizes(object_bytes, trace.n_requests, len(keys), n_blocks)
    records["next_access_vtime"] = next_access_vtime(records["obj_id"])
    _write_records(Path(path), records)
    return len(records)


def _clock_times(t: np.ndarray) -> np.ndarray:
    seconds = np.floor(np.asarray(t, dtype=np.float64))
    if len(seconds) and seconds.max() > _MAX_CLOCK_S:
        i = int(np.argmax(seconds))
        raise TraceError(f"arrival time {float(t[i])!r} s does not fit oracleGeneral's clock_time (uint32 seconds, "
                         f"at most {_MAX_CLOCK_S:,})", field="t", line=i)
    return seconds.astype(np.uint32)


def _object_sizes(object_bytes, n_requests: int, n_blocks_total: int, n_blocks: np.ndarray) -> np.ndarray:
    sizes = np.asarray(object_bytes)
    if sizes.ndim == 0:
        sizes = np.full(n_blocks_total, sizes)
    elif sizes.shape == (n_requests,) and n_requests != n_blocks_total:
        sizes = np.repeat(sizes, n_blocks)
    elif sizes.shape != (n_blocks_total,):
        raise ValueError(f"object_bytes has shape {sizes.shape}; give one number, or one per request "
                         f"({n_requests:,}) or per block ({n_blocks_total:,})")
    if sizes.dtype.kind not in "iu":
        raise ValueError(f"object_bytes must be whole numbers of bytes, got {sizes.dtype}")
    bad = np.flatnonzero((sizes < 1) | (sizes > 2**32 - 1))
    if bad.size:
        raise ValueError(f"object_bytes of block {int(bad[0]):,} is {int(sizes[bad[0]])}: oracleGeneral sizes are "
                         "1 to 2**32-1 bytes (libCacheSim leaves out records of size 0)")
    return sizes.astype(np.uint32)


def _write_records(path: Path, records: np.ndarray) -> None:
    if path.suffix.lower() != ".zst":
        records.tofile(path)
        return
    try:
        import zstandard
    except ImportError:
        raise ValueError(f"{path}: writing .zst needs the zstandard package (pip install 'cachesim[formats]')") \
            from None
    with open(path, "wb") as out, zstandard.ZstdCompressor(level=3).stream_writer(out) as packed:
        view = memoryview(records.view(np.uint8))
        for start in range(0, len(view), 16 << 20):
            packed.write(view[start:start + (16 << 20)])
