"""Every command that reads a trace takes the one shared set of reader options, --synthesize included, and an
Azure arrival/length trace can be swept and converted as it can be replayed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cachesim.cli import build_parser, main
from cachesim.cli._options import add_reading_flags

AZURE = str(Path(__file__).parent / "data" / "azure.csv")
TRACE_READERS = {"replay", "convert", "interference", "fleet", "mrc", "size", "sweep", "cost"}


def _commands():
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_trace_reading_command_takes_every_reader_option():
    probe = argparse.ArgumentParser(add_help=False)
    add_reading_flags(probe)
    reading = {a.dest for a in probe._actions}
    assert {"synthesize", "format", "skip_invalid", "keep_order", "tenant_field", "tokenizer"} <= reading
    for name, sub in _commands().items():
        dests = {a.dest for a in sub._actions}
        if name in TRACE_READERS:
            assert reading <= dests, (name, reading - dests)
        else:  # report reads a result, the rest no trace: none of them takes --synthesize
            assert "synthesize" not in dests, name


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _replayed(capsys, *argv) -> dict:
    code, out, err = _run(["replay", *argv, "--json", "-"], capsys)
    assert code == 0, err
    return json.loads(out)["summary"]


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_sweep_synthesizes_an_azure_trace_and_its_workers_replay_it(executor, tmp_path, capsys):
    out = tmp_path / "table.json"
    code, _, err = _run(["sweep", AZURE, "--synthesize", "--seed", "3", "--capacity", "8,unbounded", "--executor",
                         executor, "--workers", "2", "-o", str(out)], capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert "content synthesized" in data["trace"]["label"] and data["trace"]["requests"] == 3
    rows = {row["capacity_blocks"]: row for row in data["rows"]}
    # each row is what a replay of the same synthesized trace at that capacity gives
    for capacity, row in rows.items():
        flags = [] if capacity is None else ["--capacity", str(capacity)]
        alone = _replayed(capsys, AZURE, "--synthesize", "--seed", "3", *flags)
        assert row["hit_tokens"] == alone["hit_tokens"] and row["prompt_tokens"] == alone["prompt_tokens"]
    # the trace's own lengths: 4808 + 3180 + 110 prompt tokens
    assert rows[None]["prompt_tokens"] == 4808 + 3180 + 110


def test_convert_synthesizes_an_azure_trace(tmp_path, capsys):
    npz = tmp_path / "azure.npz"
    code, out, err = _run(["convert", AZURE, str(npz), "--synthesize", "--seed", "3", "--workload", "chatty"],
                          capsys)
    assert code == 0, err
    assert "3 requests" in out
    assert _replayed(capsys, str(npz)) == _replayed(capsys, AZURE, "--synthesize", "--seed", "3", "--workload",
                                                    "chatty")
    # the file holds the content the flags ask for: this seed and harness, not another
    from cachesim.readers import azure
    from cachesim.trace import Trace, compile_trace

    saved = Trace.load(npz).block_keys
    arrivals = azure.read_arrivals(AZURE)
    for seed, style, same in ((3, "chatty", True), (4, "chatty", False), (3, "native", False)):
        keys = compile_trace(azure.synthesize(arrivals, seed=seed, style=style), 16).block_keys
        assert (len(keys) == len(saved) and bool((keys == saved).all())) == same, (seed, style)


@pytest.mark.parametrize("command", ["sweep", "convert"])
def test_synthesize_refuses_a_trace_with_content(command, tmp_path, capsys):
    trace = str(Path(AZURE).with_name("mooncake.jsonl"))
    argv = [command, trace, str(tmp_path / "x.npz")] if command == "convert" else [command, trace, "--capacity", "8"]
    code, _, err = _run([*argv, "--synthesize"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--synthesize" in err


@pytest.mark.parametrize("command", ["sweep", "convert", "replay"])
def test_keep_order_reaches_the_azure_reader(command, tmp_path, capsys):
    rows = Path(AZURE).read_text().splitlines()
    shuffled = tmp_path / "late.csv"
    shuffled.write_text("\n".join([rows[0], rows[2], rows[1], *rows[3:]]) + "\n")
    argv = {"sweep": ["sweep", str(shuffled), "--capacity", "8", "--executor", "serial"],
            "convert": ["convert", str(shuffled), str(tmp_path / "x.npz")],
            "replay": ["replay", str(shuffled)]}[command]
    code, _, err = _run([*argv, "--synthesize"], capsys)
    assert code == 0, err
    code, _, err = _run([*argv, "--synthesize", "--keep-order"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_cost_bills_a_synthesized_azure_trace(capsys):
    from cachesim.readers import azure

    code, out, err = _run(["cost", AZURE, "--synthesize", "--seed", "3", "--provider", "openai", "--json", "-"],
                          capsys)
    assert code == 0, err
    report = json.loads(out)
    arrivals = azure.read_arrivals(AZURE)
    assert report["summary"]["requests"] == len(arrivals.t)
    assert "content synthesized" in report["trace"]
