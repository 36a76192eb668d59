"""Parquet: a trace's compact columnar form, one row per request (``cachesim convert IN OUT.parquet``).

Columns: ``t`` (float64 s), ``tenant`` (string, dictionary-coded), ``session`` (int64, -1 none),
``prompt_tokens`` and ``output_tokens`` (int64, -1 unknown), ``block_ids`` (list<uint64>, one per block,
delta-coded by Parquet's DELTA_BINARY_PACKED, then zstd), and ``meta.NAME`` columns for what readers attach per
request (observed usage, breakpoints, segments, a format's own columns). The file's ``cachesim`` key-value
metadata (JSON) says which of two kinds it is:

- ``ids``: the raw requests of a block-id trace (Mooncake, Qwen, LMBench, lcp...), in the file's order.
  Reading compiles the ids exactly as reading the original file does (same keys, same stable sort by time), so
  the two give identical traces. Ids delta-code well: the Mooncake conversation trace is 13.2x smaller than its
  JSONL (``bench/bench_scale.py``; ``tests/test_parquet.py`` pins at least 10x).
- ``keys``: a compiled :class:`~cachesim.trace.Trace` (cut from token ids, or from an ``.npz``), its chained keys
  taken as they are, with ``tail_tokens`` (each request's last-block count). Keys are hashes, so these files
  are about as large as the ``.npz``; they exist so that every trace can be written as Parquet.

A Parquet file from elsewhere, with no ``cachesim`` metadata, is read as the ``ids`` kind: it needs ``t``,
``prompt_tokens`` and ``block_ids`` (``tenant``, ``session``, ``output_tokens`` optional) and ``--block-size``.
Reading streams row groups in batches of about ``--batch-bytes`` of blocks; errors name the file, the row
(1-based) and the column.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

from cachesim.readers._base import (
    _GLOBAL_EXTRAS,
    Interner,
    ReadOptions,
    ReadResult,
    Source,
)
from cachesim.requests import BlockRequests, Ragged, TraceError

NAME = "parquet"
MAGIC = b"PAR1"
METADATA_KEY = b"cachesim"
FORMAT_VERSION = 1
KINDS = ("ids", "keys")
_REQUIRED = ("t", "prompt_tokens", "block_ids")
_META_PREFIX = "meta."


def sniff(first: dict | None, head: bytes) -> bool:
    return head[:4] == MAGIC


def _pyarrow(path: str | None = None):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise TraceError("Parquet needs pyarrow: pip install 'cachesim[formats]'", file=path) from None
    return pa, pq


# -- writing -----------------------------------------------------------------------------------------------------

class ParquetTraceWriter:
    """Writes batches of requests as row groups of one Parquet trace; the schema is fixed by the first batch.

    ``kind="ids"`` takes the raw :class:`~cachesim.readers._base.ReadResult` batches a block-id reader yields;
    ``kind="keys"`` takes compiled :class:`~cachesim.trace.Trace` batches. Use it as a context manager: the
    file's metadata (block size, tenant and other interned names) is completed when it closes.
    """

    def __init__(self, path: str | Path, *, kind: str, block_size: int, block_source: str = "ids",
                 compression: str = "zstd", compression_level: int | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.path, self.kind, self.block_size, self.block_source = str(path), kind, int(block_size), block_source
        self.compression, self.compression_level = compression, compression_level
        self.requests = self.blocks = 0
        self._writer = None
        self._schema = None
        self._globals: dict[str, list[str]] = {}
        # written under another name and renamed when complete, so an error or Ctrl-C leaves no cut trace behind
        self._partial = f"{self.path}.partial"

    def __enter__(self) -> ParquetTraceWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()

    def write(self, batch) -> None:
        """One batch: a ReadResult of BlockRequests (kind ids) or a Trace (kind keys)."""
        pa, pq = _pyarrow(self.path)
        table = self._table(batch, pa)
        if self._writer is None:
            self._schema = table.schema
            encodings = {"block_ids.list.element": "DELTA_BINARY_PACKED"} if self.kind == "ids" else {}
            dictionary = [name for name in table.column_names if name not in encodings and name != "t"]
            self._writer = pq.ParquetWriter(self._partial, self._schema, compression=self.compression,
                                            compression_level=self.compression_level,
                                            use_dictionary=dictionary, column_encoding=encodings or None)
        elif table.schema != self._schema:
            new = sorted(set(table.schema.names) - set(self._schema.names))
            raise TraceError(f"a later batch carries columns the first did not ({', '.join(new) or 'other types'}): "
                             "raise --batch-bytes so the first batch holds them, or convert to .npz",
                             file=self.path)
        self._writer.write_table(table)
        self.requests += table.num_rows
        self.blocks += int(table.column("block_ids").chunk(0).offsets[-1].as_py())   # one chunk: _table built it

    def close(self) -> None:
        if self._writer is None:
            return
        meta = {"format": "cachesim-trace", "version": FORMAT_VERSION, "kind": self.kind,
                "block_size": self.block_size, "block_source": self.block_source, "requests": self.requests,
                "blocks": self.blocks, "globals": self._globals}
        self._writer.add_key_value_metadata({METADATA_KEY: orjson.dumps(meta)})
        self._writer.close()
        self._writer = None
        os.replace(self._partial, self.path)

    def abandon(self) -> None:
        """Stop without a file: what was written so far is removed (a cut trace must not pass for a whole one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._partial)

    def _table(self, batch, pa):
        from cachesim.trace import Trace

        if isinstance(batch, Trace):
            if self.kind != "keys":
                raise ValueError("a compiled Trace is written as kind='keys'")
            trace = batch.keyed()
            offsets, ids = trace.block_offsets, trace.block_keys
            has_blocks = np.diff(offsets) > 0
            tail = np.zeros(trace.n_requests, dtype=np.uint32)
            tail[has_blocks] = trace.block_tokens[offsets[1:][has_blocks] - 1]
            columns = _request_columns(trace.t, trace.tenant, trace.tenant_names, trace.session,
                                       trace.prompt_tokens, trace.output_tokens)
            columns["tail_tokens"] = pa.array(tail, type=pa.uint32())
            extras = {k: v for k, v in trace.meta.items() if k not in ("path", "lines", "line_unit")}
        else:
            requests = batch.requests
            if not isinstance(requests, BlockRequests) or requests.keys_given:
                raise ValueError("kind='ids' takes the raw requests of a block-id reader")
            offsets, ids = requests.block_offsets, requests.block_ids
            columns = _request_columns(requests.t, requests.tenant, requests.tenant_names, requests.session,
                                       requests.prompt_tokens, requests.output_tokens)
            extras = batch.extras
        values = pa.array(np.ascontiguousarray(ids, dtype=np.uint64), type=pa.uint64())
        columns["block_ids"] = pa.LargeListArray.from_arrays(pa.array(offsets - offsets[0], type=pa.int64()), values)
        n = len(offsets) - 1
        for name, value in extras.items():
            if name in _GLOBAL_EXTRAS or (isinstance(value, list) and all(isinstance(x, str) for x in value)):
                self._globals[name] = list(value)
            elif isinstance(value, Ragged):
                lengths = pa.array(value.offsets - value.offsets[0], type=pa.int64())
                for col, arr in value.columns.items():
                    columns[f"{_META_PREFIX}{name}.{col}"] = pa.LargeListArray.from_arrays(lengths, pa.array(arr))
            elif isinstance(value, np.ndarray) and value.ndim == 1 and len(value) == n:
                columns[f"{_META_PREFIX}{name}"] = pa.array(value)
        return pa.table(columns)


