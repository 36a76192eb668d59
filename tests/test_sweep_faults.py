"""Sweeps that were stopped: a checkpoint whose last line was cut off mid-write, and the shared directory of the
compiled trace after SIGTERM, SIGINT and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest

import cachesim
from cachesim.cli import main
from cachesim.requests import TraceError
from cachesim.sweep import checkpoint_path, run_sweep
from test_sweep import GRID, StopAfter, three_requests

TORN = b'{"id":"{\\"capacity_blocks\\":2,\\"ttl_s\\":50.0}","metr'  # a row cut off before its newline


def interrupted_checkpoint(tmp_path: Path, rows: int) -> tuple[Path, bytes]:
    """A checkpoint of ``rows`` finished rows, then a torn one; and its bytes before the tear."""
    ckpt = tmp_path / "sweep.partial.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(three_requests(), GRID, StopAfter(rows), checkpoint=ckpt)
    whole = ckpt.read_bytes()
    assert whole.count(b"\n") == 1 + rows and whole.endswith(b"\n")
    ckpt.write_bytes(whole + TORN)
    return ckpt, whole


# -- a torn last line ------------------------------------------------------------------------------------------

def test_resume_cuts_the_torn_line_off_before_appending(tmp_path):
    ckpt, whole = interrupted_checkpoint(tmp_path, rows=2)
    note = rf"sweep.partial.jsonl: dropped its last line, .* \({len(TORN)} bytes\)"
    with pytest.warns(UserWarning, match=note), pytest.raises(KeyboardInterrupt):
        run_sweep(three_requests(), GRID, StopAfter(0), checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == whole  # exactly the whole lines: header and two rows


def test_a_sweep_interrupted_twice_after_a_tear_still_resumes(tmp_path):
    ckpt, whole = interrupted_checkpoint(tmp_path, rows=2)
    second = StopAfter(1)
    with pytest.warns(UserWarning, match="dropped its last line"), pytest.raises(KeyboardInterrupt):
        run_sweep(three_requests(), GRID, second, checkpoint=ckpt, resume=True)
    lines = ckpt.read_bytes().split(b"\n")
    assert ckpt.read_bytes().startswith(whole) and len(lines) == 1 + 3 + 1 and lines[-1] == b""
    assert orjson.loads(lines[3])["id"] == '{"capacity_blocks":2,"ttl_s":null}'  # the third configuration

    last = StopAfter(100)
    resumed = run_sweep(three_requests(), GRID, last, checkpoint=ckpt, resume=True)
    assert [(p["capacity_blocks"], p["ttl_s"]) for p in last.ran] == [(2, 50.0), (None, None), (None, 50.0)]
    # unbounded: b at t=10 and a at t=100 hit both 4-token blocks (16 tokens); TTL 50 s: only b's request (8)
    assert [r["hit_tokens"] for r in resumed.rows[4:]] == [16, 8]
    assert resumed.rows == run_sweep(three_requests(), GRID, "serial").rows


def test_a_torn_header_is_dropped_and_the_sweep_starts_afresh(tmp_path):
    ckpt = tmp_path / "sweep.partial.jsonl"
    ckpt.write_bytes(b'{"kind":"cachesim-sweep-chec')
    everything = StopAfter(100)
    with pytest.warns(UserWarning, match="dropped its last line"):
        run_sweep(three_requests(), GRID, everything, checkpoint=ckpt, resume=True)
    assert len(everything.ran) == 6
    lines = ckpt.read_bytes().split(b"\n")
    assert orjson.loads(lines[0])["kind"] == "cachesim-sweep-checkpoint" and len(lines) == 1 + 6 + 1


def test_a_file_that_is_not_a_checkpoint_is_refused_not_truncated(tmp_path):
    ckpt = tmp_path / "notes.txt"
    ckpt.write_bytes(b"my notes, no newline")
    with pytest.raises(TraceError, match="notes.txt:1: not a cachesim sweep checkpoint"):
        run_sweep(three_requests(), GRID, "serial", checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == b"my notes, no newline"


@pytest.mark.parametrize("bad", [b"not json", b"[1, 2]", b'{"id": "x"}'])
def test_a_malformed_line_before_the_last_is_a_located_error_and_nothing_is_cut(tmp_path, bad):
    ckpt, whole = interrupted_checkpoint(tmp_path, rows=2)
    header, first, second, _ = whole.split(b"\n")
    damaged = b"\n".join([header, first, bad, second]) + b"\n" + TORN
    ckpt.write_bytes(damaged)
    with pytest.raises(TraceError, match="sweep.partial.jsonl:3: malformed checkpoint line"):
        run_sweep(three_requests(), GRID, "serial", checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == damaged


def test_the_cli_notes_the_repair_in_one_line(tmp_path, capsys):
    out = tmp_path / "s.json"
    ckpt = checkpoint_path(out)
    npz = tmp_path / "t.npz"
    cachesim.compile_trace(three_requests()).save(npz)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(str(npz), GRID, StopAfter(2), checkpoint=ckpt)
    ckpt.write_bytes(ckpt.read_bytes() + TORN)
    assert main(["sweep", str(npz), "--capacity", "1,2,unbounded", "--ttl", "none,50", "-o", str(out),
                 "--executor", "serial", "--resume"]) == 0
    err = capsys.readouterr().err
    assert err == (f"cachesim: note: {ckpt}: dropped its last line, cut off mid-write when the sweep was stopped "
                   f"({len(TORN)} bytes); that configuration runs again\n")
    assert len(orjson.loads(out.read_bytes())["rows"]) == 6


# -- the shared directory --------------------------------------------------------------------------------------

SLOW_SWEEP = ["sweep", "--users", "8", "--capacity", ",".join(str(c) for c in range(1000, 1400)),
              "--no-progress"]


def default_signal_actions() -> None:
    # a test run in the background inherits SIGINT ignored, and a Python started so never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_sweep(parent: Path, executor: str, via_tmpdir: bool = False) -> subprocess.Popen:
    """A sweep of 400 configurations (many seconds) sharing its trace from a directory under ``parent``, given
    as --shared-dir or as TMPDIR."""
    where = [] if via_tmpdir else ["--shared-dir", str(parent)]
    env = {**os.environ, "TMPDIR": str(parent)} if via_tmpdir else None
    return subprocess.Popen([sys.executable, "-m", "cachesim", *SLOW_SWEEP, "--executor", executor, *where],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_signal_actions)


def shared_dirs(parent: Path) -> list[Path]:
    return sorted(parent.glob("cachesim-sweep-*"))


def wait_for_shared_file(proc: subprocess.Popen, parent: Path, timeout: float = 20) -> Path:
    """The shared directory of the sweep ``proc`` (its pid is in the name) once the compiled trace is being
    written into it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for directory in shared_dirs(parent):
            if f"-{proc.pid}-" in directory.name and any(directory.glob("*.npz")):
                return directory
        assert proc.poll() is None, f"the sweep ended before it was stopped: {proc.stderr.read()}"
        time.sleep(0.02)
    raise AssertionError("the sweep never wrote its shared trace")


