"""The compiled, columnar trace: requests with their chained block keys, ready to replay."""

from __future__ import annotations

import math
import os
import struct
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cachesim import _impl, parallel, units
from cachesim._contract import MAX_TOKENS_PER_REQUEST, TRACE_FAULTS
from cachesim.requests import BlockRequests, Ragged, TokenRequests, TraceError

if TYPE_CHECKING:  # replay imports this module
    from cachesim.replay import CacheConfig

__all__ = ["Trace", "compile_trace", "first_counted", "merge_traces", "select_tenants", "take_requests", "validate"]

_FORMAT_VERSION = 2
# a numbered trace (Trace.dense()) is format 3, so that a reader which knows only format 2 refuses it rather than
# take its ids for keys (replays would agree; routers and sampled curves, which hash keys, would not)
_DENSE_FORMAT_VERSION = 3
_PAD_FIELD = 0xCA5E  # zip extra-field id of our alignment padding


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
    # set by dense(): block_keys are then dense ids, distinct_keys[id] the chained key each one stands for
    distinct_keys: np.ndarray | None = None

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

    def slice(self, start: int, stop: int) -> Trace:
        """Requests [start, stop) as a trace of views (block offsets rebased to 0)."""
        b0, b1 = int(self.block_offsets[start]), int(self.block_offsets[stop])
        part = replace(self, t=self.t[start:stop], tenant=self.tenant[start:stop], session=self.session[start:stop],
                       prompt_tokens=self.prompt_tokens[start:stop], output_tokens=self.output_tokens[start:stop],
                       block_offsets=self.block_offsets[start:stop + 1] - b0, block_keys=self.block_keys[b0:b1],
                       block_tokens=self.block_tokens[b0:b1])
        if _is_validated(self):   # a run of a sound trace's requests is sound: its batches need no second check
            _mark_validated(part)
        return part

    def dense(self) -> Trace:
        """The same trace with its block keys numbered 0, 1, 2... by first appearance (``distinct_keys`` maps
        them back). Replays give identical results, and the compiled engine serves dense ids with an array for an
        index instead of a hash table (no hashing, probing or deletion shifts per block): 1.4 to 2.9 times as
        fast in bench/bench_field.py. Numbering costs about one hashed replay's lookups, so it pays when a
        trace is replayed more than once; sweeps do it for their workers. Number a whole trace, not its
        batches one by one: ids from separate calls collide."""
        if self.distinct_keys is not None:
            return self
        from cachesim import _impl

        ids, distinct = _impl.load().dense_ids(np.ascontiguousarray(self.block_keys, dtype=np.uint64))
        return replace(self, block_keys=ids, distinct_keys=distinct)

    def keyed(self) -> Trace:
        """The trace with its chained block keys back, if :meth:`dense` numbered them. What only compares keys
        (replays) is indifferent; what hashes them (routers, sampled curves) needs the keys themselves."""
        if self.distinct_keys is None:
            return self
        return replace(self, block_keys=self.distinct_keys[self.block_keys], distinct_keys=None)

    def validate(self) -> Trace:
        """This trace checked for what compiled code assumes (see :func:`validate`), in the core's dtypes."""
        return validate(self)

    def batches(self, max_blocks: int = 1 << 16) -> Iterator[Trace]:
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
        """Save as a compact .npz: the per-block keys stored raw (memory-mappable), the rest deflated; or, for a
        name ending ``.parquet``, as a Parquet trace (:mod:`cachesim.readers.parquet`, kind ``keys``).

        Block token counts are not stored: every block holds ``block_size`` tokens except perhaps each
        request's last, whose count is kept per request (``tail_tokens``).
        """
        if Path(path).suffix == ".parquet":
            from cachesim.readers.parquet import write_trace

            return write_trace(self, path)
        ends = self.block_offsets[1:] - 1
        has_blocks = np.diff(self.block_offsets) > 0
        tail = np.zeros(self.n_requests, dtype=np.uint32)
        tail[has_blocks] = self.block_tokens[ends[has_blocks]]
        full = np.full(self.n_blocks, self.block_size, dtype=np.uint32)
        full[ends[has_blocks]] = tail[has_blocks]
        if not np.array_equal(full, self.block_tokens):
            raise ValueError("only a request's last block may hold fewer than block_size tokens")
        columns = {"t": self.t, "tenant": self.tenant, "session": self.session, "prompt_tokens": self.prompt_tokens,
                   "output_tokens": self.output_tokens, "block_offsets": self.block_offsets, "tail_tokens": tail,
                   "tenant_names": np.array(self.tenant_names, dtype=str),
                   "header": np.array([_FORMAT_VERSION if self.distinct_keys is None else _DENSE_FORMAT_VERSION,
                                       self.block_size], dtype=np.int64),
                   "block_source": np.array(self.block_source)}
        columns.update(_meta_columns(self.meta, self.n_requests))
        if self.distinct_keys is not None:
            columns["distinct_keys"] = self.distinct_keys
        # every member by name, so that load can tell a member dropped from one never written (optional meta)
        columns["members"] = np.array(sorted([*columns, "block_keys"]), dtype=str)
        with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
            for name, array in columns.items():
                info = zipfile.ZipInfo(f"{name}.npy")
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as out:
                    np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)
            # the big column: stored as is, so load(mmap=True) maps it instead of reading it
            info = zipfile.ZipInfo("block_keys.npy")
            info.compress_type = zipfile.ZIP_STORED
            # pad the local header (an ignorable extra field) so the array starts 64-byte aligned in the file;
            # zipfile appends a 20-byte zip64 field after ours
            start = zf.fp.tell() + 30 + len(info.filename) + 4 + 20
            pad = -start % 64
            info.extra = struct.pack("<HH", _PAD_FIELD, pad) + bytes(pad)
            with zf.open(info, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.ascontiguousarray(self.block_keys, dtype=np.uint64),
                                          allow_pickle=False)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> Trace:
        """Load a trace saved by :meth:`save`; with ``mmap`` the block keys are memory-mapped, not read (.npz)."""
        if Path(path).suffix == ".parquet":
            from cachesim.readers import read_trace

            return read_trace(path, format="parquet")
        try:
            with zipfile.ZipFile(path) as zf:
                def column(name: str) -> np.ndarray:
                    return _read_member(zf, f"{name}.npy")

                names = zf.namelist()
                if "members.npy" in names:   # written since the manifest was added; older files have none
                    missing = sorted(set(f"{m}.npy" for m in column("members").tolist()) - set(names))
                    if missing:
                        raise TraceError(f"member {missing[0][:-4]} is missing: the file is damaged or cut",
                                         file=str(path))
                version, block_size = (int(x) for x in column("header"))
                if version not in (_FORMAT_VERSION, _DENSE_FORMAT_VERSION):
                    raise TraceError(f"compiled trace format {version} is not {_FORMAT_VERSION} or "
                                     f"{_DENSE_FORMAT_VERSION}", file=str(path))
                offsets = column("block_offsets")
                tail = column("tail_tokens")
                info = zf.getinfo("block_keys.npy")
                if mmap and info.compress_type == zipfile.ZIP_STORED:
                    keys = _map_member(path, info)
                else:
                    keys = column("block_keys")
                _check_saved_offsets(offsets, tail, len(keys))
                trace = cls(t=column("t"), tenant=column("tenant"),
                            tenant_names=[str(s) for s in column("tenant_names")], session=column("session"),
                            prompt_tokens=column("prompt_tokens"), output_tokens=column("output_tokens"),
                            block_offsets=offsets, block_keys=keys,
                            block_tokens=_block_tokens(offsets, tail, block_size),
                            block_size=block_size, block_source=str(column("block_source")))
                trace.meta.update(_meta_from(names, column))
                if version == _DENSE_FORMAT_VERSION:
                    trace.distinct_keys = column("distinct_keys")
            trace = validate(trace)
        except TraceError as exc:
            # a request of a compiled file has an index, not a line: say "request N" beside the file name
            where = f"request {exc.line}: " if exc.line is not None else ""
            raise TraceError(where + exc.message, field=exc.field, file=str(path)) from None
        except _DAMAGED_FILE_ERRORS as exc:
            raise TraceError(f"not a compiled cachesim trace: {exc}", file=str(path)) from None
        trace.meta["path"] = str(path)
        return trace


