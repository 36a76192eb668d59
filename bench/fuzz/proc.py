"""Running cachesim in a child process under a time and memory limit, and classifying what came back.

The child is a separate process so that a segfault, an abort or a runaway allocation is observed, not suffered.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]       # the worktree this harness lives in
SRC = ROOT / "src"
MEMORY_LIMIT = 1 << 30                            # RLIMIT_AS of every child: 1 GiB
TIMEOUT_S = 20.0

# outcome classes; CLEAN ones are what hostile input may legitimately produce
OK, CLEAN_ERROR = "ok", "clean_error"
TRACEBACK, SIGNAL, HANG, MEMORY = "traceback", "signal", "hang", "memory"
INVARIANT, UNCLEAN_ERROR, OTHER_EXIT = "invariant", "unclean_error", "other_exit"
DISAGREEMENT, OTHER_EXCEPTION = "disagreement", "other_exception"
CLEAN = {OK, CLEAN_ERROR}


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: this worktree's src first, one BLAS thread (the machine is shared)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0",
               COLUMNS="200", NO_COLOR="1", CACHESIM_PROGRESS_INTERVAL_S="3600")  # no progress line in stderr
    env.pop("CACHESIM_PUREPYTHON", None)
    env.update(extra)
    return env


def _limit_memory() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash should not write a core file per case


@dataclass
class Run:
    argv: list[str]
    returncode: int | None       # None: killed on timeout
    stdout: str
    stderr: str
    elapsed_timeout: bool = False
    seconds: float = 0.0


def run(argv: list[str], *, stdin: str | None = None, timeout: float = TIMEOUT_S, cwd: str | None = None,
        env: dict | None = None) -> Run:
    start = time.monotonic()
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, errors="replace", timeout=timeout,
                           env=env or child_env(), cwd=cwd, preexec_fn=_limit_memory)
        return Run(argv, p.returncode, p.stdout, p.stderr, seconds=time.monotonic() - start)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Run(argv, None, out, err, elapsed_timeout=True, seconds=timeout)


def cachesim(args: list[str], **kw) -> Run:
    return run([sys.executable, "-m", "cachesim", *args], **kw)


_MEMORY_SIGNS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "Unable to allocate", "out of memory")


def classify_cli(r: Run) -> tuple[str, str]:
    """(class, detail) of one CLI run, before any check of its numbers."""
    if r.elapsed_timeout:
        return HANG, "no exit within the timeout"
    if any(s in r.stderr for s in _MEMORY_SIGNS) or r.returncode == -signal.SIGKILL:
        return MEMORY, _tail(r.stderr, 1)
    if r.returncode < 0:
        return SIGNAL, signal.Signals(-r.returncode).name
    if "Traceback" in r.stderr:
        return TRACEBACK, _last_line(r.stderr)
    if r.returncode == 0:
        return OK, ""
    if r.returncode == 2:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("cachesim: error:")]
        # documented: an error mid-stream is preceded by one "cachesim: replay stopped after ..." note
        notes_ok = all(ln.startswith("cachesim: replay stopped after") for ln in lines[:-1])
        if len(errors) == 1 and lines[-1] is errors[0] and len(lines) <= 2 and notes_ok:
            return CLEAN_ERROR, lines[-1][:200]
        # a usage error from argparse means the harness asked for something wrong, not a finding
        if lines and lines[-1].startswith("usage:") or any("error: argument" in ln for ln in lines):
            return UNCLEAN_ERROR, "argparse: " + _last_line(r.stderr)
        return UNCLEAN_ERROR, f"{len(lines)} stderr lines: " + _last_line(r.stderr)
    return OTHER_EXIT, f"exit {r.returncode}: {_last_line(r.stderr)}"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _tail(text: str, n: int = 12) -> str:
    return "\n".join(text.splitlines()[-n:])


def tail(text: str) -> str:
    return _tail(text)


def parse_json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None
