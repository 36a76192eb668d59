"""libCacheSim's binary prefix-cache trace, ``lcsllm`` (here ``lcp``; files ``.lcp``, ``.lcsllm``, and ``.zst``).

Layout, little-endian and packed. The offsets come from the C structs ``lcsllm_header_t``,
``lcsllm_req_header_t`` and ``lcsllm_block_t`` in ``libCacheSim/traceReader/customizedReader/lcsllmReader.h``
of LauYeeYu/libCacheSim@0e27ec20b104d76bebe4fdf01f4b33559f8ddc97 (the spec is ``doc/lcsllm_format.md`` at the
same commit; what real files hold is what ``libCacheSim/bin/traceUtils/traceConvLLM.cpp``@ff3d806233f8 writes)::

    file header, 8192 B
       0 start_magic u64 = 0x6c63736c6c6d0001     8 version u64 = 1
      16 n_requests i64     24 n_blocks i64     32 n_unique_blocks i64     40 max_blocks_per_request i64
      48 start_time_us i64  56 end_time_us i64
      64 block_size_tokens i32  68 block_id_kind u8 (= 1)  69 has_next_access u8  70 n_types u8  71 pad u8
      72 type_names char[8][16] (NUL-padded)    200 reserved u64[998]    8184 end_magic u64 = start_magic
    then per request: a 48 B header
       0 chat_id u64  8 parent_chat_id i64 (-1: none)  16 timestamp_us i64  24 n_blocks u32
      28 input_length u32  32 output_length u32  36 turn u32  40 type_id u8  41 reserved u8[7]
    and n_blocks entries of 16 B: 0 block_id u64, 8 next_access_vtime i64.

Every header and block entry starts on a 16-byte boundary of the stream (8192, 48 and 16 are multiples of 16),
so a buffer read from a request boundary is viewed in place as 16-byte slots: request headers are gathered with
one structured dtype, and block ids with one boolean mask over the slots (numpy per block). Finding where each
request starts is the one sequential step (each start depends on the previous n_blocks): a loop of one
``unpack_from`` per request, never per block.

What the reader makes of it:

- time = ``timestamp_us`` / 1e6 s; the block size is ``block_size_tokens`` (a ``--block-size`` that differs is
  an error naming ``block_size``).
- prompt = ``input_length`` tokens, and ``n_blocks`` must be ``ceil(input_length / block_size)``. traceConvLLM
  writes 0 for both lengths, so ``input_length`` 0 means unrecorded: the prompt is taken as ``n_blocks`` whole
  blocks, and the output (when it is 0 too) as unknown (-1).
- tenant = ``type_names[type_id]`` (the request type), or with ``--tenant-field`` one of ``chat_id``,
  ``parent_chat_id``, ``turn``; session = the conversation's root chat id, following ``parent_chat_id`` back to
  a -1 as the Qwen reader does (the JSONL these files are converted from).
- per-request extras (``Trace.meta``): ``chat_id`` (uint64), ``parent_chat_id``, ``turn``; and, when the tenant
  is not the type, ``request_type`` (the ``type_id``; its names are :func:`read_header`'s ``type_names``).
- ``next_access_vtime`` (libCacheSim's Belady oracle) is not read.
- ``lines`` are 1-based request numbers (``ReadResult.unit == "request"``); errors name the request, or a byte
  offset into the decompressed stream (for a plain file, into the file).

Block ids are positional (``block_id_kind`` 1, the only value libCacheSim writes or accepts): one id names a
block *and its whole prefix*. cachesim chains ids into keys anyway (SEMANTICS §2: ``key[i] = XXH3_64(id[i],
seed=key[i-1])``). Chaining ids that are already prefix-unique is a bijective relabeling of the prefix paths
(up to 64-bit hash collisions, as for any trace), so the keys are new names for the same cache objects and a
replay hits exactly as libCacheSim's would on the raw ids.

:class:`LcpWriter` (and :func:`write_lcp`) write the format, streaming; see their docstrings for how the header
counts get into a compressed file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cachesim import _contract
from cachesim.readers._base import (
    DECOMPRESSION_ERRORS,
    MAX_SKIP_EXAMPLES,
    ZSTD_MAGIC,
    Interner,
    ReadOptions,
    ReadResult,
    Source,
    _decompressing,
    _fill,
    _open_raw,
    fixed_block_size,
)
from cachesim.requests import BlockRequests, TraceError, offsets_from_lengths

__all__ = ["NAME", "Header", "LcpWriter", "read_header", "write_lcp"]

NAME = "lcp"
TIME_FIELD = "timestamp_us"
MAGIC = 0x6C63736C6C6D0001
VERSION = 1
POSITIONAL = 1                 # block_id_kind: ids folded over their prefix (LCSLLM_BLOCK_ID_PREFIX)
HEADER_BYTES = 8192
REQUEST_BYTES = 48
BLOCK_BYTES = 16
SLOT_BYTES = 16                # every record starts on a multiple of this in the stream
N_TYPES = 8
TYPE_NAME_BYTES = 16           # with the terminating NUL: names of at most 15 bytes
TENANT_FIELDS = ("type", "chat_id", "parent_chat_id", "turn")
_MAGIC_BYTES = MAGIC.to_bytes(8, "little")
_U32_MAX = 2**32 - 1

HEADER = np.dtype({
    "names": ["start_magic", "version", "n_requests", "n_blocks", "n_unique_blocks", "max_blocks_per_request",
              "start_time_us", "end_time_us", "block_size_tokens", "block_id_kind", "has_next_access", "n_types",
              "type_names", "end_magic"],
    "formats": ["<u8", "<u8", "<i8", "<i8", "<i8", "<i8", "<i8", "<i8", "<i4", "u1", "u1", "u1",
                ("S16", (N_TYPES,)), "<u8"],
    "offsets": [0, 8, 16, 24, 32, 40, 48, 56, 64, 68, 69, 70, 72, 8184],
    "itemsize": HEADER_BYTES,
})
REQUEST = np.dtype({
    "names": ["chat_id", "parent_chat_id", "timestamp_us", "n_blocks", "input_length", "output_length", "turn",
              "type_id"],
    "formats": ["<u8", "<i8", "<i8", "<u4", "<u4", "<u4", "<u4", "u1"],
    "offsets": [0, 8, 16, 24, 28, 32, 36, 40],
    "itemsize": REQUEST_BYTES,
})
_AT = {name: HEADER.fields[name][1] for name in HEADER.names}   # header field -> byte offset, for errors
_N_BLOCKS_AT = REQUEST.fields["n_blocks"][1]
_n_blocks_of = struct.Struct("<I").unpack_from


def sniff(first: dict | None, head: bytes) -> bool:
    return head[:8] == _MAGIC_BYTES


@dataclass(frozen=True)
class Header:
    """The file header's fields (``type_names`` decoded, ``n_types`` of them)."""

    version: int
    n_requests: int
    n_blocks: int
    n_unique_blocks: int          # -1: not counted (LcpWriter with count_unique=False)
    max_blocks_per_request: int
    start_time_us: int
    end_time_us: int
    block_size_tokens: int
    block_id_kind: int
    has_next_access: bool
    type_names: list[str]


