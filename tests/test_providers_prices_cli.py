"""The price registry (rows dated and sourced, user overrides) and the `prices` / `cost` subcommands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cachesim.cli import main
from cachesim.providers import ProviderInput, load_prices, make_rules, simulate
from cachesim.providers.traceio import read_provider_trace


def test_every_shipped_row_is_dated_and_sourced():
    table = load_prices()
    assert table.rows
    for row in table.rows:
        assert row.as_of[:4] == "2026"
        assert row.source.startswith("https://")


def test_registry_figures_match_the_price_table():
    # PROVIDERS.md §7.1 / §7.2: Sonnet 4.6 3 / 3.75 / 6 / 0.30 / 15; gpt-5.5 >272K 10 / 1 / 45
    table = load_prices()
    (row,) = table.candidates("anthropic", "claude-sonnet-4.5")      # an alias
    assert (row.input, row.write_5m, row.write_1h, row.read, row.output) == (3, 3.75, 6, 0.3, 15)
    low, high = table.candidates("openai", "gpt-5.5")
    assert (high.above_input_tokens, high.input, high.read, high.output) == (272000, 10, 1, 45)


def test_gemini_price_changes_on_2027_01_01():
    import datetime as dt

    table = load_prices()
    before = table.candidates("gemini", "gemini-3.8-flash", dt.datetime(2026, 12, 31, tzinfo=dt.timezone.utc))
    after = table.candidates("gemini", "gemini-3.8-flash", dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))
    assert before[0].input == 0.75 and after[0].input == 1.5


def test_user_file_overrides_a_row(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('[[price]]\nprovider = "anthropic"\nmodel = "claude-sonnet-4.6"\ninput = 1.0\nread = 0.025\n'
                    'write_5m = 1.25\nwrite_1h = 2.0\noutput = 5.0\nas_of = 2026-09-20\n'
                    'source = "https://example.test/negotiated"\n')
    table = load_prices(mine)
    (row,) = table.candidates("anthropic", "claude-sonnet-4.6")
    assert row.read == 0.025 and row.origin == str(mine)
    # a request of 2000 tokens read in full: 2000 * 0.025 / 1e6 with the user's row, not 0.3
    inp = ProviderInput.from_lists([list(range(2000))] * 2, t=[0, 10])
    res = simulate(inp, make_rules("anthropic", ttft_s=0), prices=table)
    assert res.cost[1] == pytest.approx(2000 * 0.025 / 1e6)


def test_bad_price_file_is_one_located_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[price]]\nprovider = "anthropic"\nmodel = "x"\ninput = -1\nread = 0\noutput = 1\n'
                   'as_of = 2026-01-01\nsource = "s"\n')
    assert main(["prices", "--file", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cachesim: error: ") and "price row 1" in err[0] and "'input'" in err[0]


def test_cli_prices_lists_every_provider(capsys):
    assert main(["prices"]) == 0
    out = capsys.readouterr().out
    for word in ("anthropic", "openai", "gemini", "deepseek", "claude-sonnet-4.6", "gpt-5.6-sol",
                 "https://platform.claude.com/docs/en/about-claude/pricing"):
        assert word in out
    assert main(["prices", "--provider", "openai", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows and {r["provider"] for r in rows} == {"openai"}


def test_cli_cost_json_and_csv(tmp_path, capsys):
    out_csv = tmp_path / "req.csv"
    assert main(["cost", "--provider", "anthropic", "--users", "2", "--json", "-",
                 "--per-request", str(out_csv)]) == 0
    report = json.loads(capsys.readouterr().out)
    s = report["summary"]
    assert s["prompt_tokens"] == (s["uncached_tokens"] + s["read_tokens"] + s["write_short_tokens"]
                                  + s["write_long_tokens"])
    assert sum(t["cost_usd"] for t in report["tenants"].values()) == pytest.approx(s["cost_usd"])
    with open(out_csv) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == s["requests"]
    assert sum(float(r["cost"]) for r in rows) == pytest.approx(s["cost_usd"])
    assert sum(float(r["savings"]) for r in rows) == pytest.approx(s["savings_usd"])


def test_cli_cost_unknown_option_is_an_error(capsys):
    with pytest.raises(SystemExit) as stopped:  # an argparse error now: --set keys are read at the edge
        main(["cost", "--set", "bogus=1"])
    assert stopped.value.code == 2
    assert "unknown rule option 'bogus'" in capsys.readouterr().err


def _write_trace(path, lines):
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_provider_trace_observed_against_predicted(tmp_path, capsys):
    p = list(range(2000))
    trace = tmp_path / "t.jsonl"
    _write_trace(trace, [
        {"t": 0, "tenant": "a", "session": "s", "tokens": p, "breakpoints": [2000],
         "usage": {"cache_read": 0, "cache_write": 2000}},
        {"t": 10, "tenant": "a", "session": "s", "tokens": p + [7] * 100, "boundaries": [2000, 2100],
         "usage": {"cache_read_input_tokens": 1900, "cache_creation_input_tokens": 200}},   # Anthropic's names
    ])
    inp = read_provider_trace(trace)
    res = simulate(inp, make_rules("anthropic", ttft_s=0))
    from cachesim.providers.report import observed_vs_predicted

    ovp = observed_vs_predicted(res)
    # predicted reads 0, 2000 against observed 0, 1900: MAE 50; writes 2000, 100 against 2000, 200: MAE 50
    assert ovp["read"]["mae_tokens"] == 50.0 and ovp["write"]["mae_tokens"] == 50.0
    assert ovp["read"]["exact_requests"] == 1
    assert main(["cost", str(trace), "--set", "ttft_s=0"]) == 0
    assert "mean absolute error 50.0 tokens" in " ".join(capsys.readouterr().out.split())  # wrapped at 80 columns
    # the invoice tie-out, by hand at Sonnet 4.6's rates ($/Mtok: write 3.75, read 0.30; no output given):
    # observed 2000 x 3.75 + (200 x 3.75 + 1900 x 0.30); predicted 2000 x 3.75 + (100 x 3.75 + 2000 x 0.30)
    assert main(["cost", str(trace), "--set", "ttft_s=0", "--json", "-"]) == 0
    cal = json.loads(capsys.readouterr().out)["calibration"]
    assert cal["requests"] == 2 and cal["exact_requests"] == 1
    assert cal["cache_read_mae_share"] == pytest.approx(100 / 4100)
    assert cal["cache_write_mae_share"] == pytest.approx(100 / 4100)
    assert cal["cost_observed_usd"] == pytest.approx((7500 + 750 + 570) / 1e6)
    assert cal["cost_predicted_usd"] == pytest.approx((7500 + 375 + 600) / 1e6)


def test_provider_trace_bad_breakpoint_names_file_line_field(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    _write_trace(trace, [{"t": 0, "tokens": [1, 2, 3]}, {"t": 1, "tokens": [1, 2], "breakpoints": [5]}])
    assert main(["cost", str(trace)]) == 2
    err = capsys.readouterr().err
    assert f"{trace}:2: breakpoints:" in err


def test_per_tenant_totals_add_up():
    from cachesim.providers.report import per_session, per_tenant
    from cachesim.workloads import agent_workload

    res = simulate(ProviderInput.from_workload(agent_workload(n_users=3)), make_rules("openai", "gpt-5.4"))
    tenants = per_tenant(res)
    assert set(tenants) == {"user-0", "user-1", "user-2"}
    assert sum(t["read"] for t in tenants.values()) == int(res.read.sum())
    sessions = per_session(res)
    assert sum(s["requests"] for s in sessions.values()) == res.n_requests
    assert np.isclose(sum(s["cost_usd"] for s in sessions.values()), res.cost.sum())


def test_in_memory_retention_bounds():
    from cachesim.providers.report import retention_bounds
    from cachesim.workloads import agent_workload

    inp = ProviderInput.from_workload(agent_workload(n_users=3))
    bounds = retention_bounds(inp, make_rules("openai", "gpt-4o"), load_prices())   # gpt-4o: in_memory only
    # a longer idle lifetime keeps a superset of entries alive: never fewer hits, never more dollars
    assert bounds["idle_3600s"]["token_hit_ratio"] >= bounds["idle_300s"]["token_hit_ratio"]
    assert bounds["idle_3600s"]["cost_usd"] <= bounds["idle_300s"]["cost_usd"]
    assert retention_bounds(inp, make_rules("openai", "gpt-5.4"), load_prices()) is None   # 24h by default
    assert retention_bounds(inp, make_rules("anthropic"), load_prices()) is None


def test_cli_cost_vs_a_cheaper_model(capsys):
    # Haiku 4.5's rates are a third of Sonnet 4.6's in every column (1/3, 1.25/3.75, 2/6, 0.1/0.3, 5/15), and every
    # marker of the built-in workload sits past both minimums (9,000 tokens of system + tools first), so the same
    # traffic costs exactly a third
    assert main(["cost", "--provider", "anthropic", "--model", "claude-sonnet-4.6", "--users", "2", "--json", "-",
                 "--vs", "model=claude-haiku-4.5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["vs"]["summary"]["model"] == "claude-haiku-4.5"
    assert report["vs"]["summary"]["cost_usd"] == pytest.approx(report["summary"]["cost_usd"] / 3)
    assert main(["cost", "--users", "2", "--vs", "long_ttl=first"]) == 0
    assert "with long_ttl=first:" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "requests"), [("claude_code.jsonl", 3), ("claude_code_v2.jsonl", 2),
                                                 ("anthropic_messages.jsonl", 3), ("openai_responses.jsonl", None)])
def test_cost_reads_what_replay_reads(name, requests, capsys):
    from conftest import DATA

    assert main(["cost", str(DATA / name), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    from cachesim.readers import read_requests

    assert report["summary"]["requests"] == (requests or read_requests(DATA / name).requests.n_requests)
    if name.startswith("claude"):   # the transcripts carry the provider's usage: predicted is set beside it
        assert "observed_vs_predicted" in report


def test_cost_of_a_directory_reads_every_session_file_below_it(tmp_path, capsys):
    import gzip

    from conftest import DATA

    (tmp_path / "proj" / "deep").mkdir(parents=True)
    (tmp_path / "proj" / "a.jsonl").write_bytes((DATA / "claude_code.jsonl").read_bytes())
    (tmp_path / "proj" / "deep" / "b.jsonl.gz").write_bytes(gzip.compress((DATA / "claude_code_v2.jsonl").read_bytes()))
    (tmp_path / "proj" / "notes.txt").write_text("not a trace")
    (tmp_path / "proj" / "sessions-index.json").write_text('{"version": 1, "entries": []}')
    (tmp_path / "history.jsonl").write_text('{"display": "fix it", "timestamp": 1769365656734}\n')
    (tmp_path / "proj" / "history.jsonl").write_bytes((tmp_path / "history.jsonl").read_bytes())
    assert main(["cost", str(tmp_path / "proj"), "--json", "-"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "1 files below" in captured.err and "history.jsonl" in captured.err   # not a trace: skipped, said
    # a.jsonl: 3 requests in 2 sessions (main and its sidechain); b: 2 requests in 1 session
    assert report["summary"]["requests"] == 5
    assert report["trace"].endswith("(2 files, 3 sessions)")
    (tmp_path / "empty").mkdir()
    assert main(["cost", str(tmp_path / "empty")]) == 2
    assert "no trace files below it" in capsys.readouterr().err


def test_content_block_ends_come_from_segments_when_the_file_has_no_boundaries():
    from cachesim.readers._base import ReadResult
    from cachesim.requests import Ragged, TokenRequests

    requests = TokenRequests.from_lists([[1] * 10, [2] * 7])
    segments = Ragged(np.asarray([0, 3, 5]), {"kind": np.zeros(5, np.int32), "tokens": np.asarray([4, 4, 2, 3, 4])})
    breakpoints = Ragged(np.asarray([0, 1, 2]), {"tokens": np.asarray([8, 7]), "ttl_s": np.asarray([np.nan, 3600.0])})
    inp = ProviderInput.from_read(ReadResult(requests, np.asarray([1, 2]), "x.jsonl",
                                             {"segments": segments, "breakpoints": breakpoints}))
    assert inp.boundaries.tolist() == [4, 8, 10, 3, 7] and inp.boundary_offsets.tolist() == [0, 3, 5]
    assert inp.breakpoint_long.tolist() == [0, 1]   # no TTL given: 5 minutes; an hour: the long class


def test_the_logged_bill_prices_one_hour_writes_at_the_one_hour_rate(capsys):
    from conftest import DATA

    assert main(["cost", str(DATA / "claude_code_v2.jsonl"), "--json", "-"]) == 0
    cal = json.loads(capsys.readouterr().out)["calibration"]
    # the log's model, claude-opus-4-5-20251101, is billed at Opus 4.5's rates ($/Mtok: input 5, write 5m 6.25,
    # write 1h 10, read 0.50, output 25), by hand:
    # msg_1: 3 uncached + 5,000 written for 1h + 412 out; msg_2: 6 uncached + 430 written for 5m + 5,000 read + 3 out
    assert cal["cost_observed_usd"] == pytest.approx((3 * 5 + 5000 * 10 + 412 * 25 + 6 * 5 + 430 * 6.25 + 5000 * 0.5
                                                      + 3 * 25) / 1e6)


def test_each_model_of_a_log_is_billed_with_its_own_cache_and_prices(tmp_path, capsys):
    from conftest import DATA

    text = (DATA / "claude_code_v2.jsonl").read_text()
    lines = text.splitlines()
    lines[7] = lines[7].replace("claude-opus-4-5-20251101", "claude-haiku-4-5-20251001")   # msg_2 switches model
    path = tmp_path / "switch.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main(["cost", str(path), "--json", "-", "--per-request", str(tmp_path / "r.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"] == {"claude-opus-4.5": 1, "claude-haiku-4.5": 1}
    rows = list(csv.DictReader((tmp_path / "r.csv").read_text().splitlines()))
    # a new model is a new cache: msg_2 reads nothing of what msg_1 wrote, and writes its whole prompt
    assert [int(r["read"]) for r in rows] == [0, 0] and int(rows[1]["write_short"]) == 5436
    # Haiku 4.5's rates ($/Mtok: write 5m 1.25, output 5) for msg_2, by hand
    assert float(rows[1]["cost"]) == pytest.approx((5436 * 1.25 + 3 * 5) / 1e6)
    assert main(["cost", str(path), "--vs", "automatic_ttl=1h"]) == 2
    assert "went to 2 models" in capsys.readouterr().err


@pytest.mark.parametrize(("logged", "registry"), [
    ("claude-haiku-4-5-20251001", "claude-haiku-4.5"), ("claude-sonnet-4-5", "claude-sonnet-4.5"),
    ("claude-opus-4-5-20251101", "claude-opus-4.5"), ("gpt-4o-2024-08-06", "gpt-4o"),
    ("claude-sonnet-4.6", "claude-sonnet-4.6")])
def test_model_ids_as_logs_write_them_name_registry_rows(logged, registry):
    provider = "openai" if logged.startswith("gpt") else "anthropic"
    assert make_rules(provider, logged).model == registry


def test_an_unknown_model_is_still_refused_by_its_own_name():
    with pytest.raises(ValueError, match="'claude-nonesuch-9-9-20990101'"):
        make_rules("anthropic", "claude-nonesuch-9-9-20990101")


def test_a_codex_rollout_bills_under_openai_with_no_flag(tmp_path, capsys):
    from conftest import DATA

    sessions = tmp_path / "sessions" / "2026" / "07" / "03"
    sessions.mkdir(parents=True)
    (sessions / "rollout-2026-07-03T18-15-00-sess-1.jsonl").write_bytes((DATA / "codex_rollout.jsonl").read_bytes())
    assert main(["cost", str(tmp_path / "sessions"), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["provider"] == "openai" and report["summary"]["model"] == "gpt-5.1"
    # the second call re-sends the first call's 9,000-token prompt; OpenAI caches whole 128-token units of it
    # (PROVIDERS.md §2): 70 x 128 = 8,960, what the rollout's cached_input_tokens says
    assert report["summary"]["read_tokens"] == 8960
    assert report["calibration"]["exact_requests"] == 2


def test_a_directory_of_claude_code_and_codex_sessions_bills_each_under_its_provider(tmp_path, capsys):
    from conftest import DATA

    (tmp_path / "claude").mkdir()
    (tmp_path / "codex").mkdir()
    (tmp_path / "claude" / "s-2.jsonl").write_bytes((DATA / "claude_code_v2.jsonl").read_bytes())
    (tmp_path / "codex" / "rollout-x.jsonl").write_bytes((DATA / "codex_rollout.jsonl").read_bytes())
    assert main(["cost", str(tmp_path), "--json", "-", "--per-request", str(tmp_path / "r.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"] == {"claude-opus-4.5": 2, "gpt-5.1": 2}
    rows = list(csv.DictReader((tmp_path / "r.csv").read_text().splitlines()))
    by_session = {}
    for row in rows:
        by_session.setdefault(row["session"], []).append(int(row["read"]))
    # Codex under OpenAI: 70 x 128 of the first prompt read by the second; Claude Code under Anthropic: msg_2
    # reads msg_1's whole 5,003-token prompt, written at its end by the automatic breakpoint
    assert sorted(by_session.values()) == [[0, 5003], [0, 8960]]


def test_claude_code_requests_carry_markers_with_the_ttl_their_writes_show(tmp_path, capsys):
    from conftest import DATA

    assert main(["cost", str(DATA / "claude_code_v2.jsonl"), "--per-request", str(tmp_path / "r.csv"),
                 "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = list(csv.DictReader((tmp_path / "r.csv").read_text().splitlines()))
    # msg_1's writes were 1-hour ones (ephemeral_1h_input_tokens 5,000): its markers ask for an hour, and the
    # marker at the prompt's end writes the whole 5,003-token prompt at the 1-hour rate; msg_2 wrote 5-minute ones
    assert (int(rows[0]["write_long"]), int(rows[0]["write_short"])) == (5003, 0)
    assert (int(rows[1]["write_long"]), int(rows[1]["write_short"]), int(rows[1]["read"])) == (0, 433, 5003)
    assert report["rules"]["automatic"] is False   # the harness's own markers, not the top-level automatic one
    # the same traffic priced elsewhere: each logged model still its own cache, at the provider's default model
    assert main(["cost", str(DATA / "claude_code_v2.jsonl"), "--provider", "openai", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["provider"] == "openai"