_TRANSIENT_META = ("path", "lines", "line_unit")  # where a trace came from: not part of it


def _meta_columns(meta: dict, n_requests: int) -> dict[str, np.ndarray]:
    """What readers attach per request (observed usage, breakpoints, segments) as named arrays."""
    out = {}
    for name, value in meta.items():
        if name in _TRANSIENT_META:
            continue
        if isinstance(value, np.ndarray) and len(value) == n_requests:
            out[f"meta/{name}"] = value
        elif hasattr(value, "offsets") and hasattr(value, "columns"):  # a ragged list per request
            out[f"meta/{name}/offsets"] = value.offsets
            out.update({f"meta/{name}/{col}": arr for col, arr in value.columns.items()})
        elif isinstance(value, list) and all(isinstance(x, str) for x in value):
            out[f"meta/{name}:names"] = np.array(value, dtype=str)
    return out


def _meta_from(names: list[str], column) -> dict:
    meta: dict = {}
    ragged: dict[str, dict] = {}
    for member in names:
        if not member.startswith("meta/"):
            continue
        key = member[len("meta/"):-len(".npy")]
        if key.endswith(":names"):
            meta[key[:-len(":names")]] = [str(x) for x in column(member[:-len(".npy")])]
        elif "/" in key:
            name, col = key.split("/", 1)
            ragged.setdefault(name, {})[col] = column(member[:-len(".npy")])
        else:
            meta[key] = column(member[:-len(".npy")])
    for name, cols in ragged.items():
        meta[name] = Ragged(cols.pop("offsets"), cols)
    return meta


