"""``cachesim demo``: what an agent's harness style costs under real providers' prompt caches.

Generates the same seeded plan of user queries rendered by a cache-friendly (``native``) and a cache-hostile
(``chatty``) harness, replays both under the Anthropic and OpenAI rules, and sets the per-query figures side by
side. Everything is a function of the seed: the figures repeat exactly.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cachesim.providers import ProviderInput, load_prices, make_rules, simulate
from cachesim.providers.report import wide_console
from cachesim.workloads import agent_workload

__all__ = ["run_demo", "print_demo", "DEMO_PROVIDERS"]

DEMO_PROVIDERS = (("anthropic", "claude-sonnet-4.6"), ("openai", "gpt-5.4"))
STYLES = ("native", "chatty")


def run_demo(n_users: int = 8, seed: int = 0, providers=DEMO_PROVIDERS, prices_file=None) -> dict:
    """Per (provider, model) and style: requests/tokens per query, hit ratio, dollars per query."""
    prices = load_prices(prices_file)
    inputs = {style: ProviderInput.from_workload(agent_workload(style=style, n_users=n_users, seed=seed))
              for style in STYLES}
    rows = []
    for provider, model in providers:
        rules = make_rules(provider, model)
        per_style = {}
        for style in STYLES:
            s = simulate(inputs[style], rules, prices=prices).summary()
            per_style[style] = {k: s[k] for k in ("queries", "requests", "requests_per_query",
                                                  "prompt_tokens_per_query", "hit_ratio", "cost_per_query_usd",
                                                  "cost_uncached_per_query_usd", "miss_causes")}
        native = per_style["native"]["cost_per_query_usd"]
        rows.append({"provider": provider, "model": model, "styles": per_style,
                     "cost_multiple": per_style["chatty"]["cost_per_query_usd"] / native if native else None})
    return {"users": n_users, "seed": seed, "prices_version": prices.version, "rows": rows}


def print_demo(demo: dict, console: Console | None = None) -> None:
    console = console or wide_console()
    console.print(f"[bold]cachesim demo[/bold] — {demo['users']} users, seed {demo['seed']}: the same queries sent "
                  "by a cache-friendly (native) and a cache-hostile (chatty) agent harness")
    table = Table(header_style="bold", pad_edge=False)
    for col in ("provider/model", "harness", "req/query", "tokens/query", "hit ratio", "$/query", "no cache"):
        table.add_column(col, justify="left" if col in ("provider/model", "harness") else "right")
    for row in demo["rows"]:
        for i, style in enumerate(STYLES):
            s = row["styles"][style]
            table.add_row(f"{row['provider']}/{row['model']}" if i == 0 else "", style,
                          f"{s['requests_per_query']:.1f}", f"{s['prompt_tokens_per_query']:,.0f}",
                          f"{s['hit_ratio']:.3f}", f"{s['cost_per_query_usd']:.4f}",
                          f"{s['cost_uncached_per_query_usd']:.4f}")
        multiple = row["cost_multiple"]
        table.add_row("", "[bold]chatty÷native[/bold]", "", "", "",
                      f"[bold]{multiple:.1f}x[/bold]" if multiple is not None else "n/a", "", end_section=True)
    console.print(table)
    console.print("req/query, tokens/query: requests and prompt tokens per user query; hit ratio: cache-read "
                  "tokens / prompt tokens; no cache: $/query if nothing were cached")
    console.print(f"prices: registry {demo['prices_version']} (`cachesim prices` lists rows, dates and sources); "
                  "rules and their defaults: docs/providers.md")
