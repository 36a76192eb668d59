"""Readers: each format's fixture, cross-format equivalence, compression, streaming, and bad input."""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest

from cachesim.cli import main
from cachesim.readers import TraceStream, detect_format, read_requests, read_trace
from cachesim.readers.azure import read_arrivals
from cachesim.requests import BlockRequests, TraceError
from cachesim.trace import Trace, compile_trace
from conftest import DATA, MOONCAKE_CONVERSATION, SHARED_TRACES, require_shared

# the Mooncake fixture, by hand: 512-token blocks, the last block of each request partial
MOONCAKE_T = [0.0, 1.5, 2.25, 4.0]
MOONCAKE_IDS = [[0, 1], [0, 1, 2], [3], [0, 1, 4]]
MOONCAKE_PROMPT = [1000, 1536, 300, 1025]
MOONCAKE_OUTPUT = [10, 20, 5, 7]
MOONCAKE_BLOCK_TOKENS = [512, 488, 512, 512, 512, 300, 512, 512, 1]

COLUMNS = ("t", "prompt_tokens", "output_tokens", "block_offsets", "block_keys", "block_tokens")


def _same(a, b, columns=COLUMNS) -> None:
    assert a.block_size == b.block_size and a.block_source == b.block_source
    for name in columns:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _labels(trace, column: str) -> list:
    names = trace.tenant_names
    return [names[c] for c in trace.tenant] if column == "tenant" else trace.session.tolist()


def test_mooncake_fixture_by_hand():
    trace = read_trace(DATA / "mooncake.jsonl")
    assert trace.t.tolist() == MOONCAKE_T
    assert trace.prompt_tokens.tolist() == MOONCAKE_PROMPT
    assert trace.output_tokens.tolist() == MOONCAKE_OUTPUT
    assert trace.block_offsets.tolist() == [0, 2, 5, 6, 9]
    assert trace.block_tokens.tolist() == MOONCAKE_BLOCK_TOKENS
    # the same requests built by hand and compiled directly
    expected = compile_trace(BlockRequests.from_lists(MOONCAKE_IDS, MOONCAKE_PROMPT, 512, t=MOONCAKE_T,
                                                      output_tokens=MOONCAKE_OUTPUT))
    _same(trace, expected)


def test_qwen_sessions_are_conversation_roots_and_tenants_are_types():
    trace = read_trace(DATA / "qwen.jsonl")
    assert trace.block_size == 16
    assert _labels(trace, "tenant") == ["text", "image", "text", "text"]
    # chats 100 -> 102 -> 103 are one conversation (root 100); 101 its own: codes in order of first appearance
    assert trace.session.tolist() == [0, 1, 0, 0]
    assert trace.block_tokens[-6:].tolist() == [16, 16, 16, 16, 16, 1]  # 81 tokens = 5 full blocks + 1


def test_qwen_tenant_field_can_be_mapped():
    from cachesim.readers import iter_requests
    from cachesim.readers._base import ReadOptions

    (batch,) = list(iter_requests(DATA / "qwen.jsonl", options=ReadOptions(tenant_field="turn")))
    names = batch.requests.tenant_names
    assert [names[c] for c in batch.requests.tenant] == ["1", "1", "2", "3"]


# fixtures that describe the same requests in different formats, and how to read each
EQUIVALENT = {
    "blocks512": [("mooncake.jsonl", {}), ("native_blocks512.jsonl", {}),
                  ("lmbench512.jsonl", {"block_size": 512}), ("mooncake.jsonl.gz", {}),
                  ("mooncake.jsonl.zst", {})],
    "blocks16": [("qwen.jsonl", {}), ("native_blocks16.jsonl", {}), ("lmbench16.jsonl", {"block_size": 16})],
    # one conversation sent through three APIs renders to the same tokens
    "api": [("openai_chat.jsonl", {}), ("anthropic_messages.jsonl", {}), ("openai_responses.jsonl", {})],
}