# what reading a damaged .npz can raise besides a TraceError (zlib.error: a damaged deflated member)
# what a damaged member can raise from zipfile and numpy's .npy reader (its header errors: _npy_header)
_DAMAGED_FILE_ERRORS = (OSError, KeyError, ValueError, EOFError, IndexError, TypeError, OverflowError,
                        zipfile.BadZipFile, zlib.error, struct.error)


def _npy_header(handle, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from a .npy header, which is a Python literal: a damaged one is a tokenize or
    syntax error inside numpy, reported here as what it is."""
    try:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return read_header(handle)
    except (ValueError, tokenize.TokenError, SyntaxError, TypeError) as exc:
        raise ValueError(f"{name}: damaged .npy header ({exc})") from None


def _read_member(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """One .npy member, its header checked against the member's size before anything is allocated (a damaged
    shape must not ask for more memory than the file could hold)."""
    info = zf.getinfo(name)
    with zf.open(info) as handle:
        shape, fortran, dtype = _npy_header(handle, name)
        if dtype.hasobject:
            raise ValueError(f"{name}: holds Python objects, not numbers")
        count = math.prod(shape)
        header_bytes = handle.tell()
        if count * dtype.itemsize != info.file_size - header_bytes:
            raise ValueError(f"{name}: its header says {shape} x {dtype.itemsize} bytes, the member holds "
                             f"{info.file_size - header_bytes}")
        data = np.empty(count, dtype=dtype)
        view, filled = memoryview(data).cast("B"), 0   # read in place: no second copy of a big column
        while filled < len(view):
            n = handle.readinto(view[filled:])
            if not n:
                raise EOFError(f"{name}: ends after {filled} of {len(view)} bytes")
            filled += n
    return data.reshape(shape, order="F" if fortran else "C")


def _check_saved_offsets(offsets: np.ndarray, tail: np.ndarray, n_keys: int) -> None:
    """The block offsets of a saved trace, checked before the block token counts are rebuilt from them."""
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) == 0:
        raise TraceError("block_offsets must be a column of whole numbers", field="block_offsets")
    if offsets[0] != 0 or offsets[-1] != n_keys or (len(offsets) > 1 and bool(np.any(np.diff(offsets) < 0))):
        raise TraceError(f"block offsets must rise from 0 to the {n_keys:,} block keys", field="block_offsets")
    if tail.ndim != 1 or len(tail) != len(offsets) - 1 or tail.dtype.kind not in "iu":
        raise TraceError(f"{len(tail):,} tail token counts for {len(offsets) - 1:,} requests", field="tail_tokens")
    blockless = np.flatnonzero((np.diff(offsets) == 0) & (tail != 0))
    if blockless.size:   # save writes 0 for a request without blocks: anything else is damage
        raise TraceError(f"request {int(blockless[0])} has no blocks but a last block of {int(tail[blockless[0]])} "
                         "tokens", field="tail_tokens")


def _block_tokens(offsets: np.ndarray, tail: np.ndarray, block_size: int) -> np.ndarray:
    tokens = np.full(int(offsets[-1]), block_size, dtype=np.uint32)
    has_blocks = np.diff(offsets) > 0
    tokens[offsets[1:][has_blocks] - 1] = tail[has_blocks]
    return tokens


def _map_member(path: str | Path, info: zipfile.ZipInfo) -> np.ndarray:
    """A stored (uncompressed) .npy member of a zip, memory-mapped read-only."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{info.filename}: bad zip local header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_len + extra_len)
        shape, fortran, dtype = _npy_header(handle, info.filename)
        offset = handle.tell()
    if fortran or dtype.hasobject:
        raise ValueError(f"{info.filename}: not a plain C-ordered array")
    if not shape or shape[0] == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


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
        if requests.keys_given:   # a compiled trace written back out: its keys and block counts as they were
            tail = np.asarray(requests.tail_tokens, dtype=np.uint32) if requests.tail_tokens is not None else None
            if tail is None or len(tail) != n:
                raise TraceError("tail_tokens must give each request's last-block count", field="tail_tokens")
            _check_saved_offsets(block_offsets, tail, len(ids))
            keys, block_tokens = ids, _block_tokens(block_offsets, tail, block_size)
            source = requests.block_source
        else:
            expected = (prompt_tokens + block_size - 1) // block_size
            bad = np.flatnonzero(n_blocks != expected)
            if bad.size:
                i = int(bad[0])
                raise TraceError(f"{n_blocks[i]} block ids for {prompt_tokens[i]} tokens; blocks of {block_size} "
                                 f"tokens need ceil({prompt_tokens[i]}/{block_size}) = {expected[i]}",
                                 field="hash_ids", line=i)
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
    return validate(trace)


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


