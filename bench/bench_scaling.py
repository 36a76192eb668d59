"""How the engine scales: time per block against stream length, the engine's age and capacity, and memory per cached
block.

Run (with the bench extra: pip install -e '.[test,bench]'):
    python -m pytest bench/bench_scaling.py --benchmark-only -s      (1 to 3 minutes; ~4.4 GB of memory)
CACHESIM_SCALING_MAX_BLOCKS=1e7 leaves out the 10^8-block point (it needs ~1.5 GB and about a minute).

Workloads: "prefix" is the stationary workload of field.streams.prefix_requests (Zipf(0.9) conversations
re-sending prefixes of up to 64 blocks; about half the blocks miss); "agent" is the lead's multi_turn_ids
(workloads.py: sessions re-sending a shared system prompt and their whole history; most blocks hit). Points are
timed in CPU time of the calling thread (field.timing: the machine is shared), interleaved round by round, and the
fastest round kept. Plots go to bench/plots/, tables to docs/performance.md.
"""

from __future__ import annotations

import dataclasses
import os
import tracemalloc

import numpy as np
import pytest

import cachesim
from cachesim import _core
from conftest import report
from field import engine
from field.goals import goals_markdown
from field.plots import line_plot
from field.results import PLOTS, load, record, table, write_section
from field.streams import Batch, mix64, one_block_requests, prefix_requests
from field.timing import clock
from workloads import multi_turn_ids

pytest.importorskip("matplotlib", reason="the scaling plots need matplotlib (bench extra): pip install '.[bench]'")

MAX_BLOCKS = int(float(os.environ.get("CACHESIM_SCALING_MAX_BLOCKS", "1e8")))
LENGTHS = [n for n in (10**5, 10**6, 10**7, 10**8) if n <= MAX_BLOCKS]
# 10^4 blocks fill within the first 10^5-block point; 10^6 fill after ~1.6 M blocks, so the shorter streams
# below that never evict and run cheaper: only the 10^7 and 10^8 points compare steady states
LENGTH_CAPACITIES = [10_000, 1_000_000]
SLICE_BLOCKS = 10_000_000  # the 10^8-block replays are also timed by slices of 10^7 blocks
CAPACITIES = [10**3, 10**4, 10**5, 10**6, 10**7]
PREFIX_STREAM = dict(n_blocks=30_000_000, n_conversations=4_000_000, seed=1)  # ~12.6 M distinct: 10^7 fills
AGENT_STREAM = dict(n_sessions=20_000, turns=20, new_blocks_per_turn=4, start_spread_s=2_000)  # 42 M blocks


