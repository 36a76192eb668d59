"""Agent transcripts to the bill: MB/s of Claude Code transcript read (``--sizes observed``) and costed, against
``orjson`` parsing the same lines alone, in the same run.

    python -m pytest bench/bench_transcripts.py -s          # ~40 MB of generated transcript

The transcript is generated: sessions shaped like tests/data/claude_code_v2.jsonl (bookkeeping lines, a user
turn, streamed assistant messages with tool calls and results of a few kB each, billed usage growing turn by turn).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from cachesim.providers import ProviderInput, make_rules, simulate
from cachesim.readers import read_requests
from conftest import best_seconds, report

TARGET_BYTES = int(float(os.environ.get("CACHESIM_TRANSCRIPT_MB", "40")) * 1e6)


def _session(k: int, turns: int = 40) -> list[bytes]:
    sid = f"s-{k}"
    lines = [orjson.dumps({"type": "permission-mode", "permissionMode": "default", "sessionId": sid})]
    parent, billed, clock = None, 12_000, 0.0
    for turn in range(turns):
        clock += 7.0
        uid = f"{sid}-u{turn}"
        text = f"turn {turn} of session {k}: " + "please look at the failing test and fix it " * (8 + turn % 5)
        content = text if turn == 0 else [{"type": "tool_result", "tool_use_id": f"t{turn - 1}",
                                           "content": ("def f(x):\n    return x\n" * (40 + 7 * (turn % 9)))}]
        lines.append(orjson.dumps({"parentUuid": parent, "isSidechain": False, "sessionId": sid, "version": "2.1.3",
                                   "type": "user", "message": {"role": "user", "content": content}, "uuid": uid,
                                   "timestamp": f"2026-04-12T10:{int(clock) // 60 % 60:02d}:{int(clock) % 60:02d}Z"}))
        parent, grow = uid, 900 + 37 * (turn % 11)
        usage = {"input_tokens": 3, "cache_creation_input_tokens": grow, "cache_read_input_tokens": billed,
                 "cache_creation": {"ephemeral_5m_input_tokens": grow, "ephemeral_1h_input_tokens": 0}}
        for part, block in enumerate(({"type": "text", "text": "Let me look. " * 20},
                                      {"type": "tool_use", "id": f"t{turn}", "name": "Read",
                                       "input": {"file_path": f"/w/src/mod{turn}.py"}})):
            aid = f"{sid}-a{turn}-{part}"
            lines.append(orjson.dumps({
                "parentUuid": parent, "isSidechain": False, "sessionId": sid, "version": "2.1.3", "type": "assistant",
                "message": {"id": f"msg-{sid}-{turn}", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                            "content": [block], "usage": {**usage, "output_tokens": 40 + 200 * part}},
                "uuid": aid, "timestamp": f"2026-04-12T10:{int(clock) // 60 % 60:02d}:{int(clock) % 60:02d}Z"}))
            parent = aid
        billed += grow + 3
    return lines


@pytest.fixture(scope="module")
def transcript(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("transcripts") / "sessions.jsonl"
    with open(path, "wb") as out:
        k, written = 0, 0
        while written < TARGET_BYTES:
            data = b"\n".join(_session(k)) + b"\n"
            out.write(data)
            written += len(data)
            k += 1
    return path


def test_transcript_read_and_cost_rate_against_orjson(transcript):
    size = transcript.stat().st_size

    def orjson_only():
        with open(transcript, "rb") as handle:
            for line in handle:
                orjson.loads(line)

    def read():
        return read_requests(transcript)

    baseline_s = best_seconds(orjson_only, rounds=2)
    started = time.perf_counter()
    result = read()
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    inp = ProviderInput.from_read(result)
    res = simulate(inp, make_rules("anthropic", "claude-sonnet-4-5-20250929", automatic=False))
    cost_s = time.perf_counter() - started
    mb = size / 1e6
    line = (f"{mb:,.0f} MB of transcript, {res.n_requests:,} requests: read {mb / read_s:.1f} MB/s, read + cost "
            f"{mb / (read_s + cost_s):.1f} MB/s; orjson alone {mb / baseline_s:.1f} MB/s (ratio "
            f"{(read_s + cost_s) / baseline_s:.1f}x its time)")
    print("\n" + line)
    report("transcripts", line)
    assert res.n_requests > 0 and (res.read > 0).any()
