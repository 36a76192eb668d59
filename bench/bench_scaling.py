"""How the engine scales: time per block against stream length and against capacity, and memory per cached block.

Run (with the bench extra: pip install -e '.[test,bench]'):
    python -m pytest bench/bench_scaling.py --benchmark-only -s      (about 4 minutes; ~4 GB of memory)
CACHESIM_SCALING_MAX_BLOCKS=1e7 leaves out the 10^8-block point (it needs ~2 GB and a minute or two).

Workload: the stationary prefix workload of field.streams.prefix_requests (Zipf(0.9) conversations re-sending
prefixes of up to 64 blocks). Points are timed in CPU time of the calling thread (field.timing: the machine is
shared), interleaved round by round, and the fastest round kept. Plots go to bench/plots/, the table to
docs/performance.md.
"""

from __future__ import annotations

import os
import tracemalloc

import numpy as np

from conftest import report
from field import engine
from field.plots import line_plot
from field.results import PLOTS, load, record, table, write_section
from field.streams import mix64, one_block_requests, prefix_requests

MAX_BLOCKS = int(float(os.environ.get("CACHESIM_SCALING_MAX_BLOCKS", "1e8")))
LENGTHS = [n for n in (10**5, 10**6, 10**7, 10**8) if n <= MAX_BLOCKS]
LENGTH_CAPACITY = 1_000_000
CAPACITIES = [10**3, 10**4, 10**5, 10**6, 10**7]
CAPACITY_STREAM_BLOCKS = 30_000_000
CAPACITY_STREAM_CONVERSATIONS = 4_000_000  # ~12.6 M distinct blocks: the 10^7-block cache fills and evicts


def _interleaved(batches: dict, capacity_of, rounds: int) -> dict:
    """Fastest of `rounds` replays per point, the points taken in turn each round."""
    best: dict = {}
    for _ in range(rounds):
        for key, batch in batches.items():
            eng, hits, seconds = engine.replay(batch, capacity_of(key))
            if key not in best or seconds < best[key]["seconds"]:
                best[key] = dict(seconds=seconds, hits=hits, occupancy=eng.occupancy, blocks=batch.n_blocks)
    return best


def test_time_per_block_vs_length(benchmark):
    batches = {n: prefix_requests(n) for n in LENGTHS}
    best = benchmark.pedantic(_interleaved, args=(batches, lambda n: LENGTH_CAPACITY, 3), rounds=1)
    ns = {n: best[n]["seconds"] / best[n]["blocks"] * 1e9 for n in LENGTHS}
    reference = ns[10**6] if 10**6 in ns else ns[LENGTHS[0]]
    for n in LENGTHS:
        b = best[n]
        record("scaling", f"length {n:>10}", dict(
            sweep="length", x=n, blocks=b["blocks"], capacity=LENGTH_CAPACITY, ns_per_block=ns[n],
            blocks_per_s=b["blocks"] / b["seconds"], hit_ratio=b["hits"] / b["blocks"], occupancy=b["occupancy"],
            relative=ns[n] / reference))
        report(f"scaling: {b['blocks']:,} blocks, capacity {LENGTH_CAPACITY:,}",
               f"{ns[n]:6.1f} ns/block ({b['blocks'] / b['seconds'] / 1e6:.1f} M blocks/s), "
               f"{ns[n] / reference:.2f}x the time per block at 10^6; block hit ratio {b['hits'] / b['blocks']:.3f}")
    benchmark.extra_info.update(ns_per_block={str(n): ns[n] for n in LENGTHS})
    _render()


def test_throughput_vs_capacity(benchmark):
    batch = prefix_requests(CAPACITY_STREAM_BLOCKS, n_conversations=CAPACITY_STREAM_CONVERSATIONS, seed=1)
    best = benchmark.pedantic(_interleaved, args=({c: batch for c in CAPACITIES}, lambda c: c, 2), rounds=1)
    reference = best[CAPACITIES[0]]["seconds"]
    for c in CAPACITIES:
        b = best[c]
        record("scaling", f"capacity {c:>10}", dict(
            sweep="capacity", x=c, blocks=b["blocks"], capacity=c, ns_per_block=b["seconds"] / b["blocks"] * 1e9,
            blocks_per_s=b["blocks"] / b["seconds"], hit_ratio=b["hits"] / b["blocks"], occupancy=b["occupancy"],
            relative=b["seconds"] / reference))
        report(f"scaling: capacity {c:,} ({b['blocks'] / 1e6:.0f} M blocks)",
               f"{b['blocks'] / b['seconds'] / 1e6:6.1f} M blocks/s, {b['occupancy']:,} cached, "
               f"block hit ratio {b['hits'] / b['blocks']:.3f}; {b['seconds'] / reference:.2f}x the time at "
               f"capacity {CAPACITIES[0]:,}")
    _render()


