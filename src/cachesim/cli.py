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


COMMANDS: list[Callable] = [_add_replay]


_SWEEP_AXIS_OPTIONS = {  # option -> grid axis; each takes a comma-separated list
    "capacity": "capacity_blocks", "policy": "policy", "ttl": "ttl_s", "block_size": "block_size",
    "hit_cap": "hit_cap", "isolation": "isolation", "warmup": "warmup", "preset": "preset",
}


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="replay a trace under every configuration of a grid",
                       description="Replay a trace under every configuration of a grid (capacities x policies x "
                                   "TTLs x block sizes ...) and write one row per configuration. Without TRACE, "
                                   "sweeps the built-in synthetic agent workload.")
    p.add_argument("trace", nargs="?", help="trace file (Mooncake JSONL, native JSONL, or a compiled .npz)")
    p.add_argument("--format", help="trace format (default: sniffed from the content)")
    p.add_argument("--grid", metavar="TOML", help="grid file: one `axis = [values]` line per axis")
    axes = p.add_argument_group("axes (comma-separated values; each adds to or replaces an axis of --grid)")
    axes.add_argument("--capacity", metavar="LIST", help="capacities in blocks, e.g. 1k,10k,100k,unbounded")
    axes.add_argument("--policy", metavar="LIST", help="eviction policies, e.g. lru,s3fifo")
    axes.add_argument("--ttl", metavar="LIST", help="TTLs, e.g. none,5m,1h")
    axes.add_argument("--block-size", metavar="LIST", help="tokens per block, e.g. 16,32 (token-id traces only)")
    axes.add_argument("--hit-cap", metavar="LIST", help="hit caps: none,prompt-1")
    axes.add_argument("--isolation", metavar="LIST", help="isolation: none,tenant")
    axes.add_argument("--warmup", metavar="LIST", help="warmups: requests (100) or seconds (600s)")
    axes.add_argument("--preset", metavar="LIST", help="engine presets: vllm,sglang")
    p.add_argument("-o", "--out", metavar="FILE", help="write the table (.csv, .json or .parquet); rows are "
                   "checkpointed beside it as they finish")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep from its checkpoint")
    p.add_argument("--executor", default=None, help="processes (default), serial, dask (a local cluster) or ray")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler (tcp://HOST:PORT) or Ray cluster "
                   "(ray://HOST:PORT) to run on")
    p.add_argument("--workers", type=parse_count, help="local worker processes (default: one per core)")
    p.add_argument("--shared-dir", metavar="DIR", help="where the compiled trace is shared from (must be visible "
                   "to every worker: a shared filesystem for a remote cluster)")
    p.add_argument("--users", type=parse_count, default=8, help="users in the built-in workload")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in workload")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                     help="show the progress bar even when stderr is not a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    p.set_defaults(run=_run_sweep)


def _run_sweep(args) -> int:
    from cachesim.sweep import checkpoint_path, load_grid, print_sweep, run_sweep

    grid: dict = dict(load_grid(args.grid)) if args.grid else {}
    for option, axis in _SWEEP_AXIS_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            grid[axis] = value.split(",")
    if not grid:
        raise ValueError("nothing to sweep: give --grid FILE or axes such as --capacity 1k,10k,100k")
    trace, label = args.trace, None
    if trace is None:
        from cachesim.workloads import agent_workload

        trace = agent_workload(n_users=args.users, seed=args.seed).requests
        label = f"built-in agent workload ({args.users} users, seed {args.seed})"
    executor = args.scheduler or args.executor
    if args.scheduler and args.executor not in (None, "dask", "ray"):
        raise ValueError(f"--scheduler runs on Dask or Ray, not on --executor {args.executor}")
    if args.scheduler and args.executor == "ray" and not args.scheduler.startswith("ray://"):
        executor = "ray://" + args.scheduler.split("://")[-1]
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".csv", ".json", ".parquet", ".pq"):
        raise ValueError(f"{out}: unknown output format {out.suffix or '(none)'}; use .csv, .json or .parquet")
    checkpoint = checkpoint_path(out) if out is not None else None
    result = run_sweep(trace, grid, executor, workers=args.workers, checkpoint=checkpoint, resume=args.resume,
                       progress=args.progress, shared_dir=args.shared_dir, label=label, format=args.format)
    print_sweep(result)
    if out is not None:
        result.write(out)
        checkpoint.unlink(missing_ok=True)  # the table holds every row now
        print(f"wrote {len(result.rows)} rows to {out}")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page of a sweep or replay result",
                       description="Render a sweep result (cachesim sweep -o RESULT.json) or a replay result "
                                   "(cachesim replay --json RESULT.json) as one HTML page with the figures "
                                   "embedded and the summary tables.")
    p.add_argument("result", help="RESULT.json from cachesim sweep or cachesim replay")
    p.add_argument("-o", "--out", metavar="HTML", default="report.html", help="output page (default report.html)")
    p.add_argument("--title", help="page title")
    p.set_defaults(run=_run_report)


def _run_report(args) -> int:
    from cachesim.html_report import write_report

    write_report(args.result, args.out, title=args.title)
    print(f"wrote {args.out}")
    return 0


COMMANDS.extend([_add_sweep, _add_report])


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
