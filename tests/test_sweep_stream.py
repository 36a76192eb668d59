"""``sweep --stream``: each configuration streams the file itself and gets exactly the rows of a compiled sweep."""

import orjson
import pytest

from cachesim.cli import main
from cachesim.sweep import StreamedTrace, run_sweep
from conftest import DATA

METRICS = ("hit_tokens", "hit_blocks", "blocks", "prompt_tokens", "evictions_capacity", "peak_occupancy_blocks")


def rows(result):
    return [{k: r[k] for k in (*result.axes, *METRICS)} for r in result.rows]


def mooncake_shaped(path, n=200):
    lines = []
    for i in range(n):
        conv = i % 13
        k = 1 + (i // 13) % 9
        ids = [conv * 100 + j for j in range(k)]
        lines.append(f'{{"timestamp": {i * 7}, "input_length": {k * 512 - 3}, "output_length": 2, "hash_ids": {ids}}}')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_streamed_rows_equal_compiled_rows(tmp_path, executor):
    path = mooncake_shaped(tmp_path / "mc.jsonl")
    grid = {"capacity": [5, 20, None], "policy": ["lru", "s3fifo"], "ttl": ["none", 300]}
    whole = run_sweep(str(path), grid, "serial")
    streamed = run_sweep(StreamedTrace.of(path, batch_bytes=2048), grid, executor)
    assert rows(streamed) == rows(whole)
    assert streamed.trace["streamed"] and streamed.trace["requests"] == 200


def test_a_token_trace_streams_at_each_block_size_of_the_grid(tmp_path):
    path = DATA / "native_tokens.jsonl"
    grid = {"block_size": [2, 4], "capacity": [3, None]}
    assert rows(run_sweep(StreamedTrace.of(path), grid, "serial")) == rows(run_sweep(str(path), grid, "serial"))


def test_a_block_size_axis_is_refused_for_a_streamed_id_trace(tmp_path):
    with pytest.raises(ValueError, match="its blocks are fixed at 512 tokens"):
        run_sweep(StreamedTrace.of(DATA / "mooncake.jsonl"), {"block_size": [16, 512]}, "serial")


def test_the_cli_streams_and_refuses_what_cannot_stream(tmp_path, capsys):
    path = mooncake_shaped(tmp_path / "mc.jsonl")
    out = tmp_path / "s.json"
    assert main(["sweep", str(path), "--capacity", "5,20", "--stream", "-o", str(out), "--no-progress"]) == 0
    streamed = orjson.loads(out.read_bytes())
    assert main(["sweep", str(path), "--capacity", "5,20", "-o", str(out), "--no-progress"]) == 0
    assert [r["hit_blocks"] for r in orjson.loads(out.read_bytes())["rows"]] == \
        [r["hit_blocks"] for r in streamed["rows"]]
    capsys.readouterr()
    assert main(["sweep", "--stream", "--capacity", "5"]) == 2
    assert "the built-in workload is generated in memory" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "none.jsonl"), "--stream", "--capacity", "5"]) == 2
    assert "none.jsonl: cannot open" in capsys.readouterr().err


def test_a_bad_line_stops_a_streamed_sweep_with_its_location(tmp_path, capsys):
    path = mooncake_shaped(tmp_path / "mc.jsonl")
    with open(path, "a") as handle:
        handle.write('{"timestamp": 9999, "input_length": 600, "output_length": 1, "hash_ids": [1]}\n')
    assert main(["sweep", str(path), "--capacity", "5", "--stream", "--no-progress", "--executor", "serial"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mc.jsonl:201: hash_ids: 1 block ids for 600 tokens" in err[0]


@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_a_trace_without_its_block_size_sweeps_at_the_one_given_and_reports_its_notes(tmp_path, capsys, stream):
    # LMBench's GMI shape: the block size is not in the file, and half its rows need --lengths from-ids
    path, out = DATA / "lmbench_gmi32.jsonl", tmp_path / "s.json"
    reading = ["--block-size", "32", "--lengths", "from-ids"]
    assert main(["replay", str(path), "--capacity", "10", "--json", str(tmp_path / "r.json"), *reading]) == 0
    replayed = orjson.loads((tmp_path / "r.json").read_bytes())["summary"]["hit_tokens"]
    capsys.readouterr()
    assert main(["sweep", str(path), "--capacity", "10,100", "-o", str(out), "--no-progress", *reading, *stream]) == 0
    assert orjson.loads(out.read_bytes())["rows"][0]["hit_tokens"] == replayed
    err = capsys.readouterr().err
    assert err.count("3 of 6 rows had a block count that did not match") == 1, err


def test_a_streamed_sweep_reports_the_records_it_skipped_once(tmp_path, capsys):
    path = mooncake_shaped(tmp_path / "mc.jsonl", n=20)
    with open(path, "a") as handle:
        handle.write("not json\n")
    assert main(["sweep", str(path), "--capacity", "5,20,40", "--stream", "--skip-invalid", "--no-progress",
                 "--executor", "process"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped 1 invalid records") == 1 and "mc.jsonl:21" in err, err