def _request_columns(t, tenant, tenant_names, session, prompt_tokens, output_tokens) -> dict:
    import pyarrow as pa

    names = pa.array(list(tenant_names), type=pa.string())
    return {"t": pa.array(np.asarray(t, dtype=np.float64)),
            "tenant": pa.DictionaryArray.from_arrays(pa.array(np.asarray(tenant, dtype=np.int32)), names),
            "session": pa.array(np.asarray(session, dtype=np.int64)),
            "prompt_tokens": pa.array(np.asarray(prompt_tokens, dtype=np.int64)),
            "output_tokens": pa.array(np.asarray(output_tokens, dtype=np.int64))}


def write_trace(trace, path: str | Path, *, compression: str = "zstd") -> None:
    """A compiled trace as a Parquet file of kind ``keys`` (what :meth:`Trace.save` does for ``.parquet``)."""
    with ParquetTraceWriter(path, kind="keys", block_size=trace.block_size, block_source=trace.block_source,
                            compression=compression) as writer:
        for batch in trace.batches(1 << 22):
            writer.write(batch)


# -- reading -----------------------------------------------------------------------------------------------------

def file_metadata(path: str | Path) -> dict:
    """The ``cachesim`` metadata of a Parquet trace ({} for a file written elsewhere), and its row count."""
    _, pq = _pyarrow(str(path))
    parquet = _open(pq, path)
    return _metadata(parquet, str(path))


def _open(pq, path, memory_map: bool = False):
    # a streaming read neither maps the file (mapped pages count toward resident memory as they are read) nor
    # pre-buffers (pyarrow then reads row groups ahead without bound: 2.3 GB after 200 batches of a 3.9 GB trace,
    # 0.37 GB without)
    try:
        return pq.ParquetFile(path, memory_map=memory_map, pre_buffer=False)
    except OSError as exc:   # pyarrow's ArrowInvalid and ArrowIOError are OSError/ValueError subclasses
        raise TraceError(f"not a readable Parquet file: {exc}", file=str(path)) from None
    except ValueError as exc:
        raise TraceError(f"not a readable Parquet file: {exc}", file=str(path)) from None