# -- operations on compiled traces ------------------------------------------------------------------------------

def merge_traces(parts: Sequence[tuple[str, Trace]], *, keep_tenants: bool = False) -> Trace:
    """Merge compiled traces into one, in order of arrival time (stable: ties keep part order, then trace order).

    Each part is ``(label, trace)``. With ``keep_tenants=False`` every request of a part belongs to one tenant named
    ``label``; with ``keep_tenants=True`` its tenants are kept as ``label/name``. Sessions are renumbered so that
    parts never share a session id. All parts must have the same block size.
    """
    if not parts:
        raise ValueError("merge_traces needs at least one trace")
    block_size = parts[0][1].block_size
    for label, trace in parts:
        if trace.block_size != block_size:
            raise TraceError(f"trace {label!r} has {trace.block_size}-token blocks, the first has {block_size}; "
                             "compile both at one block size", field="block_size")
    names: list[str] = []
    tenants, sessions, offsets = [], [], [np.zeros(1, dtype=np.int64)]
    session_base = 0
    block_base = 0
    for label, trace in parts:
        if keep_tenants:
            codes = np.arange(len(trace.tenant_names), dtype=np.int32) + len(names)
            names.extend(f"{label}/{name}" for name in trace.tenant_names)
            tenants.append(codes[trace.tenant])
        else:
            if label in names:
                raise ValueError(f"two traces are labelled {label!r}")
            tenants.append(np.full(trace.n_requests, len(names), dtype=np.int32))
            names.append(label)
        session = np.asarray(trace.session, dtype=np.int64)
        sessions.append(np.where(session >= 0, session + session_base, -1))
        session_base += int(session.max(initial=-1)) + 1
        offsets.append(np.asarray(trace.block_offsets[1:], dtype=np.int64) - trace.block_offsets[0] + block_base)
        block_base += trace.n_blocks
    if len(set(names)) != len(names):
        raise ValueError(f"merged tenant names collide: {names}")
    sources = {trace.block_source for _, trace in parts}
    merged = Trace(t=np.concatenate([np.asarray(p.t, dtype=np.float64) for _, p in parts]),
                   tenant=np.concatenate(tenants), tenant_names=names, session=np.concatenate(sessions),
                   prompt_tokens=np.concatenate([np.asarray(p.prompt_tokens, dtype=np.int64) for _, p in parts]),
                   output_tokens=np.concatenate([np.asarray(p.output_tokens, dtype=np.int64) for _, p in parts]),
                   block_offsets=np.concatenate(offsets),
                   # keys, not ids: two traces numbered apart (Trace.dense()) would share ids by accident
                   block_keys=np.concatenate([p.keyed().block_keys for _, p in parts]).astype(np.uint64, copy=False),
                   block_tokens=np.concatenate([p.block_tokens for _, p in parts]).astype(np.uint32, copy=False),
                   block_size=block_size, block_source=sources.pop() if len(sources) == 1 else "mixed",
                   meta={"merged": [label for label, _ in parts]})
    order = np.argsort(merged.t, kind="stable")
    if np.any(order != np.arange(len(order))):
        merged = _take(merged, order)
    return merged


