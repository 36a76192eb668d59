"""Sweeps: grids, hand-computed rows, block-size axes, checkpoints and resumption, and every executor agreeing."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
import time
import zipfile

import numpy as np
import orjson
import pytest

import cachesim
from cachesim.cli import main
from cachesim.requests import BlockRequests, TokenRequests, TraceError
from cachesim.sweep import checkpoint_path, configurations, load_grid, load_shared_trace, parse_grid, run_sweep, sweep
from conftest import MOONCAKE_CONVERSATION, require_shared

HAS_DASK = importlib.util.find_spec("distributed") is not None
HAS_PANDAS = importlib.util.find_spec("pandas") is not None


def three_requests() -> BlockRequests:
    """Blocks [1, 2] of 4 tokens asked at t = 0 (tenant a), 10 (b) and 100 (a)."""
    return BlockRequests.from_lists([[1, 2], [1, 2], [1, 2]], [8, 8, 8], 4, t=[0, 10, 100], tenant=["a", "b", "a"])


# -- grids -----------------------------------------------------------------------------------------------------

def test_grid_values_parse_with_cli_units_and_aliases():
    axes = parse_grid({"capacity": ["1k", 2500, "unbounded"], "ttl": "none,5m,90", "policy": "lru",
                       "block-size": [16, "32"], "hit_cap": ["none", "prompt-1"], "warmup": ["100", "300s"]})
    assert axes == {"capacity_blocks": [1000, 2500, None], "ttl_s": [None, 300.0, 90.0], "policy": ["lru"],
                    "block_size": [16, 32], "hit_cap": [None, "prompt-1"], "warmup": [100, "300s"]}


def test_configurations_are_the_product_in_grid_order():
    configs = configurations({"a": [1, 2], "b": ["x", "y", "z"]})
    assert [(c["a"], c["b"]) for c in configs] == [(1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z")]


@pytest.mark.parametrize(("grid", "message"), [
    ({"colour": [1]}, "unknown sweep axis 'colour'"),
    ({"capacity": [100, "0.1k"]}, "repeats 100"),
    ({"capacity": ["lots"]}, "axis capacity_blocks: expected a number"),
    ({"ttl": ["-5"]}, "axis ttl_s: expected a positive duration"),
    ({"capacity": [], "ttl": [1]}, "has no values"),
    ({}, "the sweep grid is empty"),
    ({"capacity": [10], "capacity_blocks": [20]}, "given twice"),
    ({"block_size": ["none"]}, "block_size must be a number"),
])
def test_bad_grids_say_what_is_wrong(grid, message):
    with pytest.raises(ValueError, match=message):
        parse_grid(grid)


def test_grid_from_toml(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('[grid]\ncapacity = ["1k", 10000, "unbounded"]\npolicy = ["lru"]\nttl_s = ["none", 300]\n')
    assert load_grid(path) == {"capacity_blocks": [1000, 10000, None], "policy": ["lru"], "ttl_s": [None, 300.0]}
    bad = tmp_path / "bad.toml"
    bad.write_text("capacity = [1, 2\n")
    with pytest.raises(TraceError, match="bad.toml: malformed TOML"):
        load_grid(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("speed = [1]\n")
    with pytest.raises(TraceError, match="unknown.toml: unknown sweep axis 'speed'"):
        load_grid(unknown)


# -- rows ------------------------------------------------------------------------------------------------------

def test_rows_match_hand_computed_hits_in_grid_order():
    # No TTL: b at t=10 hits both blocks (8 tokens), a at t=100 again (8): 16 of 24 prompt tokens.
    # TTL 50 s: the entries last used at t=10 expire at 60, so only b's request hits: 8.
    # Hit cap prompt-1: at most 7 of the 8 tokens, i.e. one whole 4-token block per hitting request.
    result = run_sweep(three_requests(), {"hit_cap": ["none", "prompt-1"], "ttl": ["none", 50]}, "serial")
    got = [(r["hit_cap"], r["ttl_s"], r["hit_tokens"], r["prompt_tokens"], r["tokens_computed"]) for r in result.rows]
    assert got == [(None, None, 16, 24, 8), (None, 50.0, 8, 24, 16),
                   ("prompt-1", None, 8, 24, 16), ("prompt-1", 50.0, 4, 24, 20)]
    assert result.rows[0]["token_hit_ratio"] == pytest.approx(16 / 24)
    assert all(r["block_size"] == 4 for r in result.rows)
    # interference: b hit 8 tokens in entries a inserted; a hit its own 8 (no TTL) or none (TTL 50)
    assert result.interference[0] == {"tenants": ["a", "b"], "tokens": [[8, 0], [8, 0]]}
    assert result.interference[1] == {"tenants": ["a", "b"], "tokens": [[0, 0], [8, 0]]}


def test_block_size_axis_recompiles_token_traces():
    # Two identical 40-token prompts: 8-token blocks cut 5 full blocks each and the second hits all 40 tokens;
    # 16-token blocks cut 2 full blocks (the 8-token tail is not cacheable), so the second hits 32.
    prompts = TokenRequests.from_lists([list(range(40)), list(range(40))])
    result = run_sweep(prompts, {"block_size": [8, 16]}, "serial")
    assert [(r["block_size"], r["blocks"], r["hit_blocks"], r["hit_tokens"]) for r in result.rows] == [
        (8, 10, 5, 40), (16, 4, 2, 32)]
    assert result.trace["block_sizes"] == [8, 16]


def test_preset_axis_compiles_token_traces_at_each_presets_block_size():
    # vLLM: 16-token blocks, so 2 full blocks of the 40-token prompt hit (32 tokens, under the cap of 39);
    # SGLang: 1-token blocks, hits capped at prompt - 1 = 39 tokens.
    prompts = TokenRequests.from_lists([list(range(40)), list(range(40))])
    result = run_sweep(prompts, {"preset": ["vllm", "sglang"]}, "serial")
    assert [(r["preset"], r["block_size"], r["hit_tokens"]) for r in result.rows] == [("vllm", 16, 32),
                                                                                       ("sglang", 1, 39)]


def test_block_size_axis_is_refused_for_block_id_traces():
    with pytest.raises(ValueError, match=r"cannot sweep block sizes \[4, 16\].*fixed at 4 tokens.*token ids"):
        run_sweep(three_requests(), {"block_size": [4, 16]}, "serial")
    # the trace's own block size is no axis at all, so it is allowed
    assert len(run_sweep(three_requests(), {"block_size": [4]}, "serial").rows) == 1


def test_invalid_policy_fails_before_anything_runs(tmp_path):
    ran = []

    class Recorder:
        name = "recorder"

        def run(self, fn, tasks):
            ran.extend(tasks)
            return map(fn, tasks)

        def close(self):
            pass

    ckpt = tmp_path / "ckpt.jsonl"
    with pytest.raises(ValueError, match=r"sweep configuration \(capacity_blocks=10, policy='no-such-policy'\): "
                                         r"unknown policy 'no-such-policy'"):
        run_sweep(three_requests(), {"capacity": [10], "policy": ["lru", "no-such-policy"]}, Recorder(),
                  checkpoint=ckpt)
    assert ran == [] and not ckpt.exists()


def test_sweep_returns_a_dataframe_or_rows():
    table = sweep(three_requests(), {"ttl": ["none", 50]}, "serial")
    if HAS_PANDAS:
        assert list(table["hit_tokens"]) == [16, 8]
        assert table.attrs["cachesim"]["axes"] == {"ttl_s": [None, 50.0]}
    else:
        assert [r["hit_tokens"] for r in table] == [16, 8]


# -- sharing the trace -----------------------------------------------------------------------------------------

def test_serial_sweep_leaves_no_mapping_of_its_deleted_files():
    from cachesim import sweep as module

    before = set(module._SHARED)
    run_sweep(three_requests(), {"ttl": ["none"]}, "serial")
    assert set(module._SHARED) == before


def test_shared_trace_is_memory_mapped_and_equal(tmp_path):
    trace = cachesim.compile_trace(three_requests())
    path = tmp_path / "t.npz"
    trace.save(path)
    mapped = load_shared_trace(path)
    assert isinstance(mapped.block_keys, np.memmap)   # the bulk of a trace; the small columns are deflated
    assert not mapped.block_keys.flags.writeable
    for name in ("t", "tenant", "session", "prompt_tokens", "output_tokens", "block_offsets", "block_keys",
                 "block_tokens"):
        np.testing.assert_array_equal(getattr(mapped, name), getattr(trace, name))
        assert getattr(mapped, name).dtype == getattr(trace, name).dtype
    assert (mapped.block_size, mapped.tenant_names, mapped.block_source) == (4, ["a", "b"], "ids")
    assert load_shared_trace(path) is mapped  # one mapping per process however many tasks


def test_compressed_trace_is_read_instead(tmp_path):
    trace = cachesim.compile_trace(three_requests())
    plain, packed = tmp_path / "plain.npz", tmp_path / "packed.npz"
    trace.save(plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    loaded = load_shared_trace(packed)
    assert not isinstance(loaded.block_keys, np.memmap)
    np.testing.assert_array_equal(loaded.block_keys, trace.block_keys)
    assert run_sweep(packed, {"ttl": ["none"]}, "serial").rows[0]["hit_tokens"] == 16


def test_a_corrupt_npz_is_a_located_error(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(TraceError, match="junk.npz: not a compiled cachesim trace"):
        run_sweep(path, {"ttl": ["none"]}, "serial")


# -- checkpoints -----------------------------------------------------------------------------------------------

class StopAfter:
    """An executor that runs tasks in order and is interrupted after ``n`` of them (like Ctrl-C)."""

    name = "stop-after"

    def __init__(self, n: int):
        self.n, self.ran = n, []

    def run(self, fn, tasks):
        for task in tasks:
            if len(self.ran) == self.n:
                raise KeyboardInterrupt
            self.ran.append(task[2])
            yield fn(task)

    def close(self):
        pass


GRID = {"capacity": [1, 2, "unbounded"], "ttl": ["none", 50]}


def test_resume_runs_only_what_is_missing_and_matches_a_fresh_sweep(tmp_path):
    ckpt = tmp_path / "sweep.partial.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(three_requests(), GRID, StopAfter(2), checkpoint=ckpt)
    lines = ckpt.read_bytes().splitlines()
    assert len(lines) == 1 + 2  # header + the two finished rows, written as they finished

    with pytest.raises(ValueError, match="pass resume=True"):
        run_sweep(three_requests(), GRID, "serial", checkpoint=ckpt)

    rest = StopAfter(100)
    resumed = run_sweep(three_requests(), GRID, rest, checkpoint=ckpt, resume=True)
    assert len(rest.ran) == 4
    assert {(p["capacity_blocks"], p["ttl_s"]) for p in rest.ran} == {(2, None), (2, 50.0), (None, None),
                                                                      (None, 50.0)}
    fresh = run_sweep(three_requests(), GRID, "serial")
    assert resumed.rows == fresh.rows and resumed.interference == fresh.interference


def test_resume_ignores_a_half_written_last_line_and_refuses_another_trace(tmp_path):
    ckpt = tmp_path / "sweep.partial.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(three_requests(), GRID, StopAfter(3), checkpoint=ckpt)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:-20])  # the third row was being written when the process died
    rest = StopAfter(100)
    with pytest.warns(UserWarning, match="dropped its last line, cut off mid-write"):
        run_sweep(three_requests(), GRID, rest, checkpoint=ckpt, resume=True)
    assert len(rest.ran) == 4  # 6 configurations, 2 whole rows kept

    other = BlockRequests.from_lists([[7]], [4], 4)
    with pytest.raises(TraceError, match="partial.jsonl:1: this checkpoint is from a different trace"):
        run_sweep(other, GRID, "serial", checkpoint=ckpt, resume=True)


# -- executors agree -------------------------------------------------------------------------------------------

def test_processes_give_the_serial_table():
    grid = {"capacity": [1, "unbounded"], "ttl": ["none", 50], "hit_cap": ["none", "prompt-1"]}
    serial = run_sweep(three_requests(), grid, "serial")
    processes = run_sweep(three_requests(), grid, "processes", workers=2)
    assert processes.to_json() == serial.to_json()


@pytest.mark.core
def test_mooncake_sweep_on_two_processes(tmp_path):
    """Acceptance: 50 configurations of the Mooncake conversation trace on 2 cores, well under a minute."""
    path = require_shared(MOONCAKE_CONVERSATION)
    grid = {"capacity": [1000, 2000, 5000, 10000, 20000, 50000, 100000, 150000, 200000, "unbounded"],
            "ttl": ["none", "1m", "5m", "30m", "1h"]}
    start = time.perf_counter()
    result = run_sweep(path, grid, "processes", workers=2)
    elapsed = time.perf_counter() - start
    assert len(result.rows) == 50
    assert elapsed < 30, f"50 configurations took {elapsed:.1f} s"
    unbounded = [r for r in result.rows if r["capacity_blocks"] is None and r["ttl_s"] is None][0]
    # SOURCES.md: 288,500 blocks, 182,790 distinct, so an unbounded cache hits 105,710 of them
    assert (unbounded["hit_blocks"], unbounded["blocks"], unbounded["inserted_blocks"]) == (105_710, 288_500,
                                                                                           182_790)
    by_ttl = {}
    for r in result.rows:
        by_ttl.setdefault(r["ttl_s"], []).append(r["hit_blocks"])
    for hits in by_ttl.values():  # LRU is a stack algorithm: more room never loses a hit
        assert hits == sorted(hits)


needs_dask = pytest.mark.skipif(not HAS_DASK, reason="the Dask tests need the 'dask' extra (dask, distributed): "
                                                    "pip install -e '.[test]' installs it")


@pytest.fixture(scope="module")
def dask_cluster():
    """A local Dask cluster of 2 worker processes on 127.0.0.1, shared by the Dask tests (it takes seconds)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield cluster, client


