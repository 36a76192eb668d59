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
    load_whole_trace,
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
    p.add_argument("--policy", metavar="LIST", help="other eviction policies beside LRU, e.g. s3fifo,sieve,"
                   "slru:n-seg=2: a replay at each capacity (or a miniature simulation with --mini); reads the "
                   "whole trace into memory")
    p.add_argument("--bound", action="store_true", help="the optimal curve beside them (belady: the most any "
                   "policy can hit at each capacity)")
    p.add_argument("--mini", type=real(above=0.0, below=1.0), metavar="RATE", help="with --policy/--bound: "
                   "miniature simulations (Waldspurger et al., ATC'17) of a RATE share of the prefix trees in a "
                   "cache scaled by RATE, instead of full replays (docs/mrc.md gives the measured error)")
    p.add_argument("--plot", metavar="PNG", help="plot hit ratio against capacity to PNG (needs cachesim[plot])")
    p.add_argument("--json", metavar="OUT", help="write the curves as JSON to OUT ('-' for stdout)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")


def run(args) -> int:
    import orjson

    from cachesim._contract import check_policy, split_policies
    from cachesim.figures import plot_curve
    from cachesim.mrc import CurveStream
    from cachesim.report import print_curves, print_policy_curves

    require_figure(args.plot, "--plot")
    args.kv_bytes_per_token = kv_bytes_per_token(args)
    hit_cap = args.hit_cap
    if args.preset:
        hit_cap = hit_cap or preset(args).hit_cap
    ttls = [None] + [x for x in (args.ttl or []) if x is not None]
    others = split_policies(args.policy or "") + (["belady"] if args.bound else [])
    if args.mini and not others:
        raise ValueError("--mini samples the replays of --policy or --bound: give one of them")
    for policy in others:
        check_policy(policy)   # a bad name or plugin fails before the trace is read
    curves_of = CurveStream(args.capacities, ttls, sample_rate=args.sample or 1.0, always_tokens=args.always_tokens,
                            hit_cap=hit_cap, isolation=args.isolation, warmup=args.warmup)
    if others:   # other policies replay the trace again at each capacity: it is read into memory once
        trace, label = load_whole_trace(args)
        curves_of.run(trace)
    else:   # the trace streams past: the pass keeps its stack, the grid its counts, and nothing per block
        label = stream_input(args, "mrc", curves_of.feed, lambda: curves_of.requests)
    table = curves_of.table()
    curves = [table.curve(k) for k in range(len(ttls))]
    capacities = [None if c < 0 else int(c) for c in table.capacities_blocks]
    policy_curves = _policy_curves(args, trace, others, capacities, hit_cap) if others else []
    if args.json:
        data = {"trace": label, "requests": curves_of.requests, "distinct_blocks": curves_of.distinct_keys,
                "longest_request_blocks": curves_of.stack.longest_request_blocks,
                "pass_state_bytes": curves_of.stack.state_bytes,   # what the pass held at the end (docs/memory.md)
                "curves": [c.to_dict(args.kv_bytes_per_token) for c in curves],
                "policies": [c.to_dict(args.kv_bytes_per_token) for c in policy_curves]}
        emit(args.json, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    if args.json != "-":
        print_curves(curves, curves_of, label, args.kv_bytes_per_token, console=console(args))
        if policy_curves:
            print_policy_curves(curves[0], policy_curves, console=console(args))
    if args.plot:
        shown = [*curves, *policy_curves]
        plot_curve(shown, args.plot, args.kv_bytes_per_token,
                   title=f"{'LRU hit-ratio curve' if not policy_curves else 'hit-ratio curves'}: {Path(label).name}")
        if args.json != "-":
            print(f"plot written to {args.plot}")
    return 0


def _policy_curves(args, trace, policies, capacities, hit_cap):
    """A curve per policy at the LRU table's capacities, with a progress bar over the replays."""
    from cachesim.policy_curves import policy_curve
    from cachesim.progress import track

    out = []
    with track("policy curves", len(policies) * len(capacities), "replays", enabled=args.progress) as bar:
        for policy in policies:
            out.append(policy_curve(trace, policy, capacities, sample_rate=args.mini or 1.0,
                                    on_point=lambda _, policy=policy: bar.update(advance=1, note=policy),
                                    hit_cap=hit_cap, isolation=args.isolation, warmup=args.warmup, impl=args.impl))
    return out
