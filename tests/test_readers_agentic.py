"""Readers of agentic and batch traces from their public definitions: kv-cache-tester (Claude Code sessions with
sub-agents), Dynamo's Mooncake-style sessions, ServeGen's offline traces, and Mooncake's tool-agent trace.

Every fixture is written for these tests in the shape of its definition (docs/formats.md names each source);
the expected requests and hits below are worked out by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cachesim.cli import main
from cachesim.readers import FORMATS, detect_format, read_trace
from cachesim.readers._base import first_record, read_head
from cachesim.requests import TraceError
from conftest import DATA

COLUMNS = ("t", "prompt_tokens", "output_tokens", "block_offsets", "block_keys", "block_tokens")
SCOPE1, SCOPE2, TAIL = 1 << 40, 2 << 40, 1 << 63   # kv-cache-tester: trace 1's and 2's ids, partial-block ids


def _same(a, b) -> None:
    assert a.block_size == b.block_size and a.block_source == b.block_source
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _sessions(trace) -> list:
    return trace.session.tolist()


def _tenants(trace) -> list[str]:
    return [trace.tenant_names[c] for c in trace.tenant]


def _summary(capsys, *argv) -> dict:
    assert main(["replay", *argv, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)["summary"]


def _write(tmp_path, name: str, rows: list) -> str:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


# -- kv-cache-tester ---------------------------------------------------------------------------------------------

KVT = DATA / "kvcache_tester.jsonl"


def test_kvcache_tester_fixture_by_hand():
    trace = read_trace(KVT)
    assert trace.block_size == 64
    # trace_b starts at 0 s beside trace_a; the sub-agent's requests count from its marker at 40 s
    assert trace.t.tolist() == [0.0, 0.0, 12.0, 30.5, 40.0, 43.5, 60.0]
    assert trace.prompt_tokens.tolist() == [200, 100, 128, 256, 130, 192, 300]
    assert trace.output_tokens.tolist() == [50, 9, 4, 20, 5, 2, 7]
    # sessions in order of first appearance in the file: trace_a, trace_a/agent_001, trace_b
    assert _sessions(trace) == [0, 2, 2, 0, 1, 1, 0]
    assert _tenants(trace) == ["default"] * 7
    # one id per full block, and one of its own for each partial last block (200 = 3 x 64 + 8)
    assert np.diff(trace.block_offsets).tolist() == [4, 2, 2, 4, 3, 3, 5]
    assert trace.block_tokens[:4].tolist() == [64, 64, 64, 8]
    assert trace.block_tokens[-5:].tolist() == [64, 64, 64, 64, 44]


def test_kvcache_tester_compiles_like_its_native_twin():
    # the twin spells out the ids: trace_a's id k is 2^40 + k, trace_b's 2 * 2^40 + k, partial blocks 2^63 + n
    twin = DATA / "native_kvcache_tester64.jsonl"
    first = json.loads(twin.read_text().splitlines()[0])
    assert first["block_ids"] == [SCOPE1 + 1, SCOPE1 + 2, SCOPE1 + 3, TAIL]
    ours, native = read_trace(KVT), read_trace(twin)
    _same(ours, native)
    assert _sessions(ours) == _sessions(native)


def test_kvcache_tester_hits_by_hand(capsys):
    # trace_b's second request hits its first block (64); trace_a's second hits 3 of 4 (192); the sub-agent's
    # second hits 2 (128); trace_a's last hits all 4 full blocks (256) and misses its 44-token tail. Traces share
    # nothing: trace_b's id 1 is not trace_a's.
    summary = _summary(capsys, str(KVT))
    assert (summary["prompt_tokens"], summary["hit_tokens"], summary["hit_blocks"]) == (1306, 640, 10)


def _trace(trace_id: str, requests: list, scope: str = "local", block_size: int = 64) -> dict:
    return {"id": trace_id, "models": ["m"], "block_size": block_size, "hash_id_scope": scope, "requests": requests}


def _request(t: float, n_in: int, ids: list[int], **more) -> dict:
    return {"t": t, "type": "n", "model": "m", "in": n_in, "out": 1, "hash_ids": ids, **more}


def test_kvcache_tester_global_scope_shares_ids_across_traces(tmp_path, capsys):
    rows = [_trace("x", [_request(0.0, 128, [1, 2])], "global"), _trace("y", [_request(5.0, 128, [1, 3])], "global")]
    summary = _summary(capsys, _write(tmp_path, "g.jsonl", rows))
    assert summary["hit_tokens"] == 64   # y's first block is x's
    local = [_trace("x", [_request(0.0, 128, [1, 2])]), _trace("y", [_request(5.0, 128, [1, 3])])]
    assert _summary(capsys, _write(tmp_path, "l.jsonl", local))["hit_tokens"] == 0


def test_kvcache_tester_bad_nested_field_is_located(tmp_path):
    sub = {"t": 3.0, "type": "subagent", "agent_id": "agent_001", "requests": [_request(0.0, -5, [1])]}
    path = _write(tmp_path, "k.jsonl", [_trace("x", [_request(0.0, 64, [1])]),
                                        _trace("y", [_request(0.0, 64, [1]), sub])])
    with pytest.raises(TraceError, match=r"k\.jsonl:2: requests\[1\]\.requests\[0\]\.in: expected a positive token "
                                         r"count, got -5"):
        read_trace(path)


def test_kvcache_tester_refuses_a_second_block_size_and_a_wrong_id_count(tmp_path):
    path = _write(tmp_path, "k.jsonl", [_trace("x", [_request(0.0, 64, [1])]),
                                        _trace("y", [_request(0.0, 32, [1])], block_size=32)])
    with pytest.raises(TraceError, match=r"k\.jsonl:2: block_size: 32 differs from earlier traces' 64"):
        read_trace(path)
    path = _write(tmp_path, "n.jsonl", [_trace("x", [_request(0.0, 200, [1])])])
    with pytest.raises(TraceError, match=r"n\.jsonl:1: requests\[0\]\.hash_ids: 1 block ids for 200 tokens; "
                                         r"kv-cache-tester traces have one per full block of 64: floor\(200/64\) = 3 "
                                         r"\(--lengths from-ids"):
        read_trace(path)
    assert read_trace(path, lengths="from-ids").prompt_tokens.tolist() == [64]


def test_kvcache_tester_skip_invalid_skips_the_whole_trace(tmp_path):
    path = _write(tmp_path, "k.jsonl", [_trace("x", [_request(0.0, 64, [1])]),
                                        _trace("y", [_request(0.0, 64, [1]), {"t": 1.0, "type": "x"}]),
                                        _trace("z", [_request(2.0, 64, [1])])])
    with pytest.warns(UserWarning, match=r"skipped 1 invalid records \(first: .*k\.jsonl:2: requests\[1\]\.type"):
        trace = read_trace(path, skip_invalid=True)
    assert trace.t.tolist() == [0.0, 2.0]


# -- Dynamo --------------------------------------------------------------------------------------------------------

DYN = DATA / "dynamo_sessions.jsonl"


def test_dynamo_fixture_by_hand():
    trace = read_trace(DYN, block_size=64)
    # sess-a: 1.0 s, then +2.5 s (delay), then +0.5 s (delay_ms); sess-b: 1.5 s, then its timestamps' gap of
    # 2.5 s; the row without a session at its timestamp, 2.0 s
    assert trace.t.tolist() == [1.0, 1.5, 2.0, 3.5, 4.0, 4.0]
    # the last turn has no input_length: its 5 ids' full blocks, 320 tokens
    assert trace.prompt_tokens.tolist() == [130, 64, 100, 250, 120, 320]
    assert trace.output_tokens.tolist() == [40, 8, 3, 12, 6, 1]
    assert _sessions(trace) == [0, 1, -1, 0, 1, 0]


def test_dynamo_compiles_like_its_native_twin():
    ours, native = read_trace(DYN, block_size=64), read_trace(DATA / "native_dynamo64.jsonl")
    _same(ours, native)
    assert _sessions(ours) == _sessions(native)


def test_dynamo_hits_by_hand(capsys):
    # 1.5 s: id 0 (64); 3.5 s: 0, 1 (128); 4.0 s sess-b: 0 (64); 4.0 s sess-a: 0, 1, 3 (192) of 984 tokens
    summary = _summary(capsys, str(DYN), "--block-size", "64")
    assert (summary["prompt_tokens"], summary["hit_tokens"]) == (984, 448)


def test_dynamo_needs_a_block_size(capsys):
    assert main(["replay", str(DYN)]) == 2
    assert "block_size: Dynamo traces do not say their block size" in capsys.readouterr().err


@pytest.mark.parametrize("rows, message", [
    ([{"session_id": "s", "delay": 5, "hash_ids": [1]}], r":1: delay: a session's first turn has no turn before"),
    ([{"session_id": "s", "hash_ids": [1]}, {"session_id": "s", "timestamp": 9, "hash_ids": [1]}],
     r":2: timestamp: cannot tell this turn's delay: session 's' gave no timestamp before it"),
    ([{"session_id": "s", "timestamp": 9, "hash_ids": [1]}, {"session_id": "s", "timestamp": 4, "hash_ids": [1]}],
     r":2: timestamp: 4 ms is before this session's previous timestamp, 9 ms"),
    ([{"session_id": "s", "timestamp": 0, "hash_ids": [1]}, {"session_id": "s", "delay": -1, "hash_ids": [1]}],
     r":2: delay: expected a finite, non-negative time, got -1"),
    ([{"request_id": "r2", "session_id": "s", "wait_for": ["r1"], "hash_ids": [1]}],
     r":1: wait_for: Dynamo's agentic rows start when the requests they wait for complete"),
    ([{"session_id": "s", "timestamp": 0, "input_length": 10, "input_tokens": 10, "hash_ids": [1]}],
     r":1: input_tokens: both input_length and input_tokens are given"),
    ([{"session_id": "s", "timestamp": 0, "input_length": 200, "hash_ids": [1]}],
     r":1: hash_ids: 1 block ids for 200 tokens; blocks of 64 tokens need ceil\(200/64\) = 4 \(--lengths from-ids"),
    ([{"session_id": "s", "timestamp": 0, "hash_ids": [1]}, "{\"session_id\": \"s\", "],
     r":2: malformed JSON"),
])
def test_dynamo_bad_rows_are_located(tmp_path, rows, message):
    path = _write(tmp_path, "d.jsonl", rows)
    with pytest.raises(TraceError, match=r"d\.jsonl" + message):
        read_trace(path, format="dynamo", block_size=64)


# -- ServeGen ------------------------------------------------------------------------------------------------------

SG = DATA / "servegen_offline.jsonl"


def test_servegen_fixture_by_hand(capsys):
    trace = read_trace(SG)
    assert trace.block_size == 16
    assert trace.t.tolist() == [0.0] * 4                 # a batch job: no arrivals, the file's order
    assert trace.prompt_tokens.tolist() == [40, 48, 33, 20]
    assert trace.output_tokens.tolist() == [-1] * 4      # content-hash traces carry no output length
    assert _tenants(trace) == ["text", "text", "multimodal", "text"]
    assert trace.block_tokens.tolist() == [16, 16, 8, 16, 16, 16, 16, 16, 1, 16, 4]
    # request 1 hits 100, 101 (32 tokens), request 3 hits 100 (16)
    summary = _summary(capsys, str(SG))
    assert (summary["prompt_tokens"], summary["hit_tokens"]) == (141, 48)


def test_servegen_compiles_like_its_native_twin():
    ours, native = read_trace(SG), read_trace(DATA / "native_servegen16.jsonl")
    _same(ours, native)
    assert _tenants(ours) == _tenants(native)


def test_servegen_stat_trace_is_refused_with_the_reason(tmp_path):
    path = _write(tmp_path, "s.jsonl", [{"request_id": 0, "type": "text", "input_length": 61, "output_length": 2370,
                                         "duration": 14000}])
    assert detect_format(path) == "servegen"
    with pytest.raises(TraceError, match=r"s\.jsonl:1: hash_ids: missing: this is a ServeGen stat trace"):
        read_trace(path)


def test_servegen_bad_row_is_located(tmp_path):
    path = _write(tmp_path, "s.jsonl", [{"request_id": 0, "type": "text", "input_length": 16, "hash_ids": [1]},
                                        {"request_id": "one", "type": "text", "input_length": 16, "hash_ids": [1]}])
    with pytest.raises(TraceError, match=r"s\.jsonl:2: request_id: expected an integer request id"):
        read_trace(path)


# -- Mooncake's tool-agent trace -----------------------------------------------------------------------------------

def test_mooncake_toolagent_reads_as_mooncake_like_its_native_twin():
    path = DATA / "mooncake_toolagent.jsonl"
    assert detect_format(path) == "mooncake"
    trace = read_trace(path)
    assert trace.t.tolist() == [0.0, 0.812, 0.812, 2.1]
    assert trace.prompt_tokens.tolist() == [1200, 1700, 512, 2100]
    _same(trace, read_trace(DATA / "native_toolagent512.jsonl"))


# -- sniffing ------------------------------------------------------------------------------------------------------

# every fixture in tests/data and the format it is (the existing ones as they were before these readers)
DETECTED = {
    "anthropic_messages.jsonl": "apilog", "openai_chat.jsonl": "apilog", "openai_responses.jsonl": "apilog",
    "azure.csv": "azure", "claude_code.jsonl": "claude-code", "claude_code_v2.jsonl": "claude-code",
    "codex_rollout.jsonl": "codex",
    "lmbench512.jsonl": "lmbench",
    "lmbench_gmi32.jsonl": "lmbench", "mooncake.jsonl": "mooncake", "mooncake_toolagent.jsonl": "mooncake",
    "native_blocks16.jsonl": "native", "native_blocks512.jsonl": "native", "native_tokens.jsonl": "native",
    "native_kvcache_tester64.jsonl": "native", "native_dynamo64.jsonl": "native",
    "native_servegen16.jsonl": "native", "native_toolagent512.jsonl": "native", "qwen.jsonl": "qwen",
    "kvcache_tester.jsonl": "kv-cache-tester", "dynamo_sessions.jsonl": "dynamo",
    "servegen_offline.jsonl": "servegen",
}
NEW = ("kv-cache-tester", "dynamo", "servegen")


def test_every_fixture_is_detected_as_its_format():
    files = sorted(p.name for p in DATA.iterdir() if p.is_file())
    assert files == sorted(DETECTED), "a fixture was added or removed: say here which format it is"
    assert {name: detect_format(DATA / name) for name in files} == DETECTED


@pytest.mark.parametrize("name", sorted(n for n, fmt in DETECTED.items() if fmt not in NEW))
def test_the_new_sniffers_claim_no_file_of_another_format(name):
    head = read_head(DATA / name)
    first = first_record(head)
    assert [fmt for fmt in NEW if FORMATS[fmt].sniff(first, head)] == []


def test_a_plain_mooncake_row_is_not_dynamo_but_one_with_a_session_is():
    plain = {"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}
    assert not FORMATS["dynamo"].sniff(plain, b"")
    assert FORMATS["dynamo"].sniff({**plain, "session_id": "s"}, b"")
    assert FORMATS["dynamo"].sniff({"delay": 0, "input_length": 10, "hash_ids": [1]}, b"")
