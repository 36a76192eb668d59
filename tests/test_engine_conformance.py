"""The vllm and sglang presets against goldens recorded from the real engines' own cache code.

tests/data/engines/*.json were recorded by bench/conformance/record.py, which drives vLLM's v1 KVCacheManager /
BlockPool and SGLang's RadixCache (page size 1 and 16) unmodified, one request at a time, in a venv of their own;
the engines are never installed for this test. Each golden carries its stream's recipe: the stream is rebuilt
here (its digest checked), replayed through the preset at the engine's capacity mapped to cachesim blocks
(bench/conformance/compare.py: vLLM num_gpu_blocks - VLLM_OFFSET, SGLang pool tokens / page size), and compared
request by request.

Where cachesim agrees exactly the test asserts equality. Where it does not, the measured agreement is pinned in
PINNED (requests agreeing, cachesim's total hit tokens, the engine's), so that a change of either side shows:
- vLLM: the pool holds fewer cached blocks than num_gpu_blocks, by a varying amount: the null block, the running
  request's unhashed partial last block (taken from the free queue before its hit blocks are reused), and a
  second copy of a block when a full repeat (prompt a multiple of 16) recomputes its capped last block (vLLM does
  not deduplicate). num_gpu_blocks - 2 covers the first two; the duplicates are what is left.
- SGLang: evict() frees whole radix-tree leaves (a node holds a whole inserted suffix), and at page size 16 it
  also evicts one page more than the request needs; the preset evicts block by block, so it keeps more and hits
  more at tight capacities.
docs/engines.md has the tables and the causes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "conformance"))

import compare  # noqa: E402
import streams  # noqa: E402

GOLDENS = compare.goldens()
STREAMS: dict = {}   # recipe -> (tokens, offsets), shared by the goldens of one stream
TRACES: dict = {}    # (digest, block size) -> compiled Trace

# (golden, engine capacity) -> (requests agreeing, cachesim hit tokens, engine hit tokens), measured with
# `python bench/conformance/compare.py --pins`; every run not listed here agrees on every request
PINNED: dict[tuple[str, int], tuple[int, int, int]] = {
}


def test_goldens_cover_the_streams_and_capacities():
    engines: dict[str, set] = {}
    for path in GOLDENS:
        golden = compare.load(path)
        assert path.stat().st_size < 300_000, f"{path.name} is {path.stat().st_size:,} bytes"
        assert golden["version"] and golden["engine"] in ("vllm", "sglang")
        bounded = [r["capacity"] for r in golden["runs"] if r["capacity"] is not None]
        assert len(bounded) >= 5 and any(r["capacity"] is None for r in golden["runs"]), path.name
        assert all(len(r["cached_tokens"]) == golden["n_requests"] for r in golden["runs"])
        engines.setdefault(path.stem.split("-")[0] if "p16" not in path.stem else "sglang-p16",
                           set()).add(golden["stream"])
    assert set(engines) == {"vllm", "sglang", "sglang-p16"}
    assert all(len(s) >= 6 for s in engines.values()), engines


@pytest.mark.parametrize("path", GOLDENS, ids=[p.stem for p in GOLDENS])
def test_preset_against_engine(path):
    golden = compare.load(path)
    if golden["recipe"]["generator"] == "mooncake" and not streams.MOONCAKE.exists():
        pytest.skip(f"{streams.MOONCAKE} is absent: the real traces live in ../shared/traces beside the checkout")
    rows = compare.agreement(golden, compare.VLLM_OFFSET, STREAMS, TRACES)
    measured = {}
    for row in rows:
        key = (path.stem, row["capacity"])
        got = (row["agree"], row["cachesim_hits"], row["engine_hits"])
        if row["capacity"] is None:   # unbounded: hit cap, alignment, partial tails and repeats are exact
            assert row["agree"] == row["n"], f"{key}: unbounded, only {row['agree']} of {row['n']} agree"
        if key in PINNED:
            measured[key] = got
        else:
            assert row["agree"] == row["n"], (f"{key}: {row['agree']} of {row['n']} requests agree "
                                              f"(cachesim {row['cachesim_hits']:,} hit tokens, engine "
                                              f"{row['engine_hits']:,}); pin it or fix the preset")
    expected = {k: v for k, v in PINNED.items() if k[0] == path.stem}
    assert measured == expected
