"""`cachesim demo`: finishes fast, repeats exactly for a seed, and shows the harness styles' cost gap."""

from __future__ import annotations

import json
import time

from cachesim.cli import main
from cachesim.demo import run_demo


def test_demo_repeats_exactly_and_is_fast():
    start = time.perf_counter()
    first = run_demo(n_users=8, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 30.0
    assert run_demo(n_users=8, seed=0) == first
    assert run_demo(n_users=8, seed=1) != first


def test_demo_compares_styles_under_both_providers():
    demo = run_demo(n_users=4, seed=0)
    assert [(r["provider"], r["model"]) for r in demo["rows"]] == [("anthropic", "claude-sonnet-4.6"),
                                                                   ("openai", "gpt-5.4")]
    for row in demo["rows"]:
        native, chatty = row["styles"]["native"], row["styles"]["chatty"]
        # the same queries: chatty splits each tool round into more calls and breaks the prefix early
        assert native["queries"] == chatty["queries"]
        assert chatty["requests_per_query"] > native["requests_per_query"]
        assert native["token_hit_ratio"] > 0.5 > chatty["token_hit_ratio"]
        assert row["cost_multiple"] == chatty["cost_per_query_usd"] / native["cost_per_query_usd"]
        assert row["cost_multiple"] > 1


def test_cli_demo_json(capsys):
    assert main(["demo", "--users", "2", "--seed", "3", "--json", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["users"] == 2 and out["seed"] == 3
    assert out == json.loads(json.dumps(run_demo(n_users=2, seed=3)))


def test_cli_demo_table(capsys):
    assert main(["demo", "--users", "2"]) == 0
    out = capsys.readouterr().out
    assert "chatty÷native" in out and "anthropic/claude-sonnet-4.6" in out and "openai/gpt-5.4" in out


def test_demo_through_the_real_command_line():
    import subprocess
    import sys

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cachesim", "demo"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 30.0
    assert "chatty÷native" in proc.stdout and proc.stderr == ""
