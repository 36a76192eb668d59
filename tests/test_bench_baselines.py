"""The field benchmarks' own helpers (bench/field/) compute what they claim: hand-computed streams, and
agreement with independent code (the engine, cachesim's compile, libCacheSim)."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from cachesim import _core  # noqa: E402
from field import engine, libcachesim_driver, results  # noqa: E402
from field.baselines import NONE_HASH, ordered_dict_lru_misses, vllm_style_keys, xxhash_loop_keys  # noqa: E402
from field.streams import mix64, mooncake_block_ids, one_block_requests, prefix_requests, zipf_ids  # noqa: E402

# -- OrderedDict LRU -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stream", "capacity", "misses"), [
    ("ABACBA", 2, 5),      # A B miss, A hit, C evicts B, B evicts A, A evicts C
    ("AABA", 1, 3),        # A miss, A hit, B evicts A, A evicts B
    ("12314251", 3, 7),    # only the second 1 hits: 4 evicts 2, 2 evicts 3, 5 evicts 1, 1 evicts 4
    ("ABCABC", 3, 3),      # fits: compulsory misses only
    ("ABCDABCD", 3, 8),    # the cyclic scan one longer than the cache: LRU misses every time
])
def test_ordered_dict_lru_hand_computed(stream, capacity, misses):
    assert ordered_dict_lru_misses(stream, capacity) == misses


@pytest.mark.core
@given(st.lists(st.integers(0, 12), max_size=200), st.integers(1, 8))
def test_ordered_dict_lru_matches_the_engine_on_one_block_requests(ids, capacity):
    keys = mix64(np.asarray(ids, dtype=np.uint64) + np.uint64(1))
    _, hits, _ = engine.replay(one_block_requests(keys), capacity)
    assert ordered_dict_lru_misses(ids, capacity) == len(ids) - hits


# -- streams ---------------------------------------------------------------------------------------------------

def test_mix64_is_splitmix64s_finalizer():
    # SplitMix64 seeded with 0 outputs mix(0 + golden gamma) = 0xE220A8397B1DCDAF first (its published sequence)
    assert int(mix64(np.array([0x9E3779B97F4A7C15], np.uint64))[0]) == 0xE220A8397B1DCDAF
    assert int(mix64(np.array([0], np.uint64))[0]) == 0
    sample = mix64(np.arange(200_000, dtype=np.uint64))
    assert len(np.unique(sample)) == len(sample)  # a bijection keeps distinct ids distinct


def test_zipf_ids_follow_the_power_law():
    ids = zipf_ids(400_000, 10, alpha=1.0, seed=3)
    assert ids.min() == 0 and ids.max() == 9
    counts = np.bincount(ids.astype(np.int64), minlength=10)
    # P(rank k) ∝ 1/(k+1): rank 0 twice as frequent as rank 1, ten times rank 9
    assert counts[0] / counts[1] == pytest.approx(2.0, rel=0.03)
    assert counts[0] / counts[9] == pytest.approx(10.0, rel=0.05)
    uniform = np.bincount(zipf_ids(100_000, 4, alpha=0.0).astype(np.int64))
    assert uniform / uniform.sum() == pytest.approx([0.25] * 4, abs=0.01)


def test_prefix_requests_resend_prefixes_of_conversations():
    batch = prefix_requests(20_000, n_conversations=50, max_blocks=8, seed=5)
    lengths = np.diff(batch.block_offsets)
    assert batch.block_offsets[-1] == batch.n_blocks == len(batch.block_tokens)
    assert lengths.min() >= 1 and lengths.max() <= 8
    assert np.array_equal(batch.prompt_tokens, lengths * 16)
    # requests of one conversation (same first key) agree on every block position they share
    by_first: dict[int, list[int]] = {}
    for r in range(len(lengths)):
        keys = batch.keys[batch.block_offsets[r]:batch.block_offsets[r + 1]].tolist()
        longest = by_first.setdefault(keys[0], keys)
        shared = min(len(keys), len(longest))
        assert keys[:shared] == longest[:shared]
        if len(keys) > len(longest):
            by_first[keys[0]] = keys
    assert len(by_first) <= 50


def test_mooncake_block_ids_flatten_in_time_order(tmp_path):
    path = tmp_path / "mooncake.jsonl"
    rows = [dict(timestamp=0, input_length=1000, output_length=5, hash_ids=[7, 8]),
            dict(timestamp=30, input_length=600, output_length=5, hash_ids=[9, 10]),
            dict(timestamp=10, input_length=1500, output_length=5, hash_ids=[7, 8, 11])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert mooncake_block_ids(path).tolist() == [7, 8, 7, 8, 11, 9, 10]
    assert mooncake_block_ids(tmp_path / "absent.jsonl") is None


@pytest.mark.core
@pytest.mark.parametrize("feed_requests", [1, 3, 1 << 16])
def test_batched_feeding_is_one_replay(feed_requests):
    batch = prefix_requests(3_000, n_conversations=40, max_blocks=12, seed=2)
    whole = _core.Engine(capacity_blocks=150)
    expected = int(whole.feed(*batch.columns())["hit_blocks"].sum())
    eng, hits, _ = engine.replay(batch, 150, feed_requests=feed_requests)
    assert hits == expected
    assert np.array_equal(eng.cached_keys(), whole.cached_keys())


# -- hashing baselines -----------------------------------------------------------------------------------------

@pytest.mark.core
def test_xxhash_loop_keys_are_cachesims_keys():
    tokens = np.arange(1000, 1000 + 100, dtype=np.uint32)
    offsets = np.array([0, 40, 40, 100], dtype=np.int64)  # 2 full blocks + tail, an empty request, 3 + tail
    keys = xxhash_loop_keys(tokens, offsets, 16)
    first = xxhash.xxh3_64_intdigest(struct.pack("<16I", *range(1000, 1016)), seed=0)
    second = xxhash.xxh3_64_intdigest(struct.pack("<16I", *range(1016, 1032)), seed=first)
    assert keys[:2].tolist() == [first, second]
    assert np.array_equal(keys, _core.compile_token_blocks(tokens, offsets, 16)[1])


def test_vllm_style_keys_chain_sha256_of_pickled_tuples():
    tokens = list(range(40))
    keys = vllm_style_keys([tokens], 16)[0]
    assert len(keys) == 2  # the 8-token tail is not a full block
    first = hashlib.sha256(pickle.dumps((NONE_HASH, tuple(range(16)), None), protocol=5)).digest()
    assert keys[0] == first
    assert keys[1] == hashlib.sha256(pickle.dumps((first, tuple(range(16, 32)), None), protocol=5)).digest()
    changed_second = vllm_style_keys([tokens[:20] + [999] + tokens[21:]], 16)[0]
    assert changed_second[0] == keys[0] and changed_second[1] != keys[1]
    changed_first = vllm_style_keys([[999] + tokens[1:]], 16)[0]
    assert changed_first[0] != keys[0] and changed_first[1] != keys[1]  # the parent key carries the prefix


# -- libCacheSim driver ----------------------------------------------------------------------------------------

def test_oracle_general_records(tmp_path):
    keys = np.array([5, 2**63 + 1, 5], dtype=np.uint64)
    path = libcachesim_driver.write_oracle_general(keys, tmp_path / "t.oracleGeneral")
    data = path.read_bytes()
    assert len(data) == 3 * 24
    assert [struct.unpack_from("<IQIq", data, 24 * i) for i in range(3)] == [
        (0, 5, 1, -1), (1, 2**63 + 1, 1, -1), (2, 5, 1, -1)]


def test_hashpower_covers_the_capacity():
    assert libcachesim_driver.hashpower_for(100_000) == 18  # 2^17 = 131072 > 100000, one doubling more
    assert libcachesim_driver.hashpower_for(10) == 10


def test_libcachesim_lru_hand_computed(tmp_path):
    pytest.importorskip("libcachesim", reason="libCacheSim is an optional bench dependency: pip install '.[bench]'")
    keys = mix64(np.array([ord(c) for c in "ABACBA"], dtype=np.uint64))
    path = libcachesim_driver.write_oracle_general(keys, tmp_path / "t.oracleGeneral")
    miss_ratio, _ = libcachesim_driver.lru_replay(path, 2)
    assert miss_ratio == pytest.approx(5 / 6)


# -- results ---------------------------------------------------------------------------------------------------

def test_write_section_replaces_only_between_markers(tmp_path, monkeypatch):
    doc = tmp_path / "performance.md"
    doc.write_text("intro\n<!-- field:begin -->\nold\n<!-- field:end -->\nkept\n")
    monkeypatch.setattr(results, "DOC", doc)
    results.write_section("field", results.table(["a", "b"], [["1", "2"]]))
    assert "old" in doc.read_text()   # a run that was not asked to update the docs leaves them alone
    monkeypatch.setenv(results.UPDATE_ENV, "1")
    results.write_section("field", results.table(["a", "b"], [["1", "2"]]))
    assert doc.read_text() == "intro\n<!-- field:begin -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- field:end -->\nkept\n"
    results.write_section("absent", "x")  # no markers: untouched
    assert "x" not in doc.read_text()