# what it checks (Dask, by any route, gives the table and figures of local processes) is the same on either
# engine; the 24 replays of its four sweeps take ~15 s on the reference model and ~3 s on the compiled core
@pytest.mark.core
@needs_dask
def test_local_dask_cluster_gives_the_process_table_and_figures(dask_cluster, tmp_path):
    """Every way of reaching Dask (a Client, an address, the CLI's --scheduler) gives the table and figures of
    local processes, on a multi-tenant token workload swept over two block sizes (two shared files)."""
    from cachesim.figures import figure_png, sweep_figures
    from cachesim.workloads import agent_workload

    cluster, client = dask_cluster
    requests = agent_workload(n_users=4, seed=0).requests
    label = "built-in agent workload (native harness, 4 users, seed 0)"  # as the CLI names it
    grid = {"capacity": ["2k", "20k", "unbounded"], "block_size": [16, 32]}
    local = run_sweep(requests, grid, "processes", workers=2, label=label)
    by_client = run_sweep(requests, grid, client, label=label)
    by_address = run_sweep(requests, grid, cluster.scheduler_address, label=label)
    out = tmp_path / "by_cli.json"
    assert main(["sweep", "--users", "4", "--capacity", "2k,20k,unbounded", "--block-size", "16,32",
                 "--scheduler", cluster.scheduler_address, "-o", str(out)]) == 0
    assert by_client.to_json() == local.to_json() == by_address.to_json()
    assert orjson.loads(out.read_bytes()) == orjson.loads(local.to_json())
    assert len(local.interference) == 6  # four tenants: every row carries its hits_from matrix
    assert [figure_png(f) for f in sweep_figures(by_client)] == [figure_png(f) for f in sweep_figures(local)]


