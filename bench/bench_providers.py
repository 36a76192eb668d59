"""Throughput of the provider serve loops, as a ratio to a baseline measured in the same run.

Baseline: compiling 16-token block keys for every prompt with the core (``compile_token_blocks``), i.e. hashing
each prompt token once, the least work any key-based cache emulation does. Each provider loop also hashes every
prompt once (its 16-token chain) and then does its own lookups and writes, so the ratio says what the rules cost
on top of reading the tokens.

    pytest bench/bench_providers.py --benchmark-only -q
"""

from __future__ import annotations

import numpy as np
import pytest

from cachesim import _core
from cachesim.providers import ProviderInput, load_prices, make_rules, simulate
from cachesim.workloads import agent_workload
from conftest import report

PRICES = load_prices()
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module", params=["native", "chatty"])
def workload(request):
    inp = ProviderInput.from_workload(agent_workload(style=request.param, n_users=32, seed=0))
    inp.style = request.param
    return inp


def _tokens(inp) -> int:
    return int(inp.requests.token_offsets[-1])


def test_baseline_hash_every_token(benchmark, workload):
    req = workload.requests
    benchmark(_core.compile_token_blocks, req.tokens, req.token_offsets, 16)
    RESULTS["baseline"] = _tokens(workload) / benchmark.stats["mean"]


@pytest.mark.parametrize("provider,model", [("anthropic", "claude-sonnet-4.6"), ("openai", "gpt-5.4"),
                                            ("openai", "gpt-5.6-sol"), ("gemini", "gemini-3.8-flash"),
                                            ("deepseek", "deepseek-flash")])
def test_provider_loop(benchmark, workload, provider, model):
    rules = make_rules(provider, model)
    benchmark(simulate, workload, rules, PRICES)
    tokens_per_s = _tokens(workload) / benchmark.stats["mean"]
    benchmark.extra_info["prompt_tokens_per_s"] = tokens_per_s
    if "baseline" in RESULTS:
        ratio = tokens_per_s / RESULTS["baseline"]
        benchmark.extra_info["ratio_to_baseline"] = ratio
        report(f"providers {provider} {model}, {workload.style}",
               f"{tokens_per_s / 1e6:,.0f} M prompt tokens/s = {ratio:.2f}x hashing every token once")
    assert np.isfinite(tokens_per_s)
