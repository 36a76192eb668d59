"""``cachesim demo``: what an agent's harness style costs under real providers' prompt caches.

Generates the same seeded plan of user queries rendered by a cache-friendly (``native``) and a cache-hostile
(``chatty``) harness, replays both under the Anthropic and OpenAI rules, and sets the per-query figures side by
side. Everything is a function of the seed: the figures repeat exactly.
"""

from __future__ import annotations

from cachesim.providers import ProviderInput, load_prices, make_rules, simulate
from cachesim.workloads import agent_workload

__all__ = ["run_demo", "DEMO_PROVIDERS"]

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
                                                  "prompt_tokens_per_query", "token_hit_ratio", "cost_per_query_usd",
                                                  "cost_uncached_per_query_usd", "miss_causes")}
        native = per_style["native"]["cost_per_query_usd"]
        rows.append({"provider": provider, "model": model, "styles": per_style,
                     "cost_multiple": per_style["chatty"]["cost_per_query_usd"] / native if native else None})
    return {"users": n_users, "seed": seed, "prices_version": prices.version, "rows": rows}