def take_requests(trace: Trace, index: np.ndarray) -> Trace:
    """The requests at ``index`` (ascending), in order, as a new trace (blocks move with their requests)."""
    index = np.asarray(index, dtype=np.int64)
    if len(index) == trace.n_requests:
        return trace
    return _take(trace, index)


def select_tenants(trace: Trace, tenants: Iterable[str]) -> tuple[Trace, np.ndarray]:
    """The requests of ``tenants`` (names), in trace order, with only those tenants named; and their indices."""
    wanted = list(dict.fromkeys(tenants))
    code_of = {name: i for i, name in enumerate(trace.tenant_names)}
    unknown = [name for name in wanted if name not in code_of]
    if unknown:
        raise ValueError(f"unknown tenant(s) {', '.join(map(repr, unknown))}; the trace has "
                         f"{', '.join(trace.tenant_names)}")
    recode = np.full(len(trace.tenant_names), -1, dtype=np.int32)
    for new, name in enumerate(wanted):
        recode[code_of[name]] = new
    new_codes = recode[trace.tenant]
    index = np.flatnonzero(new_codes >= 0)
    sub = take_requests(trace, index)
    return replace(sub, tenant=new_codes[index], tenant_names=wanted), index


def first_counted(trace: Trace, config: CacheConfig) -> int:
    """Index of the first request the warmup rule of ``config`` counts (SEMANTICS §5; the engine's rule)."""
    return units.first_counted(trace.t, config.warmup_requests, config.warmup_s)


# -- validation ---------------------------------------------------------------------------------------------------

MAX_BLOCK_SIZE = 2**31 - 1
# where a trace's blocks come from: cut from token ids, given as ids by the trace, or both (a merged trace)
BLOCK_SOURCES = ("tokens", "ids", "mixed")

_COLUMN_DTYPES = {"t": np.float64, "tenant": np.int32, "session": np.int64, "prompt_tokens": np.int64,
                  "output_tokens": np.int64, "block_offsets": np.int64, "block_keys": np.uint64,
                  "block_tokens": np.uint32}


def _column(trace: Trace, name: str) -> np.ndarray:
    """A column as the core reads it: its dtype, contiguous; a value the dtype cannot hold is an error."""
    values = np.asanyarray(getattr(trace, name))   # keeps a memory map a memory map
    dtype = np.dtype(_COLUMN_DTYPES[name])
    if values.ndim != 1:
        raise TraceError(f"expected a one-dimensional column, got shape {values.shape}", field=name)
    if values.dtype == dtype:
        return values if values.flags.c_contiguous else np.ascontiguousarray(values)
    if dtype.kind == "f":
        if values.dtype.kind not in "iuf":
            raise TraceError(f"expected numbers, got {values.dtype}", field=name)
    else:
        if values.dtype.kind not in "iu" and not (values.dtype == bool):
            raise TraceError(f"expected whole numbers, got {values.dtype}", field=name)
        info = np.iinfo(dtype)
        if values.size and (int(values.min()) < info.min or int(values.max()) > info.max):
            i = int(np.argmax((values < info.min) | (values > info.max)))
            raise TraceError(f"value {values[i]} does not fit {dtype}", field=name,
                             line=i if name not in ("block_keys", "block_tokens", "block_offsets") else None)
    return np.ascontiguousarray(values, dtype=dtype)


