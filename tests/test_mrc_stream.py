"""The streamed curve (CurveStream, StackStream: batch by batch) against the whole-trace pass and plain replays.

Expected values come from cachesim.replay at each capacity and TTL (a linked-list LRU cache, not stack distances)
or from the whole-trace profile, itself checked against replays in tests/test_mrc.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cachesim
from cachesim.cli import main
from cachesim.mrc import (
    FINE_CAPACITIES,
    CurveStream,
    StackStream,
    default_capacities,
    hit_ratio_curve,
    hit_ratio_table,
    stack_profile,
)
from cachesim.requests import TokenRequests, TraceError
from conftest import MOONCAKE_CONVERSATION, require_shared
from strategies import token_request_streams
from test_mrc import MOONCAKE_CAPACITIES


def replay_counts(trace, capacity, ttl_s=None, **options):
    s = cachesim.replay(trace, capacity_blocks=capacity, ttl_s=ttl_s, keep_per_request=False, **options).summary()
    return s["hit_blocks"], s["hit_tokens"], s["blocks"], s["prompt_tokens"]


def cut(trace, cuts):
    """The trace as consecutive batches ending at the request indices ``cuts`` (and at its end)."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < trace.n_requests}), trace.n_requests]
    return [trace.slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


@given(requests=token_request_streams(), block_size=st.integers(1, 3), data=st.data())
def test_streamed_table_equals_the_whole_pass_and_replays(requests, block_size, data):
    """Batches of a few requests give the whole-trace table, and a replay's counts, at every capacity and TTL."""
    trace = cachesim.compile_trace(requests, block_size)
    options = {"hit_cap": data.draw(st.sampled_from([None, "prompt-1"])),
               "isolation": data.draw(st.sampled_from([None, "tenant"])),
               "warmup": data.draw(st.sampled_from([None, 1, 3, "0.5s", "2s", "7s"]))}
    ttls = data.draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 10.0]), max_size=2, unique=True)) + [None]
    top = max(trace.n_blocks, 1)
    capacities = sorted(set(data.draw(st.lists(st.integers(1, top + 1), min_size=1, max_size=5)))) + [None]
    batches = cut(trace, data.draw(st.lists(st.integers(1, max(trace.n_requests - 1, 1)), max_size=8)))

    streamed = CurveStream(capacities, ttls, **options).run(iter(batches)).table()
    whole = hit_ratio_table(trace, capacities, ttls, **options)
    assert streamed.hit_blocks.tolist() == whole.hit_blocks.tolist()
    assert streamed.hit_tokens.tolist() == whole.hit_tokens.tolist()
    for i, c in enumerate(capacities):
        for k, ttl in enumerate(ttls):
            hit_blocks, hit_tokens, blocks, prompt_tokens = replay_counts(trace, c, ttl, **options)
            assert (streamed.hit_blocks[i, k], streamed.hit_tokens[i, k]) == (hit_blocks, hit_tokens), (c, ttl)
            assert (streamed.blocks, streamed.prompt_tokens) == (blocks, prompt_tokens)


@given(requests=token_request_streams(), data=st.data())
def test_streamed_depths_are_the_whole_pass_depths(requests, data):
    """The stack carries over between batches: per-block depths and stamp times equal one whole-trace pass."""
    trace = cachesim.compile_trace(requests, 1)
    rate = data.draw(st.sampled_from([1.0, 0.5]))
    whole = stack_profile(trace, sample_rate=rate, always_tokens=2)
    stream = StackStream(sample_rate=rate, always_tokens=2)
    parts = [stream.feed(b) for b in cut(trace, data.draw(st.lists(st.integers(1, 30), max_size=10)))]
    np.testing.assert_array_equal(np.concatenate([p.depth for p in parts]), whole.depth)
    np.testing.assert_array_equal(np.concatenate([p.stamp_t for p in parts]), whole.stamp_t)
    assert stream.distinct_keys == whole.distinct_keys


def _agent_trace(users=4):
    from cachesim.workloads import agent_workload

    return cachesim.compile_trace(agent_workload(n_users=users, seed=3).requests, 16)


def test_streaming_through_many_renumberings_keeps_the_depths():
    # ~190k blocks, ~8k distinct: the stamp bitmaps and the time table are renumbered hundreds of times, and the
    # hash table grows, between one-to-five-request batches
    trace = _agent_trace()
    whole = stack_profile(trace)
    rng = np.random.default_rng(0)
    stream = StackStream()
    parts = [stream.feed(b) for b in cut(trace, np.cumsum(rng.integers(1, 6, size=trace.n_requests)))]
    np.testing.assert_array_equal(np.concatenate([p.depth for p in parts]), whole.depth)
    np.testing.assert_array_equal(np.concatenate([p.stamp_t for p in parts]), whole.stamp_t)


