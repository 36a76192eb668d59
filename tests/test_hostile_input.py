"""Damaged, hostile or merely unusual files: each gets a located one-line error or is read as it is — never a
traceback, a crash or an allocation sized by a number nobody checked."""

from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
import orjson
import pytest

import cachesim
from cachesim import _contract
from cachesim.cli import main
from cachesim.readers._base import _decompressing
from cachesim.requests import TraceError


def _mooncake_lines(n: int, ids_per_request: int = 3) -> list[bytes]:
    return [orjson.dumps({"timestamp": i * 1000, "input_length": 512 * ids_per_request, "output_length": 5,
                          "hash_ids": list(range(i, i + ids_per_request))}) for i in range(n)]


def test_a_first_line_longer_than_the_sniffers_first_read_is_recognised(tmp_path):
    # a Mooncake line of 19,000 ids is about 120 KB, beyond the 64 KiB the sniffer reads first
    path = tmp_path / "long.jsonl"
    long = orjson.dumps({"timestamp": 0, "input_length": 512 * 19_000, "output_length": 1,
                         "hash_ids": list(range(19_000))})
    assert len(long) > 1 << 16
    path.write_bytes(long + b"\n" + b"\n".join(_mooncake_lines(3)) + b"\n")
    assert cachesim.detect_format(path) == "mooncake"
    trace = cachesim.read_trace(path)
    assert trace.n_requests == 4 and trace.n_blocks == 19_000 + 9


