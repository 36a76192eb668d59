"""Long runs: a progress line at a steady interval when stderr is piped, and a sweep stopped by SIGTERM or Ctrl-C
that ends its workers, keeps its checkpoint and says how to continue, where --resume finishes the very table an
uninterrupted run writes. Timeouts here are hang guards only: nothing asserts how fast anything is."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cachesim import progress
from cachesim.cli import main
from cachesim.sweep import checkpoint_path, run_sweep
from test_sweep import three_requests

# signals and progress do not depend on the engine, and 300 configurations on the reference model take many
# minutes: the reference run (CACHESIM_PUREPYTHON=1) leaves this module to the default run
pytestmark = pytest.mark.core

CLI = [sys.executable, "-m", "cachesim"]
# 300 configurations of the built-in workload on 2 worker processes: seconds of work, so a signal sent as the
# first row lands leaves most of it undone
SWEEP = ["sweep", "--users", "8", "--capacity", ",".join(str(c) for c in range(1000, 1150)), "--ttl", "none,5m",
         "--workers", "2", "--executor", "process"]
LINE = re.compile(r"cachesim: sweep (\d+)/300 configs, \d+s elapsed")


def env(interval: float = 0.05) -> dict:
    return {**os.environ, progress.INTERVAL_ENV: str(interval)}


def default_signal_actions() -> None:
    # a test run in the background inherits SIGINT ignored, and a Python started so never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(stat.parent.name)] = int(fields[1])
        found, frontier = set(), {pid}
        while frontier:
            frontier = {child for child, parent in parents.items() if parent in frontier} - found
            found |= frontier
        return found
    return {child.pid for child in psutil.Process(pid).children(recursive=True)}


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for a reaper that a container may not have)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The table and the stderr of the sweep run to the end, progress lines every 0.05 s."""
    out = tmp_path_factory.mktemp("whole") / "table.csv"
    proc = subprocess.run([*CLI, *SWEEP, "-o", str(out)], env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes(), proc.stderr


def test_a_piped_sweep_prints_a_progress_line_every_interval(uninterrupted):
    _, stderr = uninterrupted
    counts = [int(m[1]) for m in map(LINE.fullmatch, stderr.splitlines()) if m]
    assert counts, stderr
    assert counts == sorted(counts)  # lines follow the sweep as it advances
    others = [line for line in stderr.splitlines() if not LINE.fullmatch(line)]
    assert all(re.fullmatch(r"cachesim: sweep running, \d+s elapsed", line) for line in others), others


def test_no_progress_prints_no_line(tmp_path):
    proc = subprocess.run([*CLI, "sweep", "--capacity", "1k,2k", "--executor", "serial", "--no-progress"],
                          env=env(0.001), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stderr == ""


def test_lines_go_on_while_no_configuration_finishes(monkeypatch):
    """A sweep that stays at 1 of 3 is not silent: the lines come from the clock, not from finished rows."""
    monkeypatch.setenv(progress.INTERVAL_ENV, "0.02")
    err = io.StringIO()  # stderr is not a terminal here, whatever runs the tests
    monkeypatch.setattr(sys, "stderr", err)

    class Stuck:
        """Runs the first task, then waits until three lines have said 1/3 before running the others."""

        name = "stuck"

        def run(self, fn, tasks):
            yield fn(tasks[0])
            deadline = time.monotonic() + 60  # a hang guard
            while err.getvalue().count("cachesim: sweep 1/3 configs") < 3:
                assert time.monotonic() < deadline, f"no progress lines while waiting: {err.getvalue()!r}"
                time.sleep(0.01)
            for task in tasks[1:]:
                yield fn(task)

        def close(self):
            pass

    with progress.command("sweep"):
        result = run_sweep(three_requests(), {"capacity": [1, 2, 3]}, Stuck())
    assert len(result.rows) == 3


@contextlib.contextmanager
def sweep_with_a_first_row(out: Path):
    """The sweep of SWEEP writing ``out``, once its first row is in the checkpoint; and the processes below it."""
    ckpt = checkpoint_path(out)
    proc = subprocess.Popen([*CLI, *SWEEP, "-o", str(out)], env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=default_signal_actions)
    try:
        deadline = time.monotonic() + 120  # a hang guard
        while not (ckpt.exists() and ckpt.read_bytes().count(b"\n") >= 2):  # the header, then a first row
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no row reached the checkpoint"
            time.sleep(0.01)
        workers = descendants(proc.pid)
        assert len(workers) >= 2, workers  # the two workers (and a forkserver, when one is used) are seen
        yield proc, workers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def assert_all_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + 60  # a hang guard: orphans of a dead parent take a moment to notice it
    while any(map(running, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if running(pid)], "processes left running"


def test_kill_9_leaves_no_worker_waiting_forever(tmp_path):
    """Nothing runs in a process killed outright, so its workers must notice on their own."""
    with sweep_with_a_first_row(tmp_path / "table.csv") as (proc, workers):
        proc.kill()
        proc.wait(timeout=120)
    assert_all_gone(workers)


@pytest.mark.parametrize(("signum", "to_group", "status", "word"), [
    (signal.SIGTERM, False, 143, "terminated"),  # kill PID
    (signal.SIGINT, True, 130, "interrupted"),  # Ctrl-C: the terminal signals the whole process group
])
def test_a_signalled_sweep_ends_its_workers_and_resume_finishes_the_same_table(tmp_path, uninterrupted, signum,
                                                                                to_group, status, word):
    out = tmp_path / "table.csv"
    ckpt = checkpoint_path(out)
    with sweep_with_a_first_row(out) as (proc, workers):
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        assert proc.wait(timeout=120) == status
        stderr = proc.stderr.read()
    assert_all_gone(workers)

    assert "Traceback" not in stderr, stderr
    *progress_lines, last = stderr.splitlines()
    assert all(LINE.fullmatch(line) or "sweep running" in line for line in progress_lines), progress_lines
    stopped = re.fullmatch(rf"cachesim: {word}; (\d+) of 300 configs saved in (.+); continue with: (.+)", last)
    assert stopped, last
    saved = int(stopped[1])
    assert Path(stopped[2]) == ckpt and ckpt.read_bytes().count(b"\n") == 1 + saved  # every row it says it kept
    assert 1 <= saved < 300  # stopped mid-way: the test means something
    assert not out.exists()

    again = shlex.split(stopped[3])
    assert again[0] == "cachesim" and again[-1] == "--resume"
    resumed = subprocess.run([*CLI, *again[1:]], env=env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == uninterrupted[0]
    assert not ckpt.exists()


def test_sigterm_ends_any_command_cleanly():
    """replay has no checkpoint: SIGTERM ends it with 143 and one line, no traceback."""
    proc = subprocess.Popen([*CLI, "replay", "--users", "50", "--policy", "sieve", "--capacity", "1000"],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signal_actions)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120  # a hang guard
        while not lines:  # the first progress line: the command is running
            assert proc.poll() is None, "replay ended before it was signalled"
            assert time.monotonic() < deadline, "no progress line"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)
    assert lines[-1] == "cachesim: terminated\n"
    assert all(re.fullmatch(r"cachesim: replay running, \d+s elapsed\n", line) for line in lines[:-1]), lines


def test_the_resume_line_without_a_checkpoint_says_how_to_get_one(capsys, monkeypatch):
    import cachesim.sweep as sweep_module
    from test_sweep import StopAfter

    monkeypatch.setattr(sweep_module, "make_executor", lambda *a, **k: (StopAfter(1), True))
    assert main(["sweep", "--capacity", "1k,2k,3k", "--no-progress"]) == 130
    assert capsys.readouterr().err == ("cachesim: interrupted after 1 of 3 configs; none kept: with -o FILE a sweep "
                                       "checkpoints its rows and --resume continues it\n")
