"""The one-pass hit-ratio curve against hand-computed stacks and against per-capacity replays.

Expected values come from stacks worked out by hand in the comments, or from cachesim.replay (an independent
engine: a linked-list LRU cache, not stack distances).
"""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cachesim
from cachesim.cli import main
from cachesim.mrc import hit_ratio_curve, hit_ratio_table, stack_profile
from cachesim.requests import BlockRequests, TokenRequests
from conftest import MOONCAKE_CONVERSATION, require_shared
from strategies import token_request_streams


def tokens_trace(prompts, t=None, block_size=1, tenant=None, tenant_names=None):
    return cachesim.compile_trace(TokenRequests.from_lists(prompts, t=t, tenant=tenant, tenant_names=tenant_names),
                                  block_size)


def replay_counts(trace, capacity, ttl_s=None, **options):
    s = cachesim.replay(trace, capacity_blocks=capacity, ttl_s=ttl_s, keep_per_request=False, **options).summary()
    return s["hit_blocks"], s["hit_tokens"], s["blocks"], s["prompt_tokens"]


# -- hand-computed stacks ------------------------------------------------------------------------------------

# A=[1,2,3] t=0, B=[5] t=1, C=[1,2,3] t=5, D=[5] t=6, E=[1,2] t=7; block size 1, so keys are the prefixes.
# Stack (most recent first) after A: 1 12 123 (reverse stamping: block 0 newest); after B: 5 1 12 123.
# C looks up 1 at depth 2, 12 at 3, 123 at 4 (all stamped at t=0); then the stack is 1 12 123 5.
# D looks up 5 at depth 4 (stamped t=1): stack 5 1 12 123. E looks up 1 at depth 2, 12 at 3 (stamped t=5).
HAND_PROMPTS = [[1, 2, 3], [5], [1, 2, 3], [5], [1, 2]]
HAND_T = [0.0, 1.0, 5.0, 6.0, 7.0]


def test_hand_stack_gives_the_curve_at_every_capacity():
    curve = hit_ratio_curve(tokens_trace(HAND_PROMPTS, HAND_T), [1, 2, 3, 4, 5, None])
    # C=1: nothing; C=2: C's block 1 and E's block 1; C=3: + both 12s; C=4: + C's 123 and D's 5
    assert curve.hit_blocks.tolist() == [0, 2, 4, 6, 6, 6]
    assert curve.hit_tokens.tolist() == [0, 2, 4, 6, 6, 6]
    assert (curve.blocks, curve.prompt_tokens) == (10, 10)
    assert curve.block_hit_ratio.tolist() == pytest.approx([0, 0.2, 0.4, 0.6, 0.6, 0.6])


def test_whole_curve_lists_the_capacities_where_it_steps():
    curve = hit_ratio_curve(tokens_trace(HAND_PROMPTS, HAND_T))
    assert curve.capacities_blocks.tolist() == [2, 3, 4, -1]   # -1 = unbounded
    assert curve.hit_blocks.tolist() == [2, 4, 6, 6]


def test_hand_stack_with_ttls():
    # ages at lookup: C's blocks 5 s (stamped t=0), D's block 5 s (t=1), E's blocks 2 s (t=5).
    # Alive iff stamp + ttl > t: TTL 2 keeps nothing, TTL 3 keeps E's blocks only, TTL 6 keeps all.
    table = hit_ratio_table(tokens_trace(HAND_PROMPTS, HAND_T), [2, 3, 4, None], [2, 3, 6, None])
    assert table.hit_blocks.tolist() == [[0, 1, 2, 2],
                                         [0, 2, 4, 4],
                                         [0, 2, 6, 6],
                                         [0, 2, 6, 6]]


def test_ttl_boundary_is_expired_at_exactly_stamp_plus_ttl():
    # [7] at t=0 and again at t=10: with TTL 10 it expires at exactly t=10 (expires_at <= t), with TTL 10.5 not
    trace = tokens_trace([[7], [7]], [0.0, 10.0])
    table = hit_ratio_table(trace, [1], [10.0, 10.5])
    assert table.hit_blocks.tolist() == [[0, 1]]
    assert [replay_counts(trace, 1, ttl)[0] for ttl in (10.0, 10.5)] == [0, 1]


def test_request_longer_than_the_cache_keeps_its_first_blocks():
    # [1,2,3] twice at capacity 2: the first leaves 1 and 12 cached (123 uncached); the second hits 2 blocks.
    # The stack says the same: on the repeat the depths are 1, 2, 3.
    trace = tokens_trace([[1, 2, 3], [1, 2, 3]])
    curve = hit_ratio_curve(trace, [1, 2, 3])
    assert curve.hit_blocks.tolist() == [1, 2, 3]
    assert [replay_counts(trace, c)[0] for c in (1, 2, 3)] == [1, 2, 3]


