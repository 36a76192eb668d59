"""Bad input: every case gives one clear error naming file, line and field; --skip-invalid counts and goes on."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachesim.cli import main
from cachesim.readers import TraceStream, read_trace
from cachesim.requests import TraceError
from conftest import DATA

GOOD = '{"timestamp": 0, "input_length": 1000, "output_length": 10, "hash_ids": [0, 1]}'


def _file(tmp_path, *lines, name="t.jsonl", newline=True):
    path = tmp_path / name
    path.write_text("\n".join(lines) + ("\n" if newline else ""))
    return path


@pytest.mark.parametrize("bad,where", [
    ('{"timestamp": 5, "input_length": 1000, "hash_ids": [0, 1]', r":2: malformed JSON"),
    ('{"timestamp": 5, "output_length": 3, "hash_ids": [0, 1]}', r":2: input_length: missing"),
    ('{"timestamp": 5, "input_length": "1000", "hash_ids": [0, 1]}', r":2: input_length: expected a token count"),
    ('{"timestamp": "5", "input_length": 1000, "hash_ids": [0, 1]}', r":2: timestamp: expected milliseconds"),
    ('{"timestamp": 5, "input_length": 1000, "hash_ids": [0, -1]}', r":2: hash_ids: element 1 = -1 is outside"),
    ('{"timestamp": 5, "input_length": 1000, "hash_ids": [0, 1.5]}', r":2: hash_ids: element 1 is float"),
    ('{"timestamp": 5, "input_length": 1000, "hash_ids": [0, 1, 2]}',
     r":2: hash_ids: 3 block ids for 1000 tokens; blocks of 512 tokens need ceil\(1000/512\) = 2"),
    ('{"timestamp": 5, "input_length": 0, "hash_ids": []}', r":2: input_length: expected a positive token count"),
    ('{"timestamp": -5, "input_length": 1000, "hash_ids": [0, 1]}', r":2: timestamp: expected a finite, non-neg"),
    ('[1, 2]', r":2: expected a JSON object per line, got list"),
])
def test_bad_mooncake_record_names_file_line_and_field(tmp_path, bad, where):
    path = _file(tmp_path, GOOD, bad, GOOD)
    with pytest.raises(TraceError, match=r"t\.jsonl" + where):
        read_trace(path, format="mooncake")


def test_token_id_out_of_range_is_located(tmp_path):
    path = _file(tmp_path, '{"t": 0, "tokens": [1, 2, 3]}', '{"t": 1, "tokens": [1, 4294967296]}')
    with pytest.raises(TraceError, match=r"t\.jsonl:2: tokens: element 1 = 4294967296 is outside 0..4294967295"):
        read_trace(path)


def test_truncated_last_line_says_so(tmp_path):
    path = _file(tmp_path, GOOD, GOOD, '{"timestamp": 9, "input_length": 1000, "hash_', newline=False)
    with pytest.raises(TraceError, match=r"t\.jsonl:3: malformed JSON: .*\(a truncated last line\?\)"):
        read_trace(path)


def test_empty_file(tmp_path):
    with pytest.raises(TraceError, match=r"t\.jsonl: no requests: the file is empty"):
        read_trace(_file(tmp_path, "", newline=False))
    with pytest.raises(TraceError, match=r"t\.jsonl: no requests: the file is empty"):
        list(TraceStream(_file(tmp_path, "  ", "")))


def test_unknown_format(tmp_path):
    path = _file(tmp_path, '{"when": 1, "what": [1]}')
    with pytest.raises(TraceError, match=r"t\.jsonl: unknown format: the first record has fields \['what', 'when'\]"):
        read_trace(path)
    with pytest.raises(TraceError, match=r"unknown format 'feather'; known formats: "):
        read_trace(DATA / "mooncake.jsonl", format="feather")


def test_out_of_order_times_are_sorted_stably_with_a_count(tmp_path):
    lines = [f'{{"timestamp": {t}, "input_length": 10, "output_length": {i}, "hash_ids": [{i}]}}'
             for i, t in enumerate([0, 30, 10, 10, 20, 5])]
    path = _file(tmp_path, *lines)
    with pytest.warns(UserWarning, match="2 requests arrived out of order; sorted stably"):
        trace = read_trace(path)
    # by time, ties in file order: t=0 (#0), 5 (#5), 10 (#2), 10 (#3), 20 (#4), 30 (#1)
    assert trace.output_tokens.tolist() == [0, 5, 2, 3, 4, 1]
    with pytest.warns(UserWarning, match="2 requests arrived out of order"):
        streamed = list(TraceStream(path))
    assert streamed[0].output_tokens.tolist() == [0, 5, 2, 3, 4, 1]


def test_keep_order_refuses_out_of_order_times(tmp_path):
    path = _file(tmp_path, GOOD, GOOD.replace('"timestamp": 0', '"timestamp": 9'), GOOD)
    with pytest.raises(TraceError, match=r"t\.jsonl:3: timestamp: arrival time 0.0 s is before the previous request's "
                                         r"0.009 s \(--keep-order"):
        list(TraceStream(path, keep_order=True))
    with pytest.raises(TraceError,
                       match=r"t\.jsonl:3: timestamp: arrival time 0.0 s is before the previous request.s 0.009 s"):
        read_trace(path, keep_order=True)


def test_out_of_order_across_one_stream_batch_is_sorted(tmp_path):
    lines = [GOOD.replace('"timestamp": 0', f'"timestamp": {t}').replace('"output_length": 10',
                                                                        f'"output_length": {i}')
             for i, t in enumerate([9000, 9000, 0, 5000, 7000, 20000])]
    path = _file(tmp_path, *lines)
    with pytest.warns(UserWarning, match="1 requests arrived out of order"):
        batches = list(TraceStream(path, batch_bytes=len(lines[0]) * 2 + 2))
    assert len(batches) >= 2
    assert np.concatenate([b.output_tokens for b in batches]).tolist() == [2, 3, 4, 0, 1, 5]


def test_out_of_order_by_more_than_a_batch_is_refused_with_the_reason(tmp_path):
    lines = [GOOD.replace('"timestamp": 0', f'"timestamp": {t}') for t in [9000, 9000, 9000, 9000, 9000, 0]]
    path = _file(tmp_path, *lines)
    with pytest.raises(TraceError, match=r"t\.jsonl:6: timestamp: arrival time 0.0 s is before 9.0 s of a request "
                                         r"already replayed: out of order by more than one batch"):
        list(TraceStream(path, batch_bytes=len(lines[0]) * 2 + 2))


def test_skip_invalid_skips_and_counts(tmp_path):
    path = _file(tmp_path, GOOD, "{oops", '{"timestamp": 5, "input_length": 1000, "hash_ids": [0]}', GOOD)
    with pytest.warns(UserWarning, match=r"skipped 2 invalid records \(first: .*t\.jsonl:2: malformed JSON"):
        trace = read_trace(path, skip_invalid=True)
    assert trace.n_requests == 2


def test_skip_invalid_with_nothing_valid_left(tmp_path):
    with pytest.raises(TraceError, match=r"no valid requests: all 2 records were invalid"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_trace(_file(tmp_path, "{oops", "[1]"), format="mooncake", skip_invalid=True)


# -- the command line ---------------------------------------------------------------------------------------

def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    path = _file(tmp_path, GOOD, '{"timestamp": 5, "input_length": "x", "hash_ids": [0]}')
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cachesim: error: ") and "t.jsonl:2: input_length: expected a token count" in err[-1]


def test_cli_error_mid_stream_reports_progress_and_keeps_results(tmp_path, capsys):
    good = [GOOD.replace('"timestamp": 0', f'"timestamp": {i * 10}') for i in range(6)]
    path = _file(tmp_path, *good, '{"timestamp": 99, "input_length": 1000, "hash_ids": [7]}')
    assert main(["replay", str(path), "--batch-bytes", str(len(GOOD) * 2 + 10), "--json", "-"]) == 2
    captured = capsys.readouterr()
    assert "replay stopped after 6 requests (through line 6 of" in captured.err
    assert "t.jsonl:7: hash_ids: 1 block ids for 1000 tokens" in captured.err.splitlines()[-1]
    data = orjson.loads(captured.out)
    summary = data["summary"]
    assert data["partial"]["requests_replayed"] == 6 and data["partial"]["through_line"] == 6
    assert "t.jsonl:7: hash_ids" in data["partial"]["stopped_by"]
    # six identical requests [0, 1]: the first misses both blocks, the other five hit both
    assert (summary["requests"], summary["blocks"], summary["hit_blocks"]) == (6, 12, 10)


def test_cli_skip_invalid_reports_the_count(tmp_path, capsys):
    path = _file(tmp_path, GOOD, "{oops", GOOD)
    assert main(["replay", str(path), "--skip-invalid", "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 invalid records" in captured.err
    assert orjson.loads(captured.out)["summary"]["requests"] == 2


@given(st.lists(st.integers(0, 20), min_size=1, max_size=30), st.integers(1, 6))
def test_streaming_sorts_like_reading_whole(tmp_path_factory, times, lines_per_batch):
    lines = [f'{{"timestamp": {t}, "input_length": 10, "output_length": {i}, "hash_ids": [{i}]}}'
             for i, t in enumerate(times)]
    path = tmp_path_factory.mktemp("s") / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    expected_back = sum(b < a for a, b in itertools.pairwise(times))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = read_trace(path)
        stream = TraceStream(path, batch_bytes=max(len(x) for x in lines) * lines_per_batch + 1)
        try:
            batches = list(stream)
        except TraceError as exc:
            assert "out of order by more than one batch" in str(exc)
            return
    assert np.concatenate([b.output_tokens for b in batches]).tolist() == whole.output_tokens.tolist()
    assert np.concatenate([b.block_keys for b in batches]).tolist() == whole.block_keys.tolist()
    assert stream.out_of_order == expected_back