def test_blank_first_lines_do_not_defeat_the_sniffer(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_bytes(b"\n\n  \n" + b"\n".join(_mooncake_lines(3)) + b"\n")
    assert cachesim.read_trace(path).n_requests == 3
    csv = tmp_path / "azure.csv"
    csv.write_text("\n\nTIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n")
    assert cachesim.detect_format(csv) == "azure"


def test_a_token_count_beyond_the_limit_is_refused_where_it_stands(tmp_path, capsys):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,37400000000,44\n")
    assert main(["replay", str(path), "--synthesize"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:2: ContextTokens" in err[0] and "beyond" in err[0]
    big = tmp_path / "big.jsonl"
    big.write_bytes(orjson.dumps({"timestamp": 0, "input_length": 512, "output_length": 2**63,
                                  "hash_ids": [1]}) + b"\n")
    with pytest.raises(TraceError, match="output_length") as exc:
        cachesim.read_trace(big)
    assert exc.value.line == 1
    assert _contract.MAX_TOKENS_PER_REQUEST == 10**7


@pytest.mark.parametrize("damage", ["gzip", "zstd"])
def test_a_damaged_compressed_file_is_a_located_error(tmp_path, capsys, damage):
    body = b"\n".join(_mooncake_lines(2000)) + b"\n"
    if damage == "gzip":
        packed = bytearray(gzip.compress(body))
    else:
        zstandard = pytest.importorskip("zstandard")
        packed = bytearray(zstandard.ZstdCompressor().compress(body))
    middle = len(packed) // 2
    packed[middle:middle + 64] = bytes(64)   # zeros where the compressed stream was
    path = tmp_path / f"damaged.jsonl.{damage[:2]}"
    path.write_bytes(bytes(packed))
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("cachesim: error:") and "Traceback" not in "\n".join(err)
    assert str(path) in err[-1]


def _small_trace():
    requests = cachesim.TokenRequests.from_lists([[1, 2, 3, 4] * 8, [1, 2, 3, 4] * 8 + [9] * 16, [5] * 40],
                                                 t=[0.0, 1.0, 2.0], tenant=[0, 1, 0], tenant_names=["a", "b"])
    return cachesim.compile_trace(requests, 4)


@pytest.mark.parametrize("impl", ["core", "reference"])
@pytest.mark.parametrize("damage, field, first_bad", [
    (lambda tr: {"block_offsets": np.array([0, 10**9, 12, tr.n_blocks], np.int64)}, "block_offsets", 0),
    (lambda tr: {"block_offsets": np.array([0, 8, 5, tr.n_blocks], np.int64)}, "block_offsets", 1),
    (lambda tr: {"tenant": np.array([0, -1, 0], np.int32)}, "tenant", 1),
    (lambda tr: {"tenant": np.array([0, 1, 2], np.int32)}, "tenant", 2),
    (lambda tr: {"t": np.array([0.0, np.inf, 3.0])}, "t", 1),
    (lambda tr: {"t": np.array([0.0, 2.0, 1.0])}, "t", 2),
    (lambda tr: {"prompt_tokens": np.array([32, -48, 40], np.int64)}, "prompt_tokens", 1),
    (lambda tr: {"block_tokens": np.full(tr.n_blocks, 2**32 - 1, np.uint32)}, "block_tokens", 0),
    (lambda tr: {"block_keys": np.concatenate([tr.block_keys[:8], tr.block_keys[8:20][[0, 0] + list(range(2, 12))],
                                               tr.block_keys[20:]])}, "block_keys", 1),
])
def test_a_damaged_trace_is_refused_before_the_engine_and_keeps_what_was_sound(impl, damage, field, first_bad):
    import dataclasses

    from cachesim import _impl

    if impl == "core" and _impl.default_impl() != "core":
        pytest.skip("the compiled core is not selected (CACHESIM_PUREPYTHON=1)")
    trace = _small_trace()
    broken = dataclasses.replace(trace, **damage(trace))
    sim = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=6), impl=impl)
    with pytest.raises(TraceError) as exc:
        sim.feed(broken)
    assert exc.value.field == field and exc.value.line == first_bad
    assert sim.requests_fed == first_bad       # the sound requests before the fault were served
    summary = sim.result().summary()
    assert 0 <= summary["hit_tokens"] <= summary["prompt_tokens"]
    with pytest.raises(TraceError):
        cachesim.stack_profile(broken)


# -- issue 16: the faults the fuzzer found in the readers -----------------------------------------------------

def _cli_error(capsys) -> str:
    """The CLI's one `cachesim: error:` line (after the note of what was replayed, when it stopped mid-stream)."""
    err = capsys.readouterr().err.strip().splitlines()
    notes = [line for line in err[:-1] if not line.startswith("cachesim: replay stopped after")]
    assert err and not notes and err[-1].startswith("cachesim: error: "), err
    return err[-1]


def _claude_event(uuid, parent, kind, *, sidechain=True, usage=None, text="hello"):
    message = {"role": kind, "content": [{"type": "text", "text": text}]}
    if kind == "assistant":
        message.update(id=f"msg-{uuid}", usage=usage or {"input_tokens": 10})
    return orjson.dumps({"type": kind, "uuid": uuid, "parentUuid": parent, "sessionId": "s", "isSidechain": sidechain,
                         "timestamp": f"2025-06-01T10:00:0{uuid[-1]}Z", "message": message})


def test_a_chain_whose_parent_is_not_in_the_file_starts_where_the_file_does(tmp_path):
    # a resumed session (or a cut file) names parents this file lacks: the chain ends there; each sidechain is a
    # session named after the missing event it hangs from (it raised KeyError)
    path = tmp_path / "cc.jsonl"
    path.write_bytes(b"\n".join([
        _claude_event("a1", "gone-1", "assistant", usage={"input_tokens": 7, "cache_read_input_tokens": 3}),
        _claude_event("u2", "gone-2", "user"),
        _claude_event("a3", "u2", "assistant"),
        _claude_event("a4", "gone-1", "assistant"),
        _claude_event("a5", "gone-3", "assistant", sidechain=False),
    ]) + b"\n")
    result = cachesim.readers.read_requests(path, sizes="tokenized")   # sized by the text: a3 bills only 10
    r = result.requests
    lengths = np.diff(r.token_offsets).tolist()
    # the sidechain's hidden prefix is 7 + 3 = 10 tokens (nothing rendered before a1); a3 adds u2's tokens
    assert lengths[0] == 10 and lengths[1] > 10 and lengths[2] == 10
    assert r.session[0] == r.session[2] != r.session[1]     # s/gone-1 twice, s/gone-2 once
    assert r.session[3] not in r.session[:3]                 # the main chain's session is "s"
    assert result.lines.tolist() == [1, 3, 4, 5]


def test_a_claude_code_message_id_that_is_not_a_string_is_located(tmp_path):
    # an object as message.id was used as a set member: TypeError (reader fuzzer, seed 11, case 601)
    event = orjson.loads(_claude_event("a1", None, "assistant"))
    event["message"]["id"] = {"nested": [1, {"x": None}]}
    path = tmp_path / "cc.jsonl"
    path.write_bytes(_claude_event("u0", None, "user") + b"\n" + orjson.dumps(event) + b"\n")
    with pytest.raises(TraceError, match="message.id: expected a string") as info:
        cachesim.readers.read_requests(path)
    assert info.value.line == 2


@pytest.mark.parametrize("message, field", [
    ({"role": "tool", "content": [[1]]}, "messages[1].content[0]"),
    ({"role": "user", "content": [[1]]}, "messages[1].content[0]"),
    ({"role": "user", "content": [{"type": ["text"], "text": "x"}]}, "messages[1].content[0].type"),
    ({"role": "user", "content": [{"type": {"a": 1}}]}, "messages[1].content[0].type"),
    ({"role": "user", "content": [{"type": "tool_result", "content": 5}]}, "messages[1].content[0].content"),
    ({"role": "assistant", "content": "x", "tool_calls": [{"function": [1]}]}, "messages[1].tool_calls[0]"),
    ({"role": "assistant", "content": "x", "tool_calls": [7]}, "messages[1].tool_calls[0]"),
    ({"role": "assistant", "content": "x", "tool_calls": {"a": 1}}, "messages[1].tool_calls"),
])
def test_a_malformed_message_is_located_at_its_field(tmp_path, capsys, message, field):
    path = tmp_path / "api.jsonl"
    good = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    bad = {"model": "m", "messages": [{"role": "user", "content": "hi"}, message]}
    path.write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps(bad) + b"\n")
    assert main(["replay", str(path)]) == 2
    assert f"{path}:2: {field}: expected" in _cli_error(capsys)