def test_tokens_count_full_blocks_and_prompt_tokens_include_the_partial_tail():
    # block size 2: [1,2,3,4,5] has 2 cacheable blocks and 5 prompt tokens; the repeat hits 1 block at C=1, 2 at C=2
    trace = tokens_trace([[1, 2, 3, 4, 5], [1, 2, 3, 4, 9]], block_size=2)
    curve = hit_ratio_curve(trace, [1, 2])
    assert curve.hit_tokens.tolist() == [2, 4]
    assert (curve.blocks, curve.prompt_tokens) == (4, 10)
    assert curve.token_hit_ratio.tolist() == pytest.approx([0.2, 0.4])


def test_id_blocks_with_a_partial_last_block():
    # id blocks of 4 tokens; the second request re-sends ids [10, 11] whose last block holds 3 tokens
    requests = BlockRequests.from_lists([[10, 11], [10, 11], [10, 12]], prompt_tokens=[7, 7, 8], block_size=4)
    curve = hit_ratio_curve(cachesim.compile_trace(requests), [1, 2, None])
    # repeat: depths 1, 2 -> 4 + 3 tokens at C>=2; third: id 10 at depth 1 -> 4 tokens
    assert curve.hit_blocks.tolist() == [2, 3, 3]
    assert curve.hit_tokens.tolist() == [8, 11, 11]
    assert curve.prompt_tokens == 22


def test_hit_cap_and_warmup_follow_replay_rules():
    # hit cap prompt-1 with block size 2: [1,2,3,4] repeated may hit only (4-1)//2 = 1 block
    trace = tokens_trace([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]], [0.0, 1.0, 2.0], block_size=2)
    assert hit_ratio_curve(trace, [None], hit_cap="prompt-1").hit_blocks.tolist() == [2]
    # warmup of 2 requests: only the third is counted (it hits 2 blocks of 2)
    curve = hit_ratio_curve(trace, [None], warmup=2)
    assert (curve.hit_blocks.tolist(), curve.blocks) == ([2], 2)
    assert hit_ratio_curve(trace, [None], warmup="1.5s").blocks == 2


def test_isolation_keeps_tenants_apart():
    trace = tokens_trace([[1, 2], [1, 2]], tenant=np.array([0, 1], np.int32), tenant_names=["a", "b"])
    assert hit_ratio_curve(trace, [None]).hit_blocks.tolist() == [2]
    assert hit_ratio_curve(trace, [None], isolation="tenant").hit_blocks.tolist() == [0]


def test_bad_arguments_are_named():
    trace = tokens_trace(HAND_PROMPTS, HAND_T)
    with pytest.raises(ValueError, match="capacities"):
        hit_ratio_curve(trace, [0])
    with pytest.raises(ValueError, match="ttl_s"):
        hit_ratio_curve(trace, [1], ttl_s=-1)
    with pytest.raises(ValueError, match="sample_rate"):
        stack_profile(trace, sample_rate=0)
    with pytest.raises(ValueError, match="hit_cap"):
        stack_profile(trace, hit_cap="all")


# -- against replays -----------------------------------------------------------------------------------------

@given(requests=token_request_streams(), block_size=st.integers(1, 3), data=st.data())
def test_curve_equals_replays_at_every_capacity(requests, block_size, data):
    """Exact at every capacity, also below the longest request (docs/mrc.md argues why), with and without TTL."""
    trace = cachesim.compile_trace(requests, block_size)
    hit_cap = data.draw(st.sampled_from([None, "prompt-1"]))
    isolation = data.draw(st.sampled_from([None, "tenant"]))
    warmup = data.draw(st.sampled_from([None, 2, "1s"]))
    ttls = data.draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0, 10.0]), max_size=2, unique=True)) + [None]
    top = max(trace.n_blocks, 1)
    longest = max(int(np.diff(trace.block_offsets).max()), 1)   # the smallest capacity the issue asks to be exact
    drawn = data.draw(st.lists(st.integers(1, top + 1), min_size=1, max_size=5))
    capacities = sorted(set(drawn) | {longest}) + [None]
    table = hit_ratio_table(trace, capacities, ttls, hit_cap=hit_cap, isolation=isolation, warmup=warmup)
    for i, c in enumerate(capacities):
        for k, ttl in enumerate(ttls):
            hit_blocks, hit_tokens, blocks, prompt_tokens = replay_counts(trace, c, ttl, hit_cap=hit_cap,
                                                                          isolation=isolation, warmup=warmup)
            assert (table.hit_blocks[i, k], table.hit_tokens[i, k]) == (hit_blocks, hit_tokens), (c, ttl)
            assert (table.blocks, table.prompt_tokens) == (blocks, prompt_tokens)


