"""The compiled Mooncake scanner never decides differently from the careful orjson path."""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachesim.readers import mooncake, native, read_trace
from cachesim.requests import TraceError
from conftest import DATA

COLUMNS = ("t", "prompt_tokens", "output_tokens", "block_offsets", "block_keys", "block_tokens")

pytestmark = pytest.mark.core   # the compiled scanner (_scan) against the orjson path


def _outcome(path, careful: bool, format: str = "mooncake", **options):
    """The trace's columns and labels, or the error message: what a reader decided about the file."""
    scanner = mooncake._scan
    if careful:  # both fast paths check for the scanner module
        mooncake._scan = native._scan = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trace = read_trace(path, format=format, **options)
        out = {name: getattr(trace, name).tolist() for name in COLUMNS}
        out.update(tenant=[trace.tenant_names[c] for c in trace.tenant], session=trace.session.tolist())
        return out
    except TraceError as exc:
        return str(exc)
    finally:
        mooncake._scan = native._scan = scanner


extra_values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False,
                         allow_infinity=False), st.text(max_size=8), st.lists(st.integers(0, 99), max_size=3),
                         st.dictionaries(st.text(max_size=3), st.integers(-2**63, 2**63 - 1), max_size=2))


@st.composite
def records(draw):
    n_blocks = draw(st.integers(1, 6))
    prompt = draw(st.integers((n_blocks - 1) * 512 + 1, n_blocks * 512))
    record = {"timestamp": draw(st.one_of(st.integers(0, 10**9), st.floats(0, 1e9))),
              "input_length": prompt, "hash_ids": draw(st.lists(st.integers(0, 2**64 - 1), min_size=n_blocks,
                                                               max_size=n_blocks))}
    if draw(st.booleans()):
        record["output_length"] = draw(st.integers(0, 5000))
    if draw(st.booleans()):
        record[draw(st.sampled_from(["note", "x", "turn"]))] = draw(extra_values)
    keys = draw(st.permutations(list(record)))
    sep = draw(st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : ")]))
    body = sep[0].join(f"{orjson.dumps(k).decode()}{sep[1]}{_dump(record[k], sep[0])}" for k in keys)
    return "{" + body + "}"


def _dump(value, comma: str) -> str:
    return orjson.dumps(value).decode().replace(",", comma) if isinstance(value, list) else orjson.dumps(value).decode()


@given(st.lists(records(), min_size=1, max_size=8), st.sampled_from(["\n", "\r\n", "\n\n"]))
def test_valid_files_read_the_same_both_ways(tmp_path_factory, lines, newline):
    path = tmp_path_factory.mktemp("scan") / "t.jsonl"
    path.write_text(newline.join(lines) + "\n")
    fast, careful = _outcome(path, careful=False), _outcome(path, careful=True)
    assert fast == careful
    assert isinstance(fast, dict)


DAMAGE = [b"", b"-", b"1", b".", b"e", b"\\", b"\"", b"]", b"{", b",", b" ", b"x", b"\n", b"0", b"\xc3"]


def _damaged(tmp_path_factory, lines, data):
    """The lines as a file with one to three bytes replaced, dropped or inserted."""
    text = bytearray("\n".join(lines).encode() + b"\n")
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text) - 1))
        text[i:i + 1] = data.draw(st.sampled_from(DAMAGE))
    path = tmp_path_factory.mktemp("scan") / "t.jsonl"
    path.write_bytes(bytes(text))
    return path


@given(st.lists(records(), min_size=1, max_size=4), st.data())
def test_damaged_files_are_judged_the_same_both_ways(tmp_path_factory, lines, data):
    path = _damaged(tmp_path_factory, lines, data)
    assert _outcome(path, careful=False) == _outcome(path, careful=True)