def validate(trace: Trace, *, max_prompt_tokens: int = MAX_TOKENS_PER_REQUEST) -> Trace:
    """The one check of a Trace before compiled code reads it; returns it with the dtypes and layout the core
    needs (the same trace when they already are).

    Whole-trace faults (columns of different lengths, offsets that do not start at 0 or end at the block count, a
    block size out of range) raise a TraceError naming the field. A fault of one request raises a TraceError whose
    ``line`` is the first bad request and whose ``.valid_requests`` says how many requests before it are sound,
    so a caller can serve those and lose nothing. One O(n + m) pass.
    """
    if _is_validated(trace):
        return trace
    cols = {name: _column(trace, name) for name in _COLUMN_DTYPES}
    n, m = len(cols["t"]), len(cols["block_keys"])
    for name in ("tenant", "session", "prompt_tokens", "output_tokens"):
        if len(cols[name]) != n:
            raise TraceError(f"{len(cols[name]):,} values for {n:,} requests", field=name)
    if len(cols["block_offsets"]) != n + 1:
        raise TraceError(f"{len(cols['block_offsets']):,} offsets for {n:,} requests (expected {n + 1:,})",
                         field="block_offsets")
    if len(cols["block_tokens"]) != m:
        raise TraceError(f"{len(cols['block_tokens']):,} token counts for {m:,} blocks", field="block_tokens")
    if trace.block_source not in BLOCK_SOURCES:
        raise TraceError(f"block source must be one of {', '.join(BLOCK_SOURCES)}, got {trace.block_source!r}",
                         field="block_source")
    block_size = trace.block_size
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or \
            not 0 < block_size <= MAX_BLOCK_SIZE:
        raise TraceError(f"block size must be a whole number in 1..{MAX_BLOCK_SIZE:,}, got {block_size!r}",
                         field="block_size")
    offsets = cols["block_offsets"]
    if offsets[0] != 0:
        raise TraceError(f"block offsets must start at 0, not {offsets[0]}", field="block_offsets")
    if offsets[-1] < m:
        raise TraceError(f"block offsets end at {int(offsets[-1]):,}, short of the {m:,} blocks", field="block_offsets")
    if trace.distinct_keys is not None:
        n_ids = len(trace.distinct_keys)
        if m and int(cols["block_keys"].max()) >= n_ids:
            raise TraceError(f"a dense id is not below the {n_ids:,} distinct keys it numbers", field="block_keys")

    index, code = _first_fault(cols, int(block_size), len(trace.tenant_names), min(int(max_prompt_tokens), 2**63 - 1))
    if code >= 0:
        field_name, message = _FAULT_MESSAGES[TRACE_FAULTS[code]]
        limits = {"block_size": int(block_size), "max_prompt_tokens": int(max_prompt_tokens),
                  "n_tenants": len(trace.tenant_names)}
        exc = TraceError(message(cols, index, limits), field=field_name, line=index)
        exc.valid_requests = index
        raise exc
    checked = replace(trace, **cols) if any(cols[k] is not getattr(trace, k) for k in cols) else trace
    _mark_validated(checked)
    return checked


# Blocks a thread checks at least: below this, starting threads costs more than it saves.
_BLOCKS_PER_THREAD = 1 << 17


