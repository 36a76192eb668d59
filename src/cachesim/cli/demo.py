"""``cachesim demo``: the same queries from a cache-friendly and a cache-hostile harness, billed side by side."""

from __future__ import annotations

from cachesim.cli._options import add_command, console, emit, parse_count, parse_seed


def add_parser(sub) -> None:
    p = add_command(sub, "demo", tables=True,
                    help="what an agent harness's style costs under Anthropic and OpenAI caching",
                       description="Generate the same queries from a cache-friendly (native) and a cache-hostile "
                                   "(chatty) agent harness, replay both under the Anthropic and OpenAI rules, and "
                                   "compare requests, tokens, hit ratio and dollars per query.")
    p.add_argument("--users", type=parse_count, default=8, help="users (default 8)")
    p.add_argument("--seed", type=parse_seed, default=0)
    p.add_argument("--prices", metavar="TOML", help="your price file, overriding the registry's rows")
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON to OUT ('-' for stdout)")


def run(args) -> int:
    import json

    from cachesim.demo import run_demo
    from cachesim.report import print_demo

    demo = run_demo(n_users=args.users, seed=args.seed, prices_file=args.prices)
    if args.json != "-":
        print_demo(demo, console=console(args))
    emit(args.json, json.dumps(demo, indent=2) + "\n")
    return 0
