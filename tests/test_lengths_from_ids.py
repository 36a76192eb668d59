"""--lengths from-ids: block-id rows whose id count does not match ceil(length / block size), read by their ids.

The fixture tests/data/lmbench_gmi32.jsonl has the shape of LMBench's GMI trace (LMCache/LMBench,
3-workloads/trace-replayer/traces/gmi_trace.jsonl: string nanosecond timestamps, per-block 32-bit content
hashes; at 32-token blocks 1,173 of its 1,931 rows have a count that does not match), written for these tests.
Its six rows at --block-size 32, by hand (A..H stand for its ids):

    line  input_length  ids        ceil(len/32)  from-ids prompt  hits (unbounded LRU)
    1     100           A B C D    4  match      100              0
    2     130           A B C      5  fewer       96 (cut)        A B C        = 96
    3      40           A B C E    2  more       128 (raised)     A B C        = 96
    4      64           F G        2  match       64              0
    5     300           F G H     10  fewer       96 (cut)        F G          = 64
    6      33           A B        2  match       33 (32 + 1)     A, AB (1 tok) = 33

so 517 prompt tokens, 289 hit tokens, 10 of 18 blocks hit, and 3 of 6 rows mismatched (2 cut, 1 raised).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from cachesim.cli import main
from cachesim.readers import TraceStream, mooncake, read_trace
from cachesim.requests import TraceError
from conftest import DATA

GMI = DATA / "lmbench_gmi32.jsonl"
PROMPTS = [100, 96, 128, 64, 96, 33]
NOTE = ("3 of 6 rows had a block count that did not match their length; read with --lengths from-ids: each such "
        "prompt is its ids' full blocks (2 shorter than their length, 1 longer)")


def _read(path, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = read_trace(path, **options)
    return trace, [str(w.message) for w in caught]


def test_strict_refuses_the_first_mismatched_row_and_suggests_from_ids():
    with pytest.raises(TraceError, match=r"lmbench_gmi32\.jsonl:2: hash_ids: 3 block ids for 130 tokens; blocks of "
                                         r"32 tokens need ceil\(130/32\) = 5 \(--lengths from-ids reads such rows"):
        read_trace(GMI, block_size=32)


def test_cli_replay_strict_stops_at_line_2_and_points_to_the_flag(capsys):
    assert main(["replay", str(GMI), "--block-size", "32"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (f"cachesim: error: {GMI}:2: hash_ids: 3 block ids for 130 tokens; blocks of 32 tokens need "
            "ceil(130/32) = 5 (--lengths from-ids reads such rows by their ids)") in err


def test_from_ids_reads_each_mismatched_row_as_its_ids_full_blocks():
    trace, notes = _read(GMI, block_size=32, lengths="from-ids")
    assert trace.prompt_tokens.tolist() == PROMPTS
    assert np.diff(trace.block_offsets).tolist() == [4, 3, 4, 2, 3, 2]
    # only a row that matched keeps a partial last block; the others are all full
    assert trace.block_tokens.tolist() == [32, 32, 32, 4] + [32] * 3 + [32] * 4 + [32] * 2 + [32] * 3 + [32, 1]
    assert trace.output_tokens.tolist() == [12, 40, 7, 9, 3, 5]
    assert notes == [NOTE]


def test_cli_replay_from_ids_gives_the_hand_computed_hits_and_the_note(capsys):
    assert main(["replay", str(GMI), "--block-size", "32", "--lengths", "from-ids", "--json", "-"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)["summary"]
    assert (summary["requests"], summary["prompt_tokens"], summary["hit_tokens"]) == (6, 517, 289)
    assert (summary["blocks"], summary["hit_blocks"]) == (18, 10)
    assert f"cachesim: note: {NOTE}" in captured.err.splitlines()


def test_the_compiled_scanner_reads_from_ids_and_agrees_with_the_careful_path(monkeypatch):
    raw = GMI.read_bytes()
    keys = (b"timestamp", b"input_length", b"output_length")
    strict = mooncake.scan_chunk(raw, 1, str(GMI), keys, 32, 1e9, (b"timestamp",), ns_time=True)
    assert strict is None  # strict: the careful path decides (and names line 2)
    found = mooncake.scan_chunk(raw, 1, str(GMI), keys, 32, 1e9, (b"timestamp",), ns_time=True,
                                lengths="from-ids")
    assert found is not None and found[3] == (2, 1)
    assert found[0].requests.prompt_tokens.tolist() == PROMPTS
    fast, fast_notes = _read(GMI, block_size=32, lengths="from-ids")
    monkeypatch.setattr(mooncake, "scan_chunk", lambda *a, **k: None)
    careful, careful_notes = _read(GMI, block_size=32, lengths="from-ids")
    for name in ("t", "prompt_tokens", "output_tokens", "block_offsets", "block_keys", "block_tokens"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(careful, name), err_msg=name)
    assert fast_notes == careful_notes == [NOTE]


def test_streamed_in_small_batches_each_row_is_counted_once():
    stream = TraceStream(GMI, block_size=32, lengths="from-ids", batch_bytes=200)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(stream)
    assert len(batches) > 2
    assert np.concatenate([b.prompt_tokens for b in batches]).tolist() == PROMPTS
    assert [str(w.message) for w in caught] == [NOTE]


def _write(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("fast", [True, False])
def test_every_block_id_reader_honours_it(tmp_path, monkeypatch, fast):
    if not fast:
        monkeypatch.setattr(mooncake, "scan_chunk", lambda *a, **k: None)
    # mooncake, 512-token blocks: 1000 tokens with 3 ids -> raised to 1536; 2000 with 1 id -> cut to 512
    moon = _write(tmp_path, "m.jsonl", [{"timestamp": 0, "input_length": 1000, "hash_ids": [1, 2, 3]},
                                        {"timestamp": 5, "input_length": 2000, "hash_ids": [1]}])
    # qwen, 16-token blocks: 100 tokens with 2 ids -> cut to 32
    qwen = _write(tmp_path, "q.jsonl", [{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.5, "input_length": 100,
                                         "output_length": 2, "type": "text", "hash_ids": [7, 8]}])
    # native block ids, 4-token blocks: 20 tokens with 3 ids -> cut to 12; 5 tokens with 2 ids match (4 + 1)
    native = _write(tmp_path, "n.jsonl", [{"t": 0, "block_ids": [1, 2, 3], "prompt_tokens": 20, "block_size": 4},
                                          {"t": 1, "block_ids": [1, 2], "prompt_tokens": 5, "block_size": 4}])
    cases = [(moon, {}, [1536, 512], "2 of 2 rows", "(1 shorter than their length, 1 longer)"),
             (qwen, {}, [32], "1 of 1 rows", "(1 shorter than their length, 0 longer)"),
             (native, {}, [12, 5], "1 of 2 rows", "(1 shorter than their length, 0 longer)"),
             (GMI, {"block_size": 32}, PROMPTS, "3 of 6 rows", "(2 shorter than their length, 1 longer)")]
    for path, options, prompts, counted, split in cases:
        with pytest.raises(TraceError, match=r"--lengths from-ids reads such rows by their ids"):
            read_trace(path, **options)
        trace, notes = _read(path, lengths="from-ids", **options)
        assert trace.prompt_tokens.tolist() == prompts, path.name
        assert len(notes) == 1 and notes[0].startswith(counted) and notes[0].endswith(split), notes


def test_a_row_without_ids_is_still_refused(tmp_path):
    path = _write(tmp_path, "m.jsonl", [{"timestamp": 0, "input_length": 10, "hash_ids": [1]},
                                        {"timestamp": 1, "input_length": 10, "hash_ids": []}])
    with pytest.raises(TraceError, match=r"m\.jsonl:2: hash_ids: no block ids for 10 tokens: --lengths from-ids"):
        read_trace(path, lengths="from-ids")


def test_a_raised_prompt_beyond_the_token_bound_is_refused_where_it_stands(tmp_path):
    # 19,532 ids of 512 tokens are 10,000,384 tokens, past the default bound of 10^7 a request
    path = _write(tmp_path, "m.jsonl", [{"timestamp": 0, "input_length": 10, "hash_ids": [1]},
                                        {"timestamp": 1, "input_length": 10, "hash_ids": list(range(19_532))}])
    with pytest.raises(TraceError, match=r"m\.jsonl:2: hash_ids: 10,000,384 tokens is beyond the 10,000,000"):
        read_trace(path, lengths="from-ids")


def test_native_breakpoints_of_a_replaced_length_are_refused(tmp_path):
    path = _write(tmp_path, "n.jsonl", [{"t": 0, "block_ids": [1, 2], "prompt_tokens": 20, "block_size": 4,
                                         "breakpoints": [16]}])
    with pytest.raises(TraceError, match=r"n\.jsonl:1: block_ids: --lengths from-ids reads this row as 8 tokens"):
        read_trace(path, lengths="from-ids")


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match=r"unknown lengths mode 'loose'; choose one of strict, from-ids"):
        read_trace(GMI, block_size=32, lengths="loose")


def test_a_mismatch_free_file_reads_the_same_either_way_and_says_nothing():
    strict, strict_notes = _read(DATA / "mooncake.jsonl")
    lenient, lenient_notes = _read(DATA / "mooncake.jsonl", lengths="from-ids")
    np.testing.assert_array_equal(strict.block_tokens, lenient.block_tokens)
    assert strict.prompt_tokens.tolist() == lenient.prompt_tokens.tolist() == [1000, 1536, 300, 1025]
    assert strict_notes == lenient_notes == []


@pytest.mark.parametrize("command", ["mrc", "size", "fleet", "interference", "sweep", "convert"])
def test_every_reading_command_takes_the_flag(command, tmp_path, capsys):
    # a Mooncake trace (its block size is the format's, which sweep needs) with one row of too few ids
    path = _write(tmp_path, "m.jsonl", [{"timestamp": 0, "input_length": 1000, "output_length": 1, "hash_ids": [1, 2]},
                                        {"timestamp": 9, "input_length": 3000, "output_length": 1, "hash_ids": [1, 2]}])
    extra = {"size": ["--target", "30%"], "fleet": ["--replicas", "2", "--router", "round-robin"],
             "interference": ["--capacity", "4"], "sweep": ["--capacity", "4", "--executor", "serial"],
             "convert": [str(tmp_path / "out.npz")]}.get(command, [])
    assert main([command, str(path), *extra]) == 2
    assert "--lengths from-ids reads such rows" in capsys.readouterr().err
    assert main([command, str(path), *extra, "--lengths", "from-ids"]) == 0, capsys.readouterr().err
    assert "1 of 2 rows had a block count that did not match" in capsys.readouterr().err