def _first_fault(cols, block_size: int, n_tenants: int, max_prompt_tokens: int, *, threads: int | None = None,
                 blocks_per_thread: int = _BLOCKS_PER_THREAD) -> tuple[int, int]:
    """The first faulty request and its fault (an index into TRACE_FAULTS), or (n, -1). The compiled check runs
    on every core, each over a part of the requests: a replay is one sequential loop, its check need not be."""
    kernel = _impl.load().first_trace_fault
    args = (cols["t"], cols["tenant"], cols["prompt_tokens"], cols["block_offsets"], cols["block_tokens"],
            cols["block_keys"], block_size, n_tenants, max_prompt_tokens)
    n, m = len(cols["t"]), len(cols["block_keys"])
    parts = min(threads or os.cpu_count() or 1, m // blocks_per_thread)
    if parts < 2 or _impl.default_impl() != "core":   # the reference holds the GIL: threads would only wait
        return kernel(*args)
    # cut where the blocks divide evenly (offsets not yet checked may not rise: the cuts are only made to)
    cuts = np.searchsorted(cols["block_offsets"], np.arange(1, parts) * (m // parts))
    bounds = np.unique(np.clip(np.concatenate([[0], cuts, [n]]), 0, n))
    ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    # the first part here, the others on the pool: one thread fewer to wake
    others = [parallel.shared_threads().submit(kernel, *args, *span) for span in ranges[1:]]
    for index, code in [kernel(*args, *ranges[0])] + [future.result() for future in others]:
        if code >= 0:
            return index, code
    return n, -1


def _request_blocks(cols, i: int) -> slice:
    return slice(int(cols["block_offsets"][i]), int(cols["block_offsets"][i + 1]))


def _bad_block(cols, i: int, block_size: int) -> int:
    tokens = cols["block_tokens"][_request_blocks(cols, i)]
    return int(tokens[(tokens == 0) | (tokens > block_size)][0])


# How validate words each of TRACE_FAULTS: (the field, a message from the columns, the request and the limits).
_FAULT_MESSAGES = {
    "block_offsets": ("block_offsets", lambda c, i, lim: f"blocks {int(c['block_offsets'][i])}.."
                      f"{int(c['block_offsets'][i + 1])} are not a run within the trace's {len(c['block_keys']):,} "
                      "blocks"),
    "t_not_finite": ("t", lambda c, i, lim: f"arrival time must be a finite number, got {float(c['t'][i])!r}"),
    "t_negative": ("t", lambda c, i, lim: f"arrival time must not be negative, got {float(c['t'][i])!r}"),
    "t_decreasing": ("t", lambda c, i, lim: f"arrival time {float(c['t'][i])!r} is before the previous request's "
                     f"{float(c['t'][i - 1])!r}"),
    "tenant": ("tenant", lambda c, i, lim: f"tenant code {int(c['tenant'][i])} outside 0..{lim['n_tenants'] - 1}"),
    "prompt_empty": ("prompt_tokens", lambda c, i, lim: "empty request: a prompt needs at least one token"),
    "prompt_limit": ("prompt_tokens", lambda c, i, lim: f"{int(c['prompt_tokens'][i]):,} prompt tokens is beyond "
                     f"the limit of {lim['max_prompt_tokens']:,} a request"),
    "block_tokens": ("block_tokens", lambda c, i, lim: f"a block of {_bad_block(c, i, lim['block_size'])} tokens "
                     f"where blocks hold 1..{lim['block_size']}"),
    "overfull": ("block_tokens", lambda c, i, lim: f"its blocks hold "
                 f"{int(c['block_tokens'][_request_blocks(c, i)].sum(dtype=np.int64)):,} tokens, more than its "
                 f"{int(c['prompt_tokens'][i]):,}-token prompt"),
    # the core's key index marks its empty slots with the all-ones key (XXH3 gives it with probability 2^-64)
    "reserved_key": ("block_keys", lambda c, i, lim: f"block key {2**64 - 1:#x} is reserved by the engine's index"),
    "repeated_key": ("block_keys", lambda c, i, lim: "a block key repeats within the request (chained keys name "
                     "distinct prefixes)"),
}


def _is_validated(trace: Trace) -> bool:
    return trace.__dict__.get("_validated", False)


def _mark_validated(trace: Trace) -> None:
    """Remember that ``trace`` passed :func:`validate`, and freeze its columns so that it stays true: a changed
    column comes only through ``dataclasses.replace``, whose new Trace carries no mark and is checked again."""
    for name in _COLUMN_DTYPES:
        getattr(trace, name).flags.writeable = False
    trace.__dict__["_validated"] = True