@pytest.fixture
def compressed(tmp_path):
    """gzip and zstd copies of the Mooncake fixture, and an LMBench twin of the Qwen fixture."""
    raw = (DATA / "mooncake.jsonl").read_bytes()
    (tmp_path / "mooncake.jsonl.gz").write_bytes(gzip.compress(raw))
    zstandard = pytest.importorskip("zstandard", reason="zstandard is in the test extra")
    (tmp_path / "mooncake.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    lines = []
    for line in (DATA / "qwen.jsonl").read_bytes().splitlines():
        obj = orjson.loads(line)
        lines.append(orjson.dumps({"timestamp": str(round(obj["timestamp"] * 1e9)), "input_length": obj["input_length"],
                                   "output_length": obj["output_length"], "hash_ids": obj["hash_ids"]}))
    (tmp_path / "lmbench16.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return tmp_path


@pytest.mark.parametrize("group,index", [(g, i) for g, items in EQUIVALENT.items() for i in range(1, len(items))])
def test_formats_describing_the_same_requests_compile_identically(group, index, compressed):
    def load(name, options):
        path = DATA / name if (DATA / name).exists() else compressed / name
        return read_trace(path, **options)

    reference = load(*EQUIVALENT[group][0])
    other = load(*EQUIVALENT[group][index])
    _same(reference, other)
    if group == "api":
        assert _labels(reference, "tenant") == _labels(other, "tenant") == ["u1"] * 3
        assert reference.session.tolist() == other.session.tolist() == [0, 0, 0]
        assert reference.meta["segments"].offsets.tolist() == other.meta["segments"].offsets.tolist()
    if group == "blocks16" and index == 1:  # native carries tenant and session like Qwen
        assert _labels(reference, "tenant") == _labels(other, "tenant")
        assert reference.session.tolist() == other.session.tolist()


def test_sniffing_picks_each_format():
    assert detect_format(DATA / "mooncake.jsonl") == "mooncake"
    assert detect_format(DATA / "native_blocks512.jsonl") == "native"
    assert detect_format(DATA / "lmbench512.jsonl") == "lmbench"
    assert detect_format(DATA / "qwen.jsonl") == "qwen"
    assert detect_format(DATA / "azure.csv") == "azure"
    for name in ("openai_chat.jsonl", "anthropic_messages.jsonl", "openai_responses.jsonl"):
        assert detect_format(DATA / name) == "apilog"


def test_streaming_in_small_batches_equals_reading_whole():
    whole = read_trace(DATA / "mooncake.jsonl")
    batches = list(TraceStream(DATA / "mooncake.jsonl", batch_bytes=100))
    assert len(batches) >= 2
    assert np.concatenate([b.t for b in batches]).tolist() == whole.t.tolist()
    assert np.concatenate([b.block_keys for b in batches]).tolist() == whole.block_keys.tolist()


def test_lmbench_needs_a_block_size():
    with pytest.raises(TraceError, match="block_size: LMBench traces do not say their block size"):
        read_trace(DATA / "lmbench512.jsonl")


def test_fixed_block_size_formats_refuse_another():
    with pytest.raises(TraceError, match="Mooncake blocks are 512 tokens; a block size of 16 needs token ids"):
        read_trace(DATA / "mooncake.jsonl", block_size=16)


def test_azure_fixture_loads_as_arrivals():
    arrivals = read_arrivals(DATA / "azure.csv")
    np.testing.assert_allclose(arrivals.t, [0.0, 0.052, 1.02004])
    assert arrivals.input_tokens.tolist() == [4808, 3180, 110]
    assert arrivals.output_tokens.tolist() == [10, 8, 27]
    assert arrivals.lines.tolist() == [2, 3, 4]


def test_azure_plain_replay_is_refused_with_the_reason():
    with pytest.raises(TraceError, match="no token or block ids, so a prefix cache has nothing to match"):
        read_trace(DATA / "azure.csv")


def test_azure_bad_row_is_located(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9,12,3\n2023-11-16 18:17:04.0,x,3\n")
    with pytest.raises(TraceError, match=r"a.csv:3: ContextTokens: expected a non-negative integer, got 'x'"):
        read_arrivals(path)


# -- the real traces ------------------------------------------------------------------------------------------

def test_real_mooncake_conversation_trace():
    trace = read_trace(require_shared(MOONCAKE_CONVERSATION))
    assert (trace.n_requests, trace.n_blocks) == (12_031, 288_500)


@pytest.mark.parametrize("name,rows", [("AzureLLMInferenceTrace_code.csv", 8_819),
                                       ("AzureLLMInferenceTrace_conv.csv", 19_366)])
def test_real_azure_traces_load_as_arrivals(name, rows):
    arrivals = read_arrivals(require_shared(SHARED_TRACES / "azure" / name))
    assert arrivals.n_requests == rows
    assert arrivals.t[0] == 0.0 and np.all(arrivals.t >= 0) and np.all(arrivals.input_tokens > 0)


def test_real_mooncake_replay_hit_ratio(capsys):
    assert main(["replay", str(require_shared(MOONCAKE_CONVERSATION)), "--json", "-"]) == 0
    summary = orjson.loads(capsys.readouterr().out)["summary"]
    assert (summary["hit_blocks"], summary["blocks"]) == (105_710, 288_500)


# -- the fast scanner agrees with the careful path ------------------------------------------------------------

def _slow(path, **kwargs):
    """Read with the compiled scanner disabled."""
    from cachesim.readers import mooncake

    fast = mooncake.scan_chunk
    mooncake.scan_chunk = lambda *a, **k: None
    try:
        return read_trace(path, **kwargs)
    finally:
        mooncake.scan_chunk = fast


def test_scanner_takes_odd_but_valid_json_and_leaves_what_it_does_not_know(tmp_path):
    from cachesim.readers import mooncake

    plain = "\n".join([
        '  {"timestamp":0,"input_length":1000,"output_length":10,"hash_ids":[0,1]}  ',
        '{ "hash_ids" : [ 0 , 1 , 2 ] , "timestamp" : 1500 , "input_length" : 1536 , "output_length" : 20 }',
        "",
        '{"timestamp": 2250, "input_length": 300, "output_length": 5, "hash_ids": [3], "note": "plain"}',
        '{"timestamp": 4000, "input_length": 1025, "output_length": 7, "hash_ids": [0, 1, 4], "x": null}']) + "\n"
    odd = plain.replace('"note": "plain"', '"note": "x\\"y", "meta": {"a": 1}')
    assert mooncake.scan_chunk(plain.encode(), 1, "p", mooncake._KEYS, 512, 1000.0) is not None
    assert mooncake.scan_chunk(odd.encode(), 1, "p", mooncake._KEYS, 512, 1000.0) is None
    for name, text in (("plain.jsonl", plain), ("odd.jsonl", odd)):
        (tmp_path / name).write_text(text)
        _same(read_trace(tmp_path / name), _slow(tmp_path / name))
        _same(read_trace(tmp_path / name), read_trace(DATA / "mooncake.jsonl"))


# -- API request logs -----------------------------------------------------------------------------------------

def test_api_log_cache_control_becomes_breakpoints_with_ttl():
    trace = read_trace(DATA / "anthropic_messages.jsonl")
    segments, breakpoints = trace.meta["segments"], trace.meta["breakpoints"]
    kinds = trace.meta["segment_kinds"]
    for i, marked in enumerate([[0, 1], [0, 1, 4], [0, 1, 6]]):  # the blocks carrying cache_control
        row = segments.row(i)
        ends = np.cumsum(row["tokens"])
        assert breakpoints.row(i)["tokens"].tolist() == ends[marked].tolist()
        assert ends[-1] == trace.prompt_tokens[i]
    assert breakpoints.row(0)["ttl_s"].tolist() == [3600.0, 300.0]  # the tool's "1h", the system block's default
    assert [kinds[k] for k in segments.row(1)["kind"]] == ["tools", "system", "user", "tool_use", "tool_result"]


def test_api_log_observed_usage_is_kept():
    anthropic = read_trace(DATA / "anthropic_messages.jsonl").meta
    assert anthropic["observed_input_tokens"].tolist() == [9 + 70 + 0, 3 + 30 + 70, -1]
    assert anthropic["observed_cache_read_tokens"].tolist() == [0, 70, -1]
    assert anthropic["observed_cache_write_tokens"].tolist() == [70, 30, -1]
    assert anthropic["observed_output_tokens"].tolist() == [12, 15, -1]
    chat = read_trace(DATA / "openai_chat.jsonl")
    assert chat.meta["observed_cache_read_tokens"].tolist() == [0, 64, -1]
    assert chat.meta["observed_input_tokens"].tolist() == [80, 110, -1]
    assert chat.output_tokens.tolist() == [12, 15, -1]


def test_api_log_growing_conversation_shares_its_prefix():
    trace = read_trace(DATA / "openai_chat.jsonl")
    first, second = (trace.block_keys[trace.block_offsets[i]:trace.block_offsets[i + 1]] for i in range(2))
    full_blocks = trace.prompt_tokens[0] // 16
    assert first[:full_blocks].tolist() == second[:full_blocks].tolist()


def test_api_log_bad_record_is_located(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"model": "m", "messages": [{"role": "user", "content": "hi"}]}\n'
                    '{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x", '
                    '"cache_control": {"type": "ephemeral", "ttl": "2h"}}]}]}\n')
    with pytest.raises(TraceError, match=r"log.jsonl:2: cache_control.ttl: unknown ttl '2h'"):
        read_trace(path)


# -- Claude Code transcripts ----------------------------------------------------------------------------------

def test_claude_code_each_assistant_message_is_one_request():
    assert detect_format(DATA / "claude_code.jsonl") == "claude-code"
    trace = read_trace(DATA / "claude_code.jsonl")
    # msg_A (streamed as two events) counts once; then the sidechain's msg_S, then msg_B
    assert trace.n_requests == 3
    assert (trace.t - trace.t[0]).tolist() == [0.0, 4.0, 6.0]
    # the first request of each kind is as long as it was billed: hidden prefix + conversation
    assert trace.prompt_tokens[:2].tolist() == [4 + 3000 + 0, 10 + 1200 + 0]
    assert trace.meta["observed_input_tokens"].tolist() == [3004, 1210, 60 + 0 + 3004]
    assert trace.output_tokens.tolist() == [40, 12, 25]
    # the sidechain is its own session; the main conversation's requests share one
    assert trace.session.tolist() == [0, 1, 0]


def rendered_tokens(*texts: str) -> int:
    """What the built-in tokenizer counts for these rendered blocks (each as the readers render one)."""
    from cachesim.tokenizers import BuiltinTokenizer

    tok = BuiltinTokenizer()
    return sum(len(tok.encode(text)) for text in texts)


def test_claude_code_later_request_extends_the_earlier_prompt():
    trace = read_trace(DATA / "claude_code.jsonl", sizes="tokenized")
    # between msg_A's request and msg_B's: msg_A's two streamed blocks and the tool result
    added = rendered_tokens("<|assistant|>\nLet me look at the test first.",
                            '<|assistant:tool_use|>\nRead {"file_path":"/home/dev/app/test_dates.py"}',
                            "<|user:tool_result|>\ndef test_leap():\n    assert days_in(2024, 2) == 29\n")
    assert trace.prompt_tokens[2] == trace.prompt_tokens[0] + added
    full = trace.prompt_tokens[0] // 16
    first, last = trace.block_keys[:full], trace.block_keys[trace.block_offsets[2]:trace.block_offsets[2] + full]
    assert first.tolist() == last.tolist()


def test_claude_code_missing_timestamp_is_located(tmp_path):
    lines = (DATA / "claude_code.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"timestamp": "2025-06-01T10:00:03.000Z"', '"timestamp": 17')
    path = tmp_path / "session.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match=r"session.jsonl:3: timestamp: expected an ISO 8601 time, got int"):
        read_trace(path, format="claude-code")


def test_native_token_fixture_by_hand():
    trace = read_trace(DATA / "native_tokens.jsonl", block_size=2)
    # 5, 3 and 7 tokens in 2-token blocks: full blocks only (2, 1, 3), the rest is an uncacheable tail
    assert trace.block_offsets.tolist() == [0, 2, 3, 6]
    assert trace.prompt_tokens.tolist() == [5, 3, 7]
    assert trace.output_tokens.tolist() == [3, 4, 1]      # output_tokens, len(output_ids), output_length
    assert _labels(trace, "tenant") == ["alice", "bob", "alice"]
    assert trace.session.tolist() == [0, -1, 0]
    # the third prompt extends the first: its first two blocks are the first prompt's
    assert trace.block_keys[3:5].tolist() == trace.block_keys[0:2].tolist()
    assert trace.meta["breakpoints"].row(0)["tokens"].tolist() == [2, 5]
    assert trace.meta["breakpoints"].row(0)["ttl_s"][1] == 3600.0
    assert trace.meta["segments"].row(0)["tokens"].tolist() == [2, 3]


def test_native_segments_must_cover_the_prompt(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_text('{"t": 0, "tokens": [1, 2, 3], "segments": [{"kind": "system", "tokens": 2}]}\n')
    with pytest.raises(TraceError, match=r"n.jsonl:1: segments: segments cover 2 tokens, the prompt has 3"):
        read_trace(path)
    path.write_text('{"t": 0, "tokens": [1, 2, 3], "breakpoints": [4]}\n')
    with pytest.raises(TraceError, match=r"n.jsonl:1: breakpoints: element 0 = 4 is not a prefix length in 1..3"):
        read_trace(path)


def test_azure_synthesize_keeps_arrivals_and_lengths():
    from cachesim.readers.azure import synthesize

    arrivals = read_arrivals(DATA / "azure.csv")
    requests = synthesize(arrivals, seed=3)
    assert np.diff(requests.token_offsets).tolist() == [4808, 3180, 110]
    assert requests.output_tokens.tolist() == [10, 8, 27]
    np.testing.assert_array_equal(requests.t, arrivals.t)
    again = synthesize(arrivals, seed=3)
    assert np.array_equal(requests.tokens, again.tokens)


def test_cli_synthesize_replays_azure_and_refuses_other_formats(capsys):
    assert main(["replay", str(DATA / "azure.csv"), "--synthesize", "--json", "-"]) == 0
    summary = orjson.loads(capsys.readouterr().out)["summary"]
    assert summary["requests"] == 3 and summary["prompt_tokens"] == 4808 + 3180 + 110
    assert main(["replay", str(DATA / "mooncake.jsonl"), "--synthesize"]) == 2
    assert "--synthesize gives content to arrival/length-only traces" in capsys.readouterr().err


# -- the compact format and convert ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,options", [("mooncake.jsonl", {}), ("native_tokens.jsonl", {"block_size": 2}),
                                          ("qwen.jsonl", {}), ("openai_chat.jsonl", {}),
                                          ("anthropic_messages.jsonl", {})])
@pytest.mark.parametrize("mmap", [False, True])
def test_compact_format_round_trip(tmp_path, name, options, mmap):

    trace = read_trace(DATA / name, **options)
    trace.save(tmp_path / "t.npz")
    loaded = Trace.load(tmp_path / "t.npz", mmap=mmap)
    _same(loaded, trace)
    assert loaded.tenant_names == trace.tenant_names
    assert loaded.tenant.tolist() == trace.tenant.tolist() and loaded.session.tolist() == trace.session.tolist()
    if mmap:
        assert isinstance(loaded.block_keys, np.memmap) and loaded.block_keys.flags.aligned
    # what the reader attached per request (observed usage, breakpoints, segments) survives too
    for key, value in trace.meta.items():
        if key == "path":
            continue
        if hasattr(value, "offsets"):
            assert loaded.meta[key].offsets.tolist() == value.offsets.tolist()
            for col, arr in value.columns.items():
                np.testing.assert_array_equal(loaded.meta[key].columns[col], arr)
        else:
            assert list(loaded.meta[key]) == list(value), key
    # an ordinary .npz too
    with np.load(tmp_path / "t.npz") as z:
        assert z["block_keys"].tolist() == trace.block_keys.tolist()


def test_compact_file_that_is_not_one(tmp_path):

    path = tmp_path / "x.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(TraceError, match=r"x.npz: not a compiled cachesim trace"):
        Trace.load(path)


def test_cli_convert_then_replay_gives_the_same_result(tmp_path, capsys):
    out = tmp_path / "mooncake.npz"
    assert main(["convert", str(DATA / "mooncake.jsonl"), str(out)]) == 0
    assert "4 requests, 9 blocks of 512 tokens" in capsys.readouterr().out
    assert main(["replay", str(out), "--json", "-"]) == 0
    from_npz = orjson.loads(capsys.readouterr().out)["summary"]
    assert main(["replay", str(DATA / "mooncake.jsonl"), "--json", "-"]) == 0
    from_jsonl = orjson.loads(capsys.readouterr().out)["summary"]
    # requests 2 and 4 hit blocks [0, 1]: 4 of 9 blocks
    assert (from_npz["hit_blocks"], from_npz["blocks"]) == (from_jsonl["hit_blocks"], from_jsonl["blocks"]) == (4, 9)


def test_cli_convert_dense_numbers_the_keys_and_replays_the_same(tmp_path, capsys):
    out = tmp_path / "mooncake-dense.npz"
    assert main(["convert", "--dense", str(DATA / "mooncake.jsonl"), str(out)]) == 0
    capsys.readouterr()
    trace = Trace.load(out)
    ids = trace.block_keys.tolist()
    assert list(dict.fromkeys(ids)) == list(range(len(trace.distinct_keys)))  # numbered by first appearance
    for args in (["--capacity", "3"], []):
        assert main(["replay", str(out), "--json", "-", *args]) == 0
        dense = orjson.loads(capsys.readouterr().out)["summary"]
        assert main(["replay", str(DATA / "mooncake.jsonl"), "--json", "-", *args]) == 0
        keyed = orjson.loads(capsys.readouterr().out)["summary"]
        assert dense == keyed


def test_progress_bar_only_on_a_terminal():
    from cachesim.progress import progress_bar, wants_progress

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert wants_progress(Stream(True)) and not wants_progress(Stream(False))
    with progress_bar(100, lambda: 50, "x", enabled=False) as update:
        update(10)  # a no-op, and nothing drawn


def test_requests_read_in_batches_join_when_only_some_batches_carry_breakpoints(tmp_path):
    from cachesim.readers import iter_requests
    from cachesim.readers._base import ReadOptions, concat

    path = tmp_path / "t.jsonl"
    path.write_text('{"t": 0, "tokens": [1, 2, 3, 4], "breakpoints": [2]}\n'
                    '{"t": 1, "tokens": [1, 2, 5, 6]}\n' * 1 + '{"t": 2, "tokens": [7, 8]}\n' * 40)
    # batches of ~64 bytes: the first carries a breakpoint, the later ones none
    parts = list(iter_requests(path, "native", ReadOptions(batch_bytes=64)))
    assert len(parts) > 2 and parts[0].extras and not parts[-1].extras
    joined = concat(parts)
    whole = read_requests(path, format="native")
    assert joined.extras["breakpoints"].offsets.tolist() == whole.extras["breakpoints"].offsets.tolist()
    assert joined.extras["breakpoints"].columns["tokens"].tolist() == [2]
    assert joined.extras["observed_input_tokens"].tolist() == [-1] * 42


def test_claude_code_of_a_newer_version_by_hand():
    # opens with permission-mode and file-history-snapshot lines; a streamed message; an attachment; <synthetic>
    assert detect_format(DATA / "claude_code_v2.jsonl") == "claude-code"
    trace = read_trace(DATA / "claude_code_v2.jsonl")
    assert trace.n_requests == 2          # msg_1 (two events) and msg_2; the <synthetic> message was never sent
    assert trace.output_tokens.tolist() == [412, 3]   # msg_1's last event, not its first (8)
    assert trace.meta["observed_input_tokens"].tolist() == [3 + 5000, 6 + 430 + 5000]
    assert trace.meta["observed_cache_write_1h_tokens"].tolist() == [5000, 0]
    assert trace.prompt_tokens[0] == 5003 and trace.session.tolist() == [0, 0]
    # an older log has no TTL split: unknown, not zero
    assert read_trace(DATA / "claude_code.jsonl").meta["observed_cache_write_1h_tokens"].tolist() == [-1, -1, -1]


def test_claude_code_session_still_being_written_reads_up_to_its_cut_line(tmp_path):
    text = (DATA / "claude_code_v2.jsonl").read_text()
    lines = text.splitlines()
    path = tmp_path / "live.jsonl"
    path.write_text("\n".join(lines[:8]) + "\n" + lines[8][:70])   # the writer is mid-line
    with pytest.warns(UserWarning, match=r"live.jsonl:9: the last line is cut off .* read up to line 8"):
        trace = read_trace(path)
    assert trace.n_requests == 2 and trace.output_tokens.tolist() == [412, 3]
    path.write_text("\n".join(lines[:7]) + "\n" + lines[7][:70] + "\n" + lines[8] + "\n")  # cut mid-file: an error
    with pytest.raises(TraceError, match=r"live.jsonl:8: malformed JSON"):
        read_trace(path)


def test_claude_code_error_after_a_streamed_message_keeps_that_request(tmp_path):
    from cachesim.readers import iter_requests

    lines = (DATA / "claude_code_v2.jsonl").read_text().splitlines()
    lines[6] = lines[6].replace('"uuid":"a5"', '"uuid":5')
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    served = []
    with pytest.raises(TraceError, match=r"bad.jsonl:7: uuid: expected a string"):
        for batch in iter_requests(path):
            served.append(batch)
    assert [b.requests.n_requests for b in served] == [1] and served[0].lines.tolist() == [4]
    assert served[0].requests.output_tokens.tolist() == [412]


def test_claude_code_prompts_are_as_long_as_they_were_billed():
    observed = read_trace(DATA / "claude_code.jsonl")             # --sizes observed, the default
    tokenized = read_trace(DATA / "claude_code.jsonl", sizes="tokenized")
    billed = observed.meta["observed_input_tokens"]
    assert observed.prompt_tokens.tolist() == billed.tolist() == [3004, 1210, 3064]
    assert tokenized.prompt_tokens[2] == 3004 + 55               # what the text renders to (the test above)
    # the growth is spread over the new content, so the later request still starts with the earlier prompt
    full = observed.prompt_tokens[0] // 16
    first, last = observed.block_keys[:full], observed.block_keys[observed.block_offsets[2]:][:full]
    assert first.tolist() == last.tolist()
    # the segments still cover each prompt
    seg = observed.meta["segments"]
    assert [int(seg.columns["tokens"][seg.offsets[i]:seg.offsets[i + 1]].sum()) for i in range(3)] == [3004, 1210, 3064]


def test_a_bill_shorter_than_the_conversation_keeps_the_text_s_size_and_says_so(tmp_path):
    lines = (DATA / "claude_code.jsonl").read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if '"msg_B"' in line)
    lines[i] = lines[i].replace('"cache_read_input_tokens": 3004', '"cache_read_input_tokens": 2000')
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="1 requests keep their text's size under --sizes observed: 1 were billed"):
        trace = read_trace(path)
    # what msg_A's two blocks and the tool result add, at 4 UTF-8 bytes an id (the fingerprint observed sizes use)
    blocks = ["<|assistant|>\nLet me look at the test first.",
              '<|assistant:tool_use|>\nRead {"file_path":"/home/dev/app/test_dates.py"}',
              "<|user:tool_result|>\ndef test_leap():\n    assert days_in(2024, 2) == 29\n"]
    assert trace.prompt_tokens[2] == 3004 + sum(-(-len(b.encode()) // 4) for b in blocks)


def test_codex_rollout_by_hand():
    assert detect_format(DATA / "codex_rollout.jsonl") == "codex"
    trace = read_trace(DATA / "codex_rollout.jsonl")
    # two calls: the count written twice is one; each billed input is the prompt (--sizes observed)
    assert trace.n_requests == 2 and trace.prompt_tokens.tolist() == [9000, 9300]
    assert trace.meta["observed_cache_read_tokens"].tolist() == [0, 8960]
    assert trace.output_tokens.tolist() == [120, 15]
    # a call is timed where its output begins (the reasoning item at 18:15:03, the answer at 18:15:06)
    assert (trace.t - trace.t[0]).tolist() == [0.0, 3.0]
    assert trace.tenant_names == ["default"] and trace.session.tolist() == [0, 0]
    assert [trace.meta["model_names"][m] for m in trace.meta["model"]] == ["gpt-5.1-codex"] * 2
    # the second prompt starts with the first: the call's own output came after its prompt, then the tool's
    full = 9000 // 16
    assert trace.block_keys[:full].tolist() == trace.block_keys[trace.block_offsets[1]:][:full].tolist()


def test_codex_rollout_tokenized_never_reads_the_encrypted_reasoning():
    trace = read_trace(DATA / "codex_rollout.jsonl", sizes="tokenized")
    # between the two prompts: the empty reasoning summary, the tool call and its output, nothing of the base64
    added = rendered_tokens("<|assistant:thinking|>\n",
                            '<|assistant:tool_use|>\nexec_command {"cmd":"ls","workdir":"/repo"}',
                            "<|user:tool_result|>\nProcess exited with code 0\nOutput:\nmain.py\n")
    assert trace.prompt_tokens[1] - trace.prompt_tokens[0] == added


def test_claude_code_lines_of_unknown_types_are_counted_not_fatal(tmp_path):
    path = tmp_path / "s.jsonl"
    extra = ['{"type":"queue-operation","operation":"enqueue","sessionId":"s-2"}',
             '{"type":"queue-operation","operation":"dequeue","sessionId":"s-2"}', '{"note":"no type at all"}']
    path.write_text((DATA / "claude_code_v2.jsonl").read_text() + "\n".join(extra) + "\n")
    with pytest.warns(UserWarning, match=r"skipped 3 lines of types this reader does not know: queue-operation \(2\), "
                                         r"\(no type\) \(1\)"):
        trace = read_trace(path)
    assert trace.n_requests == 2