@pytest.mark.core
def test_streamed_agent_curve_equals_replays():
    trace = _agent_trace(users=2)
    capacities, ttls = [1, 64, 500, 2_000, 5_000, None], [None, 30.0, 300.0]
    table = CurveStream(capacities, ttls, hit_cap="prompt-1").run(trace.batches(5_000)).table()
    for i, c in enumerate(capacities):
        for k, ttl in enumerate(ttls):
            hit_blocks, hit_tokens, _, _ = replay_counts(trace, c, ttl, hit_cap="prompt-1")
            assert (table.hit_blocks[i, k], table.hit_tokens[i, k]) == (hit_blocks, hit_tokens), (c, ttl)


def test_state_grows_with_distinct_keys_not_with_requests():
    # the same 300 requests sent again and again: the distinct keys stay, the requests pile up
    rng = np.random.default_rng(1)
    base = cachesim.compile_trace(TokenRequests.from_lists([rng.integers(0, 4, size=rng.integers(1, 9)).tolist()
                                                            for _ in range(300)], t=np.arange(300.0)), 1)
    span = float(base.t[-1]) + 1.0

    def state_after(rounds):
        stream = StackStream()
        for k in range(rounds):
            stream.feed(dataclasses.replace(base, t=base.t + k * span))
        return stream.state_bytes, stream.distinct_keys, stream.requests

    small, large = state_after(4), state_after(100)
    assert large[1] == small[1] and large[2] == 25 * small[2]
    # a time (8 bytes) kept per request would add 230 kB to the ~70 kB of the stack
    assert large[0] <= 1.25 * small[0]


def test_default_grid_matches_the_whole_trace_default():
    """Without capacities the stream bins the fine grid and reports what default_capacities gives in memory."""
    trace = _agent_trace(users=2)
    stream = CurveStream(ttls_s=[None, 60.0]).run(trace.batches(7_000))
    whole = stack_profile(trace)
    capacities = default_capacities(whole)
    assert capacities == default_capacities(stream)
    assert capacities[-2] == int(whole.distinct_keys) and capacities[-1] is None
    assert set(capacities[:-2]) <= set(FINE_CAPACITIES)
    assert 20 <= len(capacities) <= 25
    streamed, expected = stream.table(), whole.table(capacities, [None, 60.0])
    assert streamed.capacities_blocks.tolist() == expected.capacities_blocks.tolist()
    assert streamed.hit_blocks.tolist() == expected.hit_blocks.tolist()
    assert streamed.hit_tokens.tolist() == expected.hit_tokens.tolist()


def test_a_capacity_or_ttl_not_binned_is_refused():
    trace = _agent_trace(users=1)
    stream = CurveStream([10, 100, None], [None, 60.0]).run(trace.batches(5_000))
    with pytest.raises(ValueError, match="capacity 50 was not in the grid"):
        stream.table([50])
    with pytest.raises(ValueError, match="TTL 30.0 was not among"):
        stream.table([10], [30.0])
    # at or above the deepest depth a capacity reads the unbounded counts, as a replay would give
    deep = int(np.ceil(stream.deepest))
    assert stream.table([deep, None]).hit_blocks[:, 0].tolist() == [stream.table([None]).hit_blocks[0, 0]] * 2
    assert stream.table([deep]).hit_blocks[0, 0] == replay_counts(trace, deep)[0]


def test_sampled_stream_equals_the_sampled_whole_pass():
    # counts are whole numbers per weight class, so batching does not move a sampled estimate by a rounding error
    trace = _agent_trace(users=2)
    capacities = [100, 1_000, 3_000, None]
    options = {"sample_rate": 0.1, "always_tokens": 256}
    streamed = hit_ratio_table(trace.batches(3_000), capacities, [None, 300.0], **options)
    whole = hit_ratio_table(trace, capacities, [None, 300.0], **options)
    assert streamed.hit_tokens.tolist() == whole.hit_tokens.tolist()
    assert streamed.hit_blocks.tolist() == whole.hit_blocks.tolist()


def test_batches_with_their_own_tenant_numbering_stay_isolated_by_name():
    # readers number tenants per batch: "b" is code 0 in the second batch; isolation salts keys by name
    shared = [[1, 2, 3, 4], [1, 2, 3, 4, 5]]
    first = cachesim.compile_trace(TokenRequests.from_lists(shared, t=[0.0, 1.0], tenant=np.array([0, 1], np.int32),
                                                            tenant_names=["a", "b"]), 1)
    second = cachesim.compile_trace(TokenRequests.from_lists(shared, t=[2.0, 3.0],
                                                             tenant=np.array([1, 0], np.int32),
                                                             tenant_names=["b", "a"]), 1)
    curve = hit_ratio_curve(iter([first, second]), [None], isolation="tenant")
    # a misses at t=0, b at t=1 (its own namespace); a's repeat at t=2 hits 4, b's at t=3 hits 5
    assert curve.hit_blocks.tolist() == [9]
    sim = cachesim.Simulator(cachesim.CacheConfig(isolation="tenant"))
    assert sim.run(iter([first, second])).summary()["hit_blocks"] == 9
    assert hit_ratio_curve(iter([first, second]), [None]).hit_blocks.tolist() == [4 + 4 + 5]