@pytest.fixture(scope="module")
def mooncake():
    from cachesim.readers import read_trace

    return read_trace(require_shared(MOONCAKE_CONVERSATION))


MOONCAKE_CAPACITIES = [1, 16, 100, 247, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000, 182_790, None]


@pytest.mark.core
def test_mooncake_curve_equals_replays(mooncake):
    assert int(np.diff(mooncake.block_offsets).max()) == 247   # capacities 1..100 are below the longest request
    profile = stack_profile(mooncake)
    table = profile.table(MOONCAKE_CAPACITIES, [None, 60.0, 600.0])
    for i, c in enumerate(MOONCAKE_CAPACITIES):
        for k, ttl in enumerate([None, 60.0, 600.0]):
            hit_blocks, hit_tokens, _, _ = replay_counts(mooncake, c, ttl)
            assert (table.hit_blocks[i, k], table.hit_tokens[i, k]) == (hit_blocks, hit_tokens), (c, ttl)
    # SEMANTICS §7: the infinite cache hits 105,710 of 288,500 blocks
    assert (table.hit_blocks[-1, 0], table.blocks) == (105_710, 288_500)


def test_mooncake_hand_checked_figures(mooncake):
    # capacity 1 keeps one block: the first block of the previous request. It hits whenever a request starts with
    # the same block id as the one before it, counted here straight from the trace's keys.
    firsts = mooncake.block_keys[mooncake.block_offsets[:-1]]
    same_as_previous = int(np.sum(firsts[1:] == firsts[:-1]))
    assert hit_ratio_curve(mooncake, [1]).hit_blocks.tolist() == [same_as_previous]


# -- sampling ------------------------------------------------------------------------------------------------

def test_sampling_that_tracks_every_block_is_exact():
    # with every block inside always_tokens the weighted pass tracks all keys at weight 1: the exact curve
    trace = tokens_trace(HAND_PROMPTS, HAND_T)
    sampled = hit_ratio_table(trace, [1, 2, 3, 4, None], [3, None], sample_rate=0.001, always_tokens=10)
    exact = hit_ratio_table(trace, [1, 2, 3, 4, None], [3, None])
    assert sampled.hit_blocks.tolist() == exact.hit_blocks.tolist()


@given(requests=token_request_streams(max_requests=20))
def test_a_sampled_key_is_tracked_at_every_occurrence(requests):
    trace = cachesim.compile_trace(requests, 1)
    profile = stack_profile(trace, sample_rate=0.5, always_tokens=2)
    tracked = profile.depth >= 0
    assert not set(trace.block_keys[tracked].tolist()) & set(trace.block_keys[~tracked].tolist())
    position = np.arange(trace.n_blocks) - np.repeat(trace.block_offsets[:-1], np.diff(trace.block_offsets))
    assert tracked[position < 2].all()   # the first 2 tokens' blocks are always tracked


def _max_error(trace, rate, capacities):
    exact = hit_ratio_curve(trace, capacities)
    sampled = hit_ratio_curve(trace, capacities, sample_rate=rate)
    return float(np.max(np.abs(sampled.token_hit_ratio - exact.token_hit_ratio)))


def test_sampling_error_on_mooncake_is_small(mooncake):
    # docs/mrc.md: max abs error 0.0055 at rate 0.1 over a log grid (deterministic: sampling hashes keys)
    capacities = [100, 1_000, 3_000, 10_000, 30_000, 100_000, None]
    assert _max_error(mooncake, 0.1, capacities) < 0.01


def test_sampling_error_on_a_generated_agent_trace_is_bounded():
    from cachesim.workloads import agent_workload

    trace = cachesim.compile_trace(agent_workload(n_users=8, seed=0).requests, 16)
    capacities = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000, None]
    assert _max_error(trace, 0.1, capacities) < 0.03


# -- command line --------------------------------------------------------------------------------------------

