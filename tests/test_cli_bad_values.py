"""Every flag of every command, given a bad value, ends in exit 2 and one line ``cachesim: error: ...`` on stderr,
never a traceback.

The flags are read off ``build_parser()``: a flag added without a bad value in BAD (or a reason in NO_VALUE or
ANY_STRING) fails ``test_every_flag_has_a_bad_value``. "One line" is exactly one line: the command parsers print
argparse's usage errors as one ``cachesim: error: COMMAND: argument --FLAG: ...`` line (cli/_options.add_command)
pointing to ``--help`` instead of the usage block, like every other cachesim error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cachesim.cli import build_parser, main

DATA = Path(__file__).parent / "data"
TRACE = str(DATA / "mooncake.jsonl")
NOWHERE = "/nonexistent-cachesim-dir"

# a run of each command that succeeds (checked below), to which one bad value at a time is added
BASE = {
    "replay": ["replay", TRACE],
    "convert": ["convert", TRACE, "{tmp}/out.npz"],
    "interference": ["interference", TRACE, "--capacity", "4"],
    "fleet": ["fleet", TRACE, "--replicas", "2", "--router", "round-robin"],
    "prices": ["prices"],
    "cost": ["cost", "--users", "1"],
    "demo": ["demo", "--users", "1"],
    "mrc": ["mrc", TRACE],
    "sweep": ["sweep", TRACE, "--capacity", "4", "--executor", "serial"],
    "report": ["report", "{tmp}/replay.json", "-o", "{tmp}/report.html"],
    "size": ["size", TRACE, "--target", "30%"],
}
# where a positional sits in its BASE run (cost's TRACE is inserted where the built-in workload stood)
POSITION = {"trace": 1, "input": 1, "result": 1, "output": 2}

NOT_A_TOKENIZER = "{tmp}/not-a-tokenizer.json"

# flag (or positional) -> bad values, each run on its own; (command, flag) keys where a command reads it its own way
BAD = {
    "trace": [f"{NOWHERE}/trace.jsonl"],
    "input": [f"{NOWHERE}/trace.jsonl"],
    "output": ["{tmp}/out.txt"],
    "result": [f"{NOWHERE}/result.json"],
    "--format": ["bogus"],
    "--preset": ["bogus"],
    "--block-size": ["0", "abc"],
    "--workload": ["bogus"],
    "--users": ["0", "inf", "abc"],
    "--seed": ["-1", "abc"],
    "--impl": ["bogus"],
    "--tokenizer": ["bogus", "hf:" + NOT_A_TOKENIZER, "tiktoken:cl100k_base=" + NOT_A_TOKENIZER],
    "--batch-bytes": ["0"],
    "--lengths": ["bogus", "from_ids"],
    "--sizes": ["bogus", "billed"],
    "--capacity": ["0", "abc"],
    "--capacity-tokens": ["0"],
    "--engine-capacity": ["0", "abc", "2"],
    "--ttl": ["-1", "abc"],
    "--hit-cap": ["bogus"],
    "--isolation": ["bogus"],
    "--warmup": ["-3", "abc"],
    "--policy": ["bogus", "s3fifo:small-size-ratio=2", "slru:segments=2", f"{NOWHERE}/policy.py:Lru"],
    "--victims": ["bogus"],
    "--workers": ["0"],
    "--executor": ["bogus"],
    "--json": [f"{NOWHERE}/out.json"],
    "--per-request": [f"{NOWHERE}/out.csv"],
    "--replicas": ["0"],
    "--router": ["", ",", "bogus"],
    "--prefix-blocks": ["0"],
    "--routing-key": ["bogus"],
    "--overflow-per-min": ["-1", "nan"],
    "--cache-threshold": ["2"],
    "--balance-abs": ["-1"],
    "--balance-rel": ["0.5"],
    "--overlap-weight": ["-1"],
    "--prefill-tps": ["0"],
    "--decode-tps": ["-1"],
    "--output-tokens": ["-1"],
    "--add-agent": ["bogus"],
    "--agent-users": ["0"],
    "--agent-seed": ["-1"],
    "--priority": ["nobody"],
    "--reserve": ["1.5", "0"],
    "--quota": ["x", "nobody=5"],
    "--alone": ["bogus"],
    "--heatmap": ["{tmp}/heat.txt"],
    "--save-trace": ["{tmp}/trace.txt"],
    "--file": [f"{NOWHERE}/prices.toml"],
    "--provider": ["bogus"],
    "--model": ["bogus"],
    "--set": ["batch=False-ish", "batch=maybe", "ttl_5m_s=-1", "ttft_s=abc", "bogus=1", "model=x", "novalue",
              "holidays=someday", "miss_probability=2"],
    "--vs": ["ttft_s=abc", "provider=bogus", "long_ttl=bogus", "lookback_blocks=0"],
    "--long-ttl": ["bogus"],
    "--prices": [f"{NOWHERE}/prices.toml"],
    "--capacities": ["abc", "0"],
    "--target": ["130%", "abc", "0%", "30"],
    "--kv-bytes-per-token": ["0", "160k"],   # a bare k: KB or KiB? refused
    "--sample": ["1.5", "0"],
    "--mini": ["1.5", "0"],
    "--always-tokens": ["-1"],
    "--plot": ["{tmp}/curve.txt", f"{NOWHERE}/curve.png"],
    "--grid": [f"{NOWHERE}/grid.toml"],
    "--out": ["{tmp}/table.txt"],
    "--scheduler": ["bogus"],
    "--shared-dir": [NOWHERE],
    ("report", "--out"): [f"{NOWHERE}/report.html"],
}
# flags that take no value: nothing to get wrong
NO_VALUE = {
    "--help": "prints help",
    "--skip-invalid": "a switch", "--keep-order": "a switch", "--synthesize": "a switch (a non-Azure trace with it "
    "is covered in tests/test_synthesize_everywhere.py)",
    "--interference": "a switch", "--progress": "a switch", "--no-progress": "a switch", "--dense": "a switch",
    "--per-replica": "a switch", "--keep-tenants": "a switch", "--wide": "a switch",
    "--stream": "a switch (what cannot stream is refused: tests/test_sweep_stream.py)",
    "--bound": "a switch (belady with --stream is refused: tests/test_policy_curves.py)",
    "--resume": "a switch (without a checkpoint: "
    "tests/test_sweep.py)", "--json": "prices --json is a switch",
}
# flags that take any string by design
ANY_STRING = {
    "--tenant-field": "names a record field; a trace without that field keeps its default tenants",
    "--name": "the tenant name given to the trace's requests",
    "--agent-name": "the tenant name given to the generated agent",
    "--title": "the report page's title",
}


def _actions():
    """(command, flag or positional dest, takes a value) of every argument of every command."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, sub in commands.choices.items():
        for action in sub._actions:
            for name in action.option_strings or [action.dest]:
                if name.startswith("--") or not action.option_strings:  # -o is --out, -h is --help
                    yield command, name, action.nargs != 0