@pytest.mark.core
@needs_dask
def test_mooncake_on_dask_matches_processes(dask_cluster):
    from cachesim.figures import figure_png, sweep_figures

    path = require_shared(MOONCAKE_CONVERSATION)
    grid = {"capacity": [1000, 10000, 100000, "unbounded"], "ttl": ["none", "5m"]}
    local = run_sweep(path, grid, "processes", workers=2)
    on_dask = run_sweep(path, grid, dask_cluster[1])
    assert on_dask.to_json() == local.to_json()
    assert [figure_png(f) for f in sweep_figures(on_dask)] == [figure_png(f) for f in sweep_figures(local)]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="the Ray test needs the 'ray' extra (not in the test extra): pip install 'cachesim[ray]'")
def test_ray_gives_the_serial_table():
    grid = {"capacity": [1, "unbounded"], "ttl": ["none", 50]}
    assert run_sweep(three_requests(), grid, "ray", workers=2).to_json() == \
        run_sweep(three_requests(), grid, "serial").to_json()


# -- the command line ------------------------------------------------------------------------------------------

def test_cli_sweep_writes_csv_json_and_resumes(tmp_path, capsys):
    npz = tmp_path / "t.npz"
    cachesim.compile_trace(three_requests()).save(npz)
    out = tmp_path / "s.csv"
    assert main(["sweep", str(npz), "--ttl", "none,50", "--capacity", "1,unbounded", "-o", str(out),
                 "--executor", "serial"]) == 0
    assert "4 configurations" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert [(r["capacity_blocks"], r["ttl_s"], r["hit_tokens"]) for r in rows] == [
        ("1", "", rows[0]["hit_tokens"]), ("1", "50.0", rows[1]["hit_tokens"]), ("", "", "16"), ("", "50.0", "8")]
    assert not checkpoint_path(out).exists()  # removed once the table is written

    grid = tmp_path / "g.toml"
    grid.write_text('ttl = ["none", 50]\n')
    js = tmp_path / "s.json"
    assert main(["sweep", str(npz), "--grid", str(grid), "-o", str(js), "--executor", "serial"]) == 0
    data = orjson.loads(js.read_bytes())
    assert data["kind"] == "cachesim-sweep" and [r["hit_tokens"] for r in data["rows"]] == [16, 8]