def _header_error(path: str, field: str, message: str, at: int | None = None) -> TraceError:
    return TraceError(message, field=field, file=path, line=_AT[field] if at is None else at, unit="byte")


def _parse_header(data: bytes, path: str) -> Header:
    h = np.frombuffer(data, dtype=HEADER, count=1)[0]
    for name in ("start_magic", "end_magic"):
        if int(h[name]) != MAGIC:
            raise _header_error(path, name, f"expected 0x{MAGIC:016x}, got 0x{int(h[name]):016x}: not a libCacheSim "
                                "lcsllm trace (the older block-only layout had no header; regenerate it with "
                                "traceConvLLM)")
    if int(h["version"]) != VERSION:
        raise _header_error(path, "version", f"version {int(h['version'])} is not one this reader knows ({VERSION})")
    if int(h["block_id_kind"]) != POSITIONAL:
        raise _header_error(path, "block_id_kind", f"expected {POSITIONAL} (positional ids: one id per block and "
                            f"prefix), got {int(h['block_id_kind'])}: raw per-block ids would merge different "
                            "prefixes, and the file cannot tell which; regenerate it with traceConvLLM")
    if int(h["block_size_tokens"]) <= 0:
        raise _header_error(path, "block_size_tokens", f"expected a positive block size, got "
                            f"{int(h['block_size_tokens'])}")
    for name in ("n_requests", "n_blocks"):
        if int(h[name]) < 0:
            raise _header_error(path, name, f"{int(h[name])} is negative: the file was not finished by its writer "
                                "(or is damaged)")
    n_types = int(h["n_types"])
    if n_types > N_TYPES:
        raise _header_error(path, "n_types", f"{n_types} types; the header has room for {N_TYPES}")
    names = []
    for i in range(n_types):
        raw = bytes(h["type_names"][i])   # numpy's S16 drops the trailing NULs
        try:
            names.append(raw.split(b"\0", 1)[0].decode("utf-8"))
        except UnicodeDecodeError:
            raise _header_error(path, "type_names", f"type name {i} is not UTF-8: {raw!r}",
                                at=_AT["type_names"] + TYPE_NAME_BYTES * i) from None
    return Header(version=int(h["version"]), n_requests=int(h["n_requests"]), n_blocks=int(h["n_blocks"]),
                  n_unique_blocks=int(h["n_unique_blocks"]), max_blocks_per_request=int(h["max_blocks_per_request"]),
                  start_time_us=int(h["start_time_us"]), end_time_us=int(h["end_time_us"]),
                  block_size_tokens=int(h["block_size_tokens"]), block_id_kind=int(h["block_id_kind"]),
                  has_next_access=bool(h["has_next_access"]), type_names=names)


