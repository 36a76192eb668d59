"""``cachesim cost``: a trace billed under a provider's prompt-cache rules, and what a change (``--vs``) saves."""

from __future__ import annotations

import argparse
import json

from cachesim._impl import IMPLEMENTATIONS
from cachesim.cli._options import emit, parse_count


def _parse_option(text: str) -> tuple[str, object]:
    """``name=value`` for a rule-set field; the value is read as JSON when it parses (numbers, true, ...)."""
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


def add_parser(sub) -> None:
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
    p.add_argument("--impl", choices=IMPLEMENTATIONS, default="core")
    p.add_argument("--vs", action="append", type=_parse_option, default=[], metavar="NAME=VALUE",
                   help="what would a change save: replay again with this rule option (or provider=, model=, "
                        "long_ttl=) changed and compare (repeatable)")


def run(args) -> int:
    from cachesim.providers import ProviderInput, make_rules, simulate
    from cachesim.providers.prices import load_prices
    from cachesim.providers.report import print_cost, print_variant, report_dict, retention_bounds, write_requests_csv

    rules = make_rules(args.provider, args.model, **dict(args.options))
    prices = load_prices(args.prices)
    workload = None
    if args.trace is None:
        from cachesim.workloads import agent_workload

        workload = agent_workload(style=args.workload, n_users=args.users, seed=args.seed)
        inp = ProviderInput.from_workload(workload, long_ttl=args.long_ttl)
        label = (f"built-in agent workload ({args.workload} harness, {args.users} users, seed {args.seed}; "
                 "pass a TRACE file to bill your own)")
    else:
        from cachesim.providers.traceio import read_provider_trace

        inp = read_provider_trace(args.trace)
        label = str(args.trace)
    result = simulate(inp, rules, prices=prices, impl=args.impl)
    bounds = retention_bounds(inp, rules, prices)
    report = report_dict(result)
    if bounds:
        report["in_memory_bounds"] = bounds
    variant = None
    if args.vs:
        variant = _variant(args, inp, workload, prices)
        report["vs"] = variant
    if args.json != "-":
        print_cost(result, label, bounds=bounds)
        if variant:
            print_variant(result.summary(), variant)
    emit(args.json, json.dumps(report, indent=2, default=str) + "\n")
    if args.per_request:
        write_requests_csv(result, args.per_request)
    return 0


def _variant(args, inp, workload, prices) -> dict:
    """The same traffic replayed with the ``--vs`` changes: provider, model, rule options, or the input's 1h
    markers (``long_ttl``, built-in workload only, so ``workload`` is None for a trace)."""
    from cachesim.providers import ProviderInput, make_rules, simulate

    changes = dict(args.vs)
    options = dict(args.options)
    provider = changes.pop("provider", args.provider)
    model = changes.pop("model", args.model if provider == args.provider else None)
    if "long_ttl" in changes:
        if workload is None:
            raise ValueError("--vs long_ttl=... applies to the built-in workload; a trace carries its own markers")
        inp = ProviderInput.from_workload(workload, long_ttl=str(changes.pop("long_ttl")))
    if provider != args.provider:
        options = {}          # options of one provider mean nothing to another
    options.update(changes)
    result = simulate(inp, make_rules(provider, model, **options), prices=prices, impl=args.impl)
    return {"changes": {k: v for k, v in args.vs}, "summary": result.summary()}
