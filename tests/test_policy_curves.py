"""Curves of every policy beside LRU's one-pass curve: replays, miniature simulations and the belady bound."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

import cachesim
from cachesim.cli import main
from cachesim.mrc import CurveStream
from cachesim.policy_curves import policy_curve, sample_blocks
from cachesim.requests import BlockRequests
from conftest import MOONCAKE_CONVERSATION, require_shared

CAPACITIES = [2, 8, 32, 128, 1024, None]


@pytest.fixture(scope="module")
def agents():
    from cachesim.workloads import agent_workload

    return cachesim.compile_trace(agent_workload(n_users=8, seed=0).requests, 16)


@pytest.mark.core
def test_lru_replays_equal_the_one_pass_curve(agents):
    # two computations that share nothing: a replay at each capacity, and one stack-distance pass
    replays = policy_curve(agents, "lru", CAPACITIES)
    one_pass = CurveStream(CAPACITIES).run(agents).curve()
    assert replays.hit_tokens.tolist() == one_pass.hit_tokens.tolist()
    assert replays.hit_blocks.tolist() == one_pass.hit_blocks.tolist()
    assert replays.prompt_tokens == one_pass.prompt_tokens
    assert (replays.policy, replays.method) == ("lru", "replays")


@pytest.mark.core
def test_belady_bounds_every_policy_at_every_capacity():
    rng = np.random.default_rng(5)
    ids = rng.zipf(1.2, 4000) % 600
    trace = cachesim.compile_trace(BlockRequests.from_lists([[int(i)] for i in ids], [1] * len(ids), 1))
    bound = policy_curve(trace, "belady", CAPACITIES).hit_blocks
    for policy in cachesim.POLICIES:
        hits = policy_curve(trace, policy, CAPACITIES).hit_blocks
        assert np.all(hits <= bound), policy
    assert bound[0] > policy_curve(trace, "lru", CAPACITIES).hit_blocks[0]


def test_a_block_is_in_or_out_of_the_sample_wherever_it_appears(agents):
    sample = sample_blocks(agents, 0.25)
    assert sample.n_requests == agents.n_requests
    assert np.array_equal(sample.prompt_tokens, agents.prompt_tokens)
    kept = set(sample.block_keys.tolist())
    everywhere = [k for k in agents.block_keys.tolist() if k in kept]
    assert everywhere == sample.block_keys.tolist()          # every occurrence of a sampled key, in order
    share = len(set(kept)) / len(set(agents.block_keys.tolist()))
    assert 0.15 < share < 0.35                                # about the rate, over distinct keys
    with pytest.raises(ValueError, match="sampling rate"):
        sample_blocks(agents, 0.0)


@pytest.mark.core
def test_miniature_curves_are_close_to_full_replays_on_mooncake():
    # the error docs/mrc.md states: within 0.05 of the token hit ratio at every capacity, at rate 0.1
    from cachesim.readers import read_trace

    trace = read_trace(require_shared(MOONCAKE_CONVERSATION))
    capacities = [2000, 8000, 32000, 64000]
    for policy in ("lru", "s3fifo", "sieve", "belady"):
        full = policy_curve(trace, policy, capacities).token_hit_ratio
        mini = policy_curve(trace, policy, capacities, sample_rate=0.1)
        assert mini.method == "miniature"
        assert np.max(np.abs(full - mini.token_hit_ratio)) < 0.05, policy


def test_mrc_prints_the_policies_and_the_bound_and_writes_them_as_json(tmp_path, capsys):
    path = tmp_path / "stream.jsonl"
    rng = np.random.default_rng(2)
    lines = []
    for i in range(400):
        shared = [1, 2, 3] if rng.random() < 0.5 else [9]
        ids = shared + [int(x) for x in rng.integers(10, 60, 2)]
        lines.append(orjson.dumps({"timestamp": i * 100, "input_length": 512 * len(ids), "hash_ids": ids}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "curves.json"
    assert main(["mrc", str(path), "--policy", "s3fifo:move-to-main-threshold=1,fifo", "--bound",
                 "--capacities", "4,16,64", "--json", str(out)]) == 0
    screen = capsys.readouterr().out
    assert "s3fifo:move-to-main-threshold=1" in screen and "belady" in screen
    data = orjson.loads(out.read_bytes())
    policies = {c["policy"]: c for c in data["policies"]}
    assert list(policies) == ["s3fifo:move-to-main-threshold=1", "fifo", "belady"]
    lru = data["curves"][0]["points"]
    for curve in policies.values():
        assert curve["method"] == "replays"
        for point, lru_point, bound in zip(curve["points"], lru, policies["belady"]["points"], strict=True):
            assert point["capacity_blocks"] == lru_point["capacity_blocks"]
            assert point["hit_tokens"] <= bound["hit_tokens"]
    assert main(["mrc", str(path), "--mini", "0.5"]) == 2   # --mini samples the replays of --policy or --bound
    assert "--mini" in capsys.readouterr().err


@pytest.mark.core
def test_the_bound_in_the_html_report_and_in_sweeps(tmp_path, capsys):
    from cachesim.workloads import agent_workload

    trace_path = tmp_path / "agents.npz"
    cachesim.compile_trace(agent_workload(n_users=4, seed=1).requests, 16).save(trace_path)
    curves = tmp_path / "curves.json"
    assert main(["mrc", str(trace_path), "--bound", "--capacities", "64,256", "--json", str(curves)]) == 0
    page = tmp_path / "page.html"
    assert main(["report", str(curves), "-o", str(page)]) == 0
    html = page.read_text()
    assert "Other policies, and the bound" in html and "belady" in html
    table = tmp_path / "sweep.csv"
    assert main(["sweep", str(trace_path), "--capacity", "64,256", "--policy", "lru,sieve", "--bound",
                 "--executor", "serial", "-o", str(table)]) == 0
    rows = table.read_text().splitlines()
    header = rows[0].split(",")
    policy, ratio = header.index("policy"), header.index("token_hit_ratio")
    by = {(r.split(",")[header.index("capacity_blocks")], r.split(",")[policy]): float(r.split(",")[ratio])
          for r in rows[1:]}
    assert {p for _, p in by} == {"lru", "sieve", "belady"}
    for (capacity, _), value in by.items():
        assert value <= by[(capacity, "belady")]
    capsys.readouterr()
    assert main(["sweep", str(trace_path), "--capacity", "64", "--bound", "--stream"]) == 2
    assert "without --stream" in capsys.readouterr().err