def _read_header(handle, path: str) -> Header:
    data = bytearray(HEADER_BYTES)
    try:
        n, cut_short = _fill(handle, memoryview(data))
    except DECOMPRESSION_ERRORS as exc:
        raise TraceError(f"cannot decompress the header: {exc}", file=path) from None
    if n < HEADER_BYTES:
        why = f" ({cut_short})" if cut_short else ""
        raise TraceError(f"the file ends at byte {n:,}{why}, inside the {HEADER_BYTES:,}-byte header", field="header",
                         file=path, line=n, unit="byte")
    return _parse_header(bytes(data), path)


def read_header(path: str | Path) -> Header:
    """The header of an lcp file (plain or compressed), checked as the reader checks it."""
    raw = _open_raw(path)
    try:
        with _decompressing(raw, path) as handle:
            return _read_header(handle, str(path))
    finally:
        raw.close()


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    tenant_field = options.tenant_field or "type"
    if tenant_field not in TENANT_FIELDS:
        raise TraceError(f"an lcp file's tenant is one of {', '.join(TENANT_FIELDS)}, not {tenant_field!r}",
                         field="tenant_field", file=source.path)
    raw = _open_raw(source.path)
    source._raw = raw   # Source.bytes_read (the progress bar) counts what was consumed of this handle
    try:
        handle = _decompressing(raw, source.path)
    except BaseException:
        raw.close()
        raise
    try:
        header = _read_header(handle, source.path)
        try:
            fixed_block_size(options, header.block_size_tokens, "this lcp file's")
        except TraceError as exc:
            raise TraceError(exc.message, field=exc.field, file=source.path, line=_AT["block_size_tokens"],
                             unit="byte") from None
        yield from _Reader(source, options, header, handle, tenant_field).batches()
    finally:
        handle.close()
        raw.close()


