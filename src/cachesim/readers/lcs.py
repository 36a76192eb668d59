"""libCacheSim's lcs binary traces: an 8,192-byte header, then one record per request, read as one-block requests.

The layouts, from libCacheSim (github.com/1a1a11a/libCacheSim) at bfdb6c1413fa2de169493d626dabdc476a24df6b,
``libCacheSim/traceReader/customizedReader/lcs.h``, and its reader ``lcs.c`` at
0e3e2d31c7a8c7dbb1287d02c363c9b469f0f3ef. Everything is packed little-endian. The header:

    byte 0     uint64 start_magic 0x123456789abcdef0
    byte 8     uint64 version: 1 to 8, which decides the record layout
    byte 16    the trace statistics, 8,000 bytes: int64 stat version, n_req (byte 24), n_obj (byte 32), ...
    byte 8184  uint64 end_magic 0x123456789abcdef0

The records (bytes): v1 (24) is oracleGeneral's, ``u32 clock_time, u64 obj_id, u32 obj_size, i64
next_access_vtime``; v2 (28) puts ``u32 op:8 | tenant:24`` before next_access_vtime; v3 (36) widens obj_size to int64
and adds ``u32 ttl`` after op/tenant; v4 to v8 are v3 followed by 1, 2, 4, 8 or 16 uint32 features (40, 44, 52,
68, 100 bytes). Every version was checked against the ``libcachesim`` 0.3.5 reader on files built byte by byte:
times, ids, sizes, op (the low byte of the op/tenant word), ttl and next access agree (its Python requests do not
show the tenant, which is the word's other 24 bits). libCacheSim ignores op when it simulates, and so does cachesim.

Read as :mod:`cachesim.readers.oracle` reads oracleGeneral (one request of one ``--block-size``-token block per
record, ``clock_time`` seconds, obj_id the block id, obj_size 0 left out as libCacheSim does), plus: the tenant
(v2 on) becomes the request's tenant, labelled by its number; ``object_bytes``, ``op`` (v2 on) and ``ttl_s`` (v3 on)
are kept per request in ``Trace.meta``; features are not read. A negative obj_size (v3 on) is an invalid record
(``--skip-invalid`` skips it). The header's request count is checked against the records the file holds.

The older lcs layout (a 1,024-byte header with a struct format string at byte 8, libCacheSim's
``traceReader/generalReader/lcs.h`` at develop aa0fc40914b2b7, 2024-10-07) is refused with an error that says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cachesim.readers._base import Interner, ReadOptions, ReadResult, Source
from cachesim.readers.oracle import (
    RecordChunks,
    add_skips,
    block_size,
    close_binary,
    no_requests,
    one_block_requests,
    open_binary,
    read_exactly,
    records_of,
    skip_note,
)
from cachesim.requests import TraceError

NAME = "lcs"
TIME_FIELD = "clock_time"
MAGIC = 0x123456789ABCDEF0
HEADER_BYTES = 8192
_END_MAGIC_AT, _N_REQ_AT = 8184, 24

_V1 = [("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access_vtime", "<i8")]
_V2 = [("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("op_tenant", "<u4"),
       ("next_access_vtime", "<i8")]
_V3 = [("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<i8"), ("op_tenant", "<u4"), ("ttl", "<u4"),
       ("next_access_vtime", "<i8")]
RECORDS = {1: np.dtype(_V1), 2: np.dtype(_V2), 3: np.dtype(_V3),
           **{v: np.dtype([*_V3, ("features", "<u4", (k,))]) for v, k in ((4, 1), (5, 2), (6, 4), (7, 8), (8, 16))}}
assert [RECORDS[v].itemsize for v in range(1, 9)] == [24, 28, 36, 40, 44, 52, 68, 100]


def sniff(first: dict | None, head: bytes) -> bool:
    return head[:8] == MAGIC.to_bytes(8, "little")


def names(path: str | Path) -> bool:
    """Whether the file name says lcs (a dot-separated part ``lcs``: ``w.lcs``, ``w.lcs.zst``), as libCacheSim's
    tools read names."""
    return "lcs" in Path(path).name.lower().split(".")[1:]


def header(data: bytes, path: str) -> tuple[int, int]:
    """(version, n_req) of an lcs header, checked as libCacheSim checks it."""
    if not data:
        raise TraceError("no requests: the file is empty (an lcs file starts with an 8,192-byte header)", file=path)
    if len(data) < HEADER_BYTES:
        raise TraceError(f"truncated header: the file has {len(data):,} bytes, an lcs header {HEADER_BYTES:,}",
                         file=path, line=len(data), unit="byte")
    start, version = (int.from_bytes(data[i:i + 8], "little") for i in (0, 8))
    if start != MAGIC:
        raise TraceError(f"not an lcs trace: its first 8 bytes are {start:#018x}, not lcs's magic {MAGIC:#x}",
                         field="start_magic", file=path, line=0, unit="byte")
    if data[8:9] == b"<":
        fmt = data[8:data.find(b"\0", 8, 248)].decode("ascii", "replace")
        raise TraceError(f"this is the older lcs layout (a 1,024-byte header with the record format {fmt!r} at byte 8),"
                         " which this reader does not read; convert it with a current libCacheSim", field="version",
                         file=path, line=8, unit="byte")
    if version not in RECORDS:
        raise TraceError(f"lcs version {version} is not one this reader knows (v1 to v8)", field="version",
                         file=path, line=8, unit="byte")
    end = int.from_bytes(data[_END_MAGIC_AT:_END_MAGIC_AT + 8], "little")
    if end != MAGIC:
        raise TraceError(f"damaged header: {end:#018x}, not lcs's magic {MAGIC:#x}", field="end_magic", file=path,
                         line=_END_MAGIC_AT, unit="byte")
    n_req, n_obj = (int.from_bytes(data[i:i + 8], "little", signed=True) for i in (_N_REQ_AT, _N_REQ_AT + 8))
    if n_req < 0 or n_obj < 0:
        name, value, at = ("n_req", n_req, _N_REQ_AT) if n_req < 0 else ("n_obj", n_obj, _N_REQ_AT + 8)
        raise TraceError(f"damaged header: a count of {value:,}", field=name, file=path, line=at, unit="byte")
    return version, n_req


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    tokens = block_size(options)
    handle = open_binary(source)
    tenants = Interner()
    n_records = n_zero = 0
    try:
        version, n_req = header(read_exactly(handle, HEADER_BYTES, source.path), source.path)
        chunks = RecordChunks(handle, source, options, RECORDS[version], start_byte=HEADER_BYTES)
        for records, first in chunks:
            n_records += len(records)
            size = records["obj_size"].astype(np.int64)
            keep = size != 0
            n_zero += len(records) - int(keep.sum())
            negative = np.flatnonzero(size < 0)
            if negative.size:
                keep &= size >= 0
                errors = (TraceError(f"negative object size {int(size[i]):,}", field="obj_size", file=source.path,
                                     line=first + int(i), unit="request") for i in negative)
                if not options.skip_invalid:
                    before = np.arange(len(records)) < negative[0]
                    if (keep & before).any():  # what came before the bad record is served before the error
                        yield _result(records, first, tokens, source.path, version, tenants, size, keep & before)
                    raise next(errors)
                add_skips(options, errors, negative.size)
            if keep.any():
                yield _result(records, first, tokens, source.path, version, tenants, size,
                              None if keep.all() else keep)
    finally:
        close_binary(source, handle)
    if n_req and n_records != n_req and not chunks.cut:
        _count_mismatch(source.path, n_req, n_records, HEADER_BYTES + n_records * RECORDS[version].itemsize, options)
    error = no_requests(source.path, n_records, n_zero, options, "the header is followed by none")
    if error is not None:
        raise error
    skip_note(n_zero)


def _result(records: np.ndarray, first: int, tokens: int, path: str, version: int, tenants: Interner,
            size: np.ndarray, keep: np.ndarray | None) -> ReadResult:
    extras = {"object_bytes": size}
    tenant = names_ = None
    if version >= 2:
        word = records["op_tenant"]
        extras["op"] = (word & 0xFF).astype(np.int64)
        ids = word >> 8
        if len(ids) and (ids == ids[0]).all():  # the usual case, without sorting
            tenant = np.full(len(ids), tenants.code(str(int(ids[0]))), dtype=np.int32)
        else:
            distinct, inverse = np.unique(ids, return_inverse=True)
            codes = np.asarray([tenants.code(str(int(x))) for x in distinct], dtype=np.int32)
            tenant = codes[inverse.reshape(-1)]
        names_ = list(tenants.names)
    if version >= 3:
        extras["ttl_s"] = records["ttl"].astype(np.int64)
    return one_block_requests(records["clock_time"], records["obj_id"], first, tokens, path, tenant, names_,
                              extras, keep)


def _count_mismatch(path: str, n_req: int, n_records: int, end_byte: int, options: ReadOptions) -> None:
    if n_records > n_req:  # libCacheSim reads on to the end too: say so, do not refuse
        warnings.warn(f"{path}: the lcs header says {n_req:,} requests; the file holds {records_of(n_records)}, "
                      "all read",
                      stacklevel=3)
        return
    error = TraceError(f"truncated: the header says {n_req:,} requests, the file ends after {records_of(n_records)}",
                       field="n_req", file=path, line=end_byte, unit="byte")
    if not options.skip_invalid:
        raise error
    options.skip(error)
