"""The command line as a user meets it: real output, located errors, exit codes, no tracebacks."""

import subprocess
import sys

import orjson
import pytest

from cachesim.cli import main
from conftest import DATA, MOONCAKE_CONVERSATION, require_shared


def run_cli(*args):
    """Run the CLI in a subprocess, as a user would (and so any traceback would show on stderr)."""
    return subprocess.run([sys.executable, "-m", "cachesim", *args], capture_output=True, text=True, timeout=120)


def test_mooncake_reference_figure_through_the_cli(tmp_path):
    trace = require_shared(MOONCAKE_CONVERSATION)
    out = tmp_path / "result.json"
    proc = run_cli("replay", str(trace), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "0.3664" in proc.stdout and "105,710 / 288,500" in proc.stdout
    summary = orjson.loads(out.read_bytes())["summary"]
    assert (summary["hit_blocks"], summary["blocks"]) == (105_710, 288_500)


def test_builtin_workload_runs_with_no_file(capsys):
    assert main(["replay", "--capacity", "20k", "--ttl", "5m", "--preset", "vllm"]) == 0
    out = capsys.readouterr().out
    assert "built-in agent workload" in out
    assert "capacity 20,000 blocks" in out and "TTL 300 s" in out and "hit cap prompt-1" in out
    assert "token hit ratio" in out and "per tenant" in out


def test_json_to_stdout_is_machine_readable(capsys):
    assert main(["replay", "--json", "-", "--users", "2", "--capacity-tokens", "64000"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["config"]["capacity_blocks"] == 4000          # 64,000 tokens / 16-token blocks
    assert 0 < data["summary"]["token_hit_ratio"] <= 1


def test_per_request_csv(tmp_path):
    out = tmp_path / "requests.csv"
    assert main(["replay", "--users", "1", "--per-request", str(out), "--json", str(tmp_path / "r.json")]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("request,hit_tokens,hit_blocks,")
    n_requests = orjson.loads((tmp_path / "r.json").read_bytes())["summary"]["requests"]
    assert len(lines) == n_requests + 1


@pytest.mark.parametrize(("args", "message"), [
    (["replay", "missing.jsonl"], "missing.jsonl: cannot open"),
    (["replay", "--preset", "tgi"], "unknown preset 'tgi'"),
    (["replay", "--policy", "nosuch"], "unknown policy 'nosuch'"),
    (["replay", "--warmup", "soon"], "warmup must be"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("capacity", ["0", "-3", "lots", "2.5"])
def test_bad_capacity_is_refused_by_the_parser(capacity):
    proc = run_cli("replay", "--capacity", capacity)
    assert proc.returncode == 2 and "--capacity" in proc.stderr and "Traceback" not in proc.stderr


def test_malformed_trace_line_is_located(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0, "tokens": [1, 2]}\n{"t": 1, "tokens": [1, "x"]}\n')
    proc = run_cli("replay", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:2: tokens: element 1 is str" in proc.stderr


def test_mooncake_line_with_wrong_block_count_is_located(tmp_path):
    bad = tmp_path / "mc.jsonl"
    bad.write_text('{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [0, 1]}\n'
                   '{"timestamp": 5, "input_length": 600, "output_length": 1, "hash_ids": [0]}\n')
    proc = run_cli("replay", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:2: hash_ids: 1 block ids for 600 tokens" in proc.stderr


def test_a_worker_killed_from_outside_ends_in_one_line_not_a_traceback(monkeypatch, capsys):
    from concurrent.futures.process import BrokenProcessPool

    from cachesim import cli

    def killed(args):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(cli.replay, "run", killed)
    assert cli.main(["replay"]) == cli.EXIT_WORKER_LOST
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cachesim: error: a worker stopped") and "--resume" in err[0]


@pytest.mark.parametrize("command", ["replay", "mrc", "fleet", "interference"])
@pytest.mark.parametrize("compiled", [False, True])
def test_a_block_size_the_trace_cannot_have_is_refused_by_every_command(command, compiled, tmp_path, capsys):
    """A trace of 16-token block ids (or a compiled .npz) cannot be re-cut at 4 tokens: --block-size 4 is an error,
    not a flag ignored."""
    from cachesim import read_trace
    from cachesim.cli import main

    path = DATA / "native_blocks16.jsonl"
    if compiled:
        read_trace(path).save(tmp_path / "trace.npz")
        path = tmp_path / "trace.npz"
    assert main([command, str(path), "--block-size", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cachesim: error:") and "blocks are 16 tokens, not 4" in err[-1]
