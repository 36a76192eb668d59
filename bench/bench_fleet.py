"""Throughput of remedies, the counterfactual and fleets, as ratios to a plain replay measured in the same run.

    pytest bench/bench_fleet.py --benchmark-only          (pytest-benchmark tables)
    python bench/bench_fleet.py                           (a table of ratios: also how threads vs processes compare)

The trace is the Mooncake conversation trace mixed with a generated chatty agent when ../shared/traces
(or $CACHESIM_TRACES) is present,
else the built-in chatty agent workload alone (the note says which).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

import cachesim
from cachesim.fleet import ROUTERS, run_fleet
from cachesim.interference import compare_remedies, counterfactual, merge_traces
from cachesim.workloads import agent_workload

# the shared traces live beside the checkout; CACHESIM_TRACES points elsewhere (e.g. from a git worktree)
TRACES = Path(os.environ.get("CACHESIM_TRACES", Path(__file__).resolve().parents[1].parent / "shared" / "traces"))
MOONCAKE = TRACES / "mooncake" / "conversation_trace.jsonl"
CAPACITY = 20_000


def load_trace() -> tuple[cachesim.Trace, str]:
    if MOONCAKE.exists():
        from cachesim.readers import read_trace

        base = read_trace(MOONCAKE)
        agent = cachesim.compile_trace(agent_workload(style="chatty", n_users=64, seed=0).requests, base.block_size)
        return merge_traces([("mooncake", base), ("agent", agent)]), "Mooncake conversation + chatty agent (64 users)"
    agent = agent_workload(style="chatty", n_users=64, seed=0)
    return cachesim.compile_trace(agent.requests, 512), "built-in chatty agent (64 users; Mooncake trace absent)"


TRACE, LABEL = load_trace()
CONFIG = cachesim.CacheConfig(capacity_blocks=CAPACITY)


def plain():
    return cachesim.replay(TRACE, capacity_blocks=CAPACITY, keep_per_request=False)


CASES = {
    "plain replay (baseline)": plain,
    "counterfactual, threads": lambda: counterfactual(TRACE, CONFIG, executor="thread"),
    "counterfactual, processes": lambda: counterfactual(TRACE, CONFIG, executor="process"),
    "counterfactual, serial": lambda: counterfactual(TRACE, CONFIG, workers=1),
    "remedies + counterfactual, threads": lambda: compare_remedies(TRACE, CONFIG, priority="mooncake"
                                                                   if "mooncake" in TRACE.tenant_names else None),
    "remedies + counterfactual, processes": lambda: compare_remedies(
        TRACE, CONFIG, executor="process", priority="mooncake" if "mooncake" in TRACE.tenant_names else None),
    **{f"fleet of 4, {r}": (lambda r=r: run_fleet(TRACE, 4, r, config=CONFIG)) for r in ROUTERS},
}


@pytest.mark.parametrize("case", list(CASES))
def test_bench(benchmark, case):
    benchmark.extra_info["requests"] = TRACE.n_requests
    benchmark.extra_info["trace"] = LABEL
    benchmark(CASES[case])


def main(repeats: int = 5) -> None:
    best = {}
    for name, fn in CASES.items():
        fn()  # warm up (imports, pools)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    base = best["plain replay (baseline)"]
    print(f"trace: {LABEL}: {TRACE.n_requests:,} requests, {TRACE.n_blocks:,} blocks; capacity {CAPACITY:,}; "
          f"best of {repeats}")
    print(f"{'case':42s} {'seconds':>9s} {'requests/s':>12s} {'x plain':>8s}")
    for name, seconds in best.items():
        print(f"{name:42s} {seconds:9.4f} {TRACE.n_requests / seconds:12,.0f} {seconds / base:8.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
