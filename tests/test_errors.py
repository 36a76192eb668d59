"""Bad input gets a clear error naming the field (and file:line for files); nothing computed is lost."""

import dataclasses

import numpy as np
import pytest

import cachesim
from cachesim.requests import BlockRequests, TokenRequests, TraceError


def test_empty_request_is_refused_with_its_index():
    with pytest.raises(TraceError, match=r"request 1: prompt: empty request"):
        cachesim.compile_trace(TokenRequests.from_lists([[1, 2], []]), 2)


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_token_ids_outside_uint32_are_refused(bad):
    with pytest.raises(TraceError, match=r"request 1: tokens: token ids must be integers in 0\.\.2\*\*32-1"):
        TokenRequests.from_lists([[1], [2, bad]])


@pytest.mark.parametrize("t", [[0.0, float("nan")], [0.0, float("inf")]])
def test_nan_or_infinite_times_are_refused(t):
    with pytest.raises(TraceError, match=r"request 1: t: arrival time must be a finite number"):
        cachesim.compile_trace(TokenRequests.from_lists([[1], [2]], t=t), 1)


def test_decreasing_times_are_refused_unless_sorting_is_asked_for():
    requests = TokenRequests.from_lists([[1], [2], [3]], t=[0.0, 5.0, 4.0])
    with pytest.raises(TraceError, match=r"request 2: t: arrival time 4\.0 is before the previous request's 5\.0"):
        cachesim.compile_trace(requests, 1)
    with pytest.warns(UserWarning, match="1 requests arrived out of order"):
        trace = cachesim.compile_trace(requests, 1, sort=True)
    assert trace.t.tolist() == [0.0, 4.0, 5.0]
    assert trace.prompt_tokens.tolist() == [1, 1, 1]
    assert trace.block_keys[1] == cachesim.compile_trace(TokenRequests.from_lists([[3]]), 1).block_keys[0]


def test_decreasing_time_across_batches_keeps_what_was_served(impl):
    sim = cachesim.Simulator(impl=impl)
    sim.feed(cachesim.compile_trace(TokenRequests.from_lists([[1, 2]], t=[10.0]), 1))
    late = cachesim.compile_trace(TokenRequests.from_lists([[1, 2], [1, 2]], t=[11.0, 12.0]), 1)
    # behind the compile-time check (a compiled trace's columns are read-only): feeding must refuse it
    late = dataclasses.replace(late, t=np.array([11.0, 3.0]))
    with pytest.raises(TraceError, match=r"request 1: t: arrival time 3\.0 is before"):
        sim.feed(late)
    kept = sim.result()
    assert kept.summary()["requests"] == 2            # the first batch and the good request of the second
    assert kept.per_request["hit_blocks"].tolist() == [0, 2]


@pytest.mark.parametrize("capacity", [0, -5, 2.5, True])
def test_capacity_must_be_a_positive_whole_number(capacity):
    with pytest.raises(ValueError, match="capacity_blocks must be"):
        cachesim.CacheConfig(capacity_blocks=capacity)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"policy": "nosuch"}, "unknown policy 'nosuch'"),
    ({"ttl_s": 0}, "ttl_s must be a positive number"),
    ({"ttl_s": float("nan")}, "ttl_s must be a positive number"),
    ({"hit_cap": "prompt"}, "unknown hit_cap"),
    ({"isolation": "user"}, "unknown isolation"),
])
def test_bad_options_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cachesim.CacheConfig(**kwargs)


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset 'tgi'; choose one of sglang, vllm"):
        cachesim.replay(TokenRequests.from_lists([[1]]), preset="tgi")


@pytest.mark.parametrize("warmup", ["ten", -1, "-5s", 1.5])
def test_bad_warmup_is_refused(warmup):
    with pytest.raises(ValueError, match="warmup must be"):
        cachesim.replay(TokenRequests.from_lists([[1]]), warmup=warmup)


def test_block_ids_inconsistent_with_prompt_length_are_refused():
    requests = BlockRequests.from_lists([[1, 2], [1, 2, 3]], prompt_tokens=[1000, 1000], block_size=512)
    with pytest.raises(TraceError, match=r"request 1: hash_ids: 3 block ids for 1000 tokens"):
        cachesim.compile_trace(requests)


def test_block_size_cannot_change_for_id_traces():
    requests = BlockRequests.from_lists([[1]], prompt_tokens=[512], block_size=512)
    with pytest.raises(TraceError, match="block_size: this trace's blocks are 512 tokens"):
        cachesim.compile_trace(requests, 16)
    assert np.array_equal(cachesim.compile_trace(requests).block_tokens, [512])


def test_binary_units_render_requests_and_bytes():
    from cachesim.requests import TraceError

    assert str(TraceError("cut short", field="n_blocks", file="a.lcp", line=8240, unit="byte")) == \
        "a.lcp: byte 8,240: n_blocks: cut short"
    assert str(TraceError("bad", file="a.lcp", line=3, unit="request")) == "a.lcp: request 3: bad"
    assert str(TraceError("bad", file="a.jsonl", line=3)) == "a.jsonl:3: bad"
    moved = TraceError("bad", line=5, unit="request").located(file="a.lcp")
    assert str(moved) == "a.lcp: request 5: bad"
