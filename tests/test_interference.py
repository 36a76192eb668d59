"""Merged traces, counterfactual isolation and remedies: hand-computed cases and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cachesim
from cachesim import BlockRequests, CacheConfig, TraceError, compile_trace
from cachesim.interference import (
    compare_remedies,
    counterfactual,
    first_counted,
    merge_traces,
    remedy_plans,
    select_tenants,
)


def block_trace(rows, block_size=1, tenant_names=None):
    """rows: (t, tenant, ids) or (t, tenant, ids, session); every block full (prompt = len(ids) * block_size)."""
    ids = [list(r[2]) for r in rows]
    return compile_trace(BlockRequests.from_lists(
        ids, [len(b) * block_size for b in ids], block_size, t=[r[0] for r in rows], tenant=[r[1] for r in rows],
        session=[r[3] if len(r) > 3 else -1 for r in rows], tenant_names=tenant_names))


# -- merging ------------------------------------------------------------------------------------------------------

def test_merge_orders_by_time_keeps_ties_in_part_order_and_renames():
    a = block_trace([(0.0, "x", [1, 2], 0), (2.0, "x", [1, 2, 3], 0), (5.0, "y", [7], 4)])
    b = block_trace([(1.0, "u", [9], 0), (2.0, "u", [9, 8], 1)])
    merged = merge_traces([("left", a), ("right", b)])
    assert merged.tenant_names == ["left", "right"]
    assert merged.t.tolist() == [0.0, 1.0, 2.0, 2.0, 5.0]
    # the tie at t=2 keeps the first part first
    assert [merged.tenant_names[c] for c in merged.tenant] == ["left", "right", "left", "right", "left"]
    # sessions: a uses 0..4, so b's 0 and 1 become 5 and 6
    assert merged.session.tolist() == [0, 5, 0, 6, 4]
    # each request keeps its own keys
    expected = [a.block_keys[0:2], b.block_keys[0:1], a.block_keys[2:5], b.block_keys[1:3], a.block_keys[5:6]]
    for i, keys in enumerate(expected):
        assert merged.block_keys[merged.block_offsets[i]:merged.block_offsets[i + 1]].tolist() == keys.tolist()


def test_merge_keeping_tenants_prefixes_their_names():
    a = block_trace([(0.0, "x", [1]), (1.0, "y", [2])])
    merged = merge_traces([("m", a), ("n", a)], keep_tenants=True)
    assert merged.tenant_names == ["m/x", "m/y", "n/x", "n/y"]
    assert [merged.tenant_names[c] for c in merged.tenant] == ["m/x", "n/x", "m/y", "n/y"]


def test_merge_refuses_different_block_sizes():
    with pytest.raises(TraceError, match="block_size"):
        merge_traces([("a", block_trace([(0.0, "x", [1])], block_size=1)),
                      ("b", block_trace([(0.0, "x", [1])], block_size=2))])


def test_select_tenants_keeps_order_and_names_only_those():
    trace = block_trace([(0.0, "a", [1]), (1.0, "b", [2]), (2.0, "a", [3]), (3.0, "c", [4])])
    sub, index = select_tenants(trace, ["c", "a"])
    assert index.tolist() == [0, 2, 3]
    assert sub.tenant_names == ["c", "a"]
    assert [sub.tenant_names[c] for c in sub.tenant] == ["a", "a", "c"]
    assert sub.block_keys.tolist() == trace.block_keys[[0, 2, 3]].tolist()


def test_first_counted_follows_the_engine_warmup_rule():
    trace = block_trace([(10.0, "a", [1]), (11.0, "a", [1]), (15.0, "a", [1]), (16.0, "a", [1])])
    assert first_counted(trace, CacheConfig(warmup_requests=1)) == 1
    assert first_counted(trace, CacheConfig(warmup_s=5.0)) == 2          # t >= 10 + 5
    assert first_counted(trace, CacheConfig(warmup_requests=3, warmup_s=5.0)) == 3


# -- hand-computed: two tenants, capacity 2 ---------------------------------------------------------------------
#
# A sends [1,2] at t=0 and again at t=2; B sends [9,8] at t=1. One block = one token.
# Shared, capacity 2: A caches k1,k2 (stamped deepest first, so k2 is the LRU tail). B evicts k2 for 9, then k1
# for 8. A's second request misses both: A 0/4. Alone at capacity 2, A's second request hits both: A 2/4.
# Quotas (equal shares, 1 block each): A caches k1 only (k2 finds no victim but its own k1), then hits k1: 1/4.
# Priority for A with reserve 0.5: A's own partition has round(0.5 x 2) = 1 block: the same 1/4.

def two_tenants():
    return block_trace([(0.0, "A", [1, 2]), (1.0, "B", [9, 8]), (2.0, "A", [1, 2])])


def test_counterfactual_by_hand():
    cost = counterfactual(two_tenants(), CacheConfig(capacity_blocks=2))
    assert cost["A"]["token_hit_ratio_shared"] == 0.0
    assert cost["A"]["token_hit_ratio_alone"] == 0.5
    assert cost["A"]["token_cost"] == 0.5
    assert cost["B"]["token_hit_ratio_alone"] == cost["B"]["token_hit_ratio_shared"] == 0.0


def test_counterfactual_at_a_share_of_the_capacity_by_hand():
    cost = counterfactual(two_tenants(), CacheConfig(capacity_blocks=2), capacity="share")
    assert cost["A"]["token_hit_ratio_alone"] == 0.25


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_remedies_by_hand(executor):
    report = compare_remedies(two_tenants(), CacheConfig(capacity_blocks=2), priority="A", executor=executor,
                              workers=2)
    ratio = {name: {t: row["token_hit_ratio"] for t, row in res.per_tenant.items()}
             for name, res in report.results.items()}
    assert ratio["shared"] == {"A": 0.0, "B": 0.0}
    assert ratio["namespace"] == {"A": 0.0, "B": 0.0}
    assert ratio["quotas"] == {"A": 0.25, "B": 0.0}
    assert ratio["priority"] == {"A": 0.25, "B": 0.0}
    assert ratio["alone"] == {"A": 0.5, "B": 0.0}
    assert report.recovered("quotas", "A") == 0.5
    assert report.recovered("namespace", "A") == 0.0
    assert report.recovered("quotas", "B") is None      # B lost nothing
    data = report.to_dict()
    assert data["remedies"]["quotas"]["recovered"]["A"] == 0.5
    assert data["counterfactual"]["cost"]["A"]["token_cost"] == 0.5


def test_namespace_isolation_removes_cross_tenant_hits():
    # B reuses A's prefix [1,2]: shared, B hits 2 tokens from A's entries; salted per tenant, none
    trace = block_trace([(0.0, "A", [1, 2]), (1.0, "B", [1, 2, 3])])
    report = compare_remedies(trace, CacheConfig(capacity_blocks=10))
    assert report.results["shared"].per_tenant["B"]["hit_tokens"] == 2
    assert report.results["shared"].hits_from.tolist() == [[0, 0], [2, 0]]
    assert report.results["namespace"].per_tenant["B"]["hit_tokens"] == 0
    # alone, B has no A to borrow from: sharing *helped* B, so its cost is negative
    assert report.cost()["B"]["token_cost"] == -2 / 3


def test_plans_describe_quotas_and_priority_partitions():
    plans = {p.name: p for p in remedy_plans(["a", "b", "c"], 100, priority="b", reserve=0.7, quotas={"a": 40})}
    assert [(q.tenants, q.capacity_blocks) for q in plans["quotas"].partitions] == [
        (("a",), 40), (("b",), 30), (("c",), 30)]
    assert [(q.tenants, q.capacity_blocks) for q in plans["priority"].partitions] == [
        (("b",), 70), (("a", "c"), 30)]


@pytest.mark.parametrize("kwargs, message", [
    ({"priority": "nobody"}, "unknown priority tenant"),
    ({"priority": "a", "reserve": 1.0}, "reserve"),
    ({"quotas": {"a": 100}}, "after the quotas given .100 blocks. 0 for 1 tenant"),
    ({"quotas": {"zz": 1}}, "unknown tenant"),
])
def test_bad_remedy_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        remedy_plans(["a", "b"], 100, **kwargs)


# -- invariants ---------------------------------------------------------------------------------------------------

@st.composite
def tenant_traces(draw, max_tenants=3):
    n = draw(st.integers(1, 25))
    n_tenants = draw(st.integers(1, max_tenants))
    rows, t = [], 0.0
    for _ in range(n):
        t += draw(st.sampled_from([0.0, 0.5, 1.0, 7.0]))
        tenant = draw(st.integers(0, n_tenants - 1))
        # small alphabets so prefixes repeat, per tenant and across tenants
        ids = draw(st.lists(st.integers(0, 3), min_size=1, max_size=5))
        rows.append((t, f"t{tenant}", ids, draw(st.integers(-1, 3))))
    return rows


# capacity >= 3 blocks, so an equal quota for each of up to 3 tenants is at least one block
configs = st.builds(lambda cap, ttl, warm: CacheConfig(capacity_blocks=cap, ttl_s=ttl, warmup_requests=warm),
                    st.one_of(st.none(), st.integers(3, 12)), st.sampled_from([None, 2.0, 30.0]),
                    st.integers(0, 4))


@pytest.mark.parametrize("impl", ["core", "reference"])
@given(rows=tenant_traces(max_tenants=1), config=configs)
def test_one_tenant_alone_and_every_remedy_equal_the_shared_replay(impl, rows, config):
    trace = block_trace(rows)
    plain = cachesim.replay(trace, capacity_blocks=config.capacity_blocks, ttl_s=config.ttl_s,
                            warmup=config.warmup_requests, impl=impl).per_tenant()["t0"]
    report = compare_remedies(trace, config, priority="t0", impl=impl)
    for name, res in report.results.items():
        row = res.per_tenant["t0"]
        assert (row["hit_tokens"], row["prompt_tokens"], row["requests"]) == (
            plain["hit_tokens"], plain["prompt_tokens"], plain["requests"]), name


@given(rows=tenant_traces(), config=configs)
def test_alone_ratio_matches_an_explicit_replay_of_each_tenant(rows, config):
    trace = block_trace(rows)
    cost = counterfactual(trace, config)
    for name in trace.tenant_names:
        # the tenant's requests picked out of the raw rows, not out of the compiled trace
        mine = [(i, r) for i, r in enumerate(rows) if r[1] == name]
        alone = cachesim.replay(block_trace([r for _, r in mine]), capacity_blocks=config.capacity_blocks,
                                ttl_s=config.ttl_s)
        counted = np.asarray([i >= config.warmup_requests for i, _ in mine])
        hit = int(alone.per_request["hit_tokens"][counted].sum())
        prompt = int(alone.per_request["prompt_tokens"][counted].sum())
        assert cost[name]["hit_tokens_alone"] == hit
        assert cost[name]["token_hit_ratio_alone"] == (hit / prompt if prompt else 0.0)


@given(rows=tenant_traces(), config=configs)
def test_shared_partition_reports_the_plain_replay(rows, config):
    trace = block_trace(rows)
    plain = cachesim.replay(trace, capacity_blocks=config.capacity_blocks, ttl_s=config.ttl_s,
                            warmup=config.warmup_requests)
    report = compare_remedies(trace, config)
    shared = report.shared
    assert shared.hits_from.tolist() == plain.hits_from.tolist()
    for name, row in plain.per_tenant().items():
        assert shared.per_tenant[name]["hit_tokens"] == row["hit_tokens"]
        assert shared.per_tenant[name]["requests"] == row["requests"]


# -- command line and pictures ------------------------------------------------------------------------------------

def test_cli_interference_json_and_heatmap(tmp_path, capsys):
    from cachesim.cli import main

    path = tmp_path / "two.npz"
    two_tenants().save(path)
    out = tmp_path / "report.json"
    png, svg = tmp_path / "hits.png", tmp_path / "hits.svg"
    assert main(["interference", str(path), "--capacity", "2", "--priority", "A", "--json", str(out),
                 "--heatmap", str(png)]) == 0
    assert "quotas" in capsys.readouterr().out
    import orjson

    data = orjson.loads(out.read_text())
    assert data["remedies"]["quotas"]["per_tenant"]["A"]["token_hit_ratio"] == 0.25
    assert data["counterfactual"]["per_tenant"]["A"]["token_hit_ratio"] == 0.5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["interference", str(path), "--capacity", "2", "--heatmap", str(svg), "--json", "-"]) == 0
    assert b"<svg" in svg.read_bytes()[:500]


def test_cli_interference_says_who_evicted_whom(tmp_path, capsys):
    import orjson

    from cachesim.cli import main

    path = tmp_path / "two.npz"
    two_tenants().save(path)
    assert main(["interference", str(path), "--capacity", "2", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "lost to others" in printed and "top evictor" in printed
    lost = orjson.loads((tmp_path / "r.json").read_text())["shared_lost_to"]
    # capacity 2: B's two blocks evict A's two, so A's second request misses both (1 token each) because of B
    assert lost["A"] == {"B": 2}  # zeros are left out
    assert lost["B"] == {}


def test_cli_interference_mixes_in_a_generated_agent(tmp_path, capsys):
    from cachesim.cli import main

    path = tmp_path / "base.npz"
    block_trace([(0.0, "x", [1, 2]), (5.0, "x", [1, 2, 3])], block_size=16).save(path)
    assert main(["interference", str(path), "--name", "base", "--add-agent", "chatty", "--agent-users", "2",
                 "--capacity", "50", "--json", "-"]) == 0
    import orjson

    data = orjson.loads(capsys.readouterr().out)
    assert data["tenants"] == ["base", "agent-chatty"]
    assert data["remedies"]["shared"]["per_tenant"]["base"]["requests"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--priority", "nobody"], "unknown priority tenant"),
    (["--heatmap", "out.txt"], "a figure is written as"),
])
def test_cli_interference_bad_input_is_one_line(tmp_path, capsys, argv, message):
    from cachesim.cli import main

    path = tmp_path / "two.npz"
    two_tenants().save(path)
    assert main(["interference", str(path), "--capacity", "2", *[a.replace("out.txt", str(tmp_path / "o.txt"))
                                                                  for a in argv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cachesim: error:") and message in err[0]


@pytest.mark.core
def test_documented_mooncake_example():
    """The figures docs/interference.md shows for the Mooncake trace next to a generated chatty agent."""
    from cachesim.readers import read_trace
    from conftest import MOONCAKE_CONVERSATION, require_shared

    mooncake = read_trace(require_shared(MOONCAKE_CONVERSATION))
    check_documented_example(mooncake)


def check_documented_example(mooncake):
    from cachesim.workloads import agent_workload

    agent = compile_trace(agent_workload(style="chatty", n_users=64, seed=0).requests, mooncake.block_size)
    mix = merge_traces([("mooncake", mooncake), ("agent-chatty", agent)])
    report = compare_remedies(mix, CacheConfig(capacity_blocks=20_000), priority="mooncake", reserve=0.9)
    ratio = {name: round(res.per_tenant["mooncake"]["token_hit_ratio"], 4) for name, res in report.results.items()}
    assert ratio == {"shared": 0.2294, "namespace": 0.2294, "quotas": 0.2157, "priority": 0.2814, "alone": 0.2935}
    assert round(report.recovered("priority", "mooncake"), 2) == 0.81
    assert report.results["shared"].per_tenant["agent-chatty"]["hit_tokens"] == 0


def test_a_tenant_without_requests_reports_zeros():
    trace = block_trace([(0.0, 0, [1, 2]), (1.0, 0, [1, 2])], tenant_names=["A", "idle"])
    report = compare_remedies(trace, CacheConfig(capacity_blocks=4), priority="idle")
    for res in report.results.values():
        assert res.per_tenant["idle"]["requests"] == 0
        assert res.per_tenant["A"]["hit_tokens"] in (0, 2)
    # A alone at 4 blocks hits its second request; quotas give it 2 blocks: still enough for [1, 2]
    assert report.results["quotas"].per_tenant["A"]["hit_tokens"] == 2
    assert report.results["priority"].per_tenant["A"]["hit_tokens"] == 2