@pytest.fixture
def stopped():
    """Processes started by a test, killed if the test leaves them running."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("signum", "executor", "status"), [
    (signal.SIGTERM, "serial", 128 + signal.SIGTERM),
    (signal.SIGTERM, "process", 128 + signal.SIGTERM),
    (signal.SIGINT, "process", 130),
])
def test_a_signalled_sweep_removes_its_shared_directory(tmp_path, stopped, signum, executor, status):
    proc = start_sweep(tmp_path, executor)
    stopped.append(proc)
    wait_for_shared_file(proc, tmp_path)
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == status, proc.stderr.read()
    assert "Traceback" not in proc.stderr.read()
    assert shared_dirs(tmp_path) == []


def test_the_next_sweep_removes_what_kill_9_left_but_not_a_running_sweeps(tmp_path, stopped, monkeypatch):
    killed = start_sweep(tmp_path, "serial", via_tmpdir=True)
    stopped.append(killed)
    left = wait_for_shared_file(killed, tmp_path)
    killed.kill()
    killed.wait()  # reaped: its pid names no process now
    assert shared_dirs(tmp_path) == [left]  # what SIGKILL leaves: nothing ran to remove it

    running = start_sweep(tmp_path, "serial")
    stopped.append(running)
    live = wait_for_shared_file(running, tmp_path)
    other_host = tmp_path / f"cachesim-sweep-00000000-{killed.pid}-abc"  # a dead pid, but of another machine
    other_host.mkdir()

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # what TMPDIR would be, had it been set at start
    run_sweep(three_requests(), {"ttl": ["none"]}, "serial")
    assert running.poll() is None
    assert shared_dirs(tmp_path) == sorted([live, other_host])


@pytest.mark.skipif(not hasattr(os, "fork") or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL,
                    reason="needs fork, and SIGTERM at its default action in this process")
def test_a_worker_forked_during_a_sweep_still_ends_on_sigterm():
    from cachesim.sweep import _StopOnSignals

    with _StopOnSignals():
        pid = os.fork()
        if pid == 0:  # the child: what a process-pool worker is
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                os._exit(1)  # reached only if the signal was caught instead of ending this process
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # the sweep's own process is guarded
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # and put back after
