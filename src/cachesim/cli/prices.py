"""``cachesim prices``: the dated price registry, optionally overridden or extended by the user's TOML rows."""

from __future__ import annotations

import json
import sys

from cachesim.cli._options import add_command, console


def add_parser(sub) -> None:
    p = add_command(sub, "prices", tables=True, help="list the provider price registry (dated rows with sources)",
                       description="List the price registry: USD per 1M tokens, each row dated and with its "
                                   "source. --file overrides or extends it with your own TOML rows.")
    p.add_argument("--file", metavar="TOML", help="your price file (same layout as the shipped prices.toml)")
    p.add_argument("--provider", help="only this provider's rows")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args) -> int:
    from cachesim.providers.prices import load_prices
    from cachesim.providers.report import prices_dict, print_prices

    table = load_prices(args.file)
    rows = [r for r in table.rows if args.provider is None or r.provider == args.provider]
    if args.provider is not None and not rows:
        raise ValueError(f"no rows for provider {args.provider!r}; providers: "
                         f"{', '.join(sorted({r.provider for r in table.rows}))}")
    if args.json:
        sys.stdout.write(json.dumps(prices_dict(table, rows), indent=2) + "\n")
    else:
        print_prices(table, rows, console=console(args))
    return 0
