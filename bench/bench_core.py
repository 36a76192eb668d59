"""Replay and compile throughput of the compiled core, each beside a baseline in the same run.

Run: python -m pytest bench/bench_core.py --benchmark-only -s   (about 3 minutes; needs ~6 GB of memory)
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

import cachesim
from cachesim import _impl
from conftest import report
from workloads import multi_turn_ids


def _mooncake():
    from pathlib import Path

    from cachesim.readers import read_trace

    path = Path(__file__).resolve().parents[2] / "shared" / "traces" / "mooncake" / "conversation_trace.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent: the real traces live in ../shared/traces beside the checkout")
    return read_trace(path)


def _replay_seconds(trace, capacity, impl="core"):
    start = time.perf_counter()
    cachesim.replay(trace, capacity_blocks=capacity, impl=impl, keep_per_request=False)
    return time.perf_counter() - start


@pytest.mark.parametrize("capacity", [10_000, None])
def test_replay_mooncake_core_vs_reference(benchmark, capacity):
    trace = _mooncake()
    benchmark.pedantic(_replay_seconds, args=(trace, capacity), rounds=5, warmup_rounds=1)
    core_s = benchmark.stats.stats.min
    reference_s = min(_replay_seconds(trace, capacity, "reference") for _ in range(2))
    ratio = reference_s / core_s
    benchmark.extra_info.update(blocks_per_s=trace.n_blocks / core_s, reference_ratio=ratio)
    report(f"replay mooncake, capacity {capacity}", f"{trace.n_blocks / core_s / 1e6:6.1f} M blocks/s; "
           f"reference {trace.n_blocks / reference_s / 1e6:.2f} M blocks/s; core {ratio:.0f}x faster")
    assert ratio >= 50


# Two generated agent-like traces of >= 10 million blocks: "revisit" re-sends long contexts (4% new blocks),
# "growth" adds 16 new blocks per turn to short sessions (18% new blocks: every miss evicts).
GENERATED = {
    "revisit": dict(n_sessions=20_000, turns=20, new_blocks_per_turn=4, start_spread_s=2_000),
    "growth": dict(n_sessions=100_000, turns=8, new_blocks_per_turn=16, system_blocks=16, start_spread_s=20_000),
}


@pytest.fixture(scope="module")
def generated():
    cache = {}

    def get(name):
        if name not in cache:
            cache.clear()
            cache[name] = cachesim.compile_trace(multi_turn_ids(**GENERATED[name]))
        return cache[name]

    return get


@pytest.mark.parametrize(("name", "capacity"), [("revisit", 100_000), ("revisit", 1_000_000),
                                                ("growth", 1_000_000), ("growth", 10_000_000)])
def test_replay_generated(benchmark, generated, name, capacity):
    trace = generated(name)
    assert trace.n_blocks >= 10_000_000
    benchmark.pedantic(_replay_seconds, args=(trace, capacity), rounds=3, warmup_rounds=0)
    core_s = benchmark.stats.stats.min
    # the reference on a prefix of the same trace (it would take many minutes on all of it)
    head = trace.slice(0, int(np.searchsorted(trace.block_offsets, 300_000)))
    reference_s = _replay_seconds(head, capacity, "reference")
    core_head_s = min(_replay_seconds(head, capacity) for _ in range(3))
    result = cachesim.replay(trace, capacity_blocks=capacity, keep_per_request=False)
    benchmark.extra_info.update(blocks_per_s=trace.n_blocks / core_s, reference_ratio=reference_s / core_head_s,
                                occupancy=result.occupancy)
    report(f"replay {name} ({trace.n_blocks / 1e6:.0f} M blocks), cap {capacity:,}",
           f"{trace.n_blocks / core_s / 1e6:6.1f} M blocks/s, {trace.n_requests / core_s / 1e3:.0f} k requests/s, "
           f"{result.occupancy:,} cached, block hit ratio {result.block_hit_ratio:.3f}; "
           f"reference {reference_s / core_head_s:.0f}x slower on the first {head.n_blocks:,} blocks")


def test_compile_tokens(benchmark):
    rng = np.random.default_rng(0)
    n_tokens = 128 * 1024 * 1024
    tokens = rng.integers(0, 2**32, n_tokens, dtype=np.uint32)
    offsets = np.arange(0, n_tokens + 1, 16 * 1024, dtype=np.int64)   # requests of 16k tokens
    core = _impl.load("core")
    benchmark.pedantic(core.compile_token_blocks, args=(tokens, offsets, 16), rounds=3, warmup_rounds=1)
    core_s = benchmark.stats.stats.min
    head_tokens = 1 << 20
    start = time.perf_counter()
    _impl.load("reference").compile_token_blocks(tokens[:head_tokens], offsets[:head_tokens // (16 * 1024) + 1], 16)
    reference_s = time.perf_counter() - start
    ratio = (n_tokens / core_s) / (head_tokens / reference_s)
    benchmark.extra_info.update(tokens_per_s=n_tokens / core_s, reference_ratio=ratio)
    report("compile 16-token blocks (134 M tokens)", f"{n_tokens / core_s / 1e9:6.2f} G tokens/s; reference "
           f"{head_tokens / reference_s / 1e6:.2f} M tokens/s; core {ratio:.0f}x faster")
    assert ratio >= 50


@pytest.mark.parametrize("capacity", [1_000_000, 10_000_000])
def test_memory_per_cached_block(benchmark, capacity):
    """Bytes the engine allocates (traced by tracemalloc: it uses PyMem_Raw*) per cached block, when full."""
    n = capacity + capacity // 10
    keys = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    core = _impl.load("core")

    def fill():
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        engine = core.Engine(capacity_blocks=capacity)
        outputs = engine.feed(np.arange(n, dtype=np.float64), np.zeros(n, np.int32), np.ones(n, np.int64),
                              np.arange(n + 1, dtype=np.int64), keys, np.ones(n, np.uint32))
        del outputs
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return engine, used

    engine, used = benchmark.pedantic(fill, rounds=1)
    per_block = used / engine.occupancy
    benchmark.extra_info.update(bytes_per_cached_block=per_block)
    report(f"memory per cached block, capacity {capacity:,}", f"{per_block:.1f} bytes (tracemalloc), "
           f"{engine.memory_bytes() / engine.occupancy:.1f} bytes (pool + owners + index)")
    assert engine.occupancy == capacity
    assert per_block <= 40


@pytest.mark.parametrize("name", ["mooncake", "revisit"])
def test_interference_tracking_cost(benchmark, generated, name):
    """Harm attribution (ghost table, lost_to) against a plain replay of the same trace, same capacity."""
    trace = _mooncake() if name == "mooncake" else generated("revisit")
    capacity = 10_000 if name == "mooncake" else 1_000_000

    def tracked():
        start = time.perf_counter()
        cachesim.replay(trace, capacity_blocks=capacity, interference=True, keep_per_request=False)
        return time.perf_counter() - start

    benchmark.pedantic(tracked, rounds=3, warmup_rounds=1)
    tracked_s = benchmark.stats.stats.min
    plain_s = min(_replay_seconds(trace, capacity) for _ in range(3))
    kept = plain_s / tracked_s
    benchmark.extra_info.update(throughput_kept=kept)
    report(f"interference tracking, {name}, cap {capacity:,}", f"{trace.n_blocks / tracked_s / 1e6:6.1f} M blocks/s "
           f"tracked vs {trace.n_blocks / plain_s / 1e6:.1f} plain: keeps {kept:.0%} of plain throughput")
    assert kept >= 0.7


@pytest.mark.parametrize("threads", [1, None])
def test_trace_check_cost_vs_replay(benchmark, threads):
    """The one check of a Trace (cachesim.trace.validate, run wherever an unchecked Trace meets compiled code: a
    loaded .npz, an API-built Trace) against the cheapest replay of the same trace, LRU at capacity 10,000 without
    per-request outputs. threads=None is the whole of validate as it runs (its compiled pass split across the
    cores); 1 is that pass alone on one thread, its CPU cost."""
    import dataclasses

    from cachesim.trace import _COLUMN_DTYPES, _first_fault, validate

    trace = _mooncake()
    columns = {name: np.array(getattr(trace, name)) for name in _COLUMN_DTYPES}
    # Traces that carry no mark of having been checked, made before the clock starts. They share one set of
    # columns, warm in the cache as the replay's trace is (a fresh copy each time would time the copy's misses).
    unchecked = [dataclasses.replace(trace, **columns) for _ in range(30)]

    def check(i):
        start = time.perf_counter()
        if threads is None:
            validate(unchecked[i])
        else:
            _first_fault(columns, trace.block_size, len(trace.tenant_names), 10**7, threads=threads)
        return time.perf_counter() - start

    check_s = min(check(i) for i in range(len(unchecked)))
    benchmark.pedantic(_replay_seconds, args=(trace, 10_000), rounds=15, warmup_rounds=2)
    replay_s = benchmark.stats.stats.min
    share = check_s / replay_s
    benchmark.extra_info.update(check_s=check_s, replay_s=replay_s, share=share)
    report(f"trace check, mooncake, {'1 thread' if threads else 'validate (all cores)'}",
           f"{check_s * 1e3:.2f} ms = {share:.1%} of an LRU replay ({replay_s * 1e3:.1f} ms, "
           f"{trace.n_blocks / check_s / 1e6:.0f} M blocks/s checked)")
    assert share < 0.15
