"""``cachesim mrc``: the exact (or sampled) LRU hit-ratio curve over capacity x TTL, from one pass."""

from __future__ import annotations

import argparse
from pathlib import Path

from cachesim.cli._options import (
    add_command,
    add_hit_cap_and_isolation,
    add_input_args,
    add_kv_bytes_args,
    console,
    emit,
    kv_bytes_per_token,
    parse_count,
    parse_list,
    parse_seconds,
    preset,
    real,
    require_figure,
    stream_input,
    whole,
)


def add_parser(sub) -> None:
    p = add_command(sub, "mrc", tables=True,
                    help="hit-ratio curve of an LRU prefix cache at every capacity (and TTL), one pass",
                       description="Print (and plot) the LRU hit-ratio curve of a trace: hit ratio against cache "
                                   "capacity, for one or more TTLs, from one pass over the trace. Exact (equal "
                                   "to a replay at each capacity) unless --sample is given.")
    add_input_args(p, "profile")
    p.add_argument("--capacities", type=parse_list(parse_count, "unbounded"), metavar="LIST",
                   help="capacities in blocks, e.g. 1k,10k,100k,none (default: a log-spaced grid up to the "
                        "trace's distinct blocks, then unbounded)")
    p.add_argument("--ttl", type=parse_list(parse_seconds, "no expiry"), metavar="LIST",
                   help="TTLs refreshed on use, e.g. 300,1h (the no-TTL curve is always shown too)")
    add_kv_bytes_args(p)
    add_hit_cap_and_isolation(p)
    p.add_argument("--warmup", metavar="N|Ns", help="leave the first N requests (or N seconds) out of the counts")
    p.add_argument("--sample", type=real(above=0.0, below=1.0), metavar="RATE", help="SHARDS-style sampling rate "
                   "in (0, 1) for huge traces: an estimate (docs/mrc.md gives its measured error)")
    p.add_argument("--always-tokens", type=whole(0), default=2048, metavar="N",
                   help="with --sample, track every block of a request's first N tokens (default 2048)")
    p.add_argument("--plot", metavar="PNG", help="plot hit ratio against capacity to PNG (needs cachesim[plot])")
    p.add_argument("--json", metavar="OUT", help="write the curves as JSON to OUT ('-' for stdout)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")


def run(args) -> int:
    import orjson

    from cachesim.figures import plot_curve
    from cachesim.mrc import CurveStream
    from cachesim.report import print_curves

    require_figure(args.plot, "--plot")
    args.kv_bytes_per_token = kv_bytes_per_token(args)
    hit_cap = args.hit_cap
    if args.preset:
        hit_cap = hit_cap or preset(args).hit_cap
    ttls = [None] + [x for x in (args.ttl or []) if x is not None]
    # the trace streams past: the pass keeps its stack, the grid its counts, and nothing per block
    curves_of = CurveStream(args.capacities, ttls, sample_rate=args.sample or 1.0, always_tokens=args.always_tokens,
                            hit_cap=hit_cap, isolation=args.isolation, warmup=args.warmup)
    label = stream_input(args, "mrc", curves_of.feed, lambda: curves_of.requests)
    table = curves_of.table()
    curves = [table.curve(k) for k in range(len(ttls))]
    if args.json:
        data = {"trace": label, "requests": curves_of.requests, "distinct_blocks": curves_of.distinct_keys,
                "longest_request_blocks": curves_of.stack.longest_request_blocks,
                "pass_state_bytes": curves_of.stack.state_bytes,   # what the pass held at the end (docs/memory.md)
                "curves": [c.to_dict(args.kv_bytes_per_token) for c in curves]}
        emit(args.json, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    if args.json != "-":
        print_curves(curves, curves_of, label, args.kv_bytes_per_token, console=console(args))
    if args.plot:
        plot_curve(curves, args.plot, args.kv_bytes_per_token, title=f"LRU hit-ratio curve: {Path(label).name}")
        if args.json != "-":
            print(f"plot written to {args.plot}")
    return 0
