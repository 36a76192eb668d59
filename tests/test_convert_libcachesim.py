"""``cachesim convert`` into libCacheSim's formats: lcp prefix traces (streamed, of the compiled keys) and
oracleGeneral key-value traces, so libCacheSim can replay the stream cachesim replayed."""

from __future__ import annotations

import numpy as np
import pytest

import cachesim
from cachesim.cli import main
from cachesim.readers import read_trace
from cachesim.readers.lcp import read_header, write_lcp
from cachesim.readers.oracle import write_oracle_general
from cachesim.requests import BlockRequests
from cachesim.trace import compile_trace
from conftest import DATA

CAPACITIES = (1, 2, 4, 8, None)


def hits(trace, capacity):
    return cachesim.replay(trace, capacity_blocks=capacity, keep_per_request=False).summary()["hit_blocks"]


@pytest.mark.parametrize("suffix", [".lcp", ".lcp.zst"])
@pytest.mark.parametrize("source", ["qwen.jsonl", "mooncake.jsonl", "native_blocks16.jsonl"])
def test_an_lcp_file_replays_as_its_source_at_every_capacity(tmp_path, source, suffix):
    out = tmp_path / f"x{suffix}"
    assert main(["convert", str(DATA / source), str(out), "--no-progress"]) == 0
    original, back = read_trace(DATA / source), read_trace(out)
    # the file holds keys, which chain into other keys but into the same prefix tree
    assert back.block_offsets.tolist() == original.block_offsets.tolist()
    assert back.prompt_tokens.tolist() == original.prompt_tokens.tolist()
    assert back.t.tolist() == original.t.tolist()
    assert [hits(back, c) for c in CAPACITIES] == [hits(original, c) for c in CAPACITIES]
    header = read_header(out)
    assert (header.n_requests, header.n_blocks) == (original.n_requests, original.n_blocks)


def test_chat_ids_parents_and_turns_of_an_lcp_file_go_into_the_next(tmp_path):
    requests = BlockRequests.from_lists([[5, 6], [5, 6, 7], [9]], [32, 40, 16], 16, t=[0.0, 1.0, 2.0],
                                        tenant=["text", "text", "image"])
    first = write_lcp(tmp_path / "a.lcp", requests, chat_id=[70, 71, 90], parent_chat_id=[-1, 70, -1],
                      turn=[1, 2, 1])
    out = tmp_path / "b.lcp.zst"
    assert main(["convert", str(first), str(out), "--no-progress", "--batch-bytes", "9000"]) == 0
    back = read_trace(out)
    assert back.meta["chat_id"].tolist() == [70, 71, 90]
    assert back.meta["parent_chat_id"].tolist() == [-1, 70, -1] and back.meta["turn"].tolist() == [1, 2, 1]
    assert [back.tenant_names[i] for i in back.tenant] == ["text", "text", "image"]
    assert back.session[0] == back.session[1] != back.session[2]


def test_a_token_trace_leaves_its_partial_blocks_and_short_prompts_out_and_says_so(tmp_path, capsys):
    out = tmp_path / "t.lcp"
    assert main(["convert", str(DATA / "native_tokens.jsonl"), str(out), "--block-size", "4", "--no-progress"]) == 0
    original, back = read_trace(DATA / "native_tokens.jsonl", block_size=4), read_trace(out)
    kept = np.diff(original.block_offsets) > 0
    assert back.n_requests == int(kept.sum()) and back.n_blocks == original.n_blocks
    assert back.prompt_tokens.tolist() == (np.diff(original.block_offsets)[kept] * 4).tolist()
    assert [hits(back, c) for c in CAPACITIES] == [hits(original, c) for c in CAPACITIES]
    assert "end in a partial block" in capsys.readouterr().err
    assert main(["convert", str(DATA / "native_tokens.jsonl"), str(out), "--block-size", "64"]) == 2
    assert "no request holds a whole block" in capsys.readouterr().err and not out.exists()


def test_a_bad_line_leaves_no_lcp_file(tmp_path, capsys):
    source = tmp_path / "m.jsonl"
    good = (DATA / "mooncake.jsonl").read_text()
    source.write_text(good + '{"timestamp": 99999, "input_length": 600, "output_length": 1, "hash_ids": [1]}\n')
    out = tmp_path / "m.lcp.zst"
    assert main(["convert", str(source), str(out), "--batch-bytes", "100", "--no-progress"]) == 2
    assert "m.jsonl:5: hash_ids" in capsys.readouterr().err
    assert not out.exists()


def test_names_convert_cannot_write_fail_before_reading(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "absent.jsonl"), str(tmp_path / "x.txt")]) == 2
    assert "convert writes .npz, .parquet, .lcp" in capsys.readouterr().err
    assert main(["convert", str(DATA / "mooncake.jsonl"), str(tmp_path / "x.lcp"), "--dense"]) == 2
    assert "--dense numbers the keys of an .npz or an oracleGeneral file" in capsys.readouterr().err


def zipf_stream(n=20_000, seed=5):
    obj = (np.random.default_rng(seed).zipf(1.2, n) % 3000).astype(np.uint64)
    return compile_trace(BlockRequests(t=np.arange(n) / 10.0, tenant=np.zeros(n, dtype=np.int32),
                                       tenant_names=["default"], session=np.full(n, -1), output_tokens=np.full(n, -1),
                                       block_ids=obj, block_offsets=np.arange(n + 1), prompt_tokens=np.ones(n),
                                       block_size=1))


@pytest.mark.parametrize("dense", [[], ["--dense"]])
def test_libcachesim_replays_a_converted_oracle_general_file_as_cachesim_does(tmp_path, dense):
    lcs = pytest.importorskip("libcachesim", reason="the conformance test runs libCacheSim itself: "
                                                    "pip install 'libcachesim>=0.3.5'")
    first = tmp_path / "z.oracleGeneral"
    write_oracle_general(first, zipf_stream())
    # through the CLI both ways: oracleGeneral -> Parquet -> oracleGeneral
    assert main(["convert", str(first), str(tmp_path / "z.parquet"), "--no-progress"]) == 0
    out = tmp_path / "again.oracleGeneral.zst"
    assert main(["convert", str(tmp_path / "z.parquet"), str(out), "--no-progress", *dense]) == 0
    trace = read_trace(tmp_path / "z.parquet")
    n = trace.n_requests
    for capacity in (10, 300, 2000):
        summary = cachesim.replay(trace, capacity_blocks=capacity, keep_per_request=False).summary()
        misses = summary["requests"] - summary["hit_requests"]
        reader = lcs.TraceReader(str(out), lcs.TraceType.ORACLE_GENERAL_TRACE, lcs.ReaderInitParam())
        ratio, _ = lcs.LRU(cache_size=capacity, hashpower=12).process_trace(reader)
        assert 0 < misses < n and round(ratio * n) == misses, capacity
