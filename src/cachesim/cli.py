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


def _parse_option(text: str) -> tuple[str, object]:
    """``name=value`` for a rule-set field; the value is read as JSON when it parses (numbers, true, ...)."""
    import json

    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return name.strip(), value


def _add_prices(sub) -> None:
    p = sub.add_parser("prices", help="list the provider price registry (dated rows with sources)",
                       description="List the price registry: USD per 1M tokens, each row dated and with its "
                                   "source. --file overrides or extends it with your own TOML rows.")
    p.add_argument("--file", metavar="TOML", help="your price file (same layout as the shipped prices.toml)")
    p.add_argument("--provider", help="only this provider's rows")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(run=_run_prices)


def _run_prices(args) -> int:
    from cachesim.providers.cli_support import print_prices

    print_prices(args.file, args.provider, as_json=args.json)
    return 0


def _add_cost(sub) -> None:
    p = sub.add_parser("cost", help="what a trace costs under a provider's prompt cache",
                       description="Replay token-level requests under a provider's prompt-cache rules and bill "
                                   "them: uncached input, cache writes by TTL, reads, output; dollars with and "
                                   "without the cache; miss causes. Without TRACE, uses the built-in agent "
                                   "workload.")
    p.add_argument("trace", nargs="?", help="provider trace (JSONL with tokens, breakpoints, boundaries, usage)")
    p.add_argument("--provider", default="anthropic", help="anthropic, openai, openai-5.6, gemini or deepseek")
    p.add_argument("--model", help="model name as in `cachesim prices` (default: the provider's default)")
    p.add_argument("--set", dest="options", action="append", type=_parse_option, default=[], metavar="NAME=VALUE",
                   help="a rule option, e.g. ttft_s=0.5, isolation=tenant, cache_key=session (repeatable)")
    p.add_argument("--long-ttl", choices=["none", "first"], default="none",
                   help="built-in workload: mark the first of several breakpoints 1h")
    p.add_argument("--workload", choices=["native", "chatty"], default="native")
    p.add_argument("--users", type=parse_count, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prices", metavar="TOML", help="your price file, overriding the registry's rows")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT ('-' for stdout)")
    p.add_argument("--per-request", metavar="CSV", help="write one row per request as CSV")
    p.add_argument("--impl", choices=["core", "reference"], default="core")
    p.add_argument("--vs", action="append", type=_parse_option, default=[], metavar="NAME=VALUE",
                   help="what would a change save: replay again with this rule option (or provider=, model=, "
                        "long_ttl=) changed and compare (repeatable)")
    p.set_defaults(run=_run_cost)


def _run_cost(args) -> int:
    from cachesim.providers.cli_support import run_cost

    return run_cost(args)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="what an agent harness's style costs under Anthropic and OpenAI caching",
                       description="Generate the same queries from a cache-friendly (native) and a cache-hostile "
                                   "(chatty) agent harness, replay both under the Anthropic and OpenAI rules, and "
                                   "compare requests, tokens, hit ratio and dollars per query.")
    p.add_argument("--users", type=parse_count, default=8, help="users (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prices", metavar="TOML", help="your price file, overriding the registry's rows")
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON to OUT ('-' for stdout)")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    import json

    from cachesim.demo import print_demo, run_demo

    demo = run_demo(n_users=args.users, seed=args.seed, prices_file=args.prices)
    if args.json == "-":
        sys.stdout.write(json.dumps(demo, indent=2) + "\n")
        return 0
    print_demo(demo)
    if args.json:
        Path(args.json).write_text(json.dumps(demo, indent=2) + "\n")
    return 0


COMMANDS: list[Callable] = [_add_replay, _add_prices, _add_cost, _add_demo]


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
