"""``cachesim fleet``: a trace routed to N replicas, each with its own cache, router against router."""

from __future__ import annotations

import argparse

from cachesim.cli._options import (
    add_command,
    add_trace_source,
    cache_config,
    console,
    load_whole_trace,
    one_of,
    parse_count,
    real,
    trace_summary,
    whole,
    write_json,
)


def _routers(text: str) -> list[str]:
    """``all`` or router names, comma-separated, each one the fleet knows."""
    from cachesim.fleet import ROUTERS

    if text.strip() == "all":
        return list(ROUTERS)
    names = [one_of(ROUTERS, "router")(name.strip()) for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected router names, comma-separated, or all; got {text!r}")
    return names


def add_parser(sub) -> None:
    from cachesim.fleet import ROUTER_DESCRIPTIONS, ROUTERS, ROUTING_KEYS

    p = add_command(sub, "fleet", tables=True, help="replay a trace on N replicas behind a router",
                       description="Route each request to one of N replicas, each with its own cache, and compare "
                                   "routers by hit ratio, estimated time to first token and utilisation. Routers: "
                                   + "; ".join(f"{k}: {v}" for k, v in ROUTER_DESCRIPTIONS.items())
                                   + ". See docs/interference.md.")
    add_trace_source(p, "route", isolation=True)
    p.add_argument("--replicas", type=parse_count, default=4, help="number of replicas (default 4); --capacity "
                   "is per replica")
    p.add_argument("--router", type=_routers, default="all",
                   help=f"router(s), comma-separated: {', '.join(ROUTERS)}, or all (default)")
    p.add_argument("--prefix-blocks", type=parse_count, help="prefix-hash: leading blocks hashed (default: "
                   "256 tokens' worth, at least 1)")
    p.add_argument("--routing-key", choices=ROUTING_KEYS, default="tenant",
                   help="prefix-hash: what plays prompt_cache_key (default tenant)")
    p.add_argument("--overflow-per-min", type=real(above=0.0), default=15.0,
                   help="prefix-hash: requests/min per routing key before it spills to more replicas (default 15)")
    p.add_argument("--cache-threshold", type=real(low=0.0, high=1.0), default=0.5,
                   help="cache-aware: match rate needed (0.5)")
    p.add_argument("--balance-abs", type=whole(0), default=32, help="cache-aware: absolute imbalance threshold (32)")
    p.add_argument("--balance-rel", type=real(low=1.0), default=1.0001, help="cache-aware: relative imbalance "
                   "threshold (>= 1: the most loaded replica's load over the least's)")
    p.add_argument("--overlap-weight", type=real(low=0.0), default=1.0, help="cost: weight of prefill blocks (1.0)")
    p.add_argument("--prefill-tps", type=real(above=0.0), default=20_000.0,
                   help="load model: prefill tokens/s per replica")
    p.add_argument("--decode-tps", type=real(above=0.0), default=2_000.0,
                   help="load model: decode tokens/s per replica (aggregate over its batch)")
    p.add_argument("--output-tokens", type=whole(0), default=256, help="load model: output length of requests whose "
                   "trace gives none")
    p.add_argument("--per-replica", action="store_true", help="print each router's per-replica table")


def run(args) -> int:
    from cachesim.fleet import LoadModel, RouterConfig, run_fleet
    from cachesim.report import print_fleet

    trace, label = load_whole_trace(args)
    config = cache_config(args, trace.block_size, trace.block_source)
    load = LoadModel(prefill_tokens_per_s=args.prefill_tps, decode_tokens_per_s=args.decode_tps,
                     default_output_tokens=args.output_tokens)
    prefix_blocks = args.prefix_blocks or max(1, 256 // trace.block_size)
    results = []
    for name in args.router:
        router = RouterConfig(name, seed=args.seed, prefix_blocks=prefix_blocks, routing_key=args.routing_key,
                              overflow_per_min=args.overflow_per_min, cache_threshold=args.cache_threshold,
                              balance_abs_threshold=args.balance_abs, balance_rel_threshold=args.balance_rel,
                              overlap_weight=args.overlap_weight)
        results.append(run_fleet(trace, args.replicas, router, config=config, load=load, impl=args.impl,
                                 workers=args.workers, executor=args.executor))
    if args.json != "-":
        print_fleet(results, label, console=console(args), per_replica=args.per_replica)
    write_json(args, {"trace": trace_summary(trace, label), "replicas": args.replicas,
                      "routers": [r.to_dict() for r in results]})
    return 0
