"""Results as DataFrames and per-request Parquet: the same numbers as the arrays and the CSV they mirror."""

import csv

import numpy as np
import pytest

pd = pytest.importorskip("pandas", reason="DataFrames need pandas (the test extra has it)")
pytest.importorskip("pyarrow", reason="Parquet needs pyarrow (the test extra has it)")

from cachesim import replay  # noqa: E402
from cachesim.cli import main  # noqa: E402
from cachesim.readers import read_trace  # noqa: E402
from conftest import DATA  # noqa: E402


def test_per_request_frame_has_one_row_a_request():
    trace = read_trace(DATA / "mooncake.jsonl")
    result = replay(trace)
    frame = result.to_pandas()
    assert len(frame) == trace.n_requests and frame.index.name == "request"
    # hand-checked: request 1 re-sends request 0's two full 512-token blocks
    assert frame["hit_blocks"].tolist()[:2] == [0, 2]
    for name, values in result.per_request.items():
        assert np.array_equal(frame[name].to_numpy(), values), name


def test_tenant_frame_matches_per_tenant():
    trace = read_trace(DATA / "native_tokens.jsonl", block_size=2)
    result = replay(trace, capacity_blocks=3)
    frame = result.to_pandas("tenants")
    assert sorted(frame.index) == sorted(result.tenant_names)
    for tenant, totals in result.per_tenant().items():
        assert frame.loc[tenant, "hit_tokens"] == totals["hit_tokens"]
        assert frame.loc[tenant, "evictions_capacity"] == totals["evictions"]["capacity"]
    assert frame["requests"].sum() == result.summary()["requests"]


def test_unknown_table_and_missing_outputs_are_refused():
    trace = read_trace(DATA / "mooncake.jsonl")
    with pytest.raises(ValueError, match="per-request outputs were not kept"):
        replay(trace, keep_per_request=False).to_pandas()
    with pytest.raises(ValueError, match="unknown table 'tiers'"):
        replay(trace).to_pandas("tiers")


def test_per_request_parquet_equals_the_csv(tmp_path, capsys):
    trace = str(DATA / "native_tokens.jsonl")
    assert main(["replay", trace, "--per-request", str(tmp_path / "r.csv"), "--capacity", "3"]) == 0
    assert main(["replay", trace, "--per-request", str(tmp_path / "r.parquet"), "--capacity", "3"]) == 0
    frame = pd.read_parquet(tmp_path / "r.parquet")
    with open(tmp_path / "r.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(frame) > 0
    for name in ("request", "hit_tokens", "hit_blocks", "prompt_tokens"):
        assert [int(r[name]) for r in rows] == frame[name].tolist(), name
    assert frame["hit_tokens"].dtype.kind == "i"


def test_the_trace_s_columns_give_a_per_turn_breakdown(tmp_path):
    from cachesim.readers.lcp import write_lcp
    from cachesim.requests import BlockRequests

    requests = BlockRequests.from_lists([[5, 6], [5, 6, 7], [9], [9, 10]], [32, 48, 16, 32], 16,
                                        t=[0.0, 1.0, 2.0, 3.0], tenant=["text", "text", "image", "image"])
    path = write_lcp(tmp_path / "t.lcp", requests, chat_id=[1, 2, 3, 4], parent_chat_id=[-1, 1, -1, 3],
                     turn=[1, 2, 1, 2])
    trace = read_trace(path)
    frame = replay(trace).to_pandas("requests", trace=trace)
    # hand-computed: each second turn re-sends its first turn's blocks (2 blocks, then 1), 16 tokens a block
    assert frame.groupby("turn")["hit_tokens"].sum().to_dict() == {1: 0, 2: 48}
    assert frame["tenant_name"].tolist() == ["text", "text", "image", "image"]
    assert frame["parent_chat_id"].tolist() == [-1, 1, -1, 3]
    with pytest.raises(ValueError, match="give the trace that was replayed"):
        replay(trace).to_pandas("requests", trace=trace.slice(0, 2))