def _metadata(parquet, path: str) -> dict:
    raw = (parquet.metadata.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TraceError("its cachesim metadata is not JSON: the file is damaged", file=path) from None
    if not isinstance(meta, dict) or meta.get("format") != "cachesim-trace":
        raise TraceError("its cachesim metadata does not describe a trace", file=path)
    if meta.get("version") != FORMAT_VERSION:
        raise TraceError(f"Parquet trace format {meta.get('version')!r} is not {FORMAT_VERSION}", file=path)
    if meta.get("kind") not in KINDS:
        raise TraceError(f"unknown Parquet trace kind {meta.get('kind')!r} (known: {', '.join(KINDS)})", file=path)
    if not isinstance(meta.get("block_size"), int) or meta["block_size"] <= 0:
        raise TraceError(f"block size {meta.get('block_size')!r} is not a positive whole number", field="block_size",
                         file=path)
    return meta


def read_columns(path: str | Path, columns: list[str] | None = None):
    """Request columns of a Parquet trace as a pyarrow Table, reading only those asked for (the block ids
    only if named): ``read_columns(p, ["t", "prompt_tokens"]).to_pandas()`` for a quick look."""
    _, pq = _pyarrow(str(path))
    parquet = _open(pq, path, memory_map=True)   # a column subset: pages of the other columns are never touched
    names = parquet.schema_arrow.names
    wanted = columns if columns is not None else [n for n in names if n != "block_ids"]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise TraceError(f"no column {missing[0]!r} (columns: {', '.join(names)})", field=missing[0], file=str(path))
    return parquet.read(columns=wanted)


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    pa, pq = _pyarrow(source.path)
    parquet = _open(pq, source.path)
    path = source.path
    meta = _metadata(parquet, path)
    kind = meta.get("kind", "ids")
    names = parquet.schema_arrow.names
    required = _REQUIRED + (("tail_tokens",) if kind == "keys" else ())
    for name in required:
        if name not in names:
            raise TraceError(f"column {name!r} is missing (columns: {', '.join(names)})", field=name, file=path)
    block_size = meta.get("block_size")
    if block_size is None:
        if options.block_size is None:
            raise TraceError("this Parquet file does not say its block size; give it with --block-size",
                             field="block_size", file=path)
        block_size = options.block_size
    elif options.block_size is not None and options.block_size != block_size:
        raise TraceError(f"this trace's blocks are {block_size} tokens; a block size of {options.block_size} needs "
                         "token ids", field="block_size", file=path)
    rows = parquet.metadata.num_rows
    blocks_per_row = max(1.0, meta.get("blocks", 0) / rows) if meta.get("blocks") and rows else 64.0
    batch_rows = max(1, int(options.batch_bytes / (8 * blocks_per_row + 48)))
    globals_ = meta.get("globals", {})
    tenants, sessions = Interner(), Interner()
    first_row = 1
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows):
            yield _result(batch, first_row, path, kind, block_size, meta, globals_, tenants, sessions, pa)
            first_row += batch.num_rows
            source.consumed = int(source.total_bytes * (first_row - 1) / max(rows, 1))
    except (OSError, ValueError) as exc:   # a damaged page or column chunk, from pyarrow
        if isinstance(exc, TraceError):
            raise
        raise TraceError(f"cannot read the rows from {first_row:,} on: {exc}", file=path) from None


def _column(batch, name: str, first_row: int, path: str, kinds: str, what: str, pa) -> np.ndarray:
    """A non-null column of integers or floats as numpy (a located error for nulls or another type)."""
    col = batch.column(name)
    if col.null_count:
        row = first_row + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise TraceError(f"is null; expected {what}", field=name, file=path, line=row, unit="row")
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    values = col.to_numpy(zero_copy_only=False)
    if values.dtype.kind not in kinds:
        raise TraceError(f"has type {col.type}; expected {what}", field=name, file=path, line=first_row, unit="row")
    return values


