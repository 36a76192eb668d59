"""``cachesim convert``: a trace into the compact formats (.npz, Parquet) and between them."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from cachesim.cli._options import (
    add_command,
    add_reading_flags,
    parse_count,
    print_notes,
    reading_options,
    recorded_warnings,
    require_trace_output,
    synthesized,
)


def add_parser(sub) -> None:
    p = add_command(sub, "convert", help="convert a trace into the compact .npz or Parquet format",
                    description="Read a trace (any format, gzip/zstd welcome, .npz and .parquet included) and write "
                                "it as OUTPUT's suffix says. .npz: sorted stably by time and compiled, block keys "
                                "memory-mapped on load. .parquet: a block-id trace is written as it is, streamed "
                                "in bounded memory, its ids delta-coded (Mooncake: 13x smaller than the JSONL), "
                                "and reads back into the same trace; any other trace is written compiled.")
    p.add_argument("input", help="trace file")
    p.add_argument("output", help="output file (.npz or .parquet)")
    p.add_argument("--block-size", type=parse_count, metavar="N", help="tokens per block (token-id traces: "
                   "default 16; LMBench: required)")
    p.add_argument("--dense", action="store_true",
                   help="number the block keys 0, 1, 2... (Trace.dense()): every later replay or sweep of the file "
                        "finds its blocks by array instead of by hashing, with the same results (.npz only)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    add_reading_flags(p)


def run(args) -> int:
    from cachesim._contract import DEFAULT_TOKEN_BLOCK_SIZE
    from cachesim.readers import read_trace
    from cachesim.trace import compile_trace

    require_trace_output(args.output, "convert")
    if args.dense and not args.output.endswith(".npz"):
        raise ValueError("--dense numbers the keys of an .npz; a Parquet file keeps the trace's own ids or keys")
    with recorded_warnings() as caught:
        synthetic = synthesized(args, Path(args.input))
        trace = None
        if synthetic is not None:
            trace = compile_trace(synthetic[0], args.block_size or DEFAULT_TOKEN_BLOCK_SIZE)
        elif args.output.endswith(".parquet"):
            written = _parquet_as_read(args)
            if written is not None:
                print_notes(caught)
                return _said(args, *written)
        if trace is None:
            trace = read_trace(args.input, block_size=args.block_size, keep_order=args.keep_order,
                               **reading_options(args))
    print_notes(caught)
    if args.dense:
        trace = trace.dense()
    trace.save(args.output)
    return _said(args, trace.n_requests, trace.n_blocks, trace.block_size)


def _said(args, requests: int, blocks: int, block_size: int) -> int:
    size_in, size_out = Path(args.input).stat().st_size, Path(args.output).stat().st_size
    print(f"{args.output}: {requests:,} requests, {blocks:,} blocks of {block_size} tokens; "
          f"{size_out:,} bytes; the input is {size_in:,} bytes ({size_in / max(size_out, 1):.1f}x)")
    return 0


def _parquet_as_read(args) -> tuple[int, int, int] | None:
    """A block-id trace streamed into Parquet as its reader gives it (kind ``ids``), batch by batch; None (nothing
    written) when the reader gives token ids or compiled keys, which are written compiled instead."""
    import numpy as np

    from cachesim.progress import progress_bar
    from cachesim.readers import ReadOptions, _format, iter_requests
    from cachesim.readers._base import Source
    from cachesim.readers.parquet import ParquetTraceWriter
    from cachesim.requests import BlockRequests, TraceError

    if Path(args.input).suffix == ".npz":
        return None
    kw = reading_options(args)
    module = _format(args.input, kw.pop("format"))
    options = ReadOptions(block_size=args.block_size, batch_bytes=args.batch_bytes, **kw)
    source = Source(args.input)
    batches = iter_requests(args.input, module.NAME, options, source=source)
    first = next(batches, None)
    if first is None or not isinstance(first.requests, BlockRequests) or first.requests.keys_given:
        return None
    time_field = getattr(module, "TIME_FIELD", "t")
    previous_t = -np.inf
    with ParquetTraceWriter(args.output, kind="ids", block_size=first.requests.block_size) as writer, \
            progress_bar(source.total_bytes, lambda: source.bytes_read, "convert", enabled=args.progress) as update:
        for batch in itertools.chain([first], batches):
            t = batch.requests.t
            if args.keep_order and len(t):
                back = np.flatnonzero(np.diff(t, prepend=previous_t) < 0)
                if back.size:
                    i = int(back[0])
                    raise TraceError(f"arrival time {float(t[i])!r} s is before the previous request's; "
                                     "--keep-order refuses to reorder", field=time_field, file=args.input,
                                     line=int(batch.lines[i]), unit=batch.unit)
            if len(t):
                previous_t = float(t[-1])
                writer.write(batch)
            update(writer.requests)
    options.report_skips()
    return writer.requests, writer.blocks, writer.block_size