def test_cli_prints_the_curve_and_writes_json(tmp_path, capsys):
    trace = cachesim.compile_trace(TokenRequests.from_lists(HAND_PROMPTS, t=HAND_T), 1)
    path = tmp_path / "hand.npz"
    trace.save(path)
    out = tmp_path / "curve.json"
    assert main(["mrc", str(path), "--capacities", "2,4,none", "--ttl", "3", "--kv-bytes-per-token", "1KB",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "exact" in text and "TTL 3s" in text and "0.6000" in text
    data = orjson.loads(out.read_bytes())
    no_ttl, ttl3 = data["curves"]
    assert [p["hit_blocks"] for p in no_ttl["points"]] == [2, 6, 6]
    assert [p["hit_blocks"] for p in ttl3["points"]] == [1, 2, 2]      # the hand table's TTL-3 column
    assert no_ttl["points"][0]["capacity_gb"] == pytest.approx(2 * 1 * 1000 / 1e9)
    assert no_ttl["points"][2]["capacity_blocks"] is None


def test_cli_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="plotting is the optional extra cachesim[plot]")
    trace = tokens_trace(HAND_PROMPTS, HAND_T)
    trace.save(tmp_path / "hand.npz")
    png = tmp_path / "curve.png"
    assert main(["mrc", str(tmp_path / "hand.npz"), "--plot", str(png), "--kv-bytes-per-token", "160KB"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_sample_rate_is_one_line(tmp_path, capsys):
    tokens_trace(HAND_PROMPTS, HAND_T).save(tmp_path / "hand.npz")
    with pytest.raises(SystemExit) as stopped:  # an argparse error now: --sample is read at the edge
        main(["mrc", str(tmp_path / "hand.npz"), "--sample", "1.5"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == ("cachesim: error: mrc: argument --sample: expected a number > 0 and "
                                               "< 1, got '1.5' (see cachesim mrc --help)")


def test_cli_sampled_curve_says_it_is_an_estimate(tmp_path, capsys):
    tokens_trace(HAND_PROMPTS, HAND_T).save(tmp_path / "hand.npz")
    assert main(["mrc", str(tmp_path / "hand.npz"), "--sample", "0.5", "--json", "-"]) == 0
    curve = orjson.loads(capsys.readouterr().out)["curves"][0]
    assert curve["exact"] is False and curve["sample_rate"] == 0.5
    # every block lies in the first 2048 tokens, so every key is tracked at weight 1: the estimate is exact here
    assert curve["points"][-1]["hit_blocks"] == 6


@pytest.mark.core   # 24 replays of 120,000 blocks (~11 s on the reference model); what it checks is default_capacities
def test_the_default_rows_sit_where_the_curve_moves():
    """Issue 19: most default rows of a real curve used to repeat the row above. Now each default capacity below
    the top adds hits over the one before it, and at least half the rows lie between 10% and 90% of the
    unbounded hit ratio, where a sizing question is asked."""
    from cachesim.mrc import default_capacities

    rng = np.random.default_rng(3)
    shared = list(range(400))
    prompts = [shared[: rng.integers(1, 400)] + [1000 + i] for i in range(600)]
    trace = tokens_trace(prompts)
    profile = stack_profile(trace)
    capacities = default_capacities(profile)
    assert capacities[-1] is None and capacities[-2] == int(np.ceil(profile.distinct_keys))
    hits = [replay_counts(trace, c)[0] for c in capacities[:-1]]
    assert all(a < b for a, b in itertools.pairwise(hits[:-1])), hits   # no row repeats the one below
    ceiling = hits[-1]
    middle = [h for h in hits if 0.1 * ceiling <= h <= 0.9 * ceiling]
    assert len(middle) >= len(hits) // 2, (capacities, hits)


def test_mrc_model_states_capacities_in_that_models_bytes(tmp_path, capsys):
    path = tmp_path / "t.npz"
    tokens_trace([[1, 2, 3], [1, 2, 4], [1, 2, 3]]).save(path)
    assert main(["mrc", str(path), "--capacities", "2,none", "--model", "llama-3.1-8b", "--json", "-"]) == 0
    by_model = orjson.loads(capsys.readouterr().out)
    # llama-3.1-8b: 32 layers x 2 (K and V) x 8 KV heads x 128 dims x 2 bytes = 131,072 bytes a token
    assert main(["mrc", str(path), "--capacities", "2,none", "--kv-bytes-per-token", "128KiB", "--json", "-"]) == 0
    assert orjson.loads(capsys.readouterr().out) == by_model
    assert main(["mrc", str(path), "--capacities", "2,none", "--kv-bytes-per-token", "131072", "--json", "-"]) == 0
    assert orjson.loads(capsys.readouterr().out) == by_model
    # 2 slots of one-token blocks
    assert by_model["curves"][0]["points"][0]["capacity_gb"] == pytest.approx(2 * 1 * 131_072 / 1e9)
