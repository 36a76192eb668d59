"""The ``cachesim`` command line. Bad input ends in one clear line on stderr (exit 2), never a traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from cachesim.requests import TraceError

EXIT_BAD_INPUT = 2

_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9}


def parse_count(text: str) -> int:
    """``"100000"``, ``"100k"``, ``"1.5M"`` -> a positive whole number."""
    raw = text.strip().lower().replace("_", "").replace(",", "")
    scale = _SUFFIXES.get(raw[-1:], 1)
    number = raw[:-1] if scale != 1 else raw
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 100000 or 100k, got {text!r}") from None
    if value != int(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def parse_seconds(text: str) -> float:
    """``"300"``, ``"300s"``, ``"5m"``, ``"1h"`` -> seconds (positive)."""
    raw = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(raw[-1:], None)
    try:
        value = float(raw[:-1]) * scale if scale else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds such as 300, 300s, 5m or 1h, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {text!r}")
    return value


def _add_replay(sub) -> None:
    p = sub.add_parser("replay", help="replay a trace through an emulated prefix cache",
                       description="Replay a trace through an emulated prefix cache and print what hit. "
                                   "Without TRACE, replays the built-in synthetic agent workload.")
    p.add_argument("trace", nargs="?", help="trace file (Mooncake JSONL, native JSONL, or a compiled .npz); "
                                            "omit to replay the built-in agent workload")
    p.add_argument("--format", help="trace format (default: sniffed from the content)")
    p.add_argument("--preset", help="engine preset: vllm (16-token blocks, hit cap prompt-1) or sglang "
                                    "(token-level, hit cap prompt-1)")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--capacity", type=parse_count, metavar="BLOCKS", help="cache capacity in block slots "
                     "(e.g. 100k); default unbounded")
    cap.add_argument("--capacity-tokens", type=parse_count, metavar="N", help="cache capacity in tokens, "
                     "divided by the block size")
    p.add_argument("--ttl", type=parse_seconds, metavar="SECONDS", help="uniform TTL refreshed on use "
                   "(e.g. 300, 5m, 1h); default none")
    p.add_argument("--block-size", type=parse_count, metavar="N", help="tokens per block for token-id traces "
                   "(default 16, or the preset's)")
    p.add_argument("--hit-cap", choices=["prompt-1"], help="cap hits so at least one prompt token is computed")
    p.add_argument("--isolation", choices=["tenant"], help="tenants never share cache entries")
    p.add_argument("--warmup", metavar="N|Ns", help="leave the first N requests (or N seconds, e.g. 600s) "
                   "out of the counts")
    p.add_argument("--policy", help="eviction policy (default lru)")
    p.add_argument("--workload", choices=["native", "chatty"], default="native",
                   help="harness style of the built-in workload (when no TRACE is given)")
    p.add_argument("--users", type=parse_count, default=8, help="users in the built-in workload")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in workload")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' for stdout)")
    p.add_argument("--per-request", metavar="CSV", help="write per-request outputs as CSV")
    p.add_argument("--impl", choices=["core", "reference"], help="engine implementation (default: the compiled "
                   "core; the reference model is slow and meant for checking)")
    p.set_defaults(run=_run_replay)


def _load_input(args):
    """The trace to replay, and a one-line description of where it came from."""
    from cachesim.trace import Trace, compile_trace

    if args.trace is None:
        from cachesim.workloads import agent_workload

        workload = agent_workload(style=args.workload, n_users=args.users, seed=args.seed)
        block_size = args.block_size or _preset_block_size(args) or 16
        trace = compile_trace(workload.requests, block_size, impl=args.impl)
        label = (f"built-in agent workload ({args.workload} harness, {args.users} users, seed {args.seed}; "
                 "pass a TRACE file to replay your own)")
        return trace, label
    path = Path(args.trace)
    if path.suffix == ".npz":
        try:
            return Trace.load(path), str(path)
        except (OSError, ValueError, KeyError) as exc:
            raise TraceError(f"not a compiled cachesim trace: {exc}", file=str(path)) from None
    from cachesim.readers import read_trace

    block_size = args.block_size or _preset_block_size(args)
    return read_trace(path, format=args.format, block_size=block_size, impl=args.impl), str(path)


def _preset_block_size(args) -> int | None:
    if args.preset is None:
        return None
    from cachesim.presets import get_preset

    return get_preset(args.preset).block_size


def _run_replay(args) -> int:
    import warnings

    from cachesim.replay import replay
    from cachesim.report import print_replay, write_per_request_csv

    if args.preset:
        from cachesim.presets import get_preset

        get_preset(args.preset)  # an unknown preset fails before any reading
    trace, label = _load_input(args)
    capacity = args.capacity
    if args.capacity_tokens is not None:
        capacity = max(args.capacity_tokens // trace.block_size, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = replay(trace, capacity_blocks=capacity, policy=args.policy, ttl_s=args.ttl,
                        block_size=args.block_size, hit_cap=args.hit_cap, isolation=args.isolation,
                        warmup=args.warmup, preset=args.preset, impl=args.impl)
    for w in caught:
        print(f"cachesim: note: {w.message}", file=sys.stderr)
    if args.json == "-":
        sys.stdout.write(result.to_json() + "\n")
    else:
        print_replay(result, trace, label)
        if args.json:
            Path(args.json).write_text(result.to_json() + "\n")
    if args.per_request:
        write_per_request_csv(result, args.per_request)
    return 0


def _parse_list(parse_one: Callable, unbounded: str) -> Callable:
    """A comma-separated list parsed item by item; ``none`` (or ``inf``/``unbounded``) stands for ``unbounded``."""
    def parse(text: str) -> list:
        items = []
        for item in text.split(","):
            if item.strip().lower() in ("none", "inf", "unbounded"):
                items.append(None)
            elif item.strip():
                items.append(parse_one(item))
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list (none = {unbounded}), got {text!r}")
        return items
    return parse


def _add_mrc(sub) -> None:
    p = sub.add_parser("mrc", help="hit-ratio curve of an LRU prefix cache at every capacity (and TTL), one pass",
                       description="Print (and plot) the LRU hit-ratio curve of a trace: hit ratio against cache "
                                   "capacity, for one or more TTLs, from one pass over the trace. Exact (equal "
                                   "to a replay at each capacity) unless --sample is given.")
    p.add_argument("trace", help="trace file (Mooncake JSONL, native JSONL, or a compiled .npz)")
    p.add_argument("--format", help="trace format (default: sniffed from the content)")
    p.add_argument("--preset", help="engine preset (vllm, sglang): block size and hit cap")
    p.add_argument("--block-size", type=parse_count, metavar="N", help="tokens per block for token-id traces")
    p.add_argument("--capacities", type=_parse_list(parse_count, "unbounded"), metavar="LIST",
                   help="capacities in blocks, e.g. 1k,10k,100k,none (default: a log-spaced grid up to the "
                        "trace's distinct blocks, then unbounded)")
    p.add_argument("--ttl", type=_parse_list(parse_seconds, "no expiry"), metavar="LIST",
                   help="TTLs refreshed on use, e.g. 300,1h (the no-TTL curve is always shown too)")
    p.add_argument("--kv-bytes-per-token", type=parse_count, metavar="BYTES",
                   help="KV-cache bytes per token of the model, to state capacities in GB (e.g. 160k)")
    p.add_argument("--hit-cap", choices=["prompt-1"], help="cap hits so at least one prompt token is computed")
    p.add_argument("--isolation", choices=["tenant"], help="tenants never share cache entries")
    p.add_argument("--warmup", metavar="N|Ns", help="leave the first N requests (or N seconds) out of the counts")
    p.add_argument("--sample", type=float, metavar="RATE", help="SHARDS-style sampling rate in (0, 1) for huge "
                   "traces: an estimate (docs/mrc.md gives its measured error)")
    p.add_argument("--always-tokens", type=int, default=2048, metavar="N",
                   help="with --sample, track every block of a request's first N tokens (default 2048)")
    p.add_argument("--plot", metavar="PNG", help="plot hit ratio against capacity to PNG (needs cachesim[plot])")
    p.add_argument("--json", metavar="OUT", help="write the curves as JSON to OUT ('-' for stdout)")
    p.set_defaults(run=_run_mrc, impl=None)


def _run_mrc(args) -> int:
    import orjson

    from cachesim.mrc import default_capacities, plot_curve, print_curves, stack_profile

    hit_cap = args.hit_cap
    if args.preset:
        from cachesim.presets import get_preset

        hit_cap = hit_cap or get_preset(args.preset).hit_cap
    if args.sample is not None and not 0 < args.sample < 1:
        raise ValueError(f"--sample must be a rate between 0 and 1, got {args.sample}")
    trace, label = _load_input(args)
    profile = stack_profile(trace, sample_rate=args.sample or 1.0, always_tokens=args.always_tokens,
                            hit_cap=hit_cap, isolation=args.isolation, warmup=args.warmup)
    capacities = args.capacities or default_capacities(profile)
    ttls = [None] + [x for x in (args.ttl or []) if x is not None]
    table = profile.table(capacities, ttls)
    curves = [table.curve(k) for k in range(len(ttls))]
    if args.json:
        data = {"trace": label, "requests": trace.n_requests, "distinct_blocks": profile.distinct_keys,
                "longest_request_blocks": profile.longest_request_blocks,
                "curves": [c.to_dict(args.kv_bytes_per_token) for c in curves]}
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode() + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    if args.json != "-":
        print_curves(curves, trace, label, profile, args.kv_bytes_per_token)
    if args.plot:
        plot_curve(curves, args.plot, args.kv_bytes_per_token, title=f"LRU hit-ratio curve: {Path(label).name}")
        if args.json != "-":
            print(f"plot written to {args.plot}")
    return 0


COMMANDS: list[Callable] = [_add_replay, _add_mrc]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachesim", description="Prompt-cache emulator: replay LLM request "
                                     "traces through an emulated prefix cache.")
    parser.add_argument("--version", action="version", version="cachesim 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args)
    except TraceError as exc:
        print(f"cachesim: error: {exc}", file=sys.stderr)
    except (ValueError, OSError) as exc:
        print(f"cachesim: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("cachesim: interrupted", file=sys.stderr)
        return 130
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
