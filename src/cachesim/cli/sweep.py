"""``cachesim sweep``: every configuration of a grid replayed, in parallel and resumable."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from cachesim.cli._options import (
    add_command,
    add_reading_flags,
    console,
    executor_name,
    parse_count,
    print_notes,
    read_whole,
    recorded_warnings,
    synthesized,
)
from cachesim.parallel import EXECUTOR_NAMES
from cachesim.requests import TraceError

_SWEEP_AXIS_OPTIONS = {  # option -> grid axis; each takes a comma-separated list
    "capacity": "capacity_blocks", "policy": "policy", "ttl": "ttl_s", "block_size": "block_size",
    "hit_cap": "hit_cap", "isolation": "isolation", "warmup": "warmup", "preset": "preset",
}


def _scheduler(text: str) -> str:
    """A scheduler address: tcp:// (or tls://, dask://) for Dask, ray:// for Ray, or HOST:PORT with --executor."""
    if not re.fullmatch(r"(?:(?:tcp|tls|dask|ray)://)?[\w.\-\[\]]+:\d+", text.strip()):
        raise argparse.ArgumentTypeError(f"expected an address such as tcp://HOST:PORT or ray://HOST:PORT, "
                                         f"got {text!r}")
    return text.strip()


def add_parser(sub) -> None:
    p = add_command(sub, "sweep", tables=True, help="replay a trace under every configuration of a grid",
                       description="Replay a trace under every configuration of a grid (capacities x policies x "
                                   "TTLs x block sizes ...) and write one row per configuration. Without TRACE, "
                                   "sweeps the built-in synthetic agent workload.")
    p.add_argument("trace", nargs="?", help="trace file (JSONL of a known format, CSV, or a compiled .npz)")
    add_reading_flags(p)
    p.add_argument("--grid", metavar="TOML", help="grid file: one `axis = [values]` line per axis")
    axes = p.add_argument_group("axes (comma-separated values; each adds to or replaces an axis of --grid)")
    axes.add_argument("--capacity", metavar="LIST", help="capacities in blocks, e.g. 1k,10k,100k,unbounded")
    axes.add_argument("--policy", metavar="LIST", help="eviction policies, e.g. lru,s3fifo")
    axes.add_argument("--ttl", metavar="LIST", help="TTLs, e.g. none,5m,1h")
    axes.add_argument("--bound", action="store_true", help="add belady to the policies: the optimal bound "
                      "beside every other policy at each point of the grid")
    axes.add_argument("--block-size", metavar="LIST", help="tokens per block, e.g. 16,32 (token-id traces only)")
    axes.add_argument("--hit-cap", metavar="LIST", help="hit caps: none,prompt-1")
    axes.add_argument("--isolation", metavar="LIST", help="isolation: none,tenant")
    axes.add_argument("--warmup", metavar="LIST", help="warmups: requests (100) or seconds (600s)")
    axes.add_argument("--preset", metavar="LIST", help="engine presets: vllm,sglang")
    p.add_argument("-o", "--out", metavar="FILE", help="write the table (.csv, .json or .parquet); rows are "
                   "checkpointed beside it as they finish")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep from its checkpoint")
    p.add_argument("--stream", action="store_true", help="each configuration streams TRACE itself in bounded "
                   "memory (one replay's), instead of the whole trace compiled once and shared: for traces larger "
                   "than memory; every configuration then reads the file")
    p.add_argument("--executor", type=executor_name, choices=EXECUTOR_NAMES, default=None,
                   help=f"where the replays run: {', '.join(EXECUTOR_NAMES)} (default process; dask starts a "
                   "local cluster)")
    p.add_argument("--scheduler", type=_scheduler, metavar="ADDRESS", help="a Dask scheduler (tcp://HOST:PORT) or "
                   "Ray cluster "
                   "(ray://HOST:PORT) to run on")
    p.add_argument("--workers", type=parse_count, help="local worker processes (default: one per core)")
    p.add_argument("--shared-dir", metavar="DIR", help="where the compiled trace is shared from (must be visible "
                   "to every worker: a shared filesystem for a remote cluster)")
    p.add_argument("--users", type=parse_count, default=8, help="users in the built-in workload")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                     help="show the progress bar even when stderr is not a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False)


