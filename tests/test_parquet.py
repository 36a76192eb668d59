"""Parquet traces: the same requests as the file they came from, in both kinds, streamed, and refused when damaged."""

import os

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow", reason="Parquet traces need pyarrow (the test extra has it)")
pq = pytest.importorskip("pyarrow.parquet")

from cachesim import replay  # noqa: E402
from cachesim.cli import main  # noqa: E402
from cachesim.readers import TraceStream, detect_format, read_trace  # noqa: E402
from cachesim.readers.parquet import read_columns  # noqa: E402
from cachesim.requests import BlockRequests, TraceError  # noqa: E402
from cachesim.trace import Trace  # noqa: E402
from conftest import DATA, MOONCAKE_CONVERSATION, require_shared  # noqa: E402

COLUMNS = ("t", "tenant", "session", "prompt_tokens", "output_tokens", "block_offsets", "block_keys", "block_tokens")


def same_trace(a: Trace, b: Trace) -> None:
    for name in COLUMNS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.tenant_names, a.block_size, a.block_source) == (b.tenant_names, b.block_size, b.block_source)


@pytest.mark.parametrize(("name", "reading"), [
    ("mooncake.jsonl", {}), ("qwen.jsonl", {}), ("native_blocks16.jsonl", {}), ("mooncake_toolagent.jsonl", {}),
    ("lmbench512.jsonl", {"block_size": 512}), ("lmbench_gmi32.jsonl", {"block_size": 32, "lengths": "from-ids"}),
    ("dynamo_sessions.jsonl", {"block_size": 64}), ("kvcache_tester.jsonl", {}), ("servegen_offline.jsonl", {})])
def test_a_block_id_trace_reads_back_as_the_same_trace(name, reading, tmp_path):
    out = tmp_path / "t.parquet"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in reading.items()]
    assert main(["convert", str(DATA / name), str(out), *flags]) == 0
    assert detect_format(out) == "parquet"
    assert pq.ParquetFile(out).schema_arrow.field("block_ids").type == pa.large_list(pa.uint64())
    same_trace(read_trace(DATA / name, **reading), read_trace(out))
    assert not (tmp_path / "t.parquet.partial").exists()


def test_ids_are_stored_as_given_so_other_tools_read_them(tmp_path):
    out = tmp_path / "m.parquet"
    assert main(["convert", str(DATA / "mooncake.jsonl"), str(out)]) == 0
    first = read_columns(out, ["prompt_tokens", "block_ids"]).slice(0, 1).to_pylist()[0]
    line = __import__("orjson").loads((DATA / "mooncake.jsonl").read_bytes().splitlines()[0])
    assert first == {"prompt_tokens": line["input_length"], "block_ids": line["hash_ids"]}


def test_a_column_subset_reads_only_those_columns(tmp_path):
    out = tmp_path / "m.parquet"
    assert main(["convert", str(DATA / "mooncake.jsonl"), str(out)]) == 0
    table = read_columns(out, ["t"])
    assert table.column_names == ["t"]
    assert "block_ids" not in read_columns(out).column_names
    with pytest.raises(TraceError, match="no column 'turns'"):
        read_columns(out, ["turns"])


def test_a_compiled_token_trace_round_trips_with_its_meta(tmp_path):
    trace = read_trace(DATA / "native_tokens.jsonl", block_size=2)
    out = tmp_path / "k.parquet"
    trace.save(out)
    back = Trace.load(out)
    same_trace(trace, back)
    assert back.block_source == "tokens"
    for name in ("breakpoints", "segments"):
        assert np.array_equal(trace.meta[name].offsets, back.meta[name].offsets), name
        for col, values in trace.meta[name].columns.items():
            np.testing.assert_array_equal(values, back.meta[name].columns[col], err_msg=f"{name}.{col}")
    assert trace.meta["segment_kinds"] == back.meta["segment_kinds"]


def test_a_partial_tail_left_uncached_survives_the_keys_kind(tmp_path):
    # 5 tokens in blocks of 2: two full blocks, the fifth token uncacheable (no partial tail)
    trace = read_trace(DATA / "native_tokens.jsonl", block_size=2)
    assert int(np.diff(trace.block_offsets)[0]) == 2 and int(trace.prompt_tokens[0]) == 5
    trace.save(tmp_path / "k.parquet")
    back = Trace.load(tmp_path / "k.parquet")
    assert int(np.diff(back.block_offsets)[0]) == 2 and int(back.prompt_tokens[0]) == 5


