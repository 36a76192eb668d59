"""Every command checks that it can write its outputs before it does any work."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from cachesim.cli import build_parser, main
from cachesim.cli._options import OUTPUT_DESTS, OUTPUT_DIR_DESTS

# how an option that writes a file describes itself (help or metavar); a new one is caught by these words
_WRITES = re.compile(r"^(write|save|plot|draw)\b|\boutput (file|page)\b", re.IGNORECASE)
_FILE_METAVAR = re.compile(r"^(OUT|CSV|PNG|SVG|HTML|FILE|JSON)\b")


def options_by_command() -> dict[str, list[argparse.Action]]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {name: [a for a in sub._actions if a.nargs != 0 and not isinstance(a, argparse._HelpAction)]
            for name, sub in commands.items()}


def test_every_option_that_writes_a_file_is_checked():
    writers = {(name, action.dest) for name, actions in options_by_command().items() for action in actions
               if _WRITES.search(action.help or "") or _FILE_METAVAR.match(str(action.metavar or ""))}
    assert {dest for _, dest in writers} == set(OUTPUT_DESTS), sorted(writers)
    every_dest = {action.dest for actions in options_by_command().values() for action in actions}
    assert set(OUTPUT_DIR_DESTS) <= every_dest  # no stale name


# one command line per output option of every command; the trace (or result, or prices) it names does not exist,
# so an error about reading it would show that the command started work before checking its output
NEVER_READ = "never-read.jsonl"
COMMAND_LINES = [
    ("replay", ["replay", NEVER_READ, "--json", "{out}"]),
    ("replay", ["replay", NEVER_READ, "--per-request", "{out}"]),
    ("mrc", ["mrc", NEVER_READ, "--json", "{out}"]),
    ("size", ["size", NEVER_READ, "--target", "30%", "--json", "{out}"]),
    ("mrc", ["mrc", NEVER_READ, "--plot", "{out}"]),
    ("sweep", ["sweep", NEVER_READ, "--capacity", "1k", "-o", "{out}"]),
    ("convert", ["convert", NEVER_READ, "{out}"]),
    ("cost", ["cost", NEVER_READ, "--json", "{out}"]),
    ("cost", ["cost", NEVER_READ, "--per-request", "{out}"]),
    ("interference", ["interference", NEVER_READ, "--json", "{out}"]),
    ("interference", ["interference", NEVER_READ, "--save-trace", "{out}"]),
    ("interference", ["interference", NEVER_READ, "--heatmap", "{out}"]),
    ("fleet", ["fleet", NEVER_READ, "--json", "{out}"]),
    ("demo", ["demo", "--prices", "never-read.toml", "--json", "{out}"]),
    ("report", ["report", NEVER_READ, "-o", "{out}"]),
]


def test_the_command_lines_cover_every_output_option():
    parser = build_parser()
    covered = {(name, dest) for name, argv in COMMAND_LINES for dest in OUTPUT_DESTS
               if getattr(parser.parse_args(argv), dest, None) == "{out}"}
    assert covered == {(name, a.dest) for name, actions in options_by_command().items() for a in actions
                       if a.dest in OUTPUT_DESTS}


def run_main(capsys, argv, out):
    status = main([arg.replace("{out}", str(out)) for arg in argv])
    return status, capsys.readouterr().err


@pytest.mark.parametrize(("name", "argv"), COMMAND_LINES, ids=[" ".join(a[:1] + a[2:-1]) for _, a in COMMAND_LINES])
def test_an_output_in_a_missing_directory_fails_before_any_work(tmp_path, capsys, monkeypatch, name, argv):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "no-such-dir" / "out.x"
    status, err = run_main(capsys, argv, out)
    assert (status, err) == (2, f"cachesim: error: cannot write {out}: no such directory {tmp_path / 'no-such-dir'}\n")


@pytest.mark.parametrize("name", ["replay", "mrc", "sweep"])
def test_an_output_under_a_regular_file_fails_before_any_work(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "out.json"
    argv = next(argv for command, argv in COMMAND_LINES if command == name)
    status, err = run_main(capsys, argv, out)
    assert (status, err) == (2, f"cachesim: error: cannot write {out}: {tmp_path / 'a-file'} is not a directory\n")


@pytest.mark.parametrize("name", ["replay", "mrc", "sweep"])
def test_an_output_that_is_a_directory_fails_before_any_work(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    argv = next(argv for command, argv in COMMAND_LINES if command == name)
    status, err = run_main(capsys, argv, tmp_path)
    assert (status, err) == (2, f"cachesim: error: cannot write {tmp_path}: it is a directory\n")


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write in: mode 0o500, or, for root (whom modes do not stop), a read-only
    mount such as /proc/sys."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):
            yield locked
        elif os.path.isdir("/proc/sys") and not os.access("/proc/sys", os.W_OK):
            yield Path("/proc/sys")
        else:
            pytest.skip("running as root with no read-only mount: a 0o500 directory is still writable (the missing "
                        "directory and file-as-directory cases stand in)")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("name", ["replay", "mrc", "sweep"])
def test_an_output_in_a_read_only_directory_fails_before_any_work(tmp_path, capsys, monkeypatch, read_only_dir,
                                                                  name):
    monkeypatch.chdir(tmp_path)
    argv = next(argv for command, argv in COMMAND_LINES if command == name)
    out = read_only_dir / "out.json"
    status, err = run_main(capsys, argv, out)
    assert (status, err) == (2, f"cachesim: error: cannot write {out}: permission denied in {read_only_dir}\n")


def test_a_missing_shared_dir_fails_before_the_trace_is_compiled(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "gone"
    status, err = run_main(capsys, ["sweep", NEVER_READ, "--capacity", "1k", "--shared-dir", "{out}"], shared)
    assert (status, err) == (2, f"cachesim: error: cannot write {shared}: no such directory\n")


def test_stdout_is_no_file_and_a_writable_path_passes(tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main(["replay", "--users", "1", "--json", "-", "--per-request", str(out)]) == 0
    assert capsys.readouterr().out.startswith("{\n")  # the JSON went to stdout, not to a file named '-'
    assert out.read_text().startswith("request,hit_tokens,")
