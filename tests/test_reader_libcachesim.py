"""libCacheSim's key-value traces (oracleGeneral, lcs v1-v8) read as one-block requests, and the oracleGeneral writer.

Files are built byte by byte with struct from the layouts in libCacheSim's headers (cited in
cachesim/readers/oracle.py and lcs.py), so an expected value never comes from the code under test. Where the
``libcachesim`` package is installed, its own reader and LRU are the second opinion; the cloudPhysicsIO golden miss
counts come from libCacheSim's test suite (via ../shared/traces/SOURCES.md).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import warnings

import numpy as np
import orjson
import pytest
import xxhash

import cachesim
from cachesim.cli import main
from cachesim.readers import TraceStream, detect_format, iter_requests, read_requests, read_trace
from cachesim.readers.oracle import RECORD, next_access_vtime, write_oracle_general
from cachesim.requests import BlockRequests, TraceError
from cachesim.trace import compile_trace
from conftest import SHARED_TRACES, require_shared

CLOUD_PHYSICS = SHARED_TRACES / "libcachesim" / "cloudPhysicsIO.txt"
# libCacheSim's test/test_simulator.c (test_simulator_no_size), as SOURCES.md records them: unit-size LRU misses at
# 128, 256, ..., 1024 objects over the 113,872 requests of cloudPhysicsIO
CLOUD_PHYSICS_LRU_MISSES = [99411, 96397, 95652, 95370, 95182, 94997, 94891, 94816]
CLOUD_PHYSICS_REQUESTS = 113_872
LCS_MAGIC = 0x123456789ABCDEF0


def og(*records: tuple[int, int, int, int]) -> bytes:
    """oracleGeneral records (clock_time, obj_id, obj_size, next_access_vtime), packed as libCacheSim reads them."""
    return b"".join(struct.pack("<IQIq", *r) for r in records)


def lcs_header(version: int, n_req: int, n_obj: int = 0) -> bytes:
    head = bytearray(8192)
    struct.pack_into("<QQqqq", head, 0, LCS_MAGIC, version, 1, n_req, n_obj)  # magic, version, stat version, counts
    struct.pack_into("<Q", head, 8184, LCS_MAGIC)
    return bytes(head)


def lcs_record(version: int, t: int, obj_id: int, size: int, op: int = 0, tenant: int = 0, ttl: int = 0,
               next_vtime: int = -1) -> bytes:
    if version == 1:
        return struct.pack("<IQIq", t, obj_id, size, next_vtime)
    if version == 2:
        return struct.pack("<IQIIq", t, obj_id, size, op | tenant << 8, next_vtime)
    n_features = {3: 0, 4: 1, 5: 2, 6: 4, 7: 8, 8: 16}[version]
    return (struct.pack("<IQqIIq", t, obj_id, size, op | tenant << 8, ttl, next_vtime)
            + struct.pack(f"<{n_features}I", *range(900, 900 + n_features)))


def key(obj_id: int) -> int:
    """The chained key of a one-block request, by SEMANTICS §2 and the xxhash package, not by cachesim."""
    return xxhash.xxh3_64_intdigest(struct.pack("<Q", obj_id), seed=0)


# a hand-made stream: record 2 has size 0 (libCacheSim leaves such records out), record 4 the largest id
HAND = og((10, 7, 100, 3), (10, 8, 0, -1), (12, 7, 100, -1), (15, 2**64 - 1, 4096, -1))


# -- reading oracleGeneral ------------------------------------------------------------------------------------

def test_hand_built_oracle_general_file(tmp_path):
    path = tmp_path / "w.oracleGeneral"
    path.write_bytes(HAND)
    with pytest.warns(UserWarning, match="1 record of obj_size 0 left out"):
        result = read_requests(path)
    r = result.requests
    assert isinstance(r, BlockRequests) and r.block_size == 1
    assert r.t.tolist() == [10.0, 12.0, 15.0]
    assert r.block_ids.tolist() == [7, 7, 2**64 - 1]
    assert r.block_offsets.tolist() == [0, 1, 2, 3] and r.prompt_tokens.tolist() == [1, 1, 1]
    assert result.lines.tolist() == [1, 3, 4] and result.unit == "request"   # record numbers, the skipped one unused
    assert result.extras["object_bytes"].tolist() == [100, 100, 4096]
    with pytest.warns(UserWarning):
        trace = read_trace(path)
    assert trace.block_keys.tolist() == [key(7), key(7), key(2**64 - 1)]
    assert trace.meta["object_bytes"].tolist() == [100, 100, 4096]


def test_block_size_gives_each_object_that_many_tokens(tmp_path):
    path = tmp_path / "w.oracleGeneral"
    path.write_bytes(og((0, 1, 5, -1), (1, 1, 5, -1)))
    trace = read_trace(path, block_size=16)
    assert trace.block_size == 16 and trace.prompt_tokens.tolist() == [16, 16]
    assert trace.block_tokens.tolist() == [16, 16]


@pytest.mark.parametrize("name", ["w.oracleGeneral", "w.oracleGeneral.bin", "w.oracleGeneral.zst",
                                  "cloudPhysicsIO.oraclegeneral.bin", "w.oracleGeneralBin", "w.lcs", "w.lcs.zst"])
def test_libcachesim_names_decide_the_format(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b'{"t": 0, "tokens": [1]}\n')   # the name wins over the content, as in libCacheSim's tools
    assert detect_format(path) == ("lcs" if ".lcs" in name else "oracle-general")


def test_any_name_reads_with_format_flag_and_lcs_sniffs_its_magic(tmp_path):
    plain = tmp_path / "trace.bin"
    plain.write_bytes(og((3, 9, 1, -1)))
    with pytest.raises(TraceError, match="unknown format"):
        detect_format(plain)
    assert read_trace(plain, format="oracle-general").block_keys.tolist() == [key(9)]
    lcs = tmp_path / "trace.data"
    lcs.write_bytes(lcs_header(1, 1) + lcs_record(1, 3, 9, 1))
    assert detect_format(lcs) == "lcs"
    assert read_trace(lcs).block_keys.tolist() == [key(9)]


def test_the_same_requests_from_four_files_compile_alike(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    ids, times = [5, 6, 5, 7, 6, 5], [0, 1, 1, 2, 4, 4]
    body = og(*[(t, i, 1, -1) for t, i in zip(times, ids, strict=True)])
    (tmp_path / "a.oracleGeneral").write_bytes(body)
    (tmp_path / "a.oracleGeneral.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    (tmp_path / "a.lcs").write_bytes(lcs_header(1, len(ids)) + body)  # lcs v1 records are oracleGeneral's
    (tmp_path / "a.jsonl").write_bytes(b"".join(
        orjson.dumps({"t": t, "block_ids": [i], "prompt_tokens": 1, "block_size": 1}) + b"\n"
        for t, i in zip(times, ids, strict=True)))
    traces = [read_trace(tmp_path / name) for name in ("a.oracleGeneral", "a.oracleGeneral.zst", "a.lcs", "a.jsonl")]
    for trace in traces:
        assert trace.block_keys.tolist() == [key(i) for i in ids]
        for name in ("t", "tenant", "prompt_tokens", "output_tokens", "block_offsets", "block_keys", "block_tokens"):
            np.testing.assert_array_equal(getattr(trace, name), getattr(traces[-1], name), err_msg=name)
        assert (trace.block_size, trace.block_source) == (1, "ids")


@pytest.mark.parametrize("name", ["s.oracleGeneral", "s.lcs"])
def test_streaming_in_tiny_batches_equals_a_whole_read(tmp_path, name):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 50, 1000).tolist()
    body = og(*[(k // 7, i, 1 + k % 3, -1) for k, i in enumerate(ids)])
    path = tmp_path / name
    path.write_bytes(lcs_header(1, len(ids)) + body if name.endswith(".lcs") else body)
    whole = read_trace(path)
    stream = TraceStream(path, batch_bytes=24 * 7)   # 7 records a batch
    parts = list(stream)
    assert len(parts) > 100
    assert np.concatenate([p.block_keys for p in parts]).tolist() == whole.block_keys.tolist() == [key(i) for i in ids]
    assert np.concatenate([p.t for p in parts]).tolist() == whole.t.tolist()
    assert np.concatenate([p.meta["lines"] for p in parts]).tolist() == list(range(1, 1001))
    assert parts[0].meta["line_unit"] == "request"
    assert stream.source.bytes_read == path.stat().st_size


# -- bad files ------------------------------------------------------------------------------------------------

def test_a_cut_record_is_located_after_the_records_before_it(tmp_path):
    path = tmp_path / "cut.oracleGeneral"
    path.write_bytes(og((0, 1, 1, -1), (1, 2, 1, -1), (2, 3, 1, -1)) + b"\x01" * 7)
    got = []
    with pytest.raises(TraceError) as info:
        for batch in iter_requests(path):
            got.extend(batch.requests.block_ids.tolist())
    assert got == [1, 2, 3]
    assert str(info.value) == (f"{path}: byte 72: truncated: record 4 has only 7 of its 24 bytes (the data is not a "
                               "whole number of 24-byte records; 3 records before it read)")
    with pytest.warns(UserWarning, match="skipped 1 invalid records"):
        assert read_requests(path, skip_invalid=True).requests.block_ids.tolist() == [1, 2, 3]


def test_a_cut_compressed_stream_is_located(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    packed = zstandard.ZstdCompressor().compress(og(*[(0, i, 1, -1) for i in range(5000)]))
    path = tmp_path / "cut.oracleGeneral.zst"
    path.write_bytes(packed[:len(packed) // 2])
    with pytest.raises(TraceError, match=r"cut\.oracleGeneral\.zst: request [\d,]+: truncated: the compressed stream "
                                         r"ends before its end marker, so record [\d,]+ and any after it are missing"):
        read_requests(path)


@pytest.mark.parametrize("name", ["empty.oracleGeneral", "empty.lcs"])
def test_an_empty_file_is_refused(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(TraceError, match="no requests: the file (holds no records|is empty)"):
        read_requests(path)


def test_only_zero_size_records_is_no_requests(tmp_path):
    path = tmp_path / "zero.oracleGeneral"
    path.write_bytes(og((0, 1, 0, -1), (1, 2, 0, -1)))
    with pytest.raises(TraceError, match="all 2 records have obj_size 0, which libCacheSim's reader leaves out"):
        read_requests(path)


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00" * 100, "byte 100: truncated header: the file has 100 bytes, an lcs header 8,192"),
    (b"\x11" * 8192, "byte 0: start_magic: not an lcs trace: its first 8 bytes are 0x1111111111111111"),
    (lcs_header(9, 1), "byte 8: version: lcs version 9 is not one this reader knows (v1 to v8)"),
    (lcs_header(0, 1), "byte 8: version: lcs version 0 is not one this reader knows"),
    (struct.pack("<Q", LCS_MAGIC) + b"<IQIQ" + b"\0" * 8179,
     "byte 8: version: this is the older lcs layout (a 1,024-byte header with the record format '<IQIQ' at byte 8)"),
    (lcs_header(1, 1)[:8184] + b"\0" * 8, "byte 8,184: end_magic: damaged header: 0x0000000000000000"),
    (lcs_header(1, -3), "byte 24: n_req: damaged header: a count of -3"),
])
def test_bad_lcs_headers_are_located(tmp_path, data, message):
    path = tmp_path / "bad.lcs"
    path.write_bytes(data)
    with pytest.raises(TraceError) as info:
        read_requests(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_lcs_header_count_against_the_records(tmp_path):
    short = tmp_path / "short.lcs"
    short.write_bytes(lcs_header(1, 3) + lcs_record(1, 0, 1, 1) + lcs_record(1, 0, 2, 1))
    got = []
    with pytest.raises(TraceError) as info:
        for batch in iter_requests(short):
            got.extend(batch.requests.block_ids.tolist())
    assert got == [1, 2]
    assert str(info.value) == (f"{short}: byte 8,240: n_req: truncated: the header says 3 requests, the file ends "
                               "after 2 records")
    more = tmp_path / "more.lcs"
    more.write_bytes(lcs_header(1, 1) + lcs_record(1, 0, 1, 1) + lcs_record(1, 0, 2, 1))
    with pytest.warns(UserWarning, match="the lcs header says 1 requests; the file holds 2 records, all read"):
        assert read_requests(more).requests.block_ids.tolist() == [1, 2]


def test_a_negative_lcs_size_is_an_invalid_record(tmp_path):
    path = tmp_path / "neg.lcs"
    path.write_bytes(lcs_header(3, 3) + lcs_record(3, 0, 1, 10) + lcs_record(3, 1, 2, -5) + lcs_record(3, 2, 3, 10))
    got = []
    with pytest.raises(TraceError) as info:
        for batch in iter_requests(path):
            got.extend(batch.requests.block_ids.tolist())
    assert got == [1]
    assert str(info.value) == f"{path}: request 2: obj_size: negative object size -5"
    with pytest.warns(UserWarning, match=r"skipped 1 invalid records \(first: .*request 2: obj_size"):
        result = read_requests(path, skip_invalid=True)
    assert result.requests.block_ids.tolist() == [1, 3] and result.lines.tolist() == [1, 3]


# -- lcs versions ---------------------------------------------------------------------------------------------

LCS_ROWS = [dict(t=10, obj_id=7, size=100, op=1, tenant=0x123456, ttl=60, next_vtime=3),
            dict(t=11, obj_id=8, size=200, op=5, tenant=2, ttl=0),
            dict(t=12, obj_id=7, size=100, op=1, tenant=0x123456, ttl=5)]


@pytest.mark.parametrize("version", range(1, 9))
def test_every_lcs_version_by_hand(tmp_path, version):
    path = tmp_path / f"v{version}.lcs"
    path.write_bytes(lcs_header(version, 3) + b"".join(lcs_record(version, **row) for row in LCS_ROWS))
    trace = read_trace(path)
    assert trace.t.tolist() == [10.0, 11.0, 12.0]
    assert trace.block_keys.tolist() == [key(7), key(8), key(7)]
    assert trace.meta["object_bytes"].tolist() == [100, 200, 100]
    tenants = [trace.tenant_names[c] for c in trace.tenant]
    assert tenants == (["default"] * 3 if version == 1 else [str(0x123456), "2", str(0x123456)])
    assert ("op" in trace.meta) == (version >= 2) and ("ttl_s" in trace.meta) == (version >= 3)
    if version >= 2:
        assert trace.meta["op"].tolist() == [1, 5, 1]
    if version >= 3:
        assert trace.meta["ttl_s"].tolist() == [60, 0, 5]


@pytest.mark.parametrize("version", range(1, 9))
def test_every_lcs_version_agrees_with_libcachesim(tmp_path, version):
    lcs = pytest.importorskip("libcachesim", reason="libCacheSim's own reader is the second opinion: "
                                                    "pip install 'libcachesim>=0.3.5'")
    path = tmp_path / f"v{version}.lcs"
    path.write_bytes(lcs_header(version, 3) + b"".join(lcs_record(version, **row) for row in LCS_ROWS))
    theirs = [(r.clock_time, r.obj_id, r.obj_size, int(r.op.value), r.ttl) for r in
              lcs.TraceReader(str(path), lcs.TraceType.LCS_TRACE, lcs.ReaderInitParam(ignore_size_zero_req=False))]
    trace = read_trace(path)
    op = trace.meta.get("op", np.zeros(3, dtype=np.int64))
    ttl = trace.meta.get("ttl_s", np.zeros(3, dtype=np.int64))
    ours = list(zip(trace.t.astype(int).tolist(), [r["obj_id"] for r in LCS_ROWS], trace.meta["object_bytes"].tolist(),
                    op.tolist(), ttl.tolist(), strict=True))
    assert trace.block_keys.tolist() == [key(r["obj_id"]) for r in LCS_ROWS]
    assert theirs == ours


# -- the CLI --------------------------------------------------------------------------------------------------

def test_replay_an_oracle_general_file_through_the_cli(tmp_path, capsys):
    # capacity 2, LRU: A B A C B A -> A, B miss; A hits; C evicts B; B evicts A; A evicts C: one hit
    path = tmp_path / "abacba.oracleGeneral"
    path.write_bytes(og(*[(k, ord(c), 1, -1) for k, c in enumerate("ABACBA")]))
    out = tmp_path / "r.json"
    assert main(["replay", str(path), "--capacity", "2", "--json", str(out)]) == 0
    summary = orjson.loads(out.read_bytes())["summary"]
    assert (summary["requests"], summary["hit_blocks"], summary["hit_tokens"]) == (6, 1, 1)
    assert main(["replay", str(path), "--capacity", "2", "--block-size", "4", "--json", str(out)]) == 0
    summary = orjson.loads(out.read_bytes())["summary"]
    assert (summary["hit_blocks"], summary["hit_tokens"], summary["prompt_tokens"]) == (1, 4, 24)
    assert "oracle-general" in capsys.readouterr().out


def test_a_truncated_file_through_the_cli_is_one_located_line(tmp_path):
    path = tmp_path / "cut.oracleGeneral"
    path.write_bytes(og((0, 1, 1, -1), (1, 2, 1, -1), (2, 1, 1, -1)) + b"\x00" * 5)
    proc = subprocess.run([sys.executable, "-m", "cachesim", "replay", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cachesim: error:")]
    assert errors == [f"cachesim: error: {path}: byte 72: truncated: record 4 has only 5 of its 24 bytes (the data "
                      "is not a whole number of 24-byte records; 3 records before it read)"]
    assert "replay stopped after 3 requests" in proc.stderr


# -- the writer -----------------------------------------------------------------------------------------------

def test_next_access_vtime_by_hand():
    # ids 5 7 5 9 7 5: record 1's id comes back at record 3, record 2's at 5, record 3's at 6; the rest never
    assert next_access_vtime(np.array([5, 7, 5, 9, 7, 5], dtype=np.uint64)).tolist() == [3, 5, 6, -1, -1, -1]
    assert next_access_vtime(np.array([4], dtype=np.uint64)).tolist() == [-1]
    assert next_access_vtime(np.zeros(0, dtype=np.uint64)).tolist() == []


def test_writer_records_by_hand(tmp_path):
    # a one-block trace and a two-block request: blocks in prompt order, each at its request's time (rounded down)
    requests = BlockRequests.from_lists([[5], [6, 5], [5]], [1, 2, 1], 1, t=[0.5, 2.9, 7.0])
    trace = compile_trace(requests)
    path = tmp_path / "w.oracleGeneral"
    assert write_oracle_general(path, trace, object_bytes=[10, 20, 30]) == 4
    data = path.read_bytes()
    assert len(data) == 4 * 24
    k5, k65 = key(5), xxhash.xxh3_64_intdigest(struct.pack("<Q", 5), seed=key(6))  # 5 under parent 6: another key
    assert [struct.unpack_from("<IQIq", data, 24 * i) for i in range(4)] == [
        (0, k5, 10, 4), (2, key(6), 20, -1), (2, k65, 20, -1), (7, k5, 30, -1)]
    assert write_oracle_general(path, trace, ids="dense") == 4
    assert [struct.unpack_from("<IQIq", path.read_bytes(), 24 * i) for i in range(4)] == [
        (0, 0, 1, 4), (2, 1, 1, -1), (2, 2, 1, -1), (7, 0, 1, -1)]


def test_writer_from_raw_requests_sorts_by_time_and_writes_zst(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    requests = BlockRequests.from_lists([[1], [2], [1]], [1, 1, 1], 1, t=[5.0, 1.0, 9.0])
    path = tmp_path / "w.oracleGeneral.zst"
    with pytest.warns(UserWarning, match="1 requests arrived out of order; sorted stably by time"):
        assert write_oracle_general(path, requests, ids="dense") == 3
    data = zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read()
    assert [struct.unpack_from("<IQIq", data, 24 * i) for i in range(3)] == [(1, 0, 1, -1), (5, 1, 1, 3),
                                                                             (9, 1, 1, -1)]
    assert read_trace(path).block_keys.tolist() == [key(0), key(1), key(1)]


@pytest.mark.parametrize(("kwargs", "t", "message"), [
    ({"object_bytes": 0}, [0.0], "oracleGeneral sizes are 1 to 2\\*\\*32-1 bytes"),
    ({"object_bytes": [1, 2]}, [0.0], "object_bytes has shape \\(2,\\)"),
    ({"ids": "hashes"}, [0.0], "ids must be 'keys' or 'dense'"),
    ({}, [2.0**32], "does not fit oracleGeneral's clock_time"),
])
def test_writer_refuses_what_the_format_cannot_hold(tmp_path, kwargs, t, message):
    trace = compile_trace(BlockRequests.from_lists([[1]], [1], 1, t=t))
    with pytest.raises((ValueError, TraceError), match=message):
        write_oracle_general(tmp_path / "w.oracleGeneral", trace, **kwargs)


# -- conformance with libCacheSim -----------------------------------------------------------------------------

def _libcachesim_lru_misses(lcs, path, capacity: int, n: int) -> int:
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE, lcs.ReaderInitParam())
    miss_ratio, _ = lcs.LRU(cache_size=capacity, hashpower=max(capacity.bit_length() + 1, 10)).process_trace(reader)
    return round(miss_ratio * n)


def _cachesim_misses(trace, capacity: int) -> int:
    summary = cachesim.replay(trace, capacity_blocks=capacity, keep_per_request=False).summary()
    return summary["requests"] - summary["hit_requests"]


ZIPF_CAPACITIES = (1, 10, 100, 1000, 4000)


@pytest.fixture(scope="module")
def zipf_trace():
    """30,000 one-block requests over 5,000 zipf-drawn ids, and cachesim's LRU misses at ZIPF_CAPACITIES: both ids
    variants of the test below write this one trace, so its replays are shared rather than run once per variant."""
    rng = np.random.default_rng(11)
    n = 30_000
    obj = (rng.zipf(1.2, n) % 5000).astype(np.uint64)
    trace = compile_trace(BlockRequests(t=np.arange(n) / 10.0, tenant=np.zeros(n, dtype=np.int32),
                                        tenant_names=["default"], session=np.full(n, -1), output_tokens=np.full(n, -1),
                                        block_ids=obj, block_offsets=np.arange(n + 1), prompt_tokens=np.ones(n),
                                        block_size=1))
    return trace, {capacity: _cachesim_misses(trace, capacity) for capacity in ZIPF_CAPACITIES}


@pytest.mark.parametrize("ids", ["keys", "dense"])
def test_libcachesim_lru_misses_where_cachesim_does(tmp_path, ids, zipf_trace):
    lcs = pytest.importorskip("libcachesim", reason="the conformance test runs libCacheSim itself: "
                                                    "pip install 'libcachesim>=0.3.5'")
    trace, cachesim_misses = zipf_trace
    n = trace.n_requests
    assert n == 30_000
    path = tmp_path / "zipf.oracleGeneral"
    write_oracle_general(path, trace, ids=ids)
    back = read_trace(path)
    for capacity in ZIPF_CAPACITIES:
        misses = cachesim_misses[capacity]
        assert 0 < misses < n
        assert _libcachesim_lru_misses(lcs, path, capacity, n) == misses, capacity
        assert _cachesim_misses(back, capacity) == misses


def test_next_access_vtime_is_what_libcachesims_converter_writes(tmp_path):
    lcs = pytest.importorskip("libcachesim", reason="libCacheSim's own converter is the reference: "
                                                    "pip install 'libcachesim>=0.3.5'")
    rng = np.random.default_rng(5)
    obj = rng.integers(0, 3000, 20_000).astype(np.uint64)
    ours = tmp_path / "ours.oracleGeneral"
    write_oracle_general(ours, compile_trace(BlockRequests.from_lists(obj[:, None].tolist(), np.ones(len(obj)), 1,
                                                                       t=np.arange(len(obj)) // 100)))
    theirs = tmp_path / "theirs.oracleGeneral"
    reader = lcs.TraceReader(str(ours), lcs.TraceType.ORACLE_GENERAL_TRACE, lcs.ReaderInitParam())
    lcs.Util.convert_to_oracleGeneral(reader._reader, str(theirs))
    a, b = np.fromfile(ours, dtype=RECORD), np.fromfile(theirs, dtype=RECORD)
    assert len(a) == len(b) == len(obj)
    for name in RECORD.names:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _cloud_physics():
    path = require_shared(CLOUD_PHYSICS)
    ids = np.loadtxt(path, dtype=np.uint64)
    assert len(ids) == CLOUD_PHYSICS_REQUESTS
    n = len(ids)
    return compile_trace(BlockRequests(t=np.zeros(n), tenant=np.zeros(n, dtype=np.int32), tenant_names=["default"],
                                       session=np.full(n, -1), output_tokens=np.full(n, -1), block_ids=ids,
                                       block_offsets=np.arange(n + 1), prompt_tokens=np.ones(n), block_size=1))


# the compiled core's speed: 10 replays of 113,872 requests (~22 s on the reference model). Under
# CACHESIM_PUREPYTHON=1 the reference model still meets a golden of this trace, through the CLI, below
@pytest.mark.core
def test_cloud_physics_golden_lru_misses(tmp_path):
    trace = _cloud_physics()
    assert [_cachesim_misses(trace, c) for c in range(128, 1025, 128)] == CLOUD_PHYSICS_LRU_MISSES
    path = tmp_path / "cloudPhysicsIO.oracleGeneral"
    write_oracle_general(path, trace)
    assert [_cachesim_misses(read_trace(path), c) for c in (128, 1024)] == [99411, 94816]
    lcs = pytest.importorskip("libcachesim", reason="libCacheSim's replay of the written file: "
                                                    "pip install 'libcachesim>=0.3.5'")
    assert [_libcachesim_lru_misses(lcs, path, c, len(trace)) for c in range(128, 1025, 128)] == \
        CLOUD_PHYSICS_LRU_MISSES


def test_cloud_physics_through_the_cli(tmp_path):
    path = tmp_path / "cloudPhysicsIO.oracleGeneral"
    write_oracle_general(path, _cloud_physics(), ids="dense")
    out = tmp_path / "r.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["replay", str(path), "--capacity", "256", "--json", str(out)]) == 0
    summary = orjson.loads(out.read_bytes())["summary"]
    assert (summary["requests"], summary["requests"] - summary["hit_blocks"]) == (CLOUD_PHYSICS_REQUESTS, 96397)
