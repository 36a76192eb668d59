"""Provider prompt caches and the bill: Anthropic, OpenAI (before and from GPT-5.6), Gemini, DeepSeek.

    >>> from cachesim.providers import ProviderInput, simulate, make_rules
    >>> from cachesim.workloads import agent_workload
    >>> inp = ProviderInput.from_workload(agent_workload(style="native", n_users=4))
    >>> result = simulate(inp, make_rules("anthropic", "claude-sonnet-4.6"))
    >>> result.summary()["cost_usd"]

The rules, their ambiguities and the chosen defaults are in docs/providers.md; prices in ``prices.toml``.
"""

from cachesim.providers.engine import CAUSES, ProviderInput, ProviderResult, simulate
from cachesim.providers.prices import PriceRow, PriceTable, load_prices
from cachesim.providers.rules import PROVIDERS, Anthropic, DeepSeek, Gemini, OpenAI, OpenAI56, make_rules

__all__ = ["Anthropic", "CAUSES", "DeepSeek", "Gemini", "OpenAI", "OpenAI56", "PROVIDERS", "PriceRow", "PriceTable",
           "ProviderInput", "ProviderResult", "load_prices", "make_rules", "simulate"]
