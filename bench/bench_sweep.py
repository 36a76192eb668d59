"""Sweep throughput: 50 configurations of the Mooncake conversation trace on each executor, beside a baseline of
the same 50 replays called one after another in this process (no sweep machinery) in the same run.

Run: python -m pytest bench/bench_sweep.py --benchmark-only -s   (under a minute on 2 cores)
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import time

import pytest

import cachesim
from cachesim.sweep import configurations, parse_grid, run_sweep
from conftest import report

GRID = {"capacity": [1000, 2000, 5000, 10000, 20000, 50000, 100000, 150000, 200000, "unbounded"],
        "ttl": ["none", "1m", "5m", "30m", "1h"]}
WORKERS = 2


@pytest.fixture(scope="module")
def mooncake():
    from pathlib import Path

    from cachesim.readers import read_trace

    path = Path(__file__).resolve().parents[2] / "shared" / "traces" / "mooncake" / "conversation_trace.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent: the real traces live in ../shared/traces beside the checkout")
    return read_trace(path)


@pytest.fixture(scope="module")
def baseline_s(mooncake):
    """The 50 replays in a plain loop: what a sweep costs with no executor, no sharing, no checkpoint."""
    configs = configurations(parse_grid(GRID))
    start = time.perf_counter()
    for params in configs:
        cachesim.replay(mooncake, keep_per_request=False, **params)
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def serial_table(mooncake):
    return run_sweep(mooncake, GRID, "serial").to_json()


EXECUTORS = ["serial", "processes"]
if importlib.util.find_spec("distributed"):
    EXECUTORS += ["dask", "dask-running"]  # a local cluster started per sweep, and one already running


@pytest.fixture(scope="module")
def running_dask():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.mark.parametrize("executor", EXECUTORS)
def test_sweep_50_configurations(benchmark, request, mooncake, baseline_s, serial_table, executor):
    tables = []
    runner = request.getfixturevalue("running_dask") if executor == "dask-running" else executor

    def run():
        tables.append(run_sweep(mooncake, GRID, runner, workers=WORKERS).to_json())

    benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    seconds = benchmark.stats.stats.min
    assert all(table == serial_table for table in tables)  # every executor, the same table byte for byte
    ratio = baseline_s / seconds
    benchmark.extra_info.update(seconds=seconds, baseline_ratio=ratio)
    report(f"sweep 50 configs, {executor} ({WORKERS} workers, {os.cpu_count()} cores)",
           f"{seconds:5.2f} s; {50 / seconds:5.1f} configs/s; {ratio:.2f}x the plain replay loop "
           f"({baseline_s:.2f} s)")
    # time is reported, not asserted: on a shared 2-core machine a cluster's start-up alone moves the ratio
    # several-fold; what must hold is the table above, byte for byte


def test_task_payload_is_a_path_not_the_trace(mooncake, tmp_path):
    path = tmp_path / "t.npz"
    mooncake.save(path)
    task = (0, str(path), {"capacity_blocks": 10000, "ttl_s": 300.0})
    task_bytes, trace_bytes = len(pickle.dumps(task)), len(pickle.dumps(mooncake))
    report("sweep task payload", f"{task_bytes:,} bytes per task (the trace pickled would be {trace_bytes:,})")
    assert task_bytes < 1000 < trace_bytes