class _Reader:
    """One file's requests after its header, in batches of about ``options.batch_bytes``."""

    def __init__(self, source: Source, options: ReadOptions, header: Header, handle, tenant_field: str):
        self.path, self.options, self.header, self.handle = source.path, options, header, handle
        self.tenant_field = tenant_field
        self.block_size = header.block_size_tokens
        # the most blocks a request may have: its whole blocks alone would pass MAX_TOKENS_PER_REQUEST beyond this
        self.max_blocks = -(-_contract.MAX_TOKENS_PER_REQUEST // self.block_size)
        # a buffer no bigger than the file needs (a compressed one may inflate: room for 4x); grows for one request
        self.capacity = max(min(options.batch_bytes, max(4 * source.total_bytes, 1 << 16)), 1)
        self.requests_read = 0   # requests of the file so far, skipped ones included (for the header's count)
        self.blocks_read = 0
        self.tenants = Interner()
        self.session_codes: dict[int, int] = {}   # root chat id -> session code
        self.roots: dict[int, int] = {}   # chat id -> its conversation's root chat id (one entry per request)

    def batches(self) -> Iterator[ReadResult]:
        buf = bytearray(self.capacity)
        filled = 0
        base = HEADER_BYTES   # the stream offset of buf[0], always a request boundary
        while True:
            n, cut_short = self._fill(buf, filled, base)
            filled += n
            at_end = cut_short is not None or filled < len(buf)
            starts, stop = _walk(buf, filled)
            if starts:
                yield from self._batch(buf, np.asarray(starts, dtype=np.int64), stop, base)
            rest = filled - stop
            if at_end:
                if rest or cut_short:
                    self._truncated(buf, stop, filled, base, cut_short)   # raises, unless skipped
                    return
                self._check_counts()
                return
            if stop:
                buf[:rest] = buf[stop:filled]   # the partial request moves to the front (the buffer keeps its size)
                base += stop
                filled = rest
            else:
                buf = self._grown(buf, filled, base)

    def _fill(self, buf: bytearray, filled: int, base: int) -> tuple[int, str | None]:
        with memoryview(buf) as free:
            try:
                return _fill(self.handle, free[filled:])
            except DECOMPRESSION_ERRORS as exc:
                raise TraceError(f"cannot decompress after request {self.requests_read:,}: {exc}", file=self.path,
                                 line=base + filled, unit="byte") from None

    def _grown(self, buf: bytearray, filled: int, base: int) -> bytearray:
        """A buffer that holds the one request at its start (longer than the buffer, which is full), after
        checking the request's block count: nothing is sized by a count beyond the bound."""
        need = REQUEST_BYTES
        if filled >= REQUEST_BYTES:
            n_blocks = _n_blocks_of(buf, _N_BLOCKS_AT)[0]
            if n_blocks > self.max_blocks:
                raise self._too_many_blocks(n_blocks, base, self.requests_read + 1)
            need += BLOCK_BYTES * n_blocks
        grown = bytearray(need)
        grown[:filled] = buf[:filled]
        return grown

    def _too_many_blocks(self, n_blocks: int, at: int, number: int) -> TraceError:
        # not skippable: a count this far out is damage, so where the next request starts cannot be trusted
        return TraceError(f"request {number:,} has {n_blocks:,} blocks of {self.block_size} tokens, beyond the "
                          f"{_contract.MAX_TOKENS_PER_REQUEST:,} tokens a request may have (set "
                          "CACHESIM_MAX_TOKENS_PER_REQUEST to raise it); it and the rest of the file cannot be read",
                          field="n_blocks", file=self.path, line=at, unit="byte")

    def _truncated(self, buf: bytearray, stop: int, filled: int, base: int, cut_short: str | None) -> None:
        """The stream ended inside request ``requests_read + 1`` (at ``buf[stop]``), or, compressed, early."""
        number, rest = self.requests_read + 1, filled - stop
        field = "request_header"
        if rest == 0:
            what = f"{cut_short}, after {self.requests_read:,} requests; any after them are missing"
        else:
            if rest < REQUEST_BYTES:
                what = f"request {number:,}'s {REQUEST_BYTES}-byte header is cut after {rest} bytes"
            else:
                field = "n_blocks"
                n_blocks = _n_blocks_of(buf, stop + _N_BLOCKS_AT)[0]
                if n_blocks > self.max_blocks:   # the count, not the cut, is what is wrong
                    raise self._too_many_blocks(n_blocks, base + stop, number)
                what = f"request {number:,} has {(rest - REQUEST_BYTES) // BLOCK_BYTES:,} of its {n_blocks:,} blocks"
            what += f" ({cut_short})" if cut_short else ""
            what += ": it and any requests after it are missing"
        error = TraceError(f"truncated: {what}", field=field, file=self.path, line=base + stop, unit="byte")
        if not self.options.skip_invalid:
            raise error
        self.options.skip(error)

    def _check_counts(self) -> None:
        """The header's counts against the body, once all of it was read (and yielded)."""
        for name, said, held in (("n_requests", self.header.n_requests, self.requests_read),
                                 ("n_blocks", self.header.n_blocks, self.blocks_read)):
            if said != held:
                what = name[2:]
                error = _header_error(self.path, name, f"the header says {said:,} {what}, the file holds {held:,}")
                if not self.options.skip_invalid:
                    raise error
                self.options.skip(error)

    def _batch(self, buf: bytearray, starts: np.ndarray, stop: int, base: int) -> Iterator[ReadResult]:
        """The requests starting at ``starts`` (buffer offsets; the last one ends at ``stop``); a bad one stops the
        stream after those before it are yielded (or, with skip_invalid, is counted and left out)."""
        n_slots = stop // SLOT_BYTES
        head_slots = starts // SLOT_BYTES
        # overlapping 48-byte records, one per 16-byte slot: each request header is one of them
        records = np.ndarray(shape=(n_slots - 2,), dtype=REQUEST, buffer=buf, strides=(SLOT_BYTES,))[head_slots]
        block = np.ones(n_slots, dtype=bool)
        for k in range(REQUEST_BYTES // SLOT_BYTES):
            block[head_slots + k] = False
        ids = np.ndarray(shape=(n_slots,), dtype="<u8", buffer=buf, strides=(SLOT_BYTES,))[block]
        ids = ids.astype(np.uint64, copy=False)
        del block

        numbers = self.requests_read + 1 + np.arange(len(starts), dtype=np.int64)
        n_blocks = records["n_blocks"].astype(np.int64)
        self.requests_read += len(starts)
        self.blocks_read += int(n_blocks.sum())
        good, error = self._valid(records, n_blocks, numbers, starts + base)
        if good is not None:
            records, numbers, ids = records[good], numbers[good], ids[np.repeat(good, n_blocks)]
            n_blocks = n_blocks[good]
        if len(numbers):
            yield self._result(records, n_blocks, numbers, ids)
        if error is not None:
            raise error

    def _valid(self, records: np.ndarray, n_blocks: np.ndarray, numbers: np.ndarray,
               at: np.ndarray) -> tuple[np.ndarray | None, TraceError | None]:
        """(which requests to keep, None when all; the error that stops the stream after them, or None)."""
        bound = _contract.MAX_TOKENS_PER_REQUEST
        prompt = records["input_length"].astype(np.int64)
        output = records["output_length"].astype(np.int64)
        expected = -(-prompt // self.block_size)
        beyond = (f"tokens is beyond the {bound:,} a request may have (set CACHESIM_MAX_TOKENS_PER_REQUEST to "
                  "raise it)")
        checks = [  # (bad requests, field, message of request i), in the order a request is checked
            (n_blocks > self.max_blocks, "n_blocks", None),   # not skippable: see _too_many_blocks
            (prompt > bound, "input_length", lambda i: f"{prompt[i]:,} {beyond}"),
            (output > bound, "output_length", lambda i: f"{output[i]:,} {beyond}"),
            (n_blocks == 0, "n_blocks", lambda i: "empty request: no blocks (a prompt needs at least one token)"),
            ((prompt > 0) & (n_blocks != expected), "n_blocks",
             lambda i: f"{n_blocks[i]:,} blocks for {prompt[i]:,} tokens (input_length); blocks of "
                       f"{self.block_size} tokens need ceil({prompt[i]}/{self.block_size}) = {expected[i]:,}"),
            (records["type_id"] >= len(self.header.type_names), "type_id",
             lambda i: f"{records['type_id'][i]} is not below n_types = {len(self.header.type_names)} (the "
                       "header's type_names)"),
            (records["timestamp_us"] < 0, "timestamp_us",
             lambda i: f"expected a non-negative time, got {records['timestamp_us'][i]:,} us"),
        ]
        bad = np.zeros(len(n_blocks), dtype=bool)
        for mask, _, _ in checks:
            bad |= mask
        if not bad.any():
            return None, None

        def error(i: int) -> TraceError:
            for mask, field, message in checks:
                if mask[i]:
                    if message is None:
                        return self._too_many_blocks(int(n_blocks[i]), int(at[i]), int(numbers[i]))
                    return TraceError(f"{message(i)} (the request at byte {int(at[i]):,})", field=field,
                                      file=self.path, line=int(numbers[i]), unit="request")
            raise AssertionError(i)

        stops = np.flatnonzero(checks[0][0] if self.options.skip_invalid else bad)
        if not stops.size:
            self._skip(np.flatnonzero(bad), error)
            return ~bad, None
        first = int(stops[0])
        good = np.zeros(len(bad), dtype=bool)
        good[:first] = ~bad[:first]   # with skip_invalid, the bad ones before a count beyond bound are skipped
        self._skip(np.flatnonzero(bad[:first]), error)
        return good, error(first)

    def _skip(self, indices: np.ndarray, error) -> None:
        room = max(MAX_SKIP_EXAMPLES - len(self.options.skip_examples), 0)
        for i in indices[:room].tolist():
            self.options.skip(error(i))
        self.options.skipped += max(len(indices) - room, 0)   # beyond the examples kept, no message is built

    def _result(self, records: np.ndarray, n_blocks: np.ndarray, numbers: np.ndarray, ids: np.ndarray) -> ReadResult:
        n = len(n_blocks)
        prompt = records["input_length"].astype(np.int64)
        output = records["output_length"].astype(np.int64)
        unrecorded = prompt == 0   # traceConvLLM leaves both lengths 0
        prompt = np.where(unrecorded, n_blocks * self.block_size, prompt)
        output = np.where(unrecorded & (output == 0), -1, output)
        type_id = records["type_id"].astype(np.int32)
        chats = records["chat_id"]
        parents = records["parent_chat_id"]
        turns = records["turn"].astype(np.int64)

        if self.tenant_field == "type":
            tenant = self._intern(type_id, lambda code: self.header.type_names[code])
        else:
            values = {"chat_id": chats, "parent_chat_id": parents, "turn": turns}[self.tenant_field]
            tenant = self._intern(values, lambda value: value)

        chat_list = chats.tolist()
        if bool((parents < 0).all()):   # every request starts a conversation (what traceConvLLM writes)
            root_list = chat_list
            self.roots.update(zip(chat_list, chat_list, strict=True))
        else:
            root_list = []
            roots, append = self.roots, root_list.append
            for chat, parent in zip(chat_list, parents.tolist(), strict=True):   # one Python step per request
                root = chat if parent < 0 else roots.get(parent, parent)
                roots[chat] = root
                append(root)
        # sessions numbered by first appearance, as the JSONL readers' Interner does (without keeping names)
        session_of = self.session_codes
        sessions = np.fromiter((session_of.setdefault(root, len(session_of)) for root in root_list),
                               dtype=np.int64, count=n)

        requests = BlockRequests(t=records["timestamp_us"] / 1e6, tenant=tenant,
                                 tenant_names=list(self.tenants.names) or ["default"], session=sessions,
                                 output_tokens=output, block_ids=ids, block_offsets=offsets_from_lengths(n_blocks),
                                 prompt_tokens=prompt, block_size=self.block_size)
        extras = {"chat_id": chats.astype(np.uint64), "parent_chat_id": parents.astype(np.int64), "turn": turns}
        if self.tenant_field != "type":
            extras["request_type"] = type_id
        return ReadResult(requests, numbers, self.path, extras, unit="request")

    def _intern(self, values: np.ndarray, label) -> np.ndarray:
        """Tenant codes of ``values``, interned in order of first appearance (as the JSONL readers do), with one
        Python step per distinct value, not per request."""
        distinct, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        codes = np.empty(len(distinct), dtype=np.int32)
        for j, value in zip(order.tolist(), distinct[order].tolist(), strict=True):
            codes[j] = self.tenants.code(label(value))
        return codes[inverse.reshape(-1)]


def _walk(buf: bytearray, filled: int) -> tuple[list[int], int]:
    """The offsets of the requests held whole in ``buf[:filled]`` (the first at 0), and where the next begins."""
    starts: list[int] = []
    append, at, last = starts.append, 0, filled - REQUEST_BYTES
    while at <= last:
        end = at + REQUEST_BYTES + BLOCK_BYTES * _n_blocks_of(buf, at + _N_BLOCKS_AT)[0]
        if end > filled:
            break
        append(at)
        at = end
    return starts, at


# -- writing --------------------------------------------------------------------------------------------------

def _stored_zstd_frame(payload: bytes) -> bytes:
    """``payload`` as one zstd frame (RFC 8878) holding it stored, uncompressed: single segment, a 2-byte content
    size, one raw block, no checksum. Its length depends only on the payload's, so it can be rewritten in place."""
    assert 256 <= len(payload) <= min(0xFFFF + 256, 128 << 10)
    descriptor = 0b0110_0000   # content-size field of 2 bytes (flag 1), single segment
    block_header = (len(payload) << 3) | 1   # raw block (type 0), the frame's last
    return (ZSTD_MAGIC + bytes([descriptor]) + (len(payload) - 256).to_bytes(2, "little")
            + block_header.to_bytes(3, "little") + payload)


class LcpWriter:
    """Writes an lcp file batch by batch, for traces of any size::

        with LcpWriter("trace.lcp.zst", block_size=16, type_names=["text", "image"], compress=True) as w:
            for batch in batches:            # BlockRequests, block_size 16
                w.write(batch, chat_id=..., parent_chat_id=..., turn=...)

    The header's counts (requests, blocks, distinct ids, the longest request, first and last time) are known only
    at the end, so ``close`` writes them over a placeholder whose counts are -1, which the reader refuses as an
    unfinished file: a writer stopped by an error (the ``with`` block left by an exception) leaves such a file.
    A plain file is patched in place. A compressed one cannot be (a zstd stream has no place to seek to), so
    its header is written as a frame of its own, stored uncompressed (8,202 bytes whatever it holds), ahead of
    the compressed frame of the requests: ``close`` rewrites that first frame. Decompressors read the frames as
    one stream; the file needs to be seekable (not a pipe), and no temporary copy is made.

    Block ids are written as given: the format promises positional ids (one id per block and prefix), so give
    ids that are (compiled keys are; a trace's raw per-block hashes may not be). ``next_access_vtime`` is
    written -1 and ``has_next_access`` 0. Counting distinct ids keeps each batch's distinct ids until they are
    merged (memory ~8 bytes per distinct id): ``count_unique=False`` writes -1 instead.
    """

    def __init__(self, path: str | Path, *, block_size: int, type_names: Sequence[str] | None = None,
                 compress: bool = False, level: int = 3, count_unique: bool = True):
        if not (isinstance(block_size, int) and 0 < block_size <= 2**31 - 1):
            raise ValueError(f"block_size must be a positive int32, got {block_size!r}")
        self.path, self.block_size, self.compress = str(path), block_size, compress
        self.type_names: list[str] = []
        self._fixed_types = False
        for name in type_names or []:
            self._type_code(name)
        self._fixed_types = type_names is not None   # then a request's type must be one of them
        self.n_requests = self.n_blocks = self.max_blocks_per_request = 0
        self.start_time_us = self.end_time_us = 0
        self._distinct: np.ndarray | None = np.zeros(0, dtype=np.uint64) if count_unique else None
        self._pending_ids: list[np.ndarray] = []
        self._raw = open(self.path, "wb")  # noqa: SIM115 (held until close: the writer is the context manager)
        self._body = self._raw
        self.closed = False
        placeholder = self._header(finished=False)
        if compress:
            import zstandard

            self._raw.write(_stored_zstd_frame(placeholder))
            self._body = zstandard.ZstdCompressor(level=level).stream_writer(self._raw, closefd=False)
        else:
            self._raw.write(placeholder)

    def _type_code(self, name: str) -> int:
        if name in self.type_names:
            return self.type_names.index(name)
        if self._fixed_types:
            raise ValueError(f"request type {name!r} is not among type_names {self.type_names}")
        encoded = str(name).encode("utf-8")
        if len(encoded) >= TYPE_NAME_BYTES:
            raise ValueError(f"request type {name!r} is {len(encoded)} bytes; the header holds names of at most "
                             f"{TYPE_NAME_BYTES - 1}")
        if len(self.type_names) == N_TYPES:
            raise ValueError(f"more than {N_TYPES} request types ({self.type_names + [name]}); the header holds "
                             f"{N_TYPES}")
        self.type_names.append(str(name))
        return len(self.type_names) - 1

    def _header(self, finished: bool) -> bytes:
        h = np.zeros(1, dtype=HEADER)
        h["start_magic"] = h["end_magic"] = MAGIC
        h["version"] = VERSION
        h["n_requests"] = self.n_requests if finished else -1
        h["n_blocks"] = self.n_blocks if finished else -1
        h["n_unique_blocks"] = self._unique_count() if finished else -1
        h["max_blocks_per_request"] = self.max_blocks_per_request
        h["start_time_us"], h["end_time_us"] = self.start_time_us, self.end_time_us
        h["block_size_tokens"] = self.block_size
        h["block_id_kind"] = POSITIONAL
        h["n_types"] = len(self.type_names)
        for i, name in enumerate(self.type_names):
            h["type_names"][0, i] = name.encode("utf-8")
        return h.tobytes()

    def _unique_count(self) -> int:
        if self._distinct is None:
            return -1
        self._merge_ids()
        return len(self._distinct)

    def _merge_ids(self) -> None:
        if self._pending_ids:
            self._distinct = np.unique(np.concatenate([self._distinct, *self._pending_ids]))
            self._pending_ids = []

    def write(self, requests: BlockRequests, *, chat_id=None, parent_chat_id=None, turn=None,
              type_id=None) -> None:
        """Append ``requests`` (in file order). Per-request ``chat_id`` (default: the request's number from 0, as
        traceConvLLM writes), ``parent_chat_id`` (default -1), ``turn`` (default 0) and ``type_id`` (an index
        into type_names; default: each request's tenant name, added to type_names unless they were given)."""
        if self.closed:
            raise ValueError(f"{self.path}: the writer is closed")
        if not isinstance(requests, BlockRequests):
            raise TypeError(f"expected BlockRequests, got {type(requests).__name__}")
        if requests.block_size != self.block_size:
            raise ValueError(f"these requests have blocks of {requests.block_size} tokens; the file's are "
                             f"{self.block_size}")
        k = requests.n_requests
        if k == 0:
            return
        offsets = np.asarray(requests.block_offsets, dtype=np.int64)
        ids = np.asarray(requests.block_ids, dtype=np.uint64)
        if len(offsets) != k + 1 or offsets[0] != 0 or offsets[-1] != len(ids):
            raise ValueError("block_offsets must rise from 0 to len(block_ids), one entry per request + 1")
        n_blocks = np.diff(offsets)
        prompt = np.asarray(requests.prompt_tokens, dtype=np.int64)
        output = np.asarray(requests.output_tokens, dtype=np.int64)
        t_us = np.rint(np.asarray(requests.t, dtype=np.float64) * 1e6)
        _refuse(n_blocks != -(-prompt // self.block_size), "n_blocks", lambda i: (
            f"{n_blocks[i]} block ids for {prompt[i]} tokens; blocks of {self.block_size} tokens need "
            f"ceil({prompt[i]}/{self.block_size})"))
        _refuse((prompt <= 0) | (prompt > _U32_MAX), "prompt_tokens", lambda i: f"{prompt[i]} is not in 1..2**32-1")
        _refuse(output > _U32_MAX, "output_tokens", lambda i: f"{output[i]} is beyond 2**32-1")
        _refuse(~(t_us >= 0) | (t_us >= 2.0**63), "t", lambda i: f"{requests.t[i]!r} s is not a time from 0 on")
        chats = (np.uint64(self.n_requests) + np.arange(k, dtype=np.uint64) if chat_id is None
                 else _column(chat_id, k, "<u8", "chat_id"))
        parents = (np.full(k, -1, dtype=np.int64) if parent_chat_id is None
                   else _column(parent_chat_id, k, "<i8", "parent_chat_id"))
        turns = np.zeros(k, dtype=np.int64) if turn is None else _column(turn, k, "<u4", "turn").astype(np.int64)
        if type_id is None:
            lut = np.asarray([self._type_code(name) for name in requests.tenant_names], dtype=np.int64)
            types = lut[np.asarray(requests.tenant, dtype=np.int64)]
        else:
            types = _column(type_id, k, "<i8", "type_id")
            _refuse((types < 0) | (types >= len(self.type_names)), "type_id",
                    lambda i: f"{types[i]} is not an index into type_names {self.type_names}")

        # the requests' bytes, laid out in 16-byte slots as the reader views them
        n_slots = 3 * k + int(offsets[-1])
        out = np.zeros(2 * n_slots, dtype="<u8")
        head_slots = 3 * np.arange(k, dtype=np.int64) + offsets[:-1]
        heads = np.ndarray(shape=(n_slots - 2,), dtype=REQUEST, buffer=out, strides=(SLOT_BYTES,))
        heads["chat_id"][head_slots] = chats
        heads["parent_chat_id"][head_slots] = parents
        heads["timestamp_us"][head_slots] = t_us.astype(np.int64)
        heads["n_blocks"][head_slots] = n_blocks
        heads["input_length"][head_slots] = prompt
        heads["output_length"][head_slots] = np.maximum(output, 0)   # -1 (unknown) has no u32 spelling
        heads["turn"][head_slots] = turns
        heads["type_id"][head_slots] = types
        del heads
        block = np.ones(n_slots, dtype=bool)
        for j in range(REQUEST_BYTES // SLOT_BYTES):
            block[head_slots + j] = False
        slots = out.reshape(n_slots, 2)
        slots[block, 0] = ids
        slots[block, 1] = np.uint64(2**64 - 1)   # next_access_vtime -1: not computed
        self._body.write(out.data)

        if self.n_requests == 0:
            self.start_time_us = int(t_us[0])
        self.end_time_us = int(t_us[-1])
        self.n_requests += k
        self.n_blocks += int(offsets[-1])
        self.max_blocks_per_request = max(self.max_blocks_per_request, int(n_blocks.max()))
        if self._distinct is not None:
            self._pending_ids.append(np.unique(ids))
            if sum(len(p) for p in self._pending_ids) > max(len(self._distinct), 1 << 20):
                self._merge_ids()   # merged when the pending ones outgrow it: amortised, not per batch

    def close(self) -> None:
        """Finish the file: its header's counts are written now."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._body is not self._raw:
                self._body.close()   # ends the requests' frame; the file stays open (closefd=False)
            header = self._header(finished=True)
            self._raw.seek(0)
            self._raw.write(_stored_zstd_frame(header) if self.compress else header)
        finally:
            self._raw.close()

    def abandon(self) -> None:
        """Close without finishing: the header keeps its -1 counts, so the file is refused as unfinished."""
        if not self.closed:
            self.closed = True
            try:
                if self._body is not self._raw:
                    self._body.close()
            finally:
                self._raw.close()

    def __enter__(self) -> LcpWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


def _column(values, k: int, dtype: str, name: str) -> np.ndarray:
    """Per-request integers, checked to fit ``dtype`` (a cast would wrap them silently)."""
    arr = np.asarray(values)
    if arr.shape != (k,):
        raise ValueError(f"{name}: expected {k} values, one per request, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integers, got {arr.dtype}")
    info = np.iinfo(np.dtype(dtype))
    if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
        raise ValueError(f"{name}: values must be in {info.min}..{info.max}")
    return arr.astype(dtype)


def _refuse(bad: np.ndarray, name: str, message) -> None:
    """A ValueError naming the first request where ``bad`` holds (writer input is a program's, not a file's)."""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} of request {i}: {message(i)}")


def write_lcp(path: str | Path, requests: BlockRequests, *, chat_id=None, parent_chat_id=None, turn=None,
              type_names: Sequence[str] | None = None, type_id=None, compress: bool = False) -> Path:
    """``requests`` as one lcp file (zstd-compressed if ``compress``); see :class:`LcpWriter`."""
    with LcpWriter(path, block_size=requests.block_size, type_names=type_names, compress=compress) as writer:
        writer.write(requests, chat_id=chat_id, parent_chat_id=parent_chat_id, turn=turn, type_id=type_id)
    return Path(path)