def test_a_tool_result_with_no_content_renders_as_an_empty_result(tmp_path):
    path = tmp_path / "api.jsonl"
    message = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": None}]}
    path.write_bytes(orjson.dumps({"model": "m", "messages": [message]}) + b"\n")
    assert cachesim.read_trace(path).meta["segments"].columns["tokens"].size == 1


def _azure(tmp_path, *rows, name="a.csv"):
    path = tmp_path / name
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{r}\n" for r in rows))
    return path


@pytest.mark.parametrize("stamp", ["2023-11-16T18:17:03Z", "2023-11-16 18:17:03+01:00", "NaT", "today", "now",
                                   "99999-11-16 00:00:00", "2023-02-30 00:00:00", "2023-11-16 24:00:00", "2023-11-16",
                                   "2023-11-16 18:17:03.1234567891"])
def test_a_bad_azure_timestamp_is_located_without_a_warning(tmp_path, capsys, stamp):
    path = _azure(tmp_path, "2023-11-16 18:17:03.9799600,4808,10", f"{stamp},3180,8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # numpy's time-zone UserWarning reached stderr
        with pytest.raises(TraceError) as exc:
            cachesim.readers.azure.read_arrivals(path)
    assert (exc.value.file, exc.value.line, exc.value.field) == (str(path), 3, "TIMESTAMP")
    assert main(["replay", str(path), "--synthesize"]) == 2
    assert f"{path}:3: TIMESTAMP: expected a timestamp" in _cli_error(capsys)


def test_azure_timestamps_keep_their_nanoseconds_far_from_1970(tmp_path):
    path = _azure(tmp_path, "2261-12-31 23:59:59.000000001,5,1", "2261-12-31 23:59:59.5,5,1",
                  "1700-01-01 00:00:00,5,1")
    with pytest.warns(UserWarning, match="1 requests arrived out of order"):
        arrivals = cachesim.readers.azure.read_arrivals(path)
    # 1700-01-01 to 2262-01-01 is 562 years, 136 of them leap: 562 * 365 + 136 = 205,266 days; less one second
    first = 205_266 * 86_400 - 1
    assert arrivals.lines.tolist() == [4, 2, 3]      # sorted stably by time
    assert arrivals.t.tolist() == [0.0, first + 1e-9, first + 0.5]
    assert str(arrivals.start) == "1700-01-01T00:00:00.000000"


def test_synthesize_sorts_out_of_order_rows_and_refuses_them_with_keep_order(tmp_path, capsys):
    path = _azure(tmp_path, "2023-11-16 18:17:05.0,4100,3", "2023-11-16 18:17:03.0,4200,4")
    with pytest.warns(UserWarning, match="1 requests arrived out of order; sorted stably by time"):
        arrivals = cachesim.readers.azure.read_arrivals(path)
    assert arrivals.t.tolist() == [0.0, 2.0] and arrivals.lines.tolist() == [3, 2]
    assert arrivals.input_tokens.tolist() == [4200, 4100]
    with pytest.raises(TraceError, match=r"a\.csv:3: TIMESTAMP: arrival time 0\.0 s is before the previous "
                                         r"request's 2\.0 s \(--keep-order"):
        cachesim.readers.azure.read_arrivals(path, keep_order=True)
    with warnings.catch_warnings(record=True) as caught:   # a warning now; the CLI may print it as a note
        warnings.simplefilter("always")
        assert main(["replay", str(path), "--synthesize", "--json", "-"]) == 0   # it said "pass sort=True"
    captured = capsys.readouterr()
    summary = orjson.loads(captured.out)["summary"]
    assert summary["requests"] == 2 and summary["prompt_tokens"] == 8300
    said = captured.err + "".join(str(w.message) for w in caught)
    assert "1 requests arrived out of order" in said and "sort=True" not in said


@pytest.mark.parametrize("tokens", [[1, 1], [100, 200], [40, 9000]])
def test_synthesize_takes_prompts_smaller_than_the_workload_is_built_of(tmp_path, capsys, tokens):
    # a median of a few tokens scaled the workload's timestamp line out of its system prompt (a ValueError)
    path = _azure(tmp_path, *(f"2023-11-16 18:17:0{i}.0,{n},3" for i, n in enumerate(tokens)))
    assert main(["replay", str(path), "--synthesize", "--json", "-"]) == 0
    assert orjson.loads(capsys.readouterr().out)["summary"]["prompt_tokens"] == sum(tokens)


def test_synthesize_refuses_a_workload_beyond_its_memory_bound(tmp_path, capsys):
    # two rows of 10^7 tokens scale the workload (median prompt about 15,000 tokens) 650-fold: gigabytes
    path = _azure(tmp_path, "2023-11-16 18:17:03.0,10000000,3", "2023-11-16 18:17:04.0,10000000,3")
    assert main(["replay", str(path), "--synthesize"]) == 2
    err = _cli_error(capsys)
    assert f"{path}: ContextTokens: synthesizing 2 prompts of median 10,000,000 tokens" in err
    assert "CACHESIM_MAX_SYNTHESIZED_TOKENS" in err


def test_azure_skip_invalid_counts_and_reports_the_rows_it_skips(tmp_path):
    path = _azure(tmp_path, "2023-11-16 18:17:03.0,100,3", "NaT,100,3", "2023-11-16 18:17:04.0,x,3",
                  "2023-11-16 18:17:05.0,100,3")
    with pytest.warns(UserWarning, match=r"skipped 2 invalid records \(first: .*a\.csv:3: TIMESTAMP.*a\.csv:4: "
                                         r"ContextTokens"):
        arrivals = cachesim.readers.azure.read_arrivals(path, skip_invalid=True)
    assert arrivals.lines.tolist() == [2, 5]
    bad = _azure(tmp_path, "NaT,100,3", name="bad.csv")
    with pytest.raises(TraceError, match=r"bad\.csv: no valid requests: all 1 rows were invalid"):
        cachesim.readers.azure.read_arrivals(bad, skip_invalid=True)


BEYOND = _contract.MAX_TOKENS_PER_REQUEST + 1


@pytest.mark.parametrize("fmt, record, field", [
    ("mooncake", {"timestamp": 9, "input_length": BEYOND, "output_length": 1,
                  "hash_ids": list(range(-(-BEYOND // 512)))}, "input_length"),
    ("mooncake", {"timestamp": 9, "input_length": 512, "output_length": BEYOND, "hash_ids": [7]}, "output_length"),
    ("native", {"t": 9, "tokens": [1, 2], "output_tokens": BEYOND}, "output_tokens"),
    ("qwen", {"chat_id": 9, "parent_chat_id": -1, "timestamp": 9, "input_length": 16, "output_length": BEYOND,
              "type": "text", "turn": 1, "hash_ids": [7]}, "output_length"),
])
def test_the_compiled_scanner_leaves_a_count_beyond_the_bound_to_be_refused_where_it_stands(tmp_path, fmt, record,
                                                                                            field):
    # every line is one the fast path accepts, so it alone decided, and let the count through
    first = {"mooncake": {"timestamp": 0, "input_length": 512, "output_length": 1, "hash_ids": [1]},
             "native": {"t": 0, "tokens": [1, 2], "output_tokens": 1},
             "qwen": {"chat_id": 1, "parent_chat_id": -1, "timestamp": 0, "input_length": 16, "output_length": 1,
                      "type": "text", "turn": 1, "hash_ids": [1]}}[fmt]
    path = tmp_path / "t.jsonl"
    path.write_bytes(orjson.dumps(first) + b"\n" + orjson.dumps(record) + b"\n")
    with pytest.raises(TraceError) as exc:
        cachesim.read_trace(path, format=fmt)
    assert (exc.value.line, exc.value.field) == (2, field) and "beyond" in exc.value.message


def test_a_long_first_line_in_a_compressed_transcript_is_sniffed(tmp_path):
    # Claude Code lines are often over 64 KiB; this one is the first line of a gzip file
    path = tmp_path / "cc.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n\n" + _claude_event("u1", None, "user", sidechain=False, text="x " * 50_000)
                                   + b"\n" + _claude_event("a2", "u1", "assistant", sidechain=False) + b"\n"))
    assert cachesim.detect_format(path) == "claude-code"
    assert cachesim.read_trace(path).n_requests == 1


def _gzip_cut(first: bytes, second: bytes) -> bytes:
    return gzip.compress(first) + gzip.compress(second)[:12]   # the second member's header, then nothing


def _zstd_cut(first: bytes, second: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(first) + zstandard.ZstdCompressor().compress(second)[:9]


@pytest.mark.parametrize("cut", [_gzip_cut, _zstd_cut], ids=["gzip", "zstd"])
def test_a_compressed_trace_that_ends_early_is_reported_at_the_first_missing_line(tmp_path, capsys, cut):
    # zstd's reader stopped silently at the cut (exit 0, requests missing); gzip's EOFError escaped `cost`
    lines = _mooncake_lines(40)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(cut(b"\n".join(lines[:30]) + b"\n", b"\n".join(lines[30:]) + b"\n"))
    with pytest.raises(TraceError) as exc:
        cachesim.read_trace(path)
    assert (exc.value.line, exc.value.message[:10]) == (31, "truncated:")
    assert main(["replay", str(path)]) == 2
    assert f"{path}:31: truncated: the compressed stream ends before its end marker" in capsys.readouterr().err
    with pytest.warns(UserWarning, match=r"skipped 1 invalid records \(first: .*cut\.jsonl\.gz:31: truncated"):
        trace = cachesim.read_trace(path, skip_invalid=True)
    assert trace.n_requests == 30


@pytest.mark.parametrize("cut", [_gzip_cut, _zstd_cut], ids=["gzip", "zstd"])
def test_a_provider_trace_that_ends_early_is_a_located_error(tmp_path, capsys, cut):
    line = orjson.dumps({"t": 0, "tokens": list(range(40))}) + b"\n"
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(cut(line * 3, line))
    assert main(["cost", str(path), "--provider", "anthropic"]) == 2
    assert f"{path}:4: truncated" in _cli_error(capsys)


def test_the_zstd_frame_walker_knows_every_cut_inside_a_frame():
    zstandard = pytest.importorskip("zstandard")

    frames = [zstandard.ZstdCompressor(write_checksum=True).compress(b"a\n" * 300),
              b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"skip!",        # a skippable frame of 5 bytes
              zstandard.ZstdCompressor(write_content_size=False).compress(bytes(range(256)) * 700),
              zstandard.ZstdCompressor(level=19).compress(b"")]
    data = b"".join(frames)
    ends = set(np.cumsum([len(f) for f in frames]).tolist())
    for cut in range(5, len(data) + 1):  # from the first frame's magic on (a shorter file is not zstd)
        handle = _decompressing(io.BytesIO(data[:cut]), "memory")
        try:
            handle.read()
            truncated = False
        except EOFError:
            truncated = True
        assert truncated == (cut not in ends), cut


def test_a_file_that_shrinks_while_it_is_read_is_reported(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = _mooncake_lines(10)
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = cachesim.readers.Source(path)                   # its size is taken now; then the file is cut
    path.write_bytes(b"\n".join(lines[:4]) + b"\n")
    options = cachesim.readers.ReadOptions()
    with pytest.raises(TraceError) as exc:
        list(cachesim.readers.iter_requests(path, options=options, source=source))
    assert exc.value.line == 5 and "the file shrank from" in exc.value.message


@pytest.mark.parametrize("ttl", [[], {"a": 1}, 5, "2h"])
def test_a_ttl_that_is_not_a_known_name_is_located(tmp_path, ttl):
    # "ttl": [] raised TypeError (a list is not hashable) in both formats that carry markers
    api = tmp_path / "api.jsonl"
    block = {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": ttl}}
    api.write_bytes(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": [block]}]}) + b"\n")
    with pytest.raises(TraceError, match=r"api\.jsonl:1: cache_control\.ttl: unknown ttl .*expected one of 5m, 1h"):
        cachesim.read_trace(api)
    native = tmp_path / "n.jsonl"
    native.write_bytes(orjson.dumps({"t": 0, "tokens": [1, 2, 3], "breakpoints": [2, {"tokens": 3, "ttl": ttl}]})
                       + b"\n")
    with pytest.raises(TraceError, match=r"n\.jsonl:1: breakpoints\[1\]\.ttl: unknown ttl .*expected one of 5m, 1h"):
        cachesim.read_trace(native)