def test_npz_to_parquet_and_back(tmp_path):
    npz, parquet, again = tmp_path / "a.npz", tmp_path / "b.parquet", tmp_path / "c.npz"
    assert main(["convert", str(DATA / "native_tokens.jsonl"), str(npz), "--block-size", "2"]) == 0
    assert main(["convert", str(npz), str(parquet)]) == 0
    assert main(["convert", str(parquet), str(again)]) == 0
    same_trace(Trace.load(npz), Trace.load(again))


def mooncake_shaped(path, n_requests=300, seed=3):
    """Sessions of growing prefixes in Mooncake's JSONL shape (ids shared by the requests of one session)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_requests):
        session = int(rng.integers(0, 20))
        n = int(rng.integers(1, 12))
        ids = [session * 1000 + k for k in range(n)]
        lines.append(f'{{"timestamp": {i * 10}, "input_length": {n * 512 - int(rng.integers(0, 500))}, '
                     f'"output_length": 5, "hash_ids": {ids}}}')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_streaming_in_small_batches_equals_a_whole_read(tmp_path):
    out = tmp_path / "m.parquet"
    assert main(["convert", str(mooncake_shaped(tmp_path / "mc.jsonl")), str(out)]) == 0
    whole = read_trace(out)
    parts = list(TraceStream(out, batch_bytes=4096))
    assert len(parts) > 1
    assert np.array_equal(np.concatenate([p.block_keys for p in parts]), whole.block_keys)
    assert replay(iter(parts), capacity_blocks=40).summary()["hit_blocks"] == \
        replay(whole, capacity_blocks=40).summary()["hit_blocks"]


def test_out_of_order_rows_are_sorted_on_reading_as_the_source_is(tmp_path):
    src = tmp_path / "mc.jsonl"
    src.write_text('{"timestamp": 5, "input_length": 600, "output_length": 1, "hash_ids": [0, 1]}\n'
                   '{"timestamp": 2, "input_length": 512, "output_length": 1, "hash_ids": [0]}\n')
    out = tmp_path / "mc.parquet"
    assert main(["convert", str(src), str(out)]) == 0
    assert read_columns(out, ["t"]).column("t").to_pylist() == [0.005, 0.002]   # written as given
    with pytest.warns(UserWarning, match="out of order"):
        back = read_trace(out)
    assert back.t.tolist() == [0.002, 0.005]
    with pytest.warns(UserWarning):
        same_trace(read_trace(src), back)


def test_a_foreign_parquet_file_reads_with_a_block_size(tmp_path):
    out = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"t": [0.0, 1.0], "prompt_tokens": [20, 40],
                             "block_ids": pa.array([[7, 8], [7, 8, 9]], type=pa.list_(pa.int64())),
                             "tenant": ["a", "b"]}), out)
    with pytest.raises(TraceError, match="does not say its block size; give it with --block-size"):
        read_trace(out)
    trace = read_trace(out, block_size=16)
    assert trace.tenant_names == ["a", "b"] and trace.n_blocks == 5
    # the second request's first two blocks are the first request's (blocks of 16: 20 tokens = 2 blocks)
    assert replay(trace).summary()["hit_blocks"] == 2


def damaged(tmp_path, table: dict, name="bad.parquet"):
    out = tmp_path / name
    pq.write_table(pa.table(table), out)
    return out


def test_a_missing_column_is_named(tmp_path):
    out = damaged(tmp_path, {"t": [0.0], "prompt_tokens": [3]})
    with pytest.raises(TraceError, match=r"bad.parquet: block_ids: column 'block_ids' is missing"):
        read_trace(out, block_size=16)


def test_a_null_is_located_by_row_and_column(tmp_path):
    out = damaged(tmp_path, {"t": [0.0, 1.0, 2.0], "prompt_tokens": [3, None, 3],
                             "block_ids": [[1], [1], [1]]})
    with pytest.raises(TraceError, match=r"bad.parquet: row 2: prompt_tokens: is null"):
        read_trace(out, block_size=16)


def test_a_wrong_type_is_named(tmp_path):
    out = damaged(tmp_path, {"t": ["soon"], "prompt_tokens": [3], "block_ids": [[1]]})
    with pytest.raises(TraceError, match=r"row 1: t: has type string; expected seconds"):
        read_trace(out, block_size=16)
    out = damaged(tmp_path, {"t": [0.0], "prompt_tokens": [3], "block_ids": [[-1]]}, "neg.parquet")
    with pytest.raises(TraceError, match=r"neg.parquet: row 1: block_ids: holds a negative block id"):
        read_trace(out, block_size=16)


def test_a_block_count_that_does_not_fit_the_prompt_is_located_by_row(tmp_path):
    out = damaged(tmp_path, {"t": [0.0, 1.0], "prompt_tokens": [16, 16], "block_ids": [[1], [1, 2]]})
    with pytest.raises(TraceError, match=r"bad.parquet: row 2: hash_ids: 2 block ids for 16 tokens"):
        read_trace(out, block_size=16)


def test_a_cut_file_is_refused_with_its_name(tmp_path):
    out = tmp_path / "m.parquet"
    assert main(["convert", str(DATA / "mooncake.jsonl"), str(out)]) == 0
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match=r"m.parquet: not a readable Parquet file"):
        read_trace(out)


def test_damaged_metadata_is_refused(tmp_path):
    out = tmp_path / "x.parquet"
    table = pa.table({"t": [0.0], "prompt_tokens": [3], "block_ids": [[1]]})
    pq.write_table(table.replace_schema_metadata({b"x": b"y"}), out)
    with pq.ParquetWriter(out, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({b"cachesim": b"{not json"})
    with pytest.raises(TraceError, match="cachesim metadata is not JSON"):
        read_trace(out)


def test_a_bad_line_mid_convert_leaves_no_output(tmp_path, capsys):
    src = tmp_path / "mc.jsonl"
    good = '{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [0, 1]}\n'
    src.write_text(good * 30 + '{"timestamp": 5, "input_length": 600, "output_length": 1, "hash_ids": [0]}\n')
    out = tmp_path / "mc.parquet"
    # batches of ~2 lines: many row groups are written before the bad line stops the conversion
    assert main(["convert", str(src), str(out), "--batch-bytes", "160"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{src}:31: hash_ids: 1 block ids for 600 tokens" in err[0]
    assert sorted(os.listdir(tmp_path)) == ["mc.jsonl"]


def test_the_cli_replays_parquet_and_refuses_other_output_names(tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert main(["convert", str(DATA / "mooncake.jsonl"), str(out)]) == 0
    capsys.readouterr()
    assert main(["replay", str(out), "--json", "-"]) == 0
    via_parquet = __import__("orjson").loads(capsys.readouterr().out)["summary"]
    assert main(["replay", str(DATA / "mooncake.jsonl"), "--json", "-"]) == 0
    direct = __import__("orjson").loads(capsys.readouterr().out)["summary"]
    assert via_parquet["hit_blocks"] == direct["hit_blocks"] and via_parquet["blocks"] == direct["blocks"]
    assert main(["convert", str(DATA / "mooncake.jsonl"), str(tmp_path / "m.csv")]) == 2
    assert "convert writes .npz, .parquet" in capsys.readouterr().err
    assert main(["convert", str(DATA / "mooncake.jsonl"), str(out), "--dense"]) == 2


def test_the_mooncake_trace_is_ten_times_smaller_than_its_jsonl(tmp_path):
    source = require_shared(MOONCAKE_CONVERSATION)
    out = tmp_path / "m.parquet"
    assert main(["convert", str(source), str(out)]) == 0
    assert os.path.getsize(source) / os.path.getsize(out) >= 10
    assert replay(read_trace(out), capacity_blocks=10_000).summary()["hit_blocks"] == 61_046


def test_block_requests_given_as_keys_compile_to_those_keys():
    keys = np.array([11, 12, 13], dtype=np.uint64)
    requests = BlockRequests(t=np.zeros(2), tenant=np.zeros(2, np.int32), tenant_names=["default"],
                             session=np.full(2, -1), output_tokens=np.full(2, -1), block_ids=keys,
                             block_offsets=np.array([0, 2, 3]), prompt_tokens=np.array([5, 3]), block_size=2,
                             keys_given=True, tail_tokens=np.array([2, 1], dtype=np.uint32), block_source="tokens")
    from cachesim.trace import compile_trace

    trace = compile_trace(requests)
    assert trace.block_keys.tolist() == [11, 12, 13] and trace.block_tokens.tolist() == [2, 2, 1]
    assert trace.block_source == "tokens"
