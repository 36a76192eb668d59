"""``cachesim cost``: a trace billed under a provider's prompt-cache rules, and what a change (``--vs``) saves."""

from __future__ import annotations

import argparse
import json

from cachesim._impl import IMPLEMENTATIONS
from cachesim.cli._options import add_command, console, emit, parse_count, parse_seed
from cachesim.providers.rules import PROVIDERS

_LONG_TTL = ("none", "first")


def _pair(text: str) -> tuple[str, str]:
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), raw


def _typed(parse, name: str, raw: str) -> tuple[str, object]:
    """(name, value) as ``parse(name, raw)`` reads it; its ValueError, which names the option, as argparse's."""
    try:
        return name, parse(name, raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rule_option(text: str) -> tuple[str, object]:
    """``--set NAME=VALUE``: a rule option, its value read by the option's declared type (providers/options.py)."""
    from cachesim.providers.options import parse_option

    name, raw = _pair(text)
    if name == "model":
        raise argparse.ArgumentTypeError("the model is --model, not --set model=...")
    return _typed(parse_option, name, raw)


def _change(text: str) -> tuple[str, object]:
    """``--vs NAME=VALUE``: a rule option, or the provider, model or built-in workload's 1h markers to change."""
    from cachesim.providers.options import Option, parse_option
    from cachesim.providers.rules import PROVIDERS

    name, raw = _pair(text)
    whole_run = {"provider": Option("str", choices=tuple(PROVIDERS)), "long_ttl": Option("str", choices=_LONG_TTL)}
    if name in whole_run:
        return _typed(lambda n, r: parse_option(n, r, whole_run[n]), name, raw)
    return _typed(parse_option, name, raw)


def add_parser(sub) -> None:
    p = add_command(sub, "cost", tables=True, help="what a trace costs under a provider's prompt cache",
                       description="Replay token-level requests under a provider's prompt-cache rules and bill "
                                   "them: uncached input, cache writes by TTL, reads, output; dollars with and "
                                   "without the cache; miss causes. Without TRACE, uses the built-in agent "
                                   "workload.")
    p.add_argument("trace", nargs="?", help="provider trace (JSONL with tokens, breakpoints, boundaries, usage)")
    p.add_argument("--provider", default="anthropic", choices=PROVIDERS, help=", ".join(PROVIDERS))
    p.add_argument("--model", help="model name as in `cachesim prices` (default: the provider's default)")
    p.add_argument("--set", dest="options", action="append", type=_rule_option, default=[], metavar="NAME=VALUE",
                   help="a rule option, e.g. ttft_s=0.5, isolation=tenant, cache_key=session (repeatable)")
    p.add_argument("--long-ttl", choices=_LONG_TTL, default="none",
                   help="built-in workload: mark the first of several breakpoints 1h")
    p.add_argument("--workload", choices=["native", "chatty"], default="native")
    p.add_argument("--users", type=parse_count, default=8)
    p.add_argument("--seed", type=parse_seed, default=0)
    p.add_argument("--prices", metavar="TOML", help="your price file, overriding the registry's rows")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT ('-' for stdout)")
    p.add_argument("--per-request", metavar="CSV", help="write one row per request as CSV")
    p.add_argument("--impl", choices=IMPLEMENTATIONS, default="core")
    p.add_argument("--vs", action="append", type=_change, default=[], metavar="NAME=VALUE",
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
    changed = _changed(args, inp, workload) if args.vs else None  # a bad --vs fails before any replay
    result = simulate(inp, rules, prices=prices, impl=args.impl)
    bounds = retention_bounds(inp, rules, prices)
    report = {"trace": label, **report_dict(result)}   # the page of `cachesim report` names its trace
    if bounds:
        report["in_memory_bounds"] = bounds
    variant = None
    if changed is not None:
        vs_result = simulate(*changed, prices=prices, impl=args.impl)
        variant = {"changes": dict(args.vs), "summary": vs_result.summary()}
        report["vs"] = variant
    if args.json != "-":
        print_cost(result, label, console=console(args), bounds=bounds)
        if variant:
            print_variant(result.summary(), variant, console=console(args))
    emit(args.json, json.dumps(report, indent=2, default=str) + "\n")
    if args.per_request:
        write_requests_csv(result, args.per_request)
    return 0


def _changed(args, inp, workload) -> tuple:
    """The input and rules of the ``--vs`` replay: provider, model, rule options, or the input's 1h markers
    (``long_ttl``, built-in workload only, so ``workload`` is None for a trace)."""
    from cachesim.providers import ProviderInput, make_rules

    changes = dict(args.vs)
    options = dict(args.options)
    provider = changes.pop("provider", args.provider)
    model = changes.pop("model", args.model if provider == args.provider else None)
    if "long_ttl" in changes:
        if workload is None:
            raise ValueError("--vs long_ttl=... applies to the built-in workload; a trace carries its own markers")
        inp = ProviderInput.from_workload(workload, long_ttl=changes.pop("long_ttl"))
    if provider != args.provider:
        options = {}          # options of one provider mean nothing to another
    options.update(changes)
    return inp, make_rules(provider, model, **options)
