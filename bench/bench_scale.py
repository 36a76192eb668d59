"""Traces at 2026 scale: a trace shaped like libCacheSim's prefix dataset (600 M accesses of 16-token blocks) replayed
from Parquet and from ``.lcp.zst`` in bounded memory, with ``mrc`` and a 3-configuration ``sweep --stream`` on it;
and the Parquet format's size and load time against the JSONL and the ``.npz``.

    python -m pytest bench/bench_scale.py -s                        # 600 M blocks: ~10 min, ~11 GB in /tmp
    CACHESIM_SCALE_BLOCKS=50M python -m pytest bench/bench_scale.py -s   # a quick look

Each command runs in its own process under ``/usr/bin/time -v`` (peak RSS, wall and CPU time) beside a plain
read of the same file in the same run (pyarrow decoding every column; zstd decompressing every byte), so the
rates can be read as ratios on a loaded machine. The generated files are kept in ``CACHESIM_SCALE_DIR`` (default
``/tmp/cachesim-scale``) and reused while the generator and the size are the same.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cachesim.units import parse_count

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import gen_prefix_dataset  # noqa: E402

BLOCKS = parse_count(os.environ.get("CACHESIM_SCALE_BLOCKS", "600M"))
DIR = Path(os.environ.get("CACHESIM_SCALE_DIR", "/tmp/cachesim-scale"))
CAPACITY = os.environ.get("CACHESIM_SCALE_CAPACITY", "4M")
RSS_LIMIT_KB = 1 << 20   # the bound for the replay: 1 GB


def generated(suffix: str) -> Path:
    DIR.mkdir(parents=True, exist_ok=True)
    path = DIR / f"prefix-{BLOCKS}{suffix}"
    if not path.exists():
        started = time.monotonic()
        n, blocks = gen_prefix_dataset.write(str(path), BLOCKS)
        print(f"\ngenerated {path}: {n:,} requests, {blocks:,} blocks in {time.monotonic() - started:.0f} s")
    return path


def _tree_rss_sampler(root_pid: int, peak: list[int], done: threading.Event) -> None:
    """The most memory the process tree below root_pid held at once (sum of RSS, sampled every 0.2 s): a sweep's
    workers are not children /usr/bin/time waits for, so its figure is the parent's alone."""
    import psutil

    try:
        root = psutil.Process(root_pid)
    except psutil.NoSuchProcess:
        return
    while not done.is_set():
        total = 0
        try:
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            return
        peak[0] = max(peak[0], total)
        done.wait(0.2)


def timed(*argv: str) -> dict:
    """A command under /usr/bin/time -v: wall and CPU seconds, peak RSS (of the process /usr/bin/time waits for,
    and of its whole process tree at once), and its stdout."""
    proc = subprocess.Popen(["/usr/bin/time", "-v", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "CACHESIM_PROGRESS_INTERVAL_S": "30"})
    peak, done = [0], threading.Event()
    sampler = threading.Thread(target=_tree_rss_sampler, args=(proc.pid, peak, done), daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    assert proc.returncode == 0, err[-2000:]

    def field(name: str) -> str:
        return re.search(rf"{re.escape(name)}: (.+)", err).group(1).strip()

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
    return {"wall_s": seconds, "cpu_s": float(field("User time (seconds)")) + float(field("System time (seconds)")),
            "rss_kb": int(field("Maximum resident set size (kbytes)")), "tree_rss_kb": peak[0] // 1024,
            "stdout": out, "stderr": err}


def plain_read_parquet(path: Path) -> tuple[float, int]:
    import pyarrow.parquet as pq

    started = time.perf_counter()
    blocks = 0
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group)
        blocks += len(table.column("block_ids").combine_chunks().flatten())
    return time.perf_counter() - started, blocks


def plain_read_zstd(path: Path) -> float:
    import zstandard

    started = time.perf_counter()
    with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
        while reader.read(16 << 20):
            pass
    return time.perf_counter() - started


