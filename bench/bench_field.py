"""cachesim against the field: libCacheSim's LRU, an OrderedDict LRU, vLLM-style and Python-loop hashing.

Run (with the bench extra: pip install -e '.[test,bench]'):
    python -m pytest bench/bench_field.py --benchmark-only -s      (1 to 2 minutes; ~3 GB of memory)

Every comparison first checks that both sides compute the same thing (equal miss counts, equal keys), then times
them interleaved in the same run, in CPU time of the calling thread (field.timing: the machine is shared, and wall
time counts the waits for a core), and reports the ratio.
Results go to bench/plots/field.json and the table in docs/performance.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from cachesim import _core
from conftest import report
from field import engine
from field import libcachesim_driver as lcs_driver
from field.baselines import ordered_dict_lru_misses, vllm_style_keys, xxhash_loop_keys
from field.goals import goals_markdown
from field.results import load, ratio, record, table, write_section
from field.streams import MOONCAKE, mix64, mooncake_block_ids, one_block_requests, zipf_ids
from field.timing import timed


def _render() -> None:
    data = load("field")
    rows = []
    for name in sorted(k for k in data if not k.startswith("_")):
        row = data[name]
        rows.append([name, row["workload"], row["cachesim"], row["baseline"], f"**{ratio(row['ratio'])}**",
                     row["check"], row["measured"]])
    write_section("field", table(["comparison", "workload", "cachesim", "baseline", "cachesim / baseline",
                                  "same answer", "measured"], rows) + f"\n\nMachine: {data['_machine']}.")
    write_section("goals", goals_markdown())


def _lru_versus_libcachesim(benchmark, tmp_path, name: str, workload: str, ids: np.ndarray, capacity: int,
                            rounds: int, ordered_dict: bool) -> None:
    """Both simulators on the workload's own ids (dense: Zipf ranks, Mooncake's published hash_ids), which the
    engine replays as they come (direct_keys), and on the same ids made 64-bit keys that look like block hashes
    (mix64), which it replays through its hash index."""
    pytest.importorskip("libcachesim", reason="libCacheSim is an optional bench dependency: pip install '.[bench]'")
    assert ids.max() < 2 * len(np.unique(ids)), "the workload's ids should be dense"
    keys = mix64(ids + np.uint64(1))
    batch, ids_batch = one_block_requests(keys), one_block_requests(ids)
    keys_path = lcs_driver.write_oracle_general(keys, tmp_path / "keys.oracleGeneral")
    ids_path = lcs_driver.write_oracle_general(ids, tmp_path / "ids.oracleGeneral")
    n = len(keys)
    times = {"cachesim": [], "dense": [], "numbering": [], "libcachesim": [], "libcachesim ids": []}
    answers = {}

    def one_round():  # interleaved, so every side sees the same machine load
        _, hits, seconds = engine.replay(batch, capacity, engine.REPLAY_BATCH_BLOCKS, per_request=False)
        answers["cachesim"] = n - hits
        times["cachesim"].append(seconds)
        _, hits, seconds = engine.replay(ids_batch, capacity, engine.REPLAY_BATCH_BLOCKS, direct_keys=True,
                                         per_request=False)
        answers["dense"] = n - hits
        times["dense"].append(seconds)
        for side, path in (("libcachesim", keys_path), ("libcachesim ids", ids_path)):
            miss_ratio, seconds = lcs_driver.lru_replay(path, capacity)
            answers[side] = miss_ratio
            times[side].append(seconds)
        # what 64-bit keys cost to number into dense ids (Trace.dense(), once per trace before a sweep's replays)
        times["numbering"].append(timed(_core.dense_ids, keys)[1])

    benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=0)
    cachesim_s, dense_s, numbering_s, lcs_s, lcs_ids_s = (
        min(times[k]) for k in ("cachesim", "dense", "numbering", "libcachesim", "libcachesim ids"))
    misses = answers["cachesim"]
    assert answers["dense"] == misses
    # libCacheSim reports a float ratio of misses to requests (objects of 1 byte: object and byte ratios agree)
    for side in ("libcachesim", "libcachesim ids"):
        assert abs(answers[side] * n - misses) < 0.5, (answers, n)
    check = f"miss ratio {misses / n:.4f} both"
    if ordered_dict:
        od_misses, od_s = timed(ordered_dict_lru_misses, keys.tolist(), capacity)
        assert od_misses == misses
        record("field", f"{name}, OrderedDict", dict(
            workload=workload, cachesim=f"{n / cachesim_s / 1e6:.1f} M req/s",
            baseline=f"OrderedDict LRU {n / od_s / 1e6:.2f} M req/s", ratio=od_s / cachesim_s,
            check=f"{od_misses:,} misses both"))
        report(f"{name}: OrderedDict LRU", f"{n / od_s / 1e6:.2f} M req/s; cachesim {od_s / cachesim_s:.0f}x faster")
    record("field", f"{name}, libCacheSim, 64-bit keys", dict(
        workload=workload + "; the ids as 64-bit keys (mix64)",
        cachesim=f"{n / cachesim_s / 1e6:.1f} M req/s (hash index; numbering the keys into dense ids takes "
                 f"{numbering_s * 1e3:,.0f} ms, after which a replay runs as on the ids: "
                 f"{lcs_s / (dense_s + numbering_s):.2f}x with one replay)",
        baseline=f"libCacheSim LRU {n / lcs_s / 1e6:.1f} M req/s", ratio=lcs_s / cachesim_s,
        ratio_with_numbering=lcs_s / (dense_s + numbering_s), check=check))
    record("field", f"{name}, libCacheSim, ids", dict(
        workload=workload + "; the workload's own ids, which are dense",
        cachesim=f"{n / dense_s / 1e6:.1f} M req/s (direct_keys)",
        baseline=f"libCacheSim LRU {n / lcs_ids_s / 1e6:.1f} M req/s", ratio=lcs_ids_s / dense_s, check=check))
    benchmark.extra_info.update(cachesim_req_per_s=n / cachesim_s, dense_req_per_s=n / dense_s,
                                numbering_s=numbering_s, libcachesim_req_per_s=n / lcs_s,
                                libcachesim_ids_req_per_s=n / lcs_ids_s, ratio=lcs_s / cachesim_s,
                                dense_ratio=lcs_ids_s / dense_s, miss_ratio=misses / n)
    report(f"{name}: cachesim vs libCacheSim LRU",
           f"64-bit keys {n / cachesim_s / 1e6:.1f} vs {n / lcs_s / 1e6:.1f} M req/s: {lcs_s / cachesim_s:.2f}x "
           f"({lcs_s / (dense_s + numbering_s):.2f}x numbering them first); the ids {n / dense_s / 1e6:.1f} "
           f"(direct_keys) vs {n / lcs_ids_s / 1e6:.1f}: {lcs_ids_s / dense_s:.2f}x; miss ratio {misses / n:.4f} "
           "in all")
    _render()


def test_lru_zipf_vs_libcachesim(benchmark, tmp_path):
    n, objects, capacity = 10_000_000, 1_000_000, 100_000
    ids = zipf_ids(n, objects, 0.9, seed=0)
    _lru_versus_libcachesim(benchmark, tmp_path, "LRU, Zipf keys", "10 M requests, Zipf(0.9) over 1 M objects, "
                            "capacity 100,000", ids, capacity, rounds=3, ordered_dict=True)


@pytest.mark.parametrize("capacity", [10_000, 100_000])
def test_lru_mooncake_vs_libcachesim(benchmark, tmp_path, capacity):
    ids = mooncake_block_ids()
    if ids is None:
        pytest.skip(f"{MOONCAKE} is absent: the real traces live in ../shared/traces beside the checkout "
                    "(or set CACHESIM_SHARED_TRACES)")
    _lru_versus_libcachesim(benchmark, tmp_path, f"LRU, Mooncake ids, capacity {capacity:,}",
                            f"Mooncake conversation hash_ids ({len(ids):,} blocks, one request each), "
                            f"capacity {capacity:,}", ids, capacity, rounds=10, ordered_dict=capacity == 10_000)


def test_compile_vs_python_hashing(benchmark):
    block_size, request_tokens = 16, 8192
    n_tokens = 64 * 1024 * 1024
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 1 << 17, n_tokens, dtype=np.uint32)  # ids of a 128k vocabulary
    offsets = np.arange(0, n_tokens + 1, request_tokens, dtype=np.int64)
    core_times = []

    def compile_once():
        core_times.append(timed(_core.compile_token_blocks, tokens, offsets, block_size)[1])

    benchmark.pedantic(compile_once, rounds=5, warmup_rounds=1)
    core_s = min(core_times)
    head = 64  # requests the Python baselines hash (512 k tokens)
    head_tokens = head * request_tokens
    _, core_keys, _ = _core.compile_token_blocks(tokens[:head_tokens], offsets[:head + 1], block_size)
    loop_keys, xxhash_s = timed(xxhash_loop_keys, tokens[:head_tokens], offsets[:head + 1], block_size)
    assert np.array_equal(loop_keys, core_keys)  # the same chain, bit for bit
    token_lists = [tokens[offsets[r]:offsets[r + 1]].tolist() for r in range(head)]  # vLLM holds Python lists
    vllm_keys, vllm_s = timed(vllm_style_keys, token_lists, block_size)
    assert sum(len(k) for k in vllm_keys) == len(core_keys)
    core_rate = n_tokens / core_s
    for label, seconds in (("vLLM-style SHA-256 of pickled tuples", vllm_s), ("Python-loop xxhash", xxhash_s)):
        rate = head_tokens / seconds
        record("field", f"compile, {label}", dict(
            workload=f"16-token blocks, requests of {request_tokens:,} tokens (cachesim {n_tokens >> 20} M tokens, "
                     f"baseline the first {head_tokens >> 10} k)",
            cachesim=f"{core_rate / 1e9:.2f} G tokens/s", baseline=f"{rate / 1e6:.1f} M tokens/s",
            ratio=core_rate / rate, check="same keys as cachesim" if "xxhash" in label else "same block count"))
        report(f"compile vs {label}", f"{core_rate / 1e9:.2f} G vs {rate / 1e6:.2f} M tokens/s "
               f"({core_rate / rate:.0f}x)")
    benchmark.extra_info.update(tokens_per_s=core_rate, vllm_style_tokens_per_s=head_tokens / vllm_s,
                                xxhash_loop_tokens_per_s=head_tokens / xxhash_s)
    _render()
