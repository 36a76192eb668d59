"""``cachesim demo`` on screen: each provider's bill for a cache-friendly and a cache-hostile harness."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cachesim.report._tables import add_columns, make_console, print_table


def print_demo(demo: dict, console: Console | None = None) -> None:
    console = console or make_console()
    console.print(f"[bold]cachesim demo[/bold] — {demo['users']} users, seed {demo['seed']}: the same queries sent "
                  "by a cache-friendly (native) and a cache-hostile (chatty) agent harness")
    table = Table(header_style="bold")
    add_columns(table, ("provider/model", "harness", "req/query", "tokens/query", "hit ratio", "$/query", "no cache"),
                left=("provider/model", "harness"))
    for row in demo["rows"]:
        # run_demo keeps its styles in order (native first), so the rows need not import cachesim.demo
        for i, (style, s) in enumerate(row["styles"].items()):
            table.add_row(f"{row['provider']}/{row['model']}" if i == 0 else "", style,
                          f"{s['requests_per_query']:.1f}", f"{s['prompt_tokens_per_query']:,.0f}",
                          f"{s['token_hit_ratio']:.3f}", f"{s['cost_per_query_usd']:.4f}",
                          f"{s['cost_uncached_per_query_usd']:.4f}")
        multiple = row["cost_multiple"]
        table.add_row("", "[bold]chatty÷native[/bold]", "", "", "",
                      f"[bold]{multiple:.1f}x[/bold]" if multiple is not None else "n/a", "", end_section=True)
    print_table(console, table)
    console.print("req/query, tokens/query: requests and prompt tokens per user query; hit ratio: cache-read "
                  "tokens / prompt tokens; no cache: $/query if nothing were cached")
    console.print(f"prices: registry {demo['prices_version']} (`cachesim prices` lists rows, dates and sources); "
                  "rules and their defaults: docs/providers.md")