def report(what: str, blocks: int, run: dict, baseline_s: float | None = None) -> None:
    rate = blocks / run["wall_s"]
    line = (f"{what}: {blocks / 1e6:,.0f} M blocks in {run['wall_s']:.1f} s wall ({run['cpu_s']:.1f} s CPU): "
            f"{rate / 1e6:.1f} M blocks/s, peak RSS {run['rss_kb'] / 1024:,.0f} MB (the whole process tree at "
            f"once: {run['tree_rss_kb'] / 1024:,.0f} MB)")
    if baseline_s:
        line += f"; plain read {baseline_s:.1f} s ({blocks / baseline_s / 1e6:.1f} M blocks/s), ratio " \
                f"{run['wall_s'] / baseline_s:.2f}"
    print("\n" + line)


def cachesim(*args: str) -> dict:
    return timed(sys.executable, "-m", "cachesim", *args)


@pytest.fixture(scope="module")
def parquet_trace() -> Path:
    return generated(".parquet")


def test_replay_from_parquet_in_bounded_memory(parquet_trace, tmp_path):
    read_s, blocks = plain_read_parquet(parquet_trace)
    run = cachesim("replay", str(parquet_trace), "--capacity", CAPACITY, "--no-progress", "--json",
                   str(tmp_path / "r.json"))
    report(f"replay {parquet_trace.name} --capacity {CAPACITY}", blocks, run, read_s)
    print(f"file: {parquet_trace.stat().st_size / 1e9:.2f} GB ({parquet_trace.stat().st_size / blocks:.2f} B a block)")
    assert run["rss_kb"] <= RSS_LIMIT_KB


def test_replay_from_lcp_zst_in_bounded_memory(parquet_trace, tmp_path):
    pytest.importorskip("cachesim.readers.lcp", reason="the lcp reader is not in this checkout")
    lcp = generated(".lcp.zst")
    read_s = plain_read_zstd(lcp)
    run = cachesim("replay", str(lcp), "--capacity", CAPACITY, "--no-progress", "--json", str(tmp_path / "r.json"))
    import orjson

    blocks = orjson.loads((tmp_path / "r.json").read_bytes())["summary"]["blocks"]
    report(f"replay {lcp.name} --capacity {CAPACITY}", blocks, run, read_s)
    print(f"file: {lcp.stat().st_size / 1e9:.2f} GB")
    assert run["rss_kb"] <= RSS_LIMIT_KB


def test_mrc_and_a_streamed_sweep_in_bounded_memory(parquet_trace, tmp_path):
    _, blocks = plain_read_parquet(parquet_trace)
    run = cachesim("mrc", str(parquet_trace), "--sample", "0.01", "--no-progress", "--json", str(tmp_path / "m.json"))
    report(f"mrc {parquet_trace.name} --sample 0.01", blocks, run)
    run = cachesim("sweep", str(parquet_trace), "--stream", "--capacity", "250k,1M,4M", "--no-progress", "-o",
                   str(tmp_path / "s.csv"))
    report(f"sweep --stream --capacity 250k,1M,4M (3 replays, 2 at a time) on {parquet_trace.name}", 3 * blocks, run)
    print(run["stdout"][-1200:])
    # two workers at once, each with its cache (the larger holds 4M blocks) and one batch in flight
    assert run["tree_rss_kb"] <= 2 * RSS_LIMIT_KB


def test_parquet_size_and_load_time_against_jsonl_and_npz(tmp_path):
    from cachesim.readers import read_trace

    source = Path(__file__).resolve().parents[2] / "shared" / "traces" / "mooncake" / "conversation_trace.jsonl"
    if not source.exists():
        pytest.skip(f"{source} is absent: the real traces live in ../shared/traces beside the checkout")
    parquet, npz = tmp_path / "m.parquet", tmp_path / "m.npz"
    for out in (parquet, npz):
        assert subprocess.run([sys.executable, "-m", "cachesim", "convert", str(source), str(out)],
                              capture_output=True).returncode == 0
    sizes = {p.name: p.stat().st_size for p in (source, parquet, npz)}
    loads = {}
    for p in (source, parquet, npz):
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            read_trace(p)
            best = min(best, time.perf_counter() - started)
        loads[p.name] = best
    print()
    for name in sizes:
        print(f"{name}: {sizes[name]:,} bytes ({sizes[source.name] / sizes[name]:.1f}x smaller than the JSONL), "
              f"read + compiled in {loads[name] * 1e3:.1f} ms ({loads[source.name] / loads[name]:.1f}x the JSONL)")
    assert sizes[source.name] / sizes[parquet.name] >= 10
