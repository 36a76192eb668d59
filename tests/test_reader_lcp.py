"""libCacheSim's lcsllm (lcp) binary traces: the header at libCacheSim's offsets, the same trace as the Qwen JSONL it
is converted from, streaming, located errors, the writer, and the command line.

Files here are built with ``struct`` from the C structs (lcsllmReader.h), not with the module under test, so the
offsets are checked against the format and not against themselves.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import warnings

import numpy as np
import orjson
import pytest

import cachesim
from cachesim import _contract
from cachesim.cli import main
from cachesim.readers import FORMATS, ReadOptions, TraceStream, detect_format, iter_requests, lcp, read_trace
from cachesim.requests import BlockRequests, TraceError
from conftest import DATA

MAGIC = 0x6C63736C6C6D0001


def header_bytes(*, n_requests, n_blocks, n_unique=0, max_blocks=0, start_us=0, end_us=0, block_size=16, kind=1,
                 has_next=0, types=("text",), n_types=None, version=1, start_magic=MAGIC, end_magic=MAGIC) -> bytes:
    """lcsllm_header_t: 8 x 8-byte fields, i32 block size, u8 kind, u8 has_next, u8 n_types, pad, char[8][16]
    names, reserved to 8184, end magic."""
    head = struct.pack("<QQqqqqqqiBBBx", start_magic, version, n_requests, n_blocks, n_unique, max_blocks, start_us,
                       end_us, block_size, kind, has_next, len(types) if n_types is None else n_types)
    names = b"".join(t.encode().ljust(16, b"\0") for t in types).ljust(128, b"\0")
    assert len(head) == 72
    return head + names + bytes(8184 - 200) + struct.pack("<Q", end_magic)


def request_bytes(chat, parent, t_us, ids, input_length, output_length=0, turn=0, type_id=0, n_blocks=None) -> bytes:
    """lcsllm_req_header_t (48 bytes) and its lcsllm_block_t entries (16 bytes: id, next access -1)."""
    head = struct.pack("<QqqIIIIB7x", chat, parent, t_us, len(ids) if n_blocks is None else n_blocks, input_length,
                       output_length, turn, type_id)
    assert len(head) == 48
    return head + b"".join(struct.pack("<Qq", i, -1) for i in ids)


# tests/data/qwen.jsonl, request by request; each header starts at the byte in the comment
#   8192: 48 + 3*16 = 96 bytes; 8288: 48 + 16 = 64; 8352: 48 + 5*16 = 128; 8480: 48 + 6*16 = 144; ends at 8624
FOUR = [dict(chat=100, parent=-1, t_us=500_000, ids=[7, 8, 9], input_length=40, output_length=12, turn=1, type_id=0),
        dict(chat=101, parent=-1, t_us=1_250_000, ids=[20], input_length=16, output_length=3, turn=1, type_id=1),
        dict(chat=102, parent=100, t_us=2_000_000, ids=[7, 8, 9, 10, 11], input_length=70, output_length=30, turn=2,
             type_id=0),
        dict(chat=103, parent=102, t_us=3_750_000, ids=[7, 8, 9, 10, 11, 12], input_length=81, output_length=1,
             turn=3, type_id=0)]
TYPES = ("text", "image")


def four_bytes(changes: dict | None = None, **header) -> bytes:
    """FOUR as a file, with ``changes`` {request index: {field: value}} and header fields overridden."""
    requests = [dict(r, **(changes or {}).get(i, {})) for i, r in enumerate(FOUR)]
    fields = dict(n_requests=4, n_blocks=15, n_unique=7, max_blocks=6, start_us=500_000, end_us=3_750_000,
                  types=TYPES)
    fields.update(header)
    return header_bytes(**fields) + b"".join(request_bytes(**r) for r in requests)


def write(tmp_path, data: bytes, name: str = "t.lcp"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def four_requests() -> BlockRequests:
    return BlockRequests.from_lists([r["ids"] for r in FOUR], [r["input_length"] for r in FOUR], 16,
                                    t=[r["t_us"] / 1e6 for r in FOUR], tenant=[TYPES[r["type_id"]] for r in FOUR],
                                    output_tokens=[r["output_length"] for r in FOUR])


FOUR_COLUMNS = dict(chat_id=[r["chat"] for r in FOUR], parent_chat_id=[r["parent"] for r in FOUR],
                    turn=[r["turn"] for r in FOUR])


# -- the header and the format's registration ---------------------------------------------------------------

def test_header_fields_are_read_at_libcachesim_offsets(tmp_path):
    data = header_bytes(n_requests=11, n_blocks=22, n_unique=33, max_blocks=44, start_us=55, end_us=66,
                        block_size=512, has_next=1, types=("chat", "agent", "x" * 15)) + request_bytes(1, -1, 0, [5], 9)
    h = lcp.read_header(write(tmp_path, data))
    assert (h.version, h.n_requests, h.n_blocks, h.n_unique_blocks, h.max_blocks_per_request) == (1, 11, 22, 33, 44)
    assert (h.start_time_us, h.end_time_us, h.block_size_tokens, h.block_id_kind) == (55, 66, 512, 1)
    assert h.has_next_access is True and h.type_names == ["chat", "agent", "x" * 15]
    assert (lcp.HEADER.itemsize, lcp.REQUEST.itemsize) == (8192, 48)


def test_lcp_is_sniffed_first_and_only_by_its_magic(tmp_path):
    names = list(FORMATS)  # binary magics are sniffed before any text format can claim the bytes
    assert names.index("lcp") < min(names.index(text) for text in ("native", "qwen", "mooncake"))
    assert detect_format(write(tmp_path, four_bytes())) == "lcp"
    assert detect_format(write(tmp_path, gzip.compress(four_bytes()), "t.lcp.gz")) == "lcp"
    assert not lcp.sniff({"chat_id": 1}, (DATA / "qwen.jsonl").read_bytes())
    assert detect_format(DATA / "qwen.jsonl") == "qwen"


# -- what a file means ----------------------------------------------------------------------------------------

def test_four_requests_read_as_hand_computed(tmp_path):
    trace = read_trace(write(tmp_path, four_bytes()))
    assert trace.block_offsets.tolist() == [0, 3, 4, 9, 15]
    assert trace.t.tolist() == [0.5, 1.25, 2.0, 3.75]
    assert trace.prompt_tokens.tolist() == [40, 16, 70, 81]
    assert trace.output_tokens.tolist() == [12, 3, 30, 1]
    # the tenant is the type name; the session the root chat: 102's parent 100 is a root, 103's parent is 102
    assert trace.tenant_names == ["text", "image"] and trace.tenant.tolist() == [0, 1, 0, 0]
    assert trace.session.tolist() == [0, 1, 0, 0]
    # the last block is partial: 40 = 16 + 16 + 8, 70 = 4 * 16 + 6, 81 = 5 * 16 + 1
    assert trace.block_tokens.tolist() == [16, 16, 8, 16, 16, 16, 16, 16, 6, 16, 16, 16, 16, 16, 1]
    assert trace.meta["chat_id"].tolist() == [100, 101, 102, 103]
    assert trace.meta["parent_chat_id"].tolist() == [-1, -1, 100, 102]
    assert trace.meta["turn"].tolist() == [1, 1, 2, 3]
    assert "request_type" not in trace.meta   # the tenant is the type
    result = iter_requests(write(tmp_path, four_bytes()))
    first = next(result)
    assert first.unit == "request" and first.lines.tolist() == [1, 2, 3, 4]


def test_hits_of_a_tiny_file_are_hand_computed(tmp_path):
    # capacity 3, LRU. [1,2] inserts both; [1,2,3] hits 2 and inserts 3; [1,4] hits 1 and 4 evicts the least recent
    # leaf, 3; [1,2,3] hits 1 and 2 (3 is gone) and inserts 3 again, evicting 4
    ids, prompts = [[1, 2], [1, 2, 3], [1, 4], [1, 2, 3]], [32, 48, 32, 48]
    data = header_bytes(n_requests=4, n_blocks=10) + b"".join(
        request_bytes(i, -1, i * 1_000_000, r, p) for i, (r, p) in enumerate(zip(ids, prompts, strict=True)))
    result = cachesim.replay(read_trace(write(tmp_path, data)), capacity_blocks=3)
    assert result.per_request["hit_blocks"].tolist() == [0, 2, 1, 2]
    assert result.per_request["hit_tokens"].tolist() == [0, 32, 16, 32]
    # without eviction, FOUR: 102 reuses 100's three blocks, 103 the five of 102
    result = cachesim.replay(read_trace(write(tmp_path, four_bytes())), capacity_blocks=100)
    assert result.per_request["hit_blocks"].tolist() == [0, 0, 3, 5]


def test_lengths_traceconvllm_leaves_zero_are_taken_as_unrecorded(tmp_path):
    # traceConvLLM writes input_length = output_length = 0: the prompt is then its whole blocks, the output unknown
    # (and every parent_chat_id is -1: each request is a conversation of its own, chat 5 twice)
    data = header_bytes(n_requests=3, n_blocks=5) + request_bytes(5, -1, 0, [1, 2, 3], 0) + \
        request_bytes(1, -1, 1, [9], 0, output_length=7) + request_bytes(5, -1, 2, [4], 0)
    trace = read_trace(write(tmp_path, data))
    assert trace.prompt_tokens.tolist() == [48, 16, 16] and trace.output_tokens.tolist() == [-1, 7, -1]
    assert trace.session.tolist() == [0, 1, 0]


@pytest.mark.parametrize(("field", "names", "codes", "types"), [
    ("chat_id", ["100", "101", "102", "103"], [0, 1, 2, 3], [0, 1, 0, 0]),
    ("turn", ["1", "2", "3"], [0, 0, 1, 2], [0, 1, 0, 0]),
    ("parent_chat_id", ["-1", "100", "102"], [0, 0, 1, 2], [0, 1, 0, 0]),
])
def test_tenant_field_names_another_header_field(tmp_path, field, names, codes, types):
    trace = read_trace(write(tmp_path, four_bytes()), tenant_field=field)
    assert trace.tenant_names == names and trace.tenant.tolist() == codes
    assert trace.meta["request_type"].tolist() == types   # the type is kept when it is not the tenant


def test_extras_follow_their_requests_when_times_are_sorted(tmp_path):
    path = write(tmp_path, four_bytes({1: {"t_us": 100_000}}, start_us=500_000))
    with pytest.warns(UserWarning, match="1 requests arrived out of order"):
        trace = read_trace(path)
    assert trace.t.tolist() == [0.1, 0.5, 2.0, 3.75]
    assert trace.meta["chat_id"].tolist() == [101, 100, 102, 103]
    assert trace.meta["turn"].tolist() == [1, 1, 2, 3]


# -- the same trace in three files -----------------------------------------------------------------------------

def _qwen_lines(rows: list[dict]) -> bytes:
    return b"".join(orjson.dumps({"chat_id": r["chat"], "parent_chat_id": r["parent"], "timestamp": r["t_us"] / 1e6,
                                  "input_length": r["input_length"], "output_length": r["output_length"],
                                  "type": r["type"], "turn": r["turn"], "hash_ids": r["ids"]}) + b"\n"
                    for r in rows)


def _conversations(n: int, seed: int) -> list[dict]:
    """Chats that extend earlier ones (their ids a prefix plus new ones), three types, times slightly shuffled."""
    rng = np.random.default_rng(seed)
    rows, next_id = [], 1000
    for i in range(n):
        parent = rows[int(rng.integers(len(rows)))] if rows and rng.random() < 0.6 else None
        ids = list(parent["ids"]) if parent else []
        new = int(rng.integers(1, 6))
        ids += list(range(next_id, next_id + new))
        next_id += new
        prompt = 16 * (len(ids) - 1) + int(rng.integers(1, 17))
        rows.append(dict(chat=5000 + i, parent=parent["chat"] if parent else -1,
                         t_us=i * 250_000 + int(rng.integers(0, 400_000)), ids=ids, input_length=prompt,
                         output_length=int(rng.integers(0, 200)), turn=parent["turn"] + 1 if parent else 1,
                         type=["text", "image", "file"][int(rng.integers(3))]))
    return rows


def _as_lcp(rows: list[dict], path, compress: bool):
    types = sorted({r["type"] for r in rows})
    requests = BlockRequests.from_lists([r["ids"] for r in rows], [r["input_length"] for r in rows], 16,
                                        t=[r["t_us"] / 1e6 for r in rows],
                                        output_tokens=[r["output_length"] for r in rows])
    lcp.write_lcp(path, requests, chat_id=[r["chat"] for r in rows], parent_chat_id=[r["parent"] for r in rows],
                  turn=[r["turn"] for r in rows], type_names=types, type_id=[types.index(r["type"]) for r in rows],
                  compress=compress)
    return path


def _qwen_fixture_rows() -> list[dict]:
    rows = []
    for line in (DATA / "qwen.jsonl").read_bytes().splitlines():
        o = orjson.loads(line)
        rows.append(dict(chat=o["chat_id"], parent=o["parent_chat_id"], t_us=round(o["timestamp"] * 1e6),
                         ids=o["hash_ids"], input_length=o["input_length"], output_length=o["output_length"],
                         turn=o["turn"], type=o["type"]))
    return rows


@pytest.mark.parametrize("tenant_field", [None, "chat_id", "turn"])
@pytest.mark.parametrize("rows", ["fixture", "generated"])
def test_lcp_zst_and_qwen_jsonl_of_the_same_requests_compile_to_the_same_trace(tmp_path, rows, tenant_field):
    rows = _qwen_fixture_rows() if rows == "fixture" else _conversations(300, seed=4)
    qwen = write(tmp_path, _qwen_lines(rows), "t.jsonl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the generated times are out of order: both sort them alike
        want = read_trace(qwen, tenant_field=tenant_field)
        for path in (_as_lcp(rows, tmp_path / "t.lcp", False), _as_lcp(rows, tmp_path / "t.lcp.zst", True)):
            got = read_trace(path, tenant_field=tenant_field)
            for name in ("block_keys", "block_offsets", "block_tokens", "t", "tenant", "session", "prompt_tokens",
                         "output_tokens"):
                assert np.array_equal(getattr(got, name), getattr(want, name)), (path.name, name)
            assert got.tenant_names == want.tenant_names
    if rows == "fixture":
        assert (tmp_path / "t.lcp").read_bytes() == four_bytes()   # the writer writes what the format says


def test_streaming_in_small_batches_equals_a_whole_read(tmp_path):
    rows = _conversations(200, seed=9)
    path = _as_lcp(sorted(rows, key=lambda r: r["t_us"]), tmp_path / "t.lcp", False)
    whole = read_trace(path)
    for batch_bytes in (1, 1000, 10_000):
        batches = list(TraceStream(path, batch_bytes=batch_bytes))
        assert len(batches) > 1 and sum(b.n_requests for b in batches) == 200
        assert np.array_equal(np.concatenate([b.block_keys for b in batches]), whole.block_keys)
        assert np.array_equal(np.concatenate([b.session for b in batches]), whole.session)
        assert np.array_equal(np.concatenate([b.tenant for b in batches]), whole.tenant)
        assert batches[-1].tenant_names == whole.tenant_names
    # a batch holds what fits in batch_bytes: FOUR's first three requests are 96 + 64 + 128 = 288 <= 300 bytes
    four = write(tmp_path, four_bytes())
    assert [b.n_requests for b in TraceStream(four, batch_bytes=300)] == [3, 1]
    assert [b.n_requests for b in TraceStream(four, batch_bytes=1)] == [1, 1, 1, 1]


# -- located errors --------------------------------------------------------------------------------------------

def _short_header():
    return four_bytes()[:100]


@pytest.mark.parametrize(("data", "where"), [
    (four_bytes(start_magic=0), r"byte 0: start_magic: expected 0x6c63736c6c6d0001, got 0x0000000000000000"),
    (four_bytes(end_magic=MAGIC + 1), r"byte 8,184: end_magic: expected 0x6c63736c6c6d0001, got 0x6c63736c6c6d0002"),
    (four_bytes(version=2), r"byte 8: version: version 2 is not one this reader knows \(1\)"),
    (four_bytes(kind=0), r"byte 68: block_id_kind: expected 1 \(positional ids"),
    (four_bytes(block_size=0), r"byte 64: block_size_tokens: expected a positive block size, got 0"),
    (four_bytes(n_types=9), r"byte 70: n_types: 9 types; the header has room for 8"),
    (four_bytes().replace(b"image\0", b"im\xffge\0", 1), r"byte 88: type_names: type name 1 is not UTF-8"),
    (four_bytes(n_requests=-1), r"byte 16: n_requests: -1 is negative: the file was not finished by its writer"),
    (_short_header(), r"byte 100: header: the file ends at byte 100, inside the 8,192-byte header"),
])
def test_bad_header_is_located(tmp_path, data, where):
    with pytest.raises(TraceError, match=r"t\.lcp: " + where):
        read_trace(write(tmp_path, data), format="lcp")


@pytest.mark.parametrize(("change", "where"), [
    ({"input_length": 40}, r"request 2: n_blocks: 1 blocks for 40 tokens \(input_length\); blocks of 16 tokens need "
                           r"ceil\(40/16\) = 3 \(the request at byte 8,288\)"),
    ({"type_id": 2}, r"request 2: type_id: 2 is not below n_types = 2"),
    ({"t_us": -1_250_000}, r"request 2: timestamp_us: expected a non-negative time, got -1,250,000 us"),
    ({"ids": [], "input_length": 0}, r"request 2: n_blocks: empty request: no blocks"),
    ({"input_length": 10**7 + 1}, r"request 2: input_length: 10,000,001 tokens is beyond the 10,000,000"),
    ({"output_length": 10**7 + 1}, r"request 2: output_length: 10,000,001 tokens is beyond the 10,000,000"),
])
def test_bad_request_is_located_and_skip_invalid_skips_it(tmp_path, change, where):
    n_blocks = 15 - 1 + len(change.get("ids", [20]))
    path = write(tmp_path, four_bytes({1: change}, n_blocks=n_blocks))
    with pytest.raises(TraceError, match=r"t\.lcp: " + where):
        read_trace(path)
    with pytest.warns(UserWarning, match=r"skipped 1 invalid records \(first: .*t\.lcp: " + where):
        trace = read_trace(path, skip_invalid=True)
    assert trace.meta["chat_id"].tolist() == [100, 102, 103]
    options = ReadOptions(skip_invalid=True)
    assert np.concatenate([r.lines for r in iter_requests(path, options=options)]).tolist() == [1, 3, 4]
    # what came before the bad request is served before the error stops a stream
    got = []
    with pytest.raises(TraceError, match=where):
        got.extend(TraceStream(path))
    assert sum(b.n_requests for b in got) == 1


@pytest.mark.parametrize(("cut", "where"), [
    (8480 + 20, r"byte 8,480: request_header: truncated: request 4's 48-byte header is cut after 20 bytes: it and any "
                r"requests after it are missing"),
    (8480 + 48 + 32, r"byte 8,480: n_blocks: truncated: request 4 has 2 of its 6 blocks"),
])
def test_truncated_file_keeps_what_was_read(tmp_path, cut, where):
    path = write(tmp_path, four_bytes()[:cut])
    got = []
    with pytest.raises(TraceError, match=r"t\.lcp: " + where):
        got.extend(TraceStream(path))
    assert sum(b.n_requests for b in got) == 3
    assert np.concatenate([b.block_offsets[1:] - b.block_offsets[:-1] for b in got]).tolist() == [3, 1, 5]
    with pytest.warns(UserWarning, match="skipped 1 invalid records"):
        assert read_trace(path, skip_invalid=True).n_requests == 3


def test_truncated_zstd_file_keeps_the_requests_decompressed(tmp_path):
    rows = sorted(_conversations(3000, seed=2), key=lambda r: r["t_us"])
    path = _as_lcp(rows, tmp_path / "t.lcp.zst", True)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    got = []
    with pytest.raises(TraceError, match=r"t\.lcp\.zst: byte [\d,]+: [a-z_]+: truncated: .*the compressed stream "
                                         r"ends before its end marker"):
        got.extend(TraceStream(path))
    n = sum(b.n_requests for b in got)
    assert 0 < n < 3000
    want = read_trace(_as_lcp(rows[:n], tmp_path / "prefix.lcp", False))
    assert np.array_equal(np.concatenate([b.block_keys for b in got]), want.block_keys)


@pytest.mark.parametrize(("header", "where"), [
    ({"n_requests": 5}, r"byte 16: n_requests: the header says 5 requests, the file holds 4"),
    ({"n_blocks": 16}, r"byte 24: n_blocks: the header says 16 blocks, the file holds 15"),
])
def test_header_counts_that_disagree_with_the_body_are_found_after_it_was_served(tmp_path, header, where):
    path = write(tmp_path, four_bytes(**header))
    got = []
    with pytest.raises(TraceError, match=r"t\.lcp: " + where):
        got.extend(TraceStream(path))
    assert sum(b.n_requests for b in got) == 4


@pytest.mark.parametrize("batch_bytes", [1, 1 << 20])   # the request needs a bigger buffer, or is in it
def test_a_block_count_beyond_the_bound_stops_even_skip_invalid(tmp_path, monkeypatch, batch_bytes):
    # at most 64 tokens a request: 4 blocks of 16. Request 3 (8,352) has 5
    monkeypatch.setattr(_contract, "MAX_TOKENS_PER_REQUEST", 64)
    path = write(tmp_path, four_bytes())
    for skip in (False, True):
        got = []
        with pytest.raises(TraceError, match=r"t\.lcp: byte 8,352: n_blocks: request 3 has 5 blocks of 16 tokens, "
                                             r"beyond the 64 tokens a request may have"):
            got.extend(TraceStream(path, batch_bytes=batch_bytes, skip_invalid=skip))
        assert sum(b.n_requests for b in got) == 2


def test_a_huge_block_count_is_refused_before_anything_is_sized_by_it(tmp_path):
    # 2**32 - 1 blocks would be 64 GiB: the 8 KiB file says which request and where, without trying
    path = write(tmp_path, four_bytes({1: {"n_blocks": 2**32 - 1}}))
    with pytest.raises(TraceError, match=r"t\.lcp: byte 8,288: n_blocks: request 2 has 4,294,967,295 blocks"):
        read_trace(path)


def test_options_the_file_contradicts(tmp_path):
    path = write(tmp_path, four_bytes())
    with pytest.raises(TraceError, match=r"t\.lcp: byte 64: block_size: this lcp file's blocks are 16 tokens; a block "
                                         r"size of 32 needs token ids"):
        read_trace(path, block_size=32)
    with pytest.raises(TraceError, match=r"t\.lcp: tenant_field: an lcp file's tenant is one of type, chat_id, "
                                         r"parent_chat_id, turn, not 'user'"):
        read_trace(path, tenant_field="user")


# -- the writer -------------------------------------------------------------------------------------------------

def test_writer_streams_batches_and_patches_the_counts(tmp_path):
    requests, whole = four_requests(), tmp_path / "whole.lcp"
    lcp.write_lcp(whole, requests, type_names=TYPES, **FOUR_COLUMNS)
    assert whole.read_bytes() == four_bytes()
    for compress, name in ((False, "parts.lcp"), (True, "parts.lcp.zst")):
        with lcp.LcpWriter(tmp_path / name, block_size=16, compress=compress) as writer:
            for part in (slice(0, 1), slice(1, 4)):
                sub = BlockRequests.from_lists([r["ids"] for r in FOUR[part]], [r["input_length"] for r in FOUR[part]],
                                               16, t=[r["t_us"] / 1e6 for r in FOUR[part]],
                                               tenant=[TYPES[r["type_id"]] for r in FOUR[part]],
                                               output_tokens=[r["output_length"] for r in FOUR[part]])
                writer.write(sub, **{k: v[part] for k, v in FOUR_COLUMNS.items()})
        data = (tmp_path / name).read_bytes()
        if compress:
            import zstandard

            # the header is a frame of its own, stored: magic, descriptor, 2-byte size (8192 - 256), raw block
            assert data[:10] == bytes.fromhex("28b52ffd") + bytes([0x60]) + (8192 - 256).to_bytes(2, "little") + \
                ((8192 << 3) | 1).to_bytes(3, "little")
            data = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
        # type names taken from the tenants as they come: "text" (first batch), then "image"
        assert data == four_bytes()


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd command")
def test_the_zstd_command_reads_the_written_file(tmp_path):
    lcp.write_lcp(tmp_path / "t.lcp.zst", four_requests(), type_names=TYPES, compress=True, **FOUR_COLUMNS)
    out = subprocess.run(["zstd", "-dc", str(tmp_path / "t.lcp.zst")], capture_output=True, check=True).stdout
    assert out == four_bytes()


@pytest.mark.parametrize("compress", [False, True])
def test_a_writer_stopped_by_an_error_leaves_a_file_refused_as_unfinished(tmp_path, compress):
    path = tmp_path / "t.lcp"
    with pytest.raises(RuntimeError), lcp.LcpWriter(path, block_size=16, compress=compress) as writer:
        writer.write(four_requests())
        raise RuntimeError("stopped")
    with pytest.raises(TraceError, match=r"byte 16: n_requests: -1 is negative: the file was not finished"):
        read_trace(path)


def test_writer_refuses_what_the_format_cannot_hold(tmp_path):
    requests = four_requests()
    with pytest.raises(ValueError, match="request type 'image' is not among type_names"):
        lcp.write_lcp(tmp_path / "a.lcp", requests, type_names=["text"])
    with pytest.raises(ValueError, match="is 16 bytes; the header holds names of at most 15"):
        lcp.LcpWriter(tmp_path / "b.lcp", block_size=16, type_names=["x" * 16])
    nine = BlockRequests.from_lists([[i] for i in range(9)], [16] * 9, 16, tenant=[f"t{i}" for i in range(9)])
    with pytest.raises(ValueError, match="more than 8 request types"):
        lcp.write_lcp(tmp_path / "c.lcp", nine)
    with pytest.raises(ValueError, match=r"n_blocks of request 0: 3 block ids for 16 tokens"):
        lcp.write_lcp(tmp_path / "d.lcp", BlockRequests.from_lists([[1, 2, 3]], [16], 16))
    with pytest.raises(ValueError, match=r"chat_id: values must be in 0\.\."):
        lcp.write_lcp(tmp_path / "e.lcp", requests, chat_id=[-1, 0, 1, 2])
    with lcp.LcpWriter(tmp_path / "f.lcp", block_size=16, count_unique=False) as writer:
        writer.write(requests)
    assert lcp.read_header(tmp_path / "f.lcp").n_unique_blocks == -1


# -- the command line -------------------------------------------------------------------------------------------

def test_cli_replays_an_lcp_file(tmp_path, capsys):
    path = write(tmp_path, four_bytes())
    assert main(["replay", str(path), "--capacity", "100", "--json", "-"]) == 0
    summary = orjson.loads(capsys.readouterr().out)["summary"]
    assert (summary["hit_blocks"], summary["blocks"], summary["requests"]) == (8, 15, 4)


def test_cli_bad_lcp_file_is_one_located_line_and_exit_2(tmp_path, capsys):
    path = write(tmp_path, four_bytes(end_magic=0))
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cachesim: error: {path}: byte 8,184: end_magic: expected")
    assert "Traceback" not in "".join(err)


def test_cli_truncated_lcp_file_reports_the_requests_before_the_cut(tmp_path, capsys):
    path = write(tmp_path, four_bytes()[:8480 + 20])
    assert main(["replay", str(path), "--capacity", "100", "--json", "-"]) == 2
    captured = capsys.readouterr()
    assert orjson.loads(captured.out)["partial"]["requests_replayed"] == 3
    err = captured.err.strip().splitlines()
    assert err[-1].startswith(f"cachesim: error: {path}: byte 8,480: request_header: truncated: request 4's")
    assert "Traceback" not in captured.err