def test_every_batch_is_validated_and_times_may_not_go_back():
    trace = _agent_trace(users=1)
    first, second = trace.slice(0, 10), trace.slice(10, 20)
    stream = StackStream()
    stream.feed(second)
    with pytest.raises(TraceError, match="before the previous batch's last"):
        stream.feed(first)
    broken = dataclasses.replace(first, block_offsets=np.array([0, 10**9, *first.block_offsets[2:]], np.int64))
    with pytest.raises(TraceError) as exc:
        StackStream().feed(broken)
    assert exc.value.field == "block_offsets"
    with pytest.raises(TypeError, match="compiled Trace batches"):
        StackStream().feed([1, 2, 3])
    for not_batches in ("trace.jsonl", TokenRequests.from_lists([[1]], t=[0.0])):
        with pytest.raises(TypeError, match="an iterable of Trace batches"):
            hit_ratio_curve(not_batches, [1])
    with pytest.raises(TraceError, match="blocks"):
        s = StackStream()
        s.feed(first)
        s.feed(cachesim.compile_trace(TokenRequests.from_lists([[1, 2]], t=[1e9]), 1))


# -- the command streams ------------------------------------------------------------------------------------

def _write_mooncake_jsonl(path, n=400, seed=0):
    """A Mooncake-format file: conversations that grow by a few blocks a turn behind one shared first block."""
    rng = np.random.default_rng(seed)
    history, next_id, lines = {}, 1, []
    for r in range(n):
        conv = int(rng.integers(0, 12))
        ids = history.get(conv, [0]) + list(range(next_id, next_id + int(rng.integers(1, 4))))
        next_id = ids[-1] + 1
        history[conv] = ids if len(ids) < 20 else [0]
        lines.append(orjson.dumps({"timestamp": 250 * r, "input_length": 512 * len(ids) - int(rng.integers(0, 300)),
                                   "output_length": 1, "hash_ids": ids}))
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_cli_streams_the_file_and_prints_what_the_whole_trace_gives(tmp_path, capsys, monkeypatch):
    from cachesim import readers

    path = tmp_path / "trace.jsonl"
    _write_mooncake_jsonl(path)
    trace = readers.read_trace(path)
    capacities, ttls = [1, 3, 10, 30, None], [None, 5.0]
    whole = hit_ratio_table(trace, capacities, ttls, warmup="3s")
    assert 0 < whole.hit_blocks[0, 0] < whole.hit_blocks[-1, 0]

    def refuse(*args, **kwargs):
        raise AssertionError("cachesim mrc read the whole trace")

    monkeypatch.setattr(readers, "read_trace", refuse)
    out = tmp_path / "curve.json"
    assert main(["mrc", str(path), "--capacities", "1,3,10,30,none", "--ttl", "5", "--warmup", "3s",
                 "--batch-bytes", "2k", "--json", str(out)]) == 0
    data = orjson.loads(out.read_bytes())
    assert data["requests"] == trace.n_requests
    for k, curve in enumerate(data["curves"]):
        assert [p["hit_blocks"] for p in curve["points"]] == whole.hit_blocks[:, k].tolist()
        assert [p["hit_tokens"] for p in curve["points"]] == whole.hit_tokens[:, k].tolist()
    assert "exact" in capsys.readouterr().out


def test_cli_default_grid_ends_at_the_distinct_blocks(tmp_path, capsys):
    trace = _agent_trace(users=1)
    trace.save(tmp_path / "t.npz")
    assert main(["mrc", str(tmp_path / "t.npz"), "--json", "-"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    points = data["curves"][0]["points"]
    whole = hit_ratio_curve(trace, [p["capacity_blocks"] for p in points])
    assert [p["hit_blocks"] for p in points] == whole.hit_blocks.tolist()
    assert points[-2]["capacity_blocks"] == data["distinct_blocks"] and points[-1]["capacity_blocks"] is None
    assert points[-2]["hit_blocks"] == points[-1]["hit_blocks"]


def test_mooncake_streamed_in_small_batches_equals_replays():
    from cachesim.readers import TraceStream

    stream = TraceStream(require_shared(MOONCAKE_CONVERSATION), batch_bytes=256 << 10)
    table = CurveStream(MOONCAKE_CAPACITIES, [None, 60.0, 600.0]).run(stream).table()
    # the replays' counts at these points (tests/test_mrc.py checks the whole-trace pass against each replay)
    whole = stack_profile(cachesim.read_trace(MOONCAKE_CONVERSATION)).table(MOONCAKE_CAPACITIES, [None, 60.0, 600.0])
    assert table.hit_blocks.tolist() == whole.hit_blocks.tolist()
    assert table.hit_tokens.tolist() == whole.hit_tokens.tolist()
    assert (table.hit_blocks[-1, 0], table.blocks) == (105_710, 288_500)   # SEMANTICS §7
