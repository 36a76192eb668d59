"""Mooncake (FAST'25) JSONL: ``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids`` of 512 tokens.

``len(hash_ids) == ceil(input_length / 512)``: the last block is usually partial and still has an id (a row
that breaks it is refused, or read by its ids with ``ReadOptions.lengths = "from-ids"``). The traces carry no
tenant or session; the FAST'25 tool-agent trace has the conversation trace's schema (FAST25-release/README.md)
and reads the same way. Whole chunks go through the compiled scanner (``_scan``); a chunk it does not fully
accept is re-read record by record, which names the bad line and field.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

try:
    from cachesim import _scan
except ImportError:  # built without the compiled scanner: the careful path reads everything (same result, slower)
    _scan = None
from cachesim.readers._base import (
    Columns,
    ReadOptions,
    ReadResult,
    Row,
    Source,
    _counts_within_bound,
    check_block_count,
    count,
    fixed_block_size,
    int_list,
    json_batches,
    require,
    seconds,
)
from cachesim.requests import BlockRequests

NAME = "mooncake"
TIME_FIELD = "timestamp"
BLOCK_SIZE = 512
_KEYS = (b"timestamp", b"input_length", b"output_length")
_KINDS = (0, 1, 2)  # _scan's NUMBER, UINT, UINT_OPT: timestamp, input_length, output_length


def sniff(first: dict | None, head: bytes) -> bool:
    return (first is not None and "hash_ids" in first and "input_length" in first and "timestamp" in first
            and not isinstance(first["timestamp"], str) and "chat_id" not in first)


def block_prompt(ids: list[int], prompt: int, block_size: int, options: ReadOptions) -> int:
    """A block-id row's prompt length (check_block_count), counted in ``options`` as read; call it last, when
    nothing else about the row can fail, so that a row is counted once and only if it is read."""
    used = check_block_count(len(ids), prompt, block_size, lengths=options.lengths)
    options.count_lengths(1, int(used < prompt), int(used > prompt))
    return used


def parser(options: ReadOptions):
    def parse(obj: dict, line_no: int) -> Row:
        t = seconds(require(obj, "timestamp", (int, float), "milliseconds"), "timestamp", 1000.0)
        prompt = count(obj, "input_length", positive=True)
        output = count(obj, "output_length", required=False)
        ids = int_list(obj, "hash_ids", 2**64 - 1)
        prompt = block_prompt(ids, prompt, BLOCK_SIZE, options)
        return Row(t=t, values=ids, prompt_tokens=prompt, output_tokens=output)

    return parse


def scan_chunk(data: bytes, first_line: int, path: str, keys: tuple[bytes, ...], block_size: int,
               per_second: float, label_keys: tuple[bytes, ...] = (), ns_time: bool = False,
               lengths: str = "strict"):
    """A whole chunk of block-id lines through the compiled scanner, or None when any line needs the careful path.

    ``keys`` name the time (unless ``ns_time``: then the time is the first label, a string of nanoseconds), the
    prompt length and the output length. Returns ``(ReadResult, labels, raw, (cut, raised))``: the requests with
    tenant "default" and no session, the ``(kind, start, end)`` spans of ``label_keys``, the chunk's bytes (for
    the caller to fill in tenants and sessions) and how many rows ``lengths="from-ids"`` read by their ids,
    which the caller counts (``ReadOptions.count_lengths``) if it yields the batch. A count beyond the bound
    (token_count) is None too, so that a batch returned here is never re-read and counted twice.
    """
    if _scan is None:
        return None
    skip = 1 if ns_time else 0  # the time is a label, not a scalar
    found = _scan.scan_lines(data, keys[skip:], _KINDS[skip:], b"hash_ids", first_line, label_keys)
    scalars, ids, offsets, lines, failed = found[:5]
    if failed >= 0 or not len(lines):
        return None
    labels = found[5] if label_keys else None
    raw = bytes(data) if label_keys else b""
    if ns_time:  # LMBench: "timestamp": "1718000000123456789"
        stamps = [raw[a:b] for kind, a, b in labels[:, 0].tolist() if kind == 1]
        if len(stamps) != len(lines) or not all(x.isdigit() and len(x) <= 19 for x in stamps):
            return None
        t = np.asarray([int(x) for x in stamps], dtype=np.float64) / per_second
    else:
        t = scalars[:, 0] / per_second
    prompt = scalars[:, 1 - skip].astype(np.int64)
    n_blocks = np.diff(offsets)
    if np.any(~(t >= 0)) or np.any(~np.isfinite(t)) or np.any(prompt <= 0):
        return None
    expected = (prompt + block_size - 1) // block_size
    mismatched = n_blocks != expected
    cut = raised = 0
    if mismatched.any():
        # the careful path refuses these rows (strict) or a row without ids, naming its line
        if lengths != "from-ids" or np.any(n_blocks[mismatched] == 0):
            return None
        cut = int(np.count_nonzero(n_blocks[mismatched] < expected[mismatched]))
        raised = int(np.count_nonzero(mismatched)) - cut
        prompt = np.where(mismatched, n_blocks * block_size, prompt)   # as check_block_count reads them
    output = scalars[:, 2 - skip]
    n = len(lines)
    requests = BlockRequests(t=t, tenant=np.zeros(n, dtype=np.int32), tenant_names=["default"],
                             session=np.full(n, -1, dtype=np.int64),
                             output_tokens=np.where(np.isnan(output), -1, output).astype(np.int64),
                             block_ids=ids, block_offsets=offsets, prompt_tokens=prompt, block_size=block_size)
    if not _counts_within_bound(requests):
        return None
    return ReadResult(requests, lines, path), labels, raw, (cut, raised)


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    fixed_block_size(options, BLOCK_SIZE, "Mooncake")
    def fast(data, first_line: int) -> ReadResult | None:
        found = scan_chunk(data, first_line, source.path, _KEYS, BLOCK_SIZE, 1000.0, lengths=options.lengths)
        return found and counted(found, options)

    return json_batches(source, options, Columns("blocks", BLOCK_SIZE), parser(options), fast=fast)


def counted(found: tuple, options: ReadOptions) -> ReadResult:
    """scan_chunk's batch, its rows counted as read (ReadOptions.count_lengths)."""
    result, cut_raised = found[0], found[3]
    options.count_lengths(len(result.lines), *cut_raised)
    return result