def _rounds_for(n_blocks: int) -> int:
    """Replays of a short stream: a point of 10^5 blocks takes 2 ms, which one descheduling can double, so short
    points are replayed until they add up to about 3 * 10^7 blocks (at most 20 times)."""
    return min(20, 30_000_000 // max(n_blocks, 1))


def _interleaved(points: dict, rounds: int, slice_blocks: int | None = None) -> dict:
    """Fastest of `rounds` replays per point ({key: (batch, capacity)}, more for short streams: _rounds_for),
    the points taken in turn each round.
    A batch whose keys are dense ids (see _dense) is replayed by an engine indexing them by array. With
    slice_blocks, a replay of at least five slices also keeps each slice's fastest time over the rounds."""
    best: dict = {}
    rounds_of = {key: max(rounds, _rounds_for(batch.n_blocks)) for key, (batch, _) in points.items()}
    for k in range(max(rounds_of.values())):
        for key, (batch, capacity) in points.items():
            if k >= rounds_of[key]:
                continue
            sliced = slice_blocks if slice_blocks and batch.n_blocks >= 5 * slice_blocks else None
            slices: list = []
            eng, hits, seconds = engine.replay(batch, capacity, direct_keys=batch.dense, slice_blocks=sliced,
                                               slices=slices)
            # each slice's fastest round: a slice is as long as a 10^7-block point, so it filters the machine's
            # bursts of load as that point's fastest round does (a 10^8 replay's fastest round rarely escapes them)
            earlier = best[key]["fastest_slices"] if key in best else slices
            fastest_slices = [min(a, b, key=lambda s: s[1]) for a, b in zip(earlier, slices, strict=True)]
            if key not in best or seconds < best[key]["seconds"]:
                best[key] = dict(seconds=seconds, hits=hits, occupancy=eng.occupancy, blocks=batch.n_blocks,
                                 capacity=capacity)
            best[key]["fastest_slices"] = fastest_slices
    return best


def _record_sweep(sweep: str, best: dict) -> None:
    """Store and report each point of a sweep; best is keyed by (series, x)."""
    for (series, x), b in sorted(best.items()):
        p = dict(sweep=sweep, series=series, x=x, blocks=b["blocks"], capacity=b["capacity"],
                 ns_per_block=b["seconds"] / b["blocks"] * 1e9, blocks_per_s=b["blocks"] / b["seconds"],
                 hit_ratio=b["hits"] / b["blocks"], occupancy=b["occupancy"])
        if b["fastest_slices"]:
            p["ns_per_block_fastest_slices"] = sum(s for _, s in b["fastest_slices"]) / b["blocks"] * 1e9
        record("scaling", f"{sweep} {series} {x:>10}", p)
        workload = f"{series} workload" if isinstance(series, str) else "prefix workload"
        report(f"{sweep} sweep: {workload}, capacity {b['capacity']:,}, {b['blocks'] / 1e6:.1f} M blocks",
               f"{p['blocks_per_s'] / 1e6:6.1f} M blocks/s ({p['ns_per_block']:.1f} ns/block), "
               f"{p['occupancy']:,} cached, block hit ratio {p['hit_ratio']:.3f}")
    _render()


def test_time_per_block_vs_length(benchmark):
    batches = {n: prefix_requests(n) for n in LENGTHS}
    points = {(c, n): (batches[n], c) for c in LENGTH_CAPACITIES for n in LENGTHS}
    # three rounds: a burst of load from the machine's other tenants can cover two replays of 10^8 blocks
    best = benchmark.pedantic(_interleaved, args=(points, 3, SLICE_BLOCKS), rounds=1)
    _record_sweep("length", best)
    # the longest replay, slice by slice: does the time per block drift within one stream?
    for (capacity, _n), b in best.items():
        if b["fastest_slices"]:
            ends = np.cumsum([blocks for blocks, _ in b["fastest_slices"]])
            for end, (blocks, seconds) in zip(ends, b["fastest_slices"], strict=True):
                record("scaling", f"slices {capacity:>10} {int(end):>12}",
                       dict(sweep="slices", series=capacity, x=int(end), blocks=blocks,
                            ns_per_block=seconds / blocks * 1e9))
    _render()


AGE_STREAM_BLOCKS = 50_000_000  # five slices of 10^7 blocks at 1 M cached
AGE_CASES = [*(f"fresh engine, slice {k} of 5 in order" for k in range(1, 6)),
             "the same engine (aged), slice 1 again", "another fresh engine, slice 5 first"]


def _feed_slice(eng, batch: Batch, r0: int, r1: int) -> float:
    """Feed requests r0..r1-1 to eng (statistics only, in engine.replay's calls); ns per block, CPU time."""
    start = clock()
    for a in range(r0, r1, engine.FEED_REQUESTS):
        engine.feed(eng, batch, a, min(a + engine.FEED_REQUESTS, r1), per_request=False)
    return (clock() - start) / (batch.block_offsets[r1] - batch.block_offsets[r0]) * 1e9


def test_time_per_block_follows_engine_age(benchmark):
    """Is the rise in time per block at 1 M cached (the slices of the length sweep) the stream's doing or the
    engine's? The same slices, fed in order to a fresh engine, fed again to the aged engine, and fed in reverse
    to a fresh one: if it is the engine's age, a slice costs what its place in the engine's life says."""
    capacity = 1_000_000
    keyed = prefix_requests(AGE_STREAM_BLOCKS)
    batches = {"keys": keyed, "dense ids": _dense(keyed)}
    cuts = [int(np.searchsorted(keyed.block_offsets, k * AGE_STREAM_BLOCKS // 5)) for k in range(5)]
    cuts.append(len(keyed.t))

    def probe():
        out = {}
        for kind, batch in batches.items():
            fresh = _core.Engine(capacity_blocks=capacity, direct_keys=batch.dense)
            times = [_feed_slice(fresh, batch, cuts[k], cuts[k + 1]) for k in range(5)]
            assert fresh.occupancy == capacity  # full, and evicting, from the second slice on
            times.append(_feed_slice(fresh, batch, cuts[0], cuts[1]))
            times.append(_feed_slice(_core.Engine(capacity_blocks=capacity, direct_keys=batch.dense), batch,
                                     cuts[4], cuts[5]))
            out[kind] = times
        return out

    times = benchmark.pedantic(probe, rounds=1)
    for kind, values in times.items():
        for x, (case, ns) in enumerate(zip(AGE_CASES, values, strict=True)):
            record("scaling", f"age {kind} {x}", dict(sweep="age", series=kind, x=x, case=case, ns_per_block=ns))
        report(f"engine age, {kind}", ", ".join(f"{ns:.0f}" for ns in values) + " ns per block")
    _render()


def _agent_batch() -> Batch:
    trace = cachesim.compile_trace(multi_turn_ids(**AGENT_STREAM))
    return Batch(t=trace.t, tenant=trace.tenant, prompt_tokens=trace.prompt_tokens,
                 block_offsets=trace.block_offsets, keys=trace.block_keys, block_tokens=trace.block_tokens)


def _dense(batch: Batch) -> Batch:
    """The batch with its keys numbered as Trace.dense() numbers them (untimed: done once per trace)."""
    return dataclasses.replace(batch, keys=_core.dense_ids(batch.keys)[0], dense=True)


def test_throughput_vs_capacity(benchmark):
    streams = {"prefix": prefix_requests(**PREFIX_STREAM), "agent": _agent_batch()}
    streams.update({f"{name} (dense ids)": _dense(batch) for name, batch in list(streams.items())})
    points = {(w, c): (streams[w], c) for w in streams for c in CAPACITIES}
    _record_sweep("capacity", benchmark.pedantic(_interleaved, args=(points, 2), rounds=1))


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


def _rows(data: dict, sweep: str) -> list[dict]:
    return sorted((r for k, r in data.items() if not k.startswith("_") and r["sweep"] == sweep),
                  key=lambda r: (str(r.get("series")), r["x"]))


def _series(rows: list[dict], value) -> tuple[list, dict]:
    names = list(dict.fromkeys(r["series"] for r in rows))
    xs = sorted({r["x"] for r in rows})
    out = {}
    for name in names:
        by_x = {r["x"]: value(r) for r in rows if r["series"] == name}
        out[name] = [by_x.get(x, float("nan")) for x in xs]
    return xs, out


def _speed_table(rows: list[dict], first: str) -> str:
    return table([first, "blocks", "capacity", "M blocks/s", "ns / block", "block hit ratio", "cached at end",
                  "measured"],
                 [[str(r["series"]) if first == "workload" else f"{r['series']:,}", f"{r['blocks']:,}",
                   f"{r['capacity']:,}", f"{r['blocks_per_s'] / 1e6:.1f}", f"{r['ns_per_block']:.1f}",
                   f"{r['hit_ratio']:.3f}", f"{r['occupancy']:,}", r["measured"]] for r in rows])


def _render() -> None:
    data = load("scaling")
    parts = []
    rows = _rows(data, "length")
    if rows:
        xs, series = _series(rows, lambda r: r["ns_per_block"])
        line_plot(PLOTS / "scaling_length.png", xs, {f"capacity {k:,}": v for k, v in series.items()},
                  "blocks replayed (prefix workload)", "ns per block (CPU, fastest round)",
                  "Time per block against stream length", goals={"20 M blocks/s (50 ns)": 50.0})
        parts.append("### Time per block against stream length\n\n![time per block](../bench/plots/scaling_length.png)"
                     "\n\n" + _speed_table(rows, "series (capacity)"))
    rows = _rows(data, "slices")
    if rows:
        xs, series = _series(rows, lambda r: r["ns_per_block"])
        line_plot(PLOTS / "scaling_slices.png", xs, {f"capacity {k:,}": v for k, v in series.items()},
                  "blocks replayed so far (end of the slice)", "ns per block in the slice (CPU, fastest round)",
                  "One 10^8-block replay, slice by slice", goals={"20 M blocks/s (50 ns)": 50.0}, logx=False)
        caps = list(series)
        parts.append("### Time per block within one 10^8-block replay\n\n"
                     "Each slice's fastest of the rounds.\n\n"
                     "![time per block by slice](../bench/plots/scaling_slices.png)\n\n" +
                     table(["slice ends at (blocks)", *[f"ns / block, capacity {c:,}" for c in caps]],
                           [[f"{x:,}", *[f"{series[c][i]:.1f}" for c in caps]] for i, x in enumerate(xs)]))
    rows = _rows(data, "age")
    if rows:
        kinds = list(dict.fromkeys(r["series"] for r in rows))
        by = {(r["series"], r["x"]): r for r in rows}
        cases = sorted({r["x"] for r in rows})
        parts.append("### Time per block against the engine's age\n\n"
                     "The prefix workload at 1 M cached, statistics only, in five slices of 10^7 blocks "
                     "(`test_time_per_block_follows_engine_age`).\n\n" +
                     table(["slice, and the engine it was fed to", *[f"ns / block, {k}" for k in kinds], "measured"],
                           [[by[(kinds[0], x)]["case"], *[f"{by[(k, x)]['ns_per_block']:.1f}" for k in kinds],
                             by[(kinds[0], x)]["measured"]] for x in cases]))
    rows = _rows(data, "capacity")
    if rows:
        xs, series = _series(rows, lambda r: r["blocks_per_s"] / 1e6)
        line_plot(PLOTS / "scaling_capacity.png", xs, {f"{k} workload": v for k, v in series.items()},
                  "capacity (blocks)", "M blocks/s (CPU, fastest round)", "Throughput against capacity",
                  goals={"20 M/s goal (<= 1 M cached)": 20.0, "8 M/s goal (10 M cached)": 8.0})
        parts.append("### Throughput against capacity\n\n![throughput against capacity]"
                     "(../bench/plots/scaling_capacity.png)\n\n" + _speed_table(rows, "workload"))
    rows = _rows(data, "memory")
    if rows:
        line_plot(PLOTS / "memory_per_block.png", [r["capacity"] for r in rows],
                  {"tracemalloc": [r["traced_bytes"] for r in rows],
                   "engine.memory_bytes()": [r["accounted_bytes"] for r in rows]},
                  "capacity (blocks, full)", "bytes per cached block", "Memory per cached block",
                  goals={"40-byte goal": 40.0})
        parts.append("### Memory per cached block\n\n![memory per cached block](../bench/plots/memory_per_block.png)"
                     "\n\n" + table(["capacity", "bytes / block (tracemalloc)", "bytes / block (memory_bytes)",
                                     "measured"],
                                    [[f"{r['capacity']:,}", f"{r['traced_bytes']:.1f}", f"{r['accounted_bytes']:.1f}",
                                      r["measured"]] for r in rows]))
    write_section("scaling", "\n\n".join(parts) + f"\n\nMachine: {data['_machine']}.")
    write_section("goals", goals_markdown())
