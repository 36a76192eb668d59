"""The work behind ``cachesim prices`` and ``cachesim cost`` (cli.py only parses arguments)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from rich.table import Table

from cachesim.providers.prices import RATE_FIELDS, load_prices

__all__ = ["print_prices", "run_cost"]


def _fmt(value) -> str:
    return "—" if value is None else f"{value:g}"


def print_prices(file: str | None, provider: str | None, as_json: bool = False) -> None:
    table = load_prices(file)
    rows = [r for r in table.rows if provider is None or r.provider == provider]
    if provider is not None and not rows:
        raise ValueError(f"no rows for provider {provider!r}; providers: "
                         f"{', '.join(sorted({r.provider for r in table.rows}))}")
    if as_json:
        out = []
        for r in rows:
            d = dataclasses.asdict(r)
            for k in ("valid_from", "valid_until"):
                d[k] = d[k].isoformat() if d[k] else None
            out.append(d)
        sys.stdout.write(json.dumps({"version": table.version, "files": table.files, "rows": out}, indent=2) + "\n")
        return
    from cachesim.providers.report import wide_console

    console = wide_console()
    console.print(f"[bold]cachesim prices[/bold] — registry {table.version} · USD per 1M tokens · from "
                  f"{', '.join(table.files)}")
    for prov in dict.fromkeys(r.provider for r in rows):
        group = [r for r in rows if r.provider == prov]
        fields = [f for f in RATE_FIELDS if any(getattr(r, f) is not None for r in group)]
        t = Table(title=prov, title_justify="left", header_style="bold")
        t.add_column("model")
        t.add_column("tier / period / validity")
        for f in fields:
            t.add_column(f.replace("_", " ").replace("storage per hour", "storage/h"), justify="right")
        t.add_column("as of")
        t.add_column("source")
        sources: dict[str, int] = {}
        for r in group:
            tier = [f"> {r.above_input_tokens:,}" if r.above_input_tokens else "",
                    "" if r.period == "flat" else r.period]
            if r.valid_from:
                tier.append(f"from {r.valid_from:%Y-%m-%d %H:%M}")
            if r.valid_until:
                tier.append(f"until {r.valid_until:%Y-%m-%d %H:%M}")
            ref = sources.setdefault(r.source, len(sources) + 1)
            t.add_row(r.model, " ".join(x for x in tier if x), *(_fmt(getattr(r, f)) for f in fields), r.as_of,
                      f"[{ref}]" + (" " + r.note if r.note else ""))
        console.print(t)
        for source, ref in sources.items():
            console.print(f"  [{ref}] {source}", highlight=False, soft_wrap=True, markup=False)
        aliases = [f"{r.model} = {', '.join(r.aliases)}" for r in group if r.aliases]
        if aliases:
            console.print("  aliases: " + "; ".join(dict.fromkeys(aliases)), soft_wrap=True)


def run_cost(args) -> int:
    from cachesim.providers import ProviderInput, make_rules, simulate
    from cachesim.providers.report import print_cost, report_dict, retention_bounds, write_requests_csv

    rules = make_rules(args.provider, args.model, **dict(args.options))
    prices = load_prices(args.prices)
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
        variant = _variant(args, inp, workload if args.trace is None else None, prices)
        report["vs"] = variant
    if args.json == "-":
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        print_cost(result, label, bounds=bounds)
        if variant:
            _print_variant(result.summary(), variant)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.per_request:
        write_requests_csv(result, args.per_request)
    return 0


def _variant(args, inp, workload, prices) -> dict:
    """The same traffic replayed with the ``--vs`` changes: provider, model, rule options, or the input's 1h
    markers (``long_ttl``, built-in workload only)."""
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


def _print_variant(base: dict, variant: dict) -> None:
    from cachesim.providers.report import wide_console

    v = variant["summary"]
    delta = base["cost_usd"] - v["cost_usd"]
    change = ", ".join(f"{k}={val}" for k, val in variant["changes"].items())
    verb = "saves" if delta >= 0 else "costs"
    share = abs(delta) / base["cost_usd"] if base["cost_usd"] else 0.0
    wide_console().print(
        f"with {change}: {v['provider']} {v['model']}, hit ratio {v['hit_ratio']:.3f}, ${v['cost_usd']:,.4f} with "
        f"the cache: the change {verb} ${abs(delta):,.4f} ({share:.1%})")