def run(args) -> int:
    from cachesim._contract import POLICIES, is_policy_plugin, parse_policy, split_policies
    from cachesim.report import print_sweep
    from cachesim.sweep import checkpoint_path, load_grid, parse_grid, run_sweep

    grid: dict = dict(load_grid(args.grid)) if args.grid else {}
    for option, axis in _SWEEP_AXIS_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            # a policy's own parameters are comma-separated too: s3fifo:small-size-ratio=0.2,ghost-size-ratio=0.5
            grid[axis] = split_policies(value) if axis == "policy" else value.split(",")
    if args.bound:   # the bound beside the policies swept (LRU alone when none is)
        policies = list(grid.get("policy", ["lru"]))
        grid["policy"] = policies if "belady" in policies else [*policies, "belady"]
    if not grid:
        raise ValueError("nothing to sweep: give --grid FILE or axes such as --capacity 1k,10k,100k")
    grid = parse_grid(grid)  # a bad axis value fails before the trace is read
    offline = [p for p in grid.get("policy", []) if isinstance(p, str) and not is_policy_plugin(p)
               and POLICIES[parse_policy(p)[0]].offline]
    if offline and args.stream:
        raise ValueError(f"policy {offline[0]} evicts by each block's next use over the whole trace, which "
                         "--stream never holds: sweep it without --stream")
    executor = args.scheduler or args.executor
    if args.scheduler and args.executor not in (None, "dask", "ray"):
        raise ValueError(f"--scheduler runs on Dask or Ray, not on --executor {args.executor}")
    if args.scheduler and "://" not in args.scheduler and args.executor != "ray":
        raise ValueError(f"--scheduler {args.scheduler}: name the scheduler tcp://{args.scheduler} (Dask) or "
                         "give --executor ray")
    if args.scheduler and args.executor == "ray" and not args.scheduler.startswith("ray://"):
        executor = "ray://" + args.scheduler.split("://")[-1]
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".csv", ".json", ".parquet", ".pq"):
        raise ValueError(f"{out}: unknown output format {out.suffix or '(none)'}; use .csv, .json or .parquet")
    checkpoint = checkpoint_path(out) if out is not None else None
    with recorded_warnings() as caught:
        try:
            trace, label = _source(args)
            result = run_sweep(trace, grid, executor, workers=args.workers, checkpoint=checkpoint,
                               resume=args.resume, progress=args.progress, shared_dir=args.shared_dir, label=label)
        finally:  # a repaired checkpoint is worth knowing about even when the sweep then stops
            print_notes(caught)
    print_sweep(result, console=console(args))
    if out is not None:
        result.write(out)
        checkpoint.unlink(missing_ok=True)  # the table holds every row now
        print(f"wrote {len(result.rows)} rows to {out}")
    return 0


def _source(args) -> tuple:
    """What to sweep and its label: the built-in workload, a compiled .npz, a synthesized Azure trace, or the file
    read here with every reader option (its lines kept, so errors in it are located)."""
    if args.trace is None:
        if args.stream:
            raise ValueError("--stream reads a trace file; the built-in workload is generated in memory")
        from cachesim.workloads import agent_workload

        workload = agent_workload(style=args.workload, n_users=args.users, seed=args.seed)
        return workload.requests, (f"built-in agent workload ({args.workload} harness, {args.users} users, seed "
                                   f"{args.seed})")
    path = Path(args.trace)
    if path.suffix == ".npz":
        if args.stream:
            raise ValueError("--stream reads a trace file batch by batch; an .npz is already memory-mapped whole")
        return path, None
    if args.stream:
        from cachesim.sweep import StreamedTrace

        if args.synthesize:
            raise ValueError("--stream replays a file as it is; --synthesize builds its content in memory")
        if not os.path.exists(path):
            raise TraceError("cannot open: No such file or directory", file=str(path))
        return StreamedTrace.of(path, format=args.format, skip_invalid=args.skip_invalid or None,
                                tenant_field=args.tenant_field, tokenizer=args.tokenizer,
                                keep_order=args.keep_order or None, batch_bytes=args.batch_bytes,
                                lengths=None if args.lengths == "strict" else args.lengths,
                                sizes=None if args.sizes == "observed" else args.sizes,
                                block_size=_one_block_size(args)), None
    return synthesized(args, path) or (read_whole(args, path, block_size=_one_block_size(args)), None)


def _one_block_size(args) -> int | None:
    """A block-id trace that does not say its block size (LMBench, Dynamo) is read at the one --block-size given;
    several are an axis for token-id traces only."""
    sizes = (args.block_size or "").split(",")
    return parse_count(sizes[0]) if len(sizes) == 1 and sizes[0] else None