@pytest.mark.skipif(not HAS_PANDAS or importlib.util.find_spec("pyarrow") is None,
                    reason="Parquet output needs the 'sweep' extra (pandas, pyarrow)")
def test_cli_sweep_writes_parquet(tmp_path):
    import pandas as pd

    npz = tmp_path / "t.npz"
    cachesim.compile_trace(three_requests()).save(npz)
    out = tmp_path / "s.parquet"
    assert main(["sweep", str(npz), "--ttl", "none,50", "-o", str(out), "--executor", "serial"]) == 0
    assert list(pd.read_parquet(out)["hit_tokens"]) == [16, 8]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cachesim", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "message"), [
    (["sweep", "missing.jsonl", "--ttl", "5m"], "missing.jsonl: cannot open"),
    (["sweep", "--policy", "lru,nope"], "unknown policy 'nope'"),
    (["sweep"], "nothing to sweep"),
    (["sweep", "--capacity", "1k", "-o", "table.xlsx"], "unknown output format .xlsx"),
    (["sweep", "--capacity", "1k", "--executor", "carrier-pigeon"], "unknown executor 'carrier-pigeon'"),
])
def test_cli_sweep_bad_input_is_one_line_and_exit_2(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("cachesim: error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_module_is_callable_as_the_issue_spells_it():
    import cachesim.sweep as module

    table = cachesim.sweep(three_requests(), {"ttl": ["none", 50]}, "serial")
    rows = table.to_dict("records") if HAS_PANDAS else table
    assert [r["hit_tokens"] for r in rows] == [16, 8]
    assert module.run_sweep is run_sweep  # still the module for everything else


def test_progress_is_quiet_when_piped_and_shown_when_asked(tmp_path):
    npz = tmp_path / "t.npz"
    cachesim.compile_trace(three_requests()).save(npz)
    quiet = run_cli("sweep", str(npz), "--ttl", "none,50", "--executor", "serial")
    assert quiet.returncode == 0 and quiet.stderr == ""
    shown = run_cli("sweep", str(npz), "--ttl", "none,50", "--executor", "serial", "--progress")
    assert shown.returncode == 0 and "sweep on serial" in shown.stderr and "2/2" in shown.stderr


def test_cli_resume_continues_an_interrupted_sweep(tmp_path, capsys):
    npz = tmp_path / "t.npz"
    cachesim.compile_trace(three_requests()).save(npz)
    out = tmp_path / "s.json"
    args = ["sweep", str(npz), "--capacity", "1,2,unbounded", "--ttl", "none,50", "-o", str(out),
            "--executor", "serial"]
    with pytest.raises(KeyboardInterrupt):  # what Ctrl-C leaves: a checkpoint with the first rows
        run_sweep(str(npz), GRID, StopAfter(4), checkpoint=checkpoint_path(out))
    assert main(args) == 2
    assert "pass resume=True (--resume) to continue it" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    rows = orjson.loads(out.read_bytes())["rows"]
    assert [(r["capacity_blocks"], r["ttl_s"]) for r in rows] == [(1, None), (1, 50.0), (2, None), (2, 50.0),
                                                                  (None, None), (None, 50.0)]
    assert [r["hit_tokens"] for r in rows[4:]] == [16, 8]
    assert not checkpoint_path(out).exists()
