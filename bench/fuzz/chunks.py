"""Many API cases per child process, with crash isolation: a child that dies is restarted after the case it
died on, which is then rerun alone so that its signal, hang or memory kill is pinned on it."""

from __future__ import annotations

import contextlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import proc

PER_CASE_TIMEOUT = 20.0


def _child(script: Path, seed: int, indices: list[int], timeout: float) -> tuple[list[dict], proc.Run]:
    r = proc.run([sys.executable, str(script), "--worker", str(seed), ",".join(map(str, indices))], timeout=timeout)
    done = []
    for line in r.stdout.splitlines():
        with contextlib.suppress(ValueError):
            done.append(json.loads(line))
    return done, r


def run_all(script: Path, seed: int, indices: list[int], chunk: int,
            jobs: int) -> list[tuple[dict | None, proc.Run | None, int]]:
    """(worker record or None, the run that died on the case or None, case index) for every index."""
    def one_chunk(todo: list[int]):
        out = []
        while todo:
            done, r = _child(script, seed, todo, PER_CASE_TIMEOUT * len(todo))
            out += [(d, None, d["case"]) for d in done]
            todo = todo[len(done):]
            if not todo:
                break
            if r.returncode == 0 and not r.elapsed_timeout:
                raise RuntimeError(f"worker stopped early without an error: {r.stderr[-500:]}")
            culprit, todo = todo[0], todo[1:]
            done, alone = _child(script, seed, [culprit], PER_CASE_TIMEOUT)
            out.append((done[0], None, culprit) if done and alone.returncode == 0 else (None, alone, culprit))
        return out

    groups = [indices[i:i + chunk] for i in range(0, len(indices), chunk)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return [row for rows in pool.map(one_chunk, groups) for row in rows]


def dead_class(r: proc.Run) -> tuple[str, str]:
    """The class of a child that did not finish its one case."""
    cls, detail = proc.classify_cli(r)
    if cls in (proc.OK, proc.CLEAN_ERROR, proc.UNCLEAN_ERROR, proc.OTHER_EXIT):
        return proc.OTHER_EXIT, f"worker exit {r.returncode}: {proc._last_line(r.stderr)}"
    return cls, detail