CASES = [(command, name, value) for command, name, takes in _actions() if takes
         for value in BAD.get((command, name), BAD.get(name, []))]


def test_every_flag_has_a_bad_value():
    missing, wrong = [], []
    for command, name, takes in _actions():
        if not takes:
            (wrong if name not in NO_VALUE else []).append(f"{command} {name} (takes no value: NO_VALUE)")
        elif name not in ANY_STRING and not BAD.get((command, name), BAD.get(name)):
            missing.append(f"{command} {name}")
    assert not missing, f"flags without a bad value in BAD (or a reason in ANY_STRING): {missing}"
    assert not wrong, wrong
    assert set(BASE) == {command for command, _, _ in _actions()}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    """A directory with what the BASE runs read: a replay's JSON for report, a file that is no tokenizer."""
    where = tmp_path_factory.mktemp("bad-values")
    assert main(["replay", TRACE, "--json", str(where / "replay.json")]) == 0
    (where / "not-a-tokenizer.json").write_text(json.dumps({"not": "a tokenizer"}))
    return where


def _argv(command: str, name: str | None, value: str | None, tmp: Path) -> list[str]:
    argv = list(BASE[command])
    if name is not None and not name.startswith("-"):
        index = POSITION[name]
        if len(argv) > index and not argv[index].startswith("-"):
            argv[index] = value
        else:
            argv.insert(index, value)
    elif name is not None:
        argv += [name, value]
    return [a.replace("{tmp}", str(tmp)) for a in argv]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's errors
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", sorted(BASE))
def test_the_base_runs_succeed(command, tmp, capsys):
    """Each bad value below is the only thing wrong with its run."""
    code, _, err = _run(_argv(command, None, None, tmp), capsys)
    assert code == 0, err


@pytest.mark.parametrize("command, name, value", CASES, ids=[f"{c} {n} {v!r}" for c, n, v in CASES])
def test_a_bad_value_is_one_line_and_exit_2(command, name, value, tmp, capsys):
    code, _, err = _run(_argv(command, name, value, tmp), capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("cachesim: error: "), err
    # it names what is wrong: the flag, or the value given
    shown = value.replace("{tmp}", str(tmp))
    key = shown.partition("=")[0] if name in ("--set", "--vs") and "=" in shown else None
    assert (name.lstrip("-") in lines[0] or name.lstrip("-").replace("-", "_") in lines[0]
            or (len(shown) > 2 and shown in lines[0]) or (key and key in lines[0])), lines[0]


def _bill(capsys, *argv) -> dict:
    code, out, err = _run(["cost", *argv, "--json", "-"], capsys)
    assert code == 0, err
    return json.loads(out)["summary"]


@pytest.mark.parametrize("word", ["False", "false", "no", "NO", "0"])
def test_batch_false_bills_without_the_discount(word, tmp_path, capsys):
    # one 2,000-token prompt, no breakpoint and no automatic one: all of it uncached input at Sonnet 4.6's
    # $3.00 per million tokens (prices.toml), $0.006; the batch discount would halve it
    trace = tmp_path / "one.jsonl"
    trace.write_text(json.dumps({"t": 0, "tenant": "a", "session": "s", "tokens": list(range(2000))}) + "\n")
    plain = ["--set", "automatic=false"]
    assert _bill(capsys, str(trace), *plain)["cost_usd"] == pytest.approx(0.006)
    assert _bill(capsys, str(trace), *plain, "--set", f"batch={word}")["cost_usd"] == pytest.approx(0.006)
    assert _bill(capsys, str(trace), *plain, "--set", "batch=yes")["cost_usd"] == pytest.approx(0.003)
    # and on the built-in workload, where caching is at work: False is the bill without --set, True half of it
    default = _bill(capsys, "--users", "1")
    assert _bill(capsys, "--users", "1", "--set", f"batch={word}") == default
    halved = _bill(capsys, "--users", "1", "--set", "batch=TRUE")
    assert halved["cost_usd"] == pytest.approx(default["cost_usd"] / 2)


@pytest.mark.parametrize("argv", [["bogus"], ["replay", TRACE, "--bogus"], ["--bogus"], ["replay", TRACE, "extra"]])
def test_an_unknown_command_or_argument_is_one_line_too(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.count("\n") == 1 and err.startswith("cachesim: error: ") and "Traceback" not in err, err
