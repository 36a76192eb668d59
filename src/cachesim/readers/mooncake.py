"""Mooncake (FAST'25) JSONL: ``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids`` of 512 tokens.

``len(hash_ids) == ceil(input_length / 512)``: the last block is usually partial and still has an id.
The traces carry no tenant or session. Whole chunks go through the compiled scanner (``_scan``); a chunk it
does not fully accept is re-read record by record, which names the bad line and field.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

try:
    from cachesim import _scan
except ImportError:  # built without the compiled scanner: the careful path reads everything (same result, slower)
    _scan = None
from cachesim.readers._base import (Columns, ReadOptions, ReadResult, Row, Source, check_block_count, count,
                                    fixed_block_size, int_list, json_batches, require, seconds)
from cachesim.requests import BlockRequests

NAME = "mooncake"
TIME_FIELD = "timestamp"
BLOCK_SIZE = 512
_KEYS = (b"timestamp", b"input_length", b"output_length")
_KINDS = (0, 1, 2)  # _scan's NUMBER, UINT, UINT_OPT: timestamp, input_length, output_length


def sniff(first: dict | None, head: bytes) -> bool:
    return (first is not None and "hash_ids" in first and "input_length" in first and "timestamp" in first
            and not isinstance(first["timestamp"], str) and "chat_id" not in first)


def parse(obj: dict, line_no: int) -> Row:
    t = seconds(require(obj, "timestamp", (int, float), "milliseconds"), "timestamp", 1000.0)
    prompt = count(obj, "input_length", positive=True)
    output = count(obj, "output_length", required=False)
    ids = int_list(obj, "hash_ids", 2**64 - 1)
    check_block_count(len(ids), prompt, BLOCK_SIZE)
    return Row(t=t, values=ids, prompt_tokens=prompt, output_tokens=output)


def scan_chunk(data: bytes, first_line: int, path: str, keys: tuple[bytes, ...], block_size: int,
               per_second: float) -> ReadResult | None:
    """A whole chunk through the compiled scanner, or None when any line needs the careful path."""
    if _scan is None:
        return None
    scalars, ids, offsets, lines, failed = _scan.scan_lines(data, keys, _KINDS, b"hash_ids", first_line)
    if failed >= 0:
        return None
    t = scalars[:, 0] / per_second
    prompt = scalars[:, 1].astype(np.int64)
    n_blocks = np.diff(offsets)
    if (np.any(~(t >= 0)) or np.any(~np.isfinite(t)) or np.any(prompt <= 0)
            or np.any(n_blocks != (prompt + block_size - 1) // block_size)):
        return None
    output = scalars[:, 2]
    n = len(lines)
    requests = BlockRequests(t=t, tenant=np.zeros(n, dtype=np.int32), tenant_names=["default"],
                             session=np.full(n, -1, dtype=np.int64),
                             output_tokens=np.where(np.isnan(output), -1, output).astype(np.int64),
                             block_ids=ids, block_offsets=offsets, prompt_tokens=prompt, block_size=block_size)
    return ReadResult(requests, lines, path)


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    fixed_block_size(options, BLOCK_SIZE, "Mooncake")
    return json_batches(source, options, Columns("blocks", BLOCK_SIZE), parse,
                        fast=lambda data, line: scan_chunk(data, line, source.path, _KEYS, BLOCK_SIZE, 1000.0))
