"""What every reader shares: opening (possibly compressed) files in chunks of whole lines, locating errors,
skipping bad records on request, and collecting columns into bounded request batches.

The reader protocol: a format module has ``NAME``, ``sniff(first, head) -> bool`` (``first`` is the first
JSON record or None, ``head`` the first decompressed bytes) and ``batches(source, options)`` yielding
:class:`ReadResult` batches of at most about ``options.batch_bytes`` of input each.
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import orjson

from cachesim._contract import MAX_TOKENS_PER_REQUEST

# Ragged lives with the requests so that trace.py can rebuild saved meta without importing the readers
from cachesim.requests import BlockRequests, Ragged, TokenRequests, TraceError, offsets_from_lengths

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_BATCH_BYTES = 16 << 20
MAX_SKIP_EXAMPLES = 3
# How a block-id row whose id count does not match its prompt length is read (ReadOptions.lengths, --lengths):
# refused, or taken as its ids (check_block_count says how)
LENGTHS = ("strict", "from-ids")
SIZES = ("observed", "tokenized")   # text formats with billed usage: prompt sizes from the bill, or from the text


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged file can raise: gzip's zlib.error and zstandard's ZstdError are not OSErrors."""
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


DECOMPRESSION_ERRORS = _decompression_errors()


def _open_raw(path: str | Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise TraceError(f"cannot open: {exc.strerror}", file=str(path)) from None


def _decompressing(raw: IO[bytes], path: str | Path) -> IO[bytes]:
    """raw itself, or a reader that decompresses it (gzip and zstd are recognised by their magic bytes)."""
    magic = raw.read(4)
    raw.seek(0)
    if magic.startswith(GZIP_MAGIC):
        unpacked = gzip.GzipFile(fileobj=raw, mode="rb")
        unpacked.myfileobj = raw   # a GzipFile closes only a file it opened itself: let it close ours too
        return unpacked
    if magic.startswith(ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            raise TraceError("this file is zstd-compressed; install the zstandard package "
                             "(pip install 'cachesim[formats]') or decompress it first", file=str(path)) from None
        return io.BufferedReader(_ZstdReader(raw, zstandard))
    return raw


_ZSTD_FRAME = 0xFD2FB528
_ZSTD_SKIPPABLE = range(0x184D2A50, 0x184D2A60)
_FCS_BYTES = (0, 2, 4, 8)      # frame content size, by the header's flag (0 means 1 byte in a single segment)
_DICT_ID_BYTES = (0, 1, 2, 4)


class _ZstdFrames:
    """raw's bytes passed through while their zstd frame structure (headers and block sizes, never the contents)
    is followed, because zstandard's stream reader stops without a word where a truncated frame stops."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.state, self.want, self.head = "magic", 4, b""   # the header being read and its length
        self.skip = 0                                          # block content (or a skippable frame) to pass
        self.checksum = False

    @property
    def inside_frame(self) -> bool:
        return self.state not in ("magic", "foreign") or bool(self.head) or self.skip > 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        i = 0
        while i < len(data) and self.state != "foreign":
            if self.skip:
                k = min(self.skip, len(data) - i)
                self.skip -= k
            else:
                k = min(self.want - len(self.head), len(data) - i)
                self.head += data[i:i + k]
                if len(self.head) == self.want:
                    self._header(self.head)
                    self.head = b""
            i += k
        return data

    def _header(self, h: bytes) -> None:
        value = int.from_bytes(h, "little")
        if self.state == "magic":
            if value == _ZSTD_FRAME:
                self.state, self.want = "descriptor", 1
            elif value in _ZSTD_SKIPPABLE:
                self.state, self.want = "skippable", 4
            else:
                self.state = "foreign"   # not a frame: the decompressor refuses it
        elif self.state == "descriptor":
            single = value >> 5 & 1
            self.checksum = bool(value >> 2 & 1)
            rest = (1 - single) + _DICT_ID_BYTES[value & 3] + (_FCS_BYTES[value >> 6] or single)
            self.state, self.want = ("header", rest) if rest else ("block", 3)
        elif self.state == "header":
            self.state, self.want = "block", 3
        elif self.state == "block":
            block_type = value >> 1 & 3
            self.skip = 1 if block_type == 1 else value >> 3   # an RLE block holds one byte
            if value & 1:  # the frame's last block
                self.state, self.want = ("checksum", 4) if self.checksum else ("magic", 4)
        elif self.state == "skippable":
            self.skip = value
            self.state, self.want = "magic", 4
        else:  # checksum
            self.state, self.want = "magic", 4


class _ZstdReader(io.RawIOBase):
    """zstd frames decompressed as zstandard's stream reader does, except that a stream which ends inside a frame
    (a truncated file) is an EOFError, as gzip's is."""

    def __init__(self, raw: IO[bytes], zstandard):
        self._raw = raw
        self._frames = _ZstdFrames(raw)
        self._reader = zstandard.ZstdDecompressor().stream_reader(self._frames, read_across_frames=True)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._reader.readinto(buffer)
        if n == 0 and self._frames.inside_frame:
            raise EOFError("the zstd stream ends inside a frame")
        return n

    def close(self) -> None:
        self._reader.close()
        self._raw.close()   # the stream reader does not close a source it only reads through _ZstdFrames
        super().close()


def open_text(path: str | Path) -> IO[bytes]:
    """Open a trace file for reading its (decompressed) bytes; a TraceError rather than an OSError traceback."""
    raw = _open_raw(path)
    return _decompressing(raw, path)


MAX_HEAD_BYTES = 64 << 20  # how far the sniffer reads for a first whole line (a Claude Code line can be MBs)


def _fill(handle: IO[bytes], view: memoryview) -> tuple[int, str | None]:
    """Read into ``view`` until it is full or the stream ends, one underlying read at a time so that what came
    before a compressed stream's early end (EOFError) is kept: (bytes read, why it ended early, or None)."""
    n = 0
    while n < len(view):
        try:
            k = handle.readinto1(view[n:])
        except EOFError:
            return n, "the compressed stream ends before its end marker"
        if not k:
            break
        n += k
    return n, None


def read_head(path: str | Path, n_bytes: int = 1 << 16) -> bytes:
    """The first decompressed bytes of a file, for sniffing its format: at least ``n_bytes``, and more until they
    hold a whole non-blank line (or the file, or MAX_HEAD_BYTES, ends; a stream that ends early is sniffed as far
    as it goes, and its reader reports the cut)."""
    head = bytearray()
    with open_text(path) as handle:
        while True:
            more = bytearray(max(n_bytes, len(head)))
            try:
                n, cut_short = _fill(handle, memoryview(more))
            except DECOMPRESSION_ERRORS as exc:
                raise TraceError(f"cannot decompress: {exc}", file=str(path)) from None
            head += more[:n]
            if cut_short or n < len(more) or len(head) >= MAX_HEAD_BYTES or b"\n" in head.lstrip():
                return bytes(head)


class Source:
    """A trace file read in chunks of whole lines; knows how many file bytes it has consumed (for progress)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.total_bytes = os.path.getsize(path) if os.path.exists(path) else 0
        self._raw: IO[bytes] | None = None
        self.consumed: int | None = None   # set by readers that do not read through chunks() (Parquet)

    @property
    def bytes_read(self) -> int:
        """Bytes of the file (compressed, if it is) consumed so far."""
        if self.consumed is not None:
            return self.consumed
        if self._raw is None or self._raw.closed:
            return self.total_bytes if self._raw is not None else 0
        return self._raw.tell()

    def chunks(self, options: ReadOptions) -> Iterator[tuple[memoryview, int, bool]]:
        """``(data, first_line, at_end)``: data holds whole lines (the last chunk may lack a final newline), about
        ``options.batch_bytes`` at a time.

        ``data`` is a view into a buffer that the next chunk reuses (read in place, no copy): use it, or copy
        it with ``bytes(data)``, before asking for the next one. A file that ends early — a compressed stream
        cut before its end, or a file that shrinks while it is read — is a located error, or with
        ``skip_invalid`` one skipped record (the line it cut), so no request goes missing without a word.
        """
        self._raw = _open_raw(self.path)
        handle = _decompressing(self._raw, self.path)
        # no bigger than the file needs (a compressed one may inflate: room for 4x); it grows for a longer line
        buf = bytearray(max(min(options.batch_bytes, max(4 * self.total_bytes, 1 << 16)), 1))
        filled = 0        # bytes in buf: a carried partial line, then what was read
        line = 1
        try:
            while True:
                if filled == len(buf):  # one line longer than the buffer: grow it
                    buf.extend(bytes(len(buf)))
                with memoryview(buf) as free:
                    try:
                        n, cut_short = _fill(handle, free[filled:])
                    except DECOMPRESSION_ERRORS as exc:
                        raise TraceError(f"cannot decompress after line {line - 1}: {exc}",
                                         file=self.path) from None
                filled += n
                if n == 0 and cut_short is None and handle is self._raw and self._raw.tell() < self.total_bytes:
                    cut_short = (f"the file shrank from {self.total_bytes:,} to {self._raw.tell():,} bytes "
                                 "while it was read")
                at_end = n == 0 or cut_short is not None
                # at the end every byte goes, unless the file ended early: then its partial last line is the cut
                cut = filled if at_end and cut_short is None else buf.rfind(b"\n", 0, filled) + 1
                if cut:
                    view = memoryview(buf)[:cut]
                    yield view, line, at_end and cut_short is None
                    line += buf.count(b"\n", 0, cut)
                if cut_short is not None:
                    self._ended_early(cut_short, line, options)
                    return
                if at_end:
                    return
                if cut == 0:
                    continue
                try:
                    view.release()
                except BufferError:  # the consumer kept a view: leave it its buffer and take a new one
                    buf = bytearray(buf)
                buf[:filled - cut] = buf[cut:filled]
                filled -= cut
        finally:
            handle.close()
            self._raw.close()

    def _ended_early(self, why: str, line: int, options: ReadOptions) -> None:
        """The file ended early at ``line`` (the first one not read whole): its lines from there are missing."""
        error = TraceError(f"truncated: {why}, so this line and any after it are missing", file=self.path,
                           line=line)
        if not options.skip_invalid:
            raise error
        options.skip(error)


@dataclass
class ReadOptions:
    """What a reader may be told; formats ignore what does not apply to them."""

    block_size: int | None = None       # the user's block size (LMBench must have one; others check it)
    skip_invalid: bool = False          # skip bad records (counted) instead of stopping at the first
    batch_bytes: int = DEFAULT_BATCH_BYTES
    tenant_field: str | None = None     # Qwen/Bailian: which record field names the tenant (default "type")
    tokenizer: str | None = None        # text formats: a cachesim.tokenizers spec (default: the built-in one)
    lengths: str = "strict"             # block-id formats: one of LENGTHS (see check_block_count)
    sizes: str = "observed"             # transcripts with billed usage: one of SIZES (readers/claude_code.py)
    skipped: int = 0                    # records skipped so far (filled in by the reader)
    skip_examples: list[str] = field(default_factory=list)
    block_rows: int = 0                 # block-id requests read so far, and those of them whose id count did not
    cut_rows: int = 0                   # match their length: fewer ids (prompt cut to them) or more (raised to them)
    raised_rows: int = 0

    def __post_init__(self):
        if self.lengths not in LENGTHS:
            raise ValueError(f"unknown lengths mode {self.lengths!r}; choose one of {', '.join(LENGTHS)}")
        if self.sizes not in SIZES:
            raise ValueError(f"unknown sizes mode {self.sizes!r}; choose one of {', '.join(SIZES)}")

    def skip(self, exc: TraceError) -> None:
        self.skipped += 1
        if len(self.skip_examples) < MAX_SKIP_EXAMPLES:
            self.skip_examples.append(str(exc))

    def count_lengths(self, rows: int, cut: int = 0, raised: int = 0) -> None:
        """Count block-id requests a reader has accepted (only once each: a reader calls it for what it yields)."""
        self.block_rows += rows
        self.cut_rows += cut
        self.raised_rows += raised

    def report_skips(self, stacklevel: int = 3) -> None:
        """Say how many records were skipped, with the first few, and how many block-id rows --lengths from-ids
        read by their ids (warnings: the CLI shows them as notes)."""
        if self.skipped:
            examples = "; ".join(self.skip_examples)
            warnings.warn(f"skipped {self.skipped:,} invalid records (first: {examples})", stacklevel=stacklevel)
        mismatched = self.cut_rows + self.raised_rows
        if mismatched:
            warnings.warn(f"{mismatched:,} of {self.block_rows:,} rows had a block count that did not match their "
                          f"length; read with --lengths from-ids: each such prompt is its ids' full blocks "
                          f"({self.cut_rows:,} shorter than their length, {self.raised_rows:,} longer)",
                          stacklevel=stacklevel)


@dataclass
class ReadResult:
    """A reader's output: the request batch, and the file line of each request (for located errors)."""

    requests: TokenRequests | BlockRequests
    lines: np.ndarray         # int64 [n]: 1-based line of each request
    path: str
    # what some formats carry beyond the requests: per-request arrays ([n]) and Ragged lists (breakpoints,
    # segments); kept with their requests through sorting and handed on in Trace.meta
    extras: dict = field(default_factory=dict)
    unit: str = "line"        # what ``lines`` count: file lines, or requests of a binary file (TraceError.unit)

    def in_time_order(self) -> ReadResult:
        """Itself, or its requests sorted stably by time with a warning that counts the ones out of order."""
        t = self.requests.t
        moved = int((np.diff(t) < 0).sum()) if len(t) > 1 else 0
        if not moved:
            return self
        warnings.warn(f"{moved:,} requests arrived out of order; sorted stably by time", stacklevel=3)
        return self.subset(np.argsort(t, kind="stable"))

    def subset(self, index: np.ndarray) -> ReadResult:
        """The requests at ``index`` (any selection or order), with their lines and extras."""
        r = self.requests
        common = dict(t=r.t[index], tenant=r.tenant[index], tenant_names=list(r.tenant_names),
                      session=r.session[index], output_tokens=r.output_tokens[index])
        if isinstance(r, TokenRequests):
            ids = Ragged(r.token_offsets, {"ids": r.tokens}).take(index)
            requests = TokenRequests(**common, tokens=ids.columns["ids"], token_offsets=ids.offsets)
        else:
            ids = Ragged(r.block_offsets, {"ids": r.block_ids}).take(index)
            requests = BlockRequests(**common, block_ids=ids.columns["ids"], block_offsets=ids.offsets,
                                     prompt_tokens=r.prompt_tokens[index], block_size=r.block_size,
                                     keys_given=r.keys_given, block_source=r.block_source,
                                     tail_tokens=None if r.tail_tokens is None else r.tail_tokens[index])
        extras = {name: value.take(index) if isinstance(value, Ragged) else
                  (value if name in _GLOBAL_EXTRAS or isinstance(value, list) else value[index])
                  for name, value in self.extras.items()}
        return ReadResult(requests, self.lines[index], self.path, extras, self.unit)

    def locate(self, exc: TraceError) -> TraceError:
        """Translate a request index in exc.line into this file's line."""
        if exc.file is None and exc.line is not None and 0 <= exc.line < len(self.lines):
            return TraceError(exc.message, field=exc.field, file=self.path, line=int(self.lines[exc.line]),
                              unit=self.unit)
        return exc.located(file=self.path)


def records(data: bytes | memoryview, first_line: int, at_end: bool, path: str,
            options: ReadOptions, live_tail: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; malformed lines raise located errors (or are skipped).

    ``live_tail``: the file may still be being written (a live agent session), so a malformed last line with no
    newline after it is a record cut mid-write: it ends the stream with a warning instead of an error."""
    lines = bytes(data).split(b"\n")
    last = len(lines) - 1
    for offset, raw in enumerate(lines):
        if not raw.strip():
            continue
        line_no = first_line + offset
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if live_tail and at_end and offset == last:
                warnings.warn(f"{path}:{line_no}: the last line is cut off (no newline ends it: a session still "
                              f"being written?); read up to line {line_no - 1}", stacklevel=2)
                return
            tail = " (a truncated last line?)" if at_end and offset == last else ""
            error = TraceError(f"malformed JSON: {exc}{tail}", file=path, line=line_no)
            if not options.skip_invalid:
                raise error from None
            options.skip(error)
            continue
        if not isinstance(obj, dict):
            error = TraceError(f"expected a JSON object per line, got {type(obj).__name__}", file=path, line=line_no)
            if not options.skip_invalid:
                raise error
            options.skip(error)
            continue
        yield line_no, obj


def json_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each record of a whole (possibly compressed) JSONL file, strictly."""
    options = ReadOptions()
    for data, first_line, at_end in Source(path).chunks(options):
        yield from records(data, first_line, at_end, str(path), options)


def first_record(head: bytes) -> dict | None:
    """The first JSON object of a file's head, or None when the first line is not one."""
    for raw in head.split(b"\n")[:-1] or head.split(b"\n"):
        if raw.strip():
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return None
            return obj if isinstance(obj, dict) else None
    return None


# -- field checks ---------------------------------------------------------------------------------------------

def require(obj: dict, name: str, kinds: tuple[type, ...], what: str):
    """obj[name], checked to be one of kinds (bool is never a number)."""
    if name not in obj:
        raise TraceError("missing", field=name)
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TraceError(f"expected {what}, got {type(value).__name__} {str(value)[:40]}", field=name)
    return value


def token_count(value, name: str, *, positive: bool = False) -> int:
    """A token count read from a file: a whole number, not negative (positive if asked), and at most
    MAX_TOKENS_PER_REQUEST — a larger one is damage, refused here before anything is sized by it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TraceError(f"expected a token count, got {type(value).__name__} {str(value)[:40]}", field=name)
    if value < (1 if positive else 0):
        raise TraceError(f"expected a {'positive' if positive else 'non-negative'} token count, got {value}",
                         field=name)
    if value > MAX_TOKENS_PER_REQUEST:
        raise TraceError(f"{value:,} tokens is beyond the {MAX_TOKENS_PER_REQUEST:,} a request may have (set "
                         "CACHESIM_MAX_TOKENS_PER_REQUEST to raise it)", field=name)
    return value


def count(obj: dict, name: str, *, required: bool = True, positive: bool = False) -> int:
    """A token count field: see token_count; -1 when optional and absent."""
    if not required and obj.get(name) is None:
        return -1
    if name not in obj:
        raise TraceError("missing", field=name)
    return token_count(obj[name], name, positive=positive)


def seconds(value, name: str, per_second: float = 1.0) -> float:
    """A finite, non-negative time in units of 1/per_second, as seconds (divided, so 2250 ms is 2.25 exactly)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TraceError(f"expected a number, got {type(value).__name__} {str(value)[:40]}", field=name)
    t = value / per_second
    if not (t >= 0 and t != float("inf")):
        raise TraceError(f"expected a finite, non-negative time, got {value!r}", field=name)
    return float(t)


def int_list(obj: dict, name: str, max_value: int) -> list[int]:
    values = require(obj, name, (list,), "a list of integers")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TraceError(f"element {i} is {type(v).__name__} {str(v)[:40]}, expected an integer in "
                             f"0..{max_value}", field=name)
        if not 0 <= v <= max_value:
            raise TraceError(f"element {i} = {v} is outside 0..{max_value}", field=name)
    return values


def label(obj: dict, name: str, default=None):
    """An optional tenant/session label: a string or an integer."""
    value = obj.get(name, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
        raise TraceError(f"expected a string or integer label, got {str(value)[:40]!r}", field=name)
    return value


def check_block_count(n_ids: int, prompt_tokens: int, block_size: int, name: str = "hash_ids",
                      lengths: str = "strict") -> int:
    """The prompt length a row of ``n_ids`` block ids is read at.

    A row whose ids are ``ceil(prompt_tokens / block_size)`` keeps its length (the last block takes the
    remainder). Any other row is refused (``strict``), or with ``from-ids`` read as its ids alone, every id one
    full block: the prompt becomes ``n_ids * block_size`` tokens, cut to what the ids cover when they are
    fewer, raised to them when they are more, so every hit the ids describe is replayed and no token is
    invented that no id stands for.
    """
    expected = -(-prompt_tokens // block_size)
    if n_ids == expected:
        return prompt_tokens
    if lengths != "from-ids":
        raise TraceError(f"{n_ids} block ids for {prompt_tokens} tokens; blocks of {block_size} tokens need "
                         f"ceil({prompt_tokens}/{block_size}) = {expected} (--lengths from-ids reads such rows "
                         "by their ids)", field=name)
    if n_ids == 0:
        raise TraceError(f"no block ids for {prompt_tokens} tokens: --lengths from-ids reads a prompt from its ids",
                         field=name)
    return token_count(n_ids * block_size, name)


def fixed_block_size(options: ReadOptions, fixed: int, format_name: str) -> int:
    """A format whose blocks have one size: the user's --block-size must agree with it."""
    if options.block_size is not None and options.block_size != fixed:
        raise TraceError(f"{format_name} blocks are {fixed} tokens; a block size of {options.block_size} "
                         "needs token ids", field="block_size")
    return fixed


# -- building batches -----------------------------------------------------------------------------------------

@dataclass
class Interner:
    """Labels to small consecutive codes, in order of first appearance (kept across a stream's batches)."""

    names: list[str] = field(default_factory=list)
    index: dict = field(default_factory=dict)

    def code(self, label) -> int:
        code = self.index.get(label)
        if code is None:
            code = self.index[label] = len(self.names)
            self.names.append(str(label))
        return code


_GLOBAL_EXTRAS = ("segment_kinds", "model_names")   # extras that describe the batch, not one request each
# what a log says was billed, per request (-1: not in the log); the 1-hour writes are part of the cache writes
OBSERVED = ("observed_input_tokens", "observed_cache_read_tokens", "observed_cache_write_tokens",
            "observed_output_tokens", "observed_cache_write_1h_tokens")


@dataclass
class Row:
    """One request as a format's parser sees it; ``values`` are token ids or block ids."""

    t: float
    values: list[int] | np.ndarray
    prompt_tokens: int = -1        # block-id rows: the prompt length in tokens
    output_tokens: int = -1
    tenant: object = "default"
    session: object = None
    breakpoints: list[tuple[int, float]] | None = None   # (prefix length in tokens, TTL in seconds or NaN)
    segments: list[tuple[str, int]] | None = None        # (kind, tokens), in prompt order
    observed: dict | None = None                         # OBSERVED name -> tokens, as billed
    line: int | None = None        # where the request is located when later records completed it (else the record's)
    boundaries: list[int] | None = None                  # content-block ends in tokens, as a provider trace gives them
    model: str | None = None                             # the model the log says served the request


class Columns:
    """Rows collected into one batch of TokenRequests or BlockRequests; labels interned across batches."""

    def __init__(self, kind: str, block_size: int | None = None):
        if kind not in ("tokens", "blocks"):
            raise ValueError(kind)
        self.kind = kind
        self.block_size = block_size
        self.tenants = Interner()
        self.sessions = Interner()
        self.kinds = Interner()   # segment kinds
        self.model_names = Interner()   # models the log names
        self.clear()

    def clear(self) -> None:
        self.t: list[float] = []
        self.values: list[np.ndarray] = []
        self.lengths: list[int] = []
        self.prompt_tokens: list[int] = []
        self.outputs: list[int] = []
        self.tenant_codes: list[int] = []
        self.session_codes: list[int] = []
        self.lines: list[int] = []
        self.breakpoints: list[list[tuple[int, float]]] = []
        self.segments: list[list[tuple[str, int]]] = []
        self.observed: list[dict] = []
        self.boundaries: list[list[int] | None] = []
        self.models: list[int] = []
        self.any_extras = False

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, row: Row, line_no: int) -> None:
        self.t.append(row.t)
        self.values.append(row.values)
        self.lengths.append(len(row.values))
        self.prompt_tokens.append(row.prompt_tokens)
        self.outputs.append(row.output_tokens)
        self.tenant_codes.append(self.tenants.code(row.tenant))
        self.session_codes.append(-1 if row.session is None else self.sessions.code(row.session))
        self.lines.append(line_no if row.line is None else row.line)
        self.breakpoints.append(row.breakpoints or [])
        self.segments.append(row.segments or [])
        self.observed.append(row.observed or {})
        self.boundaries.append(row.boundaries)
        self.models.append(-1 if row.model is None else self.model_names.code(row.model))
        self.any_extras = self.any_extras or bool(row.breakpoints or row.segments or row.observed or row.boundaries
                                                  or row.model)

    def take(self, path: str) -> ReadResult:
        """The rows so far as one batch; the collector is emptied (its label codes are kept)."""
        n = len(self.lines)
        lengths = np.asarray(self.lengths, dtype=np.int64)
        dtype = np.uint32 if self.kind == "tokens" else np.uint64
        flat = (np.concatenate([np.asarray(v, dtype=dtype) for v in self.values]) if n
                else np.zeros(0, dtype=dtype))
        common = dict(t=np.asarray(self.t, dtype=np.float64).reshape(n),
                      tenant=np.asarray(self.tenant_codes, dtype=np.int32).reshape(n),
                      tenant_names=list(self.tenants.names) or ["default"],
                      session=np.asarray(self.session_codes, dtype=np.int64).reshape(n),
                      output_tokens=np.asarray(self.outputs, dtype=np.int64).reshape(n))
        if self.kind == "tokens":
            requests = TokenRequests(**common, tokens=flat, token_offsets=offsets_from_lengths(lengths))
        else:
            requests = BlockRequests(**common, block_ids=flat, block_offsets=offsets_from_lengths(lengths),
                                     prompt_tokens=np.asarray(self.prompt_tokens, dtype=np.int64).reshape(n),
                                     block_size=int(self.block_size))
        result = ReadResult(requests, np.asarray(self.lines, dtype=np.int64).reshape(n), path,
                            self._extras() if self.any_extras else {})
        self.clear()
        return result

    def _extras(self) -> dict:
        extras = {name: np.asarray([o.get(name, -1) for o in self.observed], dtype=np.int64) for name in OBSERVED}
        flat = [b for row in self.breakpoints for b in row]
        extras["breakpoints"] = Ragged(offsets_from_lengths(np.asarray([len(r) for r in self.breakpoints])),
                                       {"tokens": np.asarray([b[0] for b in flat], dtype=np.int64),
                                        "ttl_s": np.asarray([b[1] for b in flat], dtype=np.float64)})
        segs = [seg for row in self.segments for seg in row]
        extras["segments"] = Ragged(offsets_from_lengths(np.asarray([len(r) for r in self.segments])),
                                    {"kind": np.asarray([self.kinds.code(k) for k, _ in segs], dtype=np.int32),
                                     "tokens": np.asarray([n for _, n in segs], dtype=np.int64)})
        extras["segment_kinds"] = list(self.kinds.names)
        if any(code >= 0 for code in self.models):   # codes into model_names, interned across batches
            extras["model"] = np.asarray(self.models, dtype=np.int32)
            extras["model_names"] = list(self.model_names.names)
        if any(b is not None for b in self.boundaries):
            ends = [b or [] for b in self.boundaries]
            extras["boundaries"] = Ragged(offsets_from_lengths(np.asarray([len(b) for b in ends])),
                                          {"tokens": np.asarray([x for b in ends for x in b], dtype=np.int64)})
        return extras


def json_batches(source: Source, options: ReadOptions, columns: Columns,
                 parse: Callable[[dict, int], Row | list[Row] | None],
                 fast: Callable[[bytes, int], ReadResult | None] | None = None,
                 finish: Callable[[], list[Row]] | None = None, live_tail: bool = False) -> Iterator[ReadResult]:
    """Bounded batches of a JSONL format: ``parse(obj, line)`` turns a record into a Row (None = not a request),
    or into a list of them (a record holding several requests, as a kv-cache-tester trace does).

    ``finish()`` gives the rows a parser still holds when the records end (or a bad one stops them): a request
    that later records complete, such as a streamed message, is returned when the next one starts. ``live_tail``
    reads a file that may still be being written (see :func:`records`).

    ``fast(data, first_line)`` may return a whole chunk's batch at once; when it returns None the chunk is
    parsed record by record, which decides what is valid. A bad record stops the stream with a located
    error, after the requests before it have been yielded (or is skipped and counted with ``skip_invalid``).
    """
    for data, first_line, at_end in source.chunks(options):
        if fast is not None:
            result = fast(data, first_line)
            if result is not None and _counts_within_bound(result.requests):
                yield result
                continue
        lines = records(data, first_line, at_end, source.path, options, live_tail)
        while True:
            try:
                line_no, obj = next(lines)
            except StopIteration:
                break
            except TraceError:
                yield from _served_before_the_error(columns, finish, source.path)
                raise
            try:
                row = parse(obj, line_no)
            except TraceError as exc:
                error = exc.located(file=source.path, line=line_no)
                if options.skip_invalid:
                    options.skip(error)
                    continue
                yield from _served_before_the_error(columns, finish, source.path)
                raise error from None
            for one in row if isinstance(row, list) else () if row is None else (row,):
                columns.add(one, line_no)
        if len(columns):
            yield columns.take(source.path)
    for one in finish() if finish is not None else ():
        columns.add(one, one.line or 0)
    if len(columns):
        yield columns.take(source.path)


def _served_before_the_error(columns: Columns, finish: Callable[[], list[Row]] | None, path: str):
    """What came before a bad line, held rows included, is served before the error stops the stream."""
    for one in finish() if finish is not None else ():
        columns.add(one, one.line or 0)
    if len(columns):
        yield columns.take(path)


def _counts_within_bound(requests: TokenRequests | BlockRequests) -> bool:
    """Whether the counts a compiled scanner read are within token_count's bound; if not, the careful path
    re-reads the chunk and refuses the first one where it stands."""
    counts = [requests.output_tokens] + ([requests.prompt_tokens] if isinstance(requests, BlockRequests) else [])
    return all(c.max(initial=0) <= MAX_TOKENS_PER_REQUEST for c in counts)


def concat(results: list[ReadResult]) -> ReadResult:
    """Batches of one stream joined into one (tenant names of the last batch cover all earlier codes)."""
    if len(results) == 1:
        return results[0]
    first = results[0].requests
    common = dict(t=np.concatenate([r.requests.t for r in results]),
                  tenant=np.concatenate([_recode(r.requests, results[-1].requests.tenant_names) for r in results]),
                  tenant_names=list(results[-1].requests.tenant_names),
                  session=np.concatenate([r.requests.session for r in results]),
                  output_tokens=np.concatenate([r.requests.output_tokens for r in results]))
    lines = np.concatenate([r.lines for r in results])
    if isinstance(first, TokenRequests):
        lengths = np.concatenate([np.diff(r.requests.token_offsets) for r in results])
        requests = TokenRequests(**common, tokens=np.concatenate([r.requests.tokens for r in results]),
                                 token_offsets=offsets_from_lengths(lengths))
    else:
        lengths = np.concatenate([np.diff(r.requests.block_offsets) for r in results])
        requests = BlockRequests(**common, block_ids=np.concatenate([r.requests.block_ids for r in results]),
                                 block_offsets=offsets_from_lengths(lengths),
                                 prompt_tokens=np.concatenate([r.requests.prompt_tokens for r in results]),
                                 block_size=first.block_size, keys_given=first.keys_given,
                                 block_source=first.block_source,
                                 tail_tokens=None if first.tail_tokens is None else
                                 np.concatenate([r.requests.tail_tokens for r in results]))
    extras = {}
    carrying = [r for r in results if r.extras]
    if carrying:
        # a batch without a single breakpoint, segment or observed count carries none, and one without boundaries
        # no boundaries: they get empty ones (the last batch's interned lists cover every earlier code)
        template: dict = {}
        for r in carrying:
            template.update(r.extras)
        parts = [{**_no_extras(template, r.requests.t.shape[0]), **r.extras} for r in results]
        for name, value in template.items():
            if name in _GLOBAL_EXTRAS or isinstance(value, list):
                extras[name] = value  # interned across batches: the last carrying batch's list covers all codes
            elif isinstance(value, Ragged):
                extras[name] = Ragged.concat([p[name] for p in parts])
            else:
                extras[name] = np.concatenate([p[name] for p in parts])
    return ReadResult(requests, lines, results[0].path, extras, results[0].unit)


def _no_extras(template: dict, n: int) -> dict:
    """Extras shaped like ``template`` for n requests that carry none: empty lists, -1 (unknown) counts."""
    out = {}
    for name, value in template.items():
        if isinstance(value, Ragged):
            out[name] = Ragged(np.zeros(n + 1, dtype=np.int64),
                               {k: np.empty(0, dtype=v.dtype) for k, v in value.columns.items()})
        elif name not in _GLOBAL_EXTRAS and not isinstance(value, list):
            out[name] = np.full(n, -1, dtype=np.asarray(value).dtype)
    return out


def _recode(requests, names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    table = np.asarray([index[name] for name in requests.tenant_names], dtype=np.int32)
    return table[requests.tenant] if len(requests.tenant) else requests.tenant
