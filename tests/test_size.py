"""``cachesim size``: the smallest capacity reaching a target token hit ratio, checked against replays.

The answer c is right when a replay (cachesim.replay: a linked-list LRU cache, not stack distances) at c reaches
the target and a replay at c - 1 does not; out of reach when an unbounded replay stays below it. Hand-computed
stacks pin the small cases.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachesim
from cachesim.cli import main
from cachesim.models import get_model
from cachesim.mrc import CapacityHistogram, hit_ratio_curve
from cachesim.readers import read_trace
from cachesim.report._tables import ttl_text
from cachesim.requests import TokenRequests
from conftest import DATA, MOONCAKE_CONVERSATION, require_shared
from strategies import token_request_streams


def replay_ratio(trace, capacity, ttl_s=None, **options) -> float:
    return cachesim.replay(trace, capacity_blocks=capacity, ttl_s=ttl_s, keep_per_request=False,
                           **options).summary()["token_hit_ratio"]


def check_against_replays(trace, target, ttl_s, capacity, **options) -> None:
    """``capacity`` is the smallest at which a replay reaches ``target``, or None when none does."""
    if capacity is None:
        assert replay_ratio(trace, None, ttl_s, **options) < target
        return
    assert replay_ratio(trace, capacity, ttl_s, **options) >= target
    if capacity > 1:
        assert replay_ratio(trace, capacity - 1, ttl_s, **options) < target


def size_json(argv, capsys) -> dict:
    assert main(["size", *argv, "--json", "-"]) == 0
    return orjson.loads(capsys.readouterr().out)


# -- hand-computed stacks ------------------------------------------------------------------------------------

# As in test_mrc: A=[1,2,3] t=0, B=[5] t=1, C=[1,2,3] t=5, D=[5] t=6, E=[1,2] t=7; one token per block, 10 tokens.
# C hits 1 at depth 2, 12 at 3, 123 at 4; D hits 5 at depth 4; E hits 1 at depth 2, 12 at 3. So the hit tokens at
# capacity 1..4 are 0, 2, 4, 6 (0%, 20%, 40%, 60%), and nothing more above. With TTL 3 only E's blocks (stamped
# 2 s before) are alive: 1 hit at capacity 2, 2 from capacity 3 (10%, 20%). TTL 5 keeps no more: C's and D's
# blocks were stamped exactly 5 s before, and an entry expires when stamp + ttl <= t.
HAND_PROMPTS = [[1, 2, 3], [5], [1, 2, 3], [5], [1, 2]]
HAND_T = [0.0, 1.0, 5.0, 6.0, 7.0]


def hand_trace():
    return cachesim.compile_trace(TokenRequests.from_lists(HAND_PROMPTS, t=HAND_T), 1)


@pytest.mark.parametrize(("target", "ttl_s", "expected"), [
    (0.2, None, 2), (0.25, None, 3), (0.4, None, 3), (0.6, None, 4), (0.61, None, None),
    (0.1, 3.0, 2), (0.2, 3.0, 3), (0.3, 3.0, None), (0.2, 5.0, 3), (0.3, 5.0, None), (0.6, 5.5, 4),
])
def test_hand_stack_gives_the_smallest_capacity(target, ttl_s, expected):
    sizes = CapacityHistogram([None, 3.0, 5.0, 5.5]).run(hand_trace())
    assert sizes.hit_tokens(None).tolist() == [0, 0, 2, 4, 6]
    assert sizes.hit_tokens(3.0).tolist() == sizes.hit_tokens(5.0).tolist() == [0, 0, 1, 2, 2]
    assert sizes.min_capacity(target, ttl_s) == expected
    check_against_replays(hand_trace(), target, ttl_s, expected)


def test_hand_stack_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "hand.jsonl"
    records = [orjson.dumps({"t": t, "tokens": p}).decode() for t, p in zip(HAND_T, HAND_PROMPTS, strict=True)]
    path.write_text("\n".join(records) + "\n")
    assert main(["size", str(path), "--block-size", "1", "--target", "40%", "--ttl", "none,3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # 3 blocks of one token; the ceiling is 60% (6 of 10 tokens) without a TTL, 20% with TTL 3 s, reached at 3
    assert "no TTL: 3 blocks = 3 tokens (40.00% there; ceiling 60.00%)" in lines
    assert ("TTL 3 s: 40% is out of reach; the ceiling (unbounded capacity) is 20.00%, reached at 3 blocks"
            in lines)


def test_the_histogram_at_each_capacity_is_the_curve():
    trace = read_trace(DATA / "native_tokens.jsonl", block_size=1)
    sizes = CapacityHistogram([None, 1.0]).run(trace)
    for ttl in (None, 1.0):
        curve = hit_ratio_curve(trace, list(range(1, 40)), ttl_s=ttl)
        assert sizes.hit_tokens(ttl)[np.minimum(np.arange(1, 40), len(sizes.hit_tokens(ttl)) - 1)].tolist() == \
            curve.hit_tokens.tolist()


# -- against replays -----------------------------------------------------------------------------------------

@settings(max_examples=40)
@given(requests=token_request_streams(max_requests=25), target=st.sampled_from([0.05, 0.2, 0.35, 0.5, 0.8]),
       ttl_s=st.sampled_from([None, 0.5, 3.0]), hit_cap=st.sampled_from([None, "prompt-1"]),
       warmup=st.sampled_from([None, 3]))
def test_the_smallest_capacity_is_where_replays_cross_the_target(requests, target, ttl_s, hit_cap, warmup):
    trace = cachesim.compile_trace(requests, 2)
    sizes = CapacityHistogram([ttl_s], hit_cap=hit_cap, warmup=warmup).run(trace)
    check_against_replays(trace, target, ttl_s, sizes.min_capacity(target, ttl_s), hit_cap=hit_cap, warmup=warmup)


def mooncake_like(path, n=400, seed=0):
    """A Mooncake-format trace: conversations that grow turn by turn (hash_ids extend the previous turn's), a few
    shared system prompts, partial last blocks (len(hash_ids) = ceil(input_length / 512)), ms timestamps."""
    rng = np.random.default_rng(seed)
    next_id, lines, conversations = 1000, [], []
    t_ms = 0
    for _ in range(n):
        t_ms += int(rng.integers(0, 40_000))
        if conversations and rng.random() < 0.6:
            ids = conversations[int(rng.integers(len(conversations)))]
        else:
            ids = [int(rng.integers(0, 4))]   # one of 4 system prompts
            conversations.append(ids)
        grow = int(rng.integers(1, 4))
        ids.extend(range(next_id, next_id + grow))
        next_id += grow
        length = 512 * (len(ids) - 1) + int(rng.integers(1, 513))
        lines.append(orjson.dumps({"timestamp": t_ms, "input_length": length, "output_length": 10,
                                   "hash_ids": list(ids)}).decode())
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("target", ["30%", "0.5", "12.5%"])
def test_cli_answers_equal_replays_on_a_mooncake_like_trace(target, tmp_path, capsys):
    path = mooncake_like(tmp_path / "mooncake.jsonl")
    # small batches: the pass streams across many of them and must still give the whole-trace answer
    data = size_json([str(path), "--target", target, "--model", "llama-3.1-8b", "--ttl", "none,5m,1h",
                      "--batch-bytes", "4096"], capsys)
    trace = read_trace(path)
    ratio = float(target[:-1]) / 100 if target.endswith("%") else float(target)
    assert data["target_token_hit_ratio"] == ratio
    assert [row["ttl_s"] for row in data["sizes"]] == [None, 300.0, 3600.0]
    for row in data["sizes"]:
        check_against_replays(trace, ratio, row["ttl_s"], row["capacity_blocks"])
        unbounded = replay_ratio(trace, None, row["ttl_s"])
        assert row["ceiling_token_hit_ratio"] == pytest.approx(unbounded, abs=1e-15)
        if row["capacity_blocks"] is not None:
            c = row["capacity_blocks"]
            assert row["token_hit_ratio"] == replay_ratio(trace, c, row["ttl_s"])
            assert row["capacity_tokens"] == c * 512
            assert row["capacity_bytes"] == c * 512 * 32 * 2 * 8 * 128 * 2   # llama-3.1-8b: 128 KiB a token
    assert any(row["capacity_blocks"] is not None for row in data["sizes"])


def test_ceiling_capacity_is_the_smallest_that_hits_what_an_unbounded_cache_does(tmp_path, capsys):
    path = mooncake_like(tmp_path / "mooncake.jsonl")
    data = size_json([str(path), "--target", "100%", "--ttl", "none,5m"], capsys)
    trace = read_trace(path)
    for row in data["sizes"]:
        assert row["capacity_blocks"] is None   # the first block of a conversation always misses
        c = row["ceiling_capacity_blocks"]
        assert replay_ratio(trace, c, row["ttl_s"]) == replay_ratio(trace, None, row["ttl_s"])
        assert replay_ratio(trace, c - 1, row["ttl_s"]) < replay_ratio(trace, None, row["ttl_s"])


@pytest.mark.core   # replays the 288,500 blocks of the real trace at each answer and one below: the core's speed
def test_real_mooncake_trace_answer_equals_replays(capsys):
    path = require_shared(MOONCAKE_CONVERSATION)
    data = size_json([str(path), "--target", "30%", "--model", "deepseek-v3"], capsys)
    trace = read_trace(path)
    by_ttl = {row["ttl_s"]: row for row in data["sizes"]}
    for ttl, row in by_ttl.items():
        check_against_replays(trace, 0.3, ttl, row["capacity_blocks"])
    # the figure issue 19 quotes from the API, now from the command
    assert by_ttl[None]["capacity_blocks"] == 21_183
    assert by_ttl[300.0]["capacity_blocks"] is None   # with a 5-minute TTL 30% cannot be had at any size
    assert by_ttl[None]["capacity_bytes"] == 21_183 * 512 * 61 * (512 + 64) * 2


# -- what the user reads -------------------------------------------------------------------------------------

def test_one_line_per_ttl_with_blocks_tokens_and_binary_bytes(tmp_path, capsys):
    path = mooncake_like(tmp_path / "mooncake.jsonl")
    assert main(["size", str(path), "--target", "0.2", "--model", "llama-3.1-70b", "--ttl", "none,1h"]) == 0
    out = capsys.readouterr().out.splitlines()
    data = size_json([str(path), "--target", "0.2", "--model", "llama-3.1-70b", "--ttl", "none,1h"], capsys)
    answers = [line for line in out if line.startswith(("no TTL:", "TTL "))]
    assert len(answers) == 2
    for line, row in zip(answers, data["sizes"], strict=True):
        c = row["capacity_blocks"]
        gib = c * 512 * 327_680 / 2**30   # llama-3.1-70b: 80 layers x 2 x 8 heads x 128 x 2 bytes = 327,680
        assert 1 <= gib < 100   # so it reads in GiB with one decimal
        assert line.startswith(f"{ttl_text(row['ttl_s'])}: {c:,} blocks = {c * 512 / 1000:.3g}k tokens = "
                               f"{gib:.1f} GiB for llama-3.1-70b (")
    assert any("80 layers x 2 x 8 KV heads x 128 x 2 bytes (bfloat16) = 327,680 bytes per token" in line
               for line in out)


def test_unreachable_target_says_so_and_gives_the_ceiling(tmp_path, capsys):
    path = mooncake_like(tmp_path / "mooncake.jsonl")
    trace = read_trace(path)
    ceiling = replay_ratio(trace, None, 300.0)
    target = math.ceil(ceiling * 100 + 1)
    assert main(["size", str(path), "--target", f"{target}%", "--ttl", "5m"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("TTL 300 s:"))
    assert f"{target}% is out of reach" in line
    assert f"the ceiling (unbounded capacity) is {ceiling:.2%}" in line


def test_json_to_a_file_and_the_lines_on_screen(tmp_path, capsys):
    out = tmp_path / "size.json"
    assert main(["size", str(DATA / "mooncake.jsonl"), "--target", "10%", "--ttl", "none", "--json", str(out)]) == 0
    assert "no TTL:" in capsys.readouterr().out
    data = orjson.loads(out.read_bytes())
    assert data["model"] is None and data["sizes"][0]["capacity_bytes"] is None
    assert data["definitions"]["token_hit_ratio"].startswith("hit tokens / prompt tokens")
    assert data["prompt_tokens"] == 1000 + 1536 + 300 + 1025


def test_model_from_a_config_file(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_bytes(orjson.dumps({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64,
                                     "torch_dtype": "float16", "_name_or_path": "tiny"}))
    data = size_json([str(DATA / "mooncake.jsonl"), "--target", "10%", "--ttl", "none", "--model", str(config)],
                     capsys)
    # 2 layers x 2 (K, V) x 4 heads (no num_key_value_heads: one per head) x 16 (= 64 / 4) x 2 bytes = 512
    assert data["model"]["kv_bytes_per_token"] == 512
    row = data["sizes"][0]
    assert row["capacity_bytes"] == row["capacity_blocks"] * 512 * 512


@pytest.mark.parametrize(("argv", "message"), [
    (["--target", "130%"], "--target: expected a ratio above 0% and at most 100%, got '130%'"),
    (["--target", "abc"], "--target: expected a ratio such as 30% or 0.3, got 'abc'"),
    (["--target", "30"], "--target: expected a ratio such as 30% or 0.3, got '30' (write 30% for a percentage)"),
    (["--target", "0%"], "--target: expected a ratio above 0%"),
    (["--target", "30%", "--model", "llama-9"], "--model: unknown model 'llama-9'"),
    (["--target", "30%", "--ttl", "5x"], "--ttl: expected seconds"),
    (["--target", "30%", "--ttl", ","], "--ttl: expected a comma-separated list"),
])
def test_bad_options_are_one_line_naming_the_option(argv, message, capsys):
    assert main(["size", str(DATA / "mooncake.jsonl"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"cachesim: error: {message}")


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "is not JSON"),
    (b"[1, 2]", "holds a JSON list, not a config object"),
    (b'{"num_attention_heads": 8, "hidden_size": 64, "torch_dtype": "bfloat16"}',
     "config field 'num_hidden_layers' is missing"),
    (b'{"num_hidden_layers": 2, "num_attention_heads": 8, "hidden_size": 64}', "config field 'torch_dtype' is missing"),
])
def test_a_bad_config_file_is_one_line(content, message, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_bytes(content)
    assert main(["size", str(DATA / "mooncake.jsonl"), "--target", "30%", "--model", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("cachesim: error: --model: ") and message in err


def test_built_in_models_resolve_case_insensitively():
    assert get_model("Llama-3.1-8B") is get_model("llama-3.1-8b")


def test_an_unwritable_json_fails_before_the_trace_is_read(tmp_path, capsys):
    out = tmp_path / "missing" / "size.json"
    assert main(["size", "never-read.jsonl", "--target", "30%", "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cachesim: error: cannot write {out}") and "never-read" not in err.replace(str(out), "")