def test_ids_at_the_edge_of_64_bits(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp": 1, "input_length": 1000, "hash_ids": [18446744073709551615, 0]}\n')
    assert _outcome(path, careful=False) == _outcome(path, careful=True)
    path.write_text('{"timestamp": 1, "input_length": 1000, "hash_ids": [18446744073709551616, 0]}\n')
    assert "hash_ids: element 0 is float 1.8446744073709552e+19, expected an integer in 0..18446744073709551615" \
        in _outcome(path, careful=False)


def test_a_line_longer_than_a_chunk(tmp_path):
    from cachesim.readers import TraceStream

    ids = list(range(200))
    path = tmp_path / "t.jsonl"
    path.write_text(orjson.dumps({"timestamp": 0, "input_length": 200 * 512, "hash_ids": ids}).decode() + "\n" +
                    orjson.dumps({"timestamp": 5, "input_length": 3, "hash_ids": [0]}).decode() + "\n")
    batches = list(TraceStream(path, batch_bytes=64))
    # the buffer grows to hold the long line (and then the next one with it)
    assert sum(b.n_requests for b in batches) == 2
    assert np.concatenate([np.diff(b.block_offsets) for b in batches]).tolist() == [200, 1]


def test_numbers_json_refuses_are_refused_by_both(tmp_path):
    path = tmp_path / "t.jsonl"
    for bad in ["01", "1e999", "1.", ".5", "-", "1e"]:
        path.write_text(f'{{"timestamp": 1, "input_length": 1000, "hash_ids": [0, 1], "x": {bad}}}\n')
        fast = _outcome(path, careful=False)
        assert fast == _outcome(path, careful=True) and "malformed JSON" in fast, bad


def test_scanner_kind_codes_match_the_reader():
    from cachesim import _scan

    assert mooncake._KINDS == (_scan.NUMBER, _scan.UINT, _scan.UINT_OPT)


labels = st.one_of(st.text(max_size=6), st.integers(-10**6, 10**6), st.none())


@st.composite
def native_records(draw):
    tokens = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8))
    record = {"t": draw(st.one_of(st.integers(0, 10**6), st.floats(0, 1e6))), "tokens": tokens}
    for name in ("tenant", "session"):
        if draw(st.booleans()):
            record[name] = draw(labels)
    name = draw(st.sampled_from([None, "output_tokens", "output_length", "output_ids", "both"]))
    if name == "both":
        record["output_tokens"], record["output_length"] = draw(st.integers(0, 99)), draw(st.integers(0, 99))
    elif name == "output_ids":
        record[name] = draw(st.lists(st.integers(0, 99), max_size=3))
    elif name:
        record[name] = draw(st.integers(0, 5000))
    if draw(st.integers(0, 4)) == 0:
        record["breakpoints"] = [len(tokens)]
    keys = draw(st.permutations(list(record)))
    return "{" + ", ".join(f"{orjson.dumps(k).decode()}: {orjson.dumps(record[k]).decode()}" for k in keys) + "}"


@given(st.lists(native_records(), min_size=1, max_size=8))
def test_native_token_files_read_the_same_both_ways(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("scan") / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    fast, careful = (_outcome(path, careful=c, format="native", block_size=2) for c in (False, True))
    assert fast == careful


@given(st.lists(native_records(), min_size=1, max_size=4), st.data())
def test_damaged_native_files_are_judged_the_same_both_ways(tmp_path_factory, lines, data):
    path = _damaged(tmp_path_factory, lines, data)
    assert _outcome(path, False, "native", block_size=2) == _outcome(path, True, "native", block_size=2)


def test_native_fast_path_takes_plain_token_lines():
    plain = b'{"t": 0.5, "tenant": "a", "session": 3, "tokens": [1, 2], "output_length": 4}\n'
    scalars, ids, offsets, lines, failed, labels = native._scan.scan_lines(
        plain, native._KEYS, native._KINDS, b"tokens", 1, native._LABELS, True)
    assert failed == -1 and ids.tolist() == [1, 2] and labels[0].tolist() == [[1, 22, 23], [2, 37, 38]]
    assert plain[22:23] == b"a" and plain[37:38] == b"3"


@st.composite
def block_records(draw, fmt: str):
    """Qwen (16-token blocks) or LMBench (block size 16 given) lines, sometimes with odd values."""
    n_blocks = draw(st.integers(1, 5))
    record = {"input_length": draw(st.integers((n_blocks - 1) * 16 + 1, n_blocks * 16)),
              "output_length": draw(st.integers(0, 99)),
              "hash_ids": draw(st.lists(st.integers(0, 2**64 - 1), min_size=n_blocks, max_size=n_blocks))}
    if fmt == "qwen":
        record.update(chat_id=draw(st.integers(0, 30)), parent_chat_id=draw(st.integers(-1, 30)),
                      timestamp=draw(st.one_of(st.integers(0, 10**6), st.floats(0, 1e6))),
                      type=draw(st.one_of(st.sampled_from(["text", "image", "é"]), st.integers(0, 3))),
                      turn=draw(st.integers(1, 5)))
    else:
        record["timestamp"] = draw(st.one_of(st.integers(0, 10**18).map(str), st.sampled_from(["12a", "", 5])))
    keys = draw(st.permutations(list(record)))
    return "{" + ", ".join(f"{orjson.dumps(k).decode()}: {orjson.dumps(record[k]).decode()}" for k in keys) + "}"


@pytest.mark.parametrize("fmt", ["qwen", "lmbench"])
@given(data=st.data())
def test_block_formats_read_the_same_both_ways(tmp_path_factory, fmt, data):
    lines = data.draw(st.lists(block_records(fmt), min_size=1, max_size=6))
    options = {"block_size": 16} if fmt == "lmbench" else {}
    path = tmp_path_factory.mktemp("scan") / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert _outcome(path, False, fmt, **options) == _outcome(path, True, fmt, **options)
    damaged = _damaged(tmp_path_factory, lines, data)
    assert _outcome(damaged, False, fmt, **options) == _outcome(damaged, True, fmt, **options)


def test_block_formats_take_the_fast_path():
    from cachesim.readers import lmbench, qwen

    for module, name, options in ((qwen, "qwen.jsonl", {}), (lmbench, "lmbench512.jsonl", {"block_size": 512})):
        calls = []
        scan = mooncake.scan_chunk
        mooncake.scan_chunk = lambda *a, _scan=scan, _calls=calls, **k: _calls.append(_scan(*a, **k)) or _calls[-1]
        try:
            read_trace(DATA / name, **options)
        finally:
            mooncake.scan_chunk = scan
        assert calls and all(c is not None for c in calls), module.NAME
