"""Mooncake (FAST'25) JSONL: ``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids`` of 512 tokens.

``len(hash_ids) == ceil(input_length / 512)``: the last block is usually partial and still has an id.
The traces carry no tenant or session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cachesim.readers._base import ReadResult, int_list, json_lines, require
from cachesim.requests import BlockRequests, TraceError, offsets_from_lengths

NAME = "mooncake"
BLOCK_SIZE = 512


def sniff(first: dict) -> bool:
    return "hash_ids" in first and "input_length" in first and "timestamp" in first


def read(path: str | Path, block_size: int | None = None) -> ReadResult:
    block_size = block_size or BLOCK_SIZE
    times, inputs, outputs, lengths, lines, ids = [], [], [], [], [], []
    for line_no, obj in json_lines(path):
        try:
            times.append(require(obj, "timestamp", (int, float), "milliseconds"))
            inputs.append(require(obj, "input_length", (int,), "a token count"))
            outputs.append(require(obj, "output_length", (int,), "a token count") if "output_length" in obj else -1)
            hash_ids = int_list(obj, "hash_ids", 2**64 - 1)
        except TraceError as exc:
            raise exc.located(file=str(path), line=line_no) from None
        ids.extend(hash_ids)
        lengths.append(len(hash_ids))
        lines.append(line_no)
    if not lines:
        raise TraceError("no requests: the file is empty", file=str(path))
    requests = BlockRequests(t=np.asarray(times, dtype=np.float64) / 1000.0,
                             tenant=np.zeros(len(lines), dtype=np.int32), tenant_names=["default"],
                             session=np.full(len(lines), -1, dtype=np.int64),
                             output_tokens=np.asarray(outputs, dtype=np.int64),
                             block_ids=np.asarray(ids, dtype=np.uint64),
                             block_offsets=offsets_from_lengths(np.asarray(lengths, dtype=np.int64)),
                             prompt_tokens=np.asarray(inputs, dtype=np.int64), block_size=block_size)
    return ReadResult(requests, np.asarray(lines, dtype=np.int64), str(path))