def _labels(batch, name: str, interner: Interner, first_row: int, path: str, pa) -> np.ndarray:
    """Codes of a label column (strings, dictionary-coded strings or integers), interned across batches."""
    col = batch.column(name)
    if col.null_count:
        row = first_row + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise TraceError("is null; expected a label", field=name, file=path, line=row, unit="row")
    if pa.types.is_dictionary(col.type):   # one interning per distinct label, not per row
        table = np.asarray([interner.code(x) for x in col.dictionary.to_pylist()], dtype=np.int64)
        return table[col.indices.to_numpy(zero_copy_only=False)] if len(table) else np.zeros(0, np.int64)
    if pa.types.is_integer(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        values = col.to_pylist()
        distinct = {v: interner.code(v) for v in dict.fromkeys(values)}
        return np.fromiter((distinct[v] for v in values), dtype=np.int64, count=len(values))
    raise TraceError(f"has type {col.type}; expected strings or integers", field=name, file=path, line=first_row,
                     unit="row")


def _lists(batch, name: str, first_row: int, path: str, pa) -> tuple[np.ndarray, object]:
    """(offsets int64 [n+1] from 0, flat values) of a list column."""
    col = batch.column(name)
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        raise TraceError(f"has type {col.type}; expected a list per row", field=name, file=path, line=first_row,
                         unit="row")
    if col.null_count:
        row = first_row + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise TraceError("is null; expected a list (empty for none)", field=name, file=path, line=row, unit="row")
    offsets = col.offsets.to_numpy().astype(np.int64)
    values = col.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    return offsets - offsets[0], values


def _result(batch, first_row: int, path: str, kind: str, block_size: int, meta: dict, globals_: dict,
            tenants: Interner, sessions: Interner, pa) -> ReadResult:
    n = batch.num_rows
    names = batch.schema.names
    t = _column(batch, "t", first_row, path, "fiu", "seconds", pa).astype(np.float64)
    prompt = _column(batch, "prompt_tokens", first_row, path, "iu", "a token count", pa).astype(np.int64)
    output = (_column(batch, "output_tokens", first_row, path, "iu", "a token count (-1 unknown)", pa)
              .astype(np.int64) if "output_tokens" in names else np.full(n, -1, dtype=np.int64))
    tenant = (_labels(batch, "tenant", tenants, first_row, path, pa) if "tenant" in names
              else np.full(n, tenants.code("default"), dtype=np.int64))
    if "session" in names and pa.types.is_integer(batch.schema.field("session").type):
        session = _column(batch, "session", first_row, path, "iu", "a session id (-1 none)", pa).astype(np.int64)
    elif "session" in names:
        session = _labels(batch, "session", sessions, first_row, path, pa)
    else:
        session = np.full(n, -1, dtype=np.int64)
    offsets, values = _lists(batch, "block_ids", first_row, path, pa)
    if not (pa.types.is_unsigned_integer(values.type) or pa.types.is_integer(values.type)):
        raise TraceError(f"has items of type {values.type}; expected block ids (unsigned integers)",
                         field="block_ids", file=path, line=first_row, unit="row")
    ids = values.to_numpy(zero_copy_only=False)
    if ids.dtype.kind == "i" and ids.size and ids.min() < 0:
        row = first_row + int(np.searchsorted(offsets, int(np.flatnonzero(ids < 0)[0]), side="right") - 1)
        raise TraceError("holds a negative block id", field="block_ids", file=path, line=row, unit="row")
    requests = BlockRequests(t=t, tenant=tenant.astype(np.int32), tenant_names=list(tenants.names),
                             session=session, output_tokens=output, block_ids=ids.astype(np.uint64, copy=False),
                             block_offsets=offsets, prompt_tokens=prompt, block_size=block_size)
    if kind == "keys":
        requests.keys_given = True
        requests.block_source = meta.get("block_source", "ids")
        requests.tail_tokens = _column(batch, "tail_tokens", first_row, path, "iu", "a token count",
                                       pa).astype(np.uint32)
    lines = np.arange(first_row, first_row + n, dtype=np.int64)
    return ReadResult(requests, lines, path, _extras(batch, names, first_row, path, globals_, pa), unit="row")


def _extras(batch, names: list[str], first_row: int, path: str, globals_: dict, pa) -> dict:
    extras: dict = {}
    ragged: dict[str, dict] = {}
    for name in names:
        if not name.startswith(_META_PREFIX):
            continue
        key = name[len(_META_PREFIX):]
        field_type = batch.schema.field(name).type
        if pa.types.is_list(field_type) or pa.types.is_large_list(field_type):
            owner, col = key.split(".", 1) if "." in key else (key, "values")
            offsets, values = _lists(batch, name, first_row, path, pa)
            entry = ragged.setdefault(owner, {"offsets": offsets})
            if not np.array_equal(entry["offsets"], offsets):
                raise TraceError(f"lists differ in length from the other {owner} columns'", field=name, file=path,
                                 line=first_row, unit="row")
            entry[col] = values.to_numpy(zero_copy_only=False)
        else:
            extras[key] = _column(batch, name, first_row, path, "biuf", "a number per request", pa)
    for owner, cols in ragged.items():
        extras[owner] = Ragged(cols.pop("offsets"), cols)
    for name, value in globals_.items():
        if isinstance(value, list):
            extras[name] = [str(x) for x in value]
    return extras
