"""LMBench-style JSONL: ``timestamp`` a string of integer nanoseconds, ``input_length``, ``output_length``,
``hash_ids`` at a block size the user gives (``--block-size``).

    {"timestamp": "1718000000123456789", "input_length": 300, "output_length": 20, "hash_ids": [5, 9, 2]}

The ids are not prefix-chained (an id does not imply the ids before it); compiling chains every block's key
to its predecessors' anyway, so a block hits only when its whole prefix does. Times are taken relative to
nothing: the file's own origin is kept (seconds = ns / 1e9). Some production traces (LMBench's GMI trace, 32-bit
content hashes) give a count of ids that does not match ``ceil(input_length / block_size)`` on most rows:
``ReadOptions.lengths = "from-ids"`` reads those by their ids (mooncake.block_prompt).
"""

from __future__ import annotations

from collections.abc import Iterator

from cachesim.readers import mooncake
from cachesim.readers._base import (
    Columns,
    ReadOptions,
    ReadResult,
    Row,
    Source,
    count,
    int_list,
    json_batches,
    require,
)
from cachesim.requests import TraceError

NAME = "lmbench"
_KEYS = (b"timestamp", b"input_length", b"output_length")  # the timestamp is read as a label (a string)
TIME_FIELD = "timestamp"


def sniff(first: dict | None, head: bytes) -> bool:
    return (first is not None and isinstance(first.get("timestamp"), str) and "hash_ids" in first
            and "input_length" in first)


def _nanoseconds(obj: dict) -> float:
    text = require(obj, "timestamp", (str,), "a string of integer nanoseconds")
    if not (text.isascii() and text.isdigit()):
        raise TraceError(f"expected a string of integer nanoseconds, got {text[:40]!r}", field="timestamp")
    return int(text) / 1e9


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    if options.block_size is None:
        raise TraceError("LMBench traces do not say their block size; give it with --block-size",
                         field="block_size", file=source.path)
    block_size = options.block_size

    def parse(obj: dict, line_no: int) -> Row:
        t = _nanoseconds(obj)
        prompt = count(obj, "input_length", positive=True)
        output = count(obj, "output_length", required=False)
        ids = int_list(obj, "hash_ids", 2**64 - 1)
        prompt = mooncake.block_prompt(ids, prompt, block_size, options)
        return Row(t=t, values=ids, prompt_tokens=prompt, output_tokens=output)

    def fast(data, first_line: int) -> ReadResult | None:
        found = mooncake.scan_chunk(data, first_line, source.path, _KEYS, block_size, 1e9, (b"timestamp",),
                                    ns_time=True, lengths=options.lengths)
        return found and mooncake.counted(found, options)

    return json_batches(source, options, Columns("blocks", block_size), parse, fast=fast)
