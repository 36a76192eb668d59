"""``cachesim convert``: compile a trace once into the compact, memory-mappable .npz format."""

from __future__ import annotations

from pathlib import Path

from cachesim.cli._options import (
    add_command,
    add_reading_flags,
    parse_count,
    print_notes,
    reading_options,
    recorded_warnings,
    require_npz,
    synthesized,
)


def add_parser(sub) -> None:
    p = add_command(sub, "convert", help="compile a trace file into the compact .npz format",
                    description="Read a trace (any format, gzip/zstd welcome), sort it stably by time and save "
                                "it compiled as .npz: far smaller than JSONL token ids, loads in milliseconds, "
                                "block keys memory-mapped.")
    p.add_argument("input", help="trace file")
    p.add_argument("output", help="output file (.npz)")
    p.add_argument("--block-size", type=parse_count, metavar="N", help="tokens per block (token-id traces: "
                   "default 16; LMBench: required)")
    p.add_argument("--dense", action="store_true",
                   help="number the block keys 0, 1, 2... (Trace.dense()): every later replay or sweep of the file "
                        "finds its blocks by array instead of by hashing, with the same results")
    add_reading_flags(p)


def run(args) -> int:
    from cachesim._contract import DEFAULT_TOKEN_BLOCK_SIZE
    from cachesim.readers import read_trace
    from cachesim.trace import compile_trace

    require_npz(args.output, "convert")
    with recorded_warnings() as caught:
        synthetic = synthesized(args, Path(args.input))
        if synthetic is not None:
            trace = compile_trace(synthetic[0], args.block_size or DEFAULT_TOKEN_BLOCK_SIZE)
        else:
            trace = read_trace(args.input, block_size=args.block_size, keep_order=args.keep_order,
                               **reading_options(args))
    print_notes(caught)
    if args.dense:
        trace = trace.dense()
    trace.save(args.output)
    size_in, size_out = Path(args.input).stat().st_size, Path(args.output).stat().st_size
    print(f"{args.output}: {trace.n_requests:,} requests, {trace.n_blocks:,} blocks of {trace.block_size} tokens; "
          f"{size_out:,} bytes; the input is {size_in:,} bytes ({size_in / max(size_out, 1):.1f}x)")
    return 0