def test_memory_per_cached_block(benchmark):
    """Bytes the engine holds per cached block once full (tracemalloc sees its PyMem_Raw allocations)."""
    def measure():
        out = {}
        for c in CAPACITIES:
            batch = one_block_requests(mix64(np.arange(1, c + c // 10 + 1, dtype=np.uint64)))  # distinct keys
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            eng, _, _ = engine.replay(batch, c)
            traced = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            assert eng.occupancy == c
            out[c] = dict(traced=traced / c, accounted=eng.memory_bytes() / c)
            del eng
        return out

    per_block = benchmark.pedantic(measure, rounds=1)
    for c in CAPACITIES:
        m = per_block[c]
        record("scaling", f"memory {c:>10}", dict(sweep="memory", x=c, capacity=c, traced_bytes=m["traced"],
                                                  accounted_bytes=m["accounted"]))
        report(f"memory per cached block, capacity {c:,}", f"{m['traced']:.1f} bytes (tracemalloc), "
               f"{m['accounted']:.1f} bytes (engine.memory_bytes)")
    _render()
    assert per_block[10**7]["traced"] <= 40


def _render() -> None:
    data = load("scaling")
    rows = {sweep: sorted((r for k, r in data.items() if not k.startswith("_") and r["sweep"] == sweep),
                          key=lambda r: r["x"]) for sweep in ("length", "capacity", "memory")}
    parts = []
    if rows["length"]:
        r = rows["length"]
        line_plot(PLOTS / "scaling_length.png", [x["blocks"] for x in r],
                  {"ns per block": [x["ns_per_block"] for x in r]}, "blocks replayed",
                  "ns per block (fastest round)",
                  f"Time per block against stream length (capacity {LENGTH_CAPACITY:,} blocks)",
                  goals={"20 M blocks/s goal (50 ns)": 50.0})
        parts.append("### Time per block against stream length\n\n![time per block](../bench/plots/scaling_length.png)"
                     "\n\n" + table(["blocks", "capacity", "ns / block", "M blocks/s", "block hit ratio",
                                     "cached at end", "time per block / at 10^6", "measured"],
                                    [[f"{x['blocks']:,}", f"{x['capacity']:,}", f"{x['ns_per_block']:.1f}",
                                      f"{x['blocks_per_s'] / 1e6:.1f}", f"{x['hit_ratio']:.3f}",
                                      f"{x['occupancy']:,}", f"{x['relative']:.2f}", x["measured"]] for x in r]))
    if rows["capacity"]:
        r = rows["capacity"]
        line_plot(PLOTS / "scaling_capacity.png", [x["capacity"] for x in r],
                  {"M blocks/s": [x["blocks_per_s"] / 1e6 for x in r]}, "capacity (blocks)",
                  "M blocks/s (fastest round)", f"Throughput against capacity ({r[0]['blocks'] / 1e6:.0f} M blocks)",
                  goals={"20 M/s goal (<= 1 M cached)": 20.0, "8 M/s goal (10 M cached)": 8.0})
        parts.append("### Throughput against capacity\n\n![throughput against capacity]"
                     "(../bench/plots/scaling_capacity.png)\n\n" +
                     table(["capacity", "blocks", "M blocks/s", "ns / block", "block hit ratio", "cached at end",
                            f"time / at {r[0]['capacity']:,}", "measured"],
                           [[f"{x['capacity']:,}", f"{x['blocks']:,}", f"{x['blocks_per_s'] / 1e6:.1f}",
                             f"{x['ns_per_block']:.1f}", f"{x['hit_ratio']:.3f}", f"{x['occupancy']:,}",
                             f"{x['relative']:.2f}", x["measured"]] for x in r]))
    if rows["memory"]:
        r = rows["memory"]
        line_plot(PLOTS / "memory_per_block.png", [x["capacity"] for x in r],
                  {"tracemalloc": [x["traced_bytes"] for x in r],
                   "engine.memory_bytes()": [x["accounted_bytes"] for x in r]},
                  "capacity (blocks, full)", "bytes per cached block", "Memory per cached block",
                  goals={"40-byte goal": 40.0})
        parts.append("### Memory per cached block\n\n![memory per cached block](../bench/plots/memory_per_block.png)"
                     "\n\n" + table(["capacity", "bytes / block (tracemalloc)", "bytes / block (memory_bytes)",
                                     "measured"],
                                    [[f"{x['capacity']:,}", f"{x['traced_bytes']:.1f}", f"{x['accounted_bytes']:.1f}",
                                      x["measured"]] for x in r]))
    write_section("scaling", "\n\n".join(parts) + f"\n\nMachine: {data['_machine']}.")
