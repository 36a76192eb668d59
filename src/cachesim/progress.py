"""Progress of long runs, one implementation for every command: a bar when stderr is a terminal, and when it is
not (a pipe, a file, a CI log) a plain line at a steady interval of wall time, so a long run is never silent::

    cachesim: sweep 26/30 configs, 4m12s elapsed

:func:`command` wraps a whole command (``cachesim.cli.main`` does it): a thread prints the line every
``CACHESIM_PROGRESS_INTERVAL_S`` seconds (default 10) while the command runs, whether or not anything advances.
:func:`track` is one long step inside it (the sweep's configurations, the bytes of a streamed trace): a bar on a
terminal, and what the interval line says otherwise. Wall clock is right here: this is what a person waits for,
not the trace's time.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

__all__ = ["INTERVAL_ENV", "Tracker", "command", "format_elapsed", "interval_s", "progress_bar", "track",
           "wants_progress"]

INTERVAL_ENV = "CACHESIM_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 10.0


def wants_progress(stream=None) -> bool:
    """Draw a bar only when a person is watching: stderr is a terminal."""
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def interval_s() -> float:
    """Seconds between progress lines: ``$CACHESIM_PROGRESS_INTERVAL_S`` when it is a positive number."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 else DEFAULT_INTERVAL_S


def format_elapsed(seconds: float) -> str:
    """``42s``, ``4m12s``, ``2h05m``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _size(n: float) -> str:
    if n < 1000:
        return f"{n:,.0f} bytes"
    power = min(int(math.log10(n) // 3), 3)
    return f"{n / 1000 ** power:,.1f} {('kB', 'MB', 'GB')[power - 1]}"


class Tracker:
    """How far one long step has got: ``completed`` of ``total`` ``unit`` ("bytes" or a count such as
    "configs"), with ``note`` (requests so far) and bar-only fields. Updated by the main thread, read by the
    interval lines' thread: plain attribute writes, so a line is at worst one update old."""

    def __init__(self, label: str, total: int | None, unit: str, completed: int = 0):
        self.label, self.total, self.unit, self.completed = label, total, unit, completed
        self.note = ""
        self.on_terminal = False  # a bar is being drawn where a person sees it: no lines then
        self._bar: Any = None
        self._task: Any = None

    def update(self, completed: int | None = None, *, advance: int = 0, note: str | None = None,
               **fields: Any) -> None:
        if completed is not None:
            self.completed = completed
        self.completed += advance
        if note is not None:
            self.note = note
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, **fields)

    def describe(self) -> str:
        if self.unit == "bytes":
            done = _size(self.completed)
            if self.total:
                done = f"{done} of {_size(self.total)} ({100 * self.completed / self.total:.0f}%)"
        else:
            done = f"{self.completed:,}/{self.total:,} {self.unit}" if self.total else f"{self.completed:,} {self.unit}"
        return f"{self.label} {done}" + (f", {self.note}" if self.note else "")


class _Command:
    """The command being run and the step it is in, shared with the interval lines' thread."""

    def __init__(self, name: str, started: float):
        self.name, self.started = name, started
        self.tracker: Tracker | None = None

    def line(self) -> str | None:
        tracker = self.tracker
        if tracker is not None and tracker.on_terminal:
            return None
        what = tracker.describe() if tracker is not None else f"{self.name} running"
        return f"cachesim: {what}, {format_elapsed(time.monotonic() - self.started)} elapsed"


_current: _Command | None = None
# held while a line is written, and across fork(): a child never inherits it held, nor stderr's own lock
_write_lock = threading.Lock()


class _Ticker(threading.Thread):
    cachesim_fork_safe = True  # see _write_lock; cachesim.parallel still forks its workers with this running

    def __init__(self, line: Callable[[], str | None], stream, interval: float):
        super().__init__(name="cachesim-progress", daemon=True)
        self.line, self.stream, self.interval = line, stream, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            with _write_lock:
                text = self.line()
                if text is not None:
                    try:
                        print(text, file=self.stream, flush=True)
                    except (OSError, ValueError):  # stderr closed or gone (a closed pipe): stop quietly
                        return


@contextmanager
def _ticking(line: Callable[[], str | None], stream) -> Iterator[None]:
    ticker = _Ticker(line, stream, interval_s())
    ticker.start()
    try:
        yield
    finally:
        ticker.stopped.set()
        ticker.join(timeout=5)  # a guard: it only ever waits on the event or one write


@contextmanager
def command(name: str, enabled: bool | None = None, stream=None) -> Iterator[None]:
    """Around a whole command: a progress line every interval on ``stream`` (stderr), unless ``enabled`` is
    False (``--no-progress``). On a terminal the lines pause while a bar is drawn."""
    global _current
    if enabled is False or _current is not None:
        yield
        return
    _current = _Command(name, time.monotonic())
    try:
        with _ticking(_current.line, stream if stream is not None else sys.stderr):
            yield
    finally:
        _clear_current()


_BYTES_COLUMNS = "bytes"


def _bar(tracker: Tracker, transient: bool, fields: dict):
    # rich only when a bar is drawn: the interval lines need none of it
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    if tracker.unit == _BYTES_COLUMNS:
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TextColumn("{task.fields[note]}", style="progress.data.speed"), TimeRemainingColumn())
    else:
        columns = (TextColumn("[bold]{task.description}[/bold]{task.fields[where]}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[last]}"))
    bar = Progress(*columns, console=console, transient=transient)
    task = bar.add_task(tracker.label, total=tracker.total or None, completed=tracker.completed,
                        **{"note": "", "where": "", "last": "", **fields})
    return bar, task, console.is_terminal


def _clear_current() -> None:
    global _current
    _current = None


@contextmanager
def track(label: str, total: int | None, unit: str, *, completed: int = 0, enabled: bool | None = None,
          transient: bool = False, **fields: Any) -> Iterator[Tracker]:
    """One long step: a bar when stderr is a terminal (or ``enabled`` forces it), and the subject of the
    interval lines of the command running it; with ``enabled=True`` outside a command, lines of its own when
    stderr is not a terminal. ``enabled=False``: neither. ``fields`` are the bar's extra columns."""
    global _current
    tracker = Tracker(label, total, unit, completed)
    if enabled is False:
        yield tracker
        return
    outer, own = _current, None
    if outer is None and enabled and not wants_progress():
        outer = own = _Command(label, time.monotonic())
    with ExitStack() as stack:
        bar = None
        if enabled or wants_progress():
            bar, tracker._task, tracker.on_terminal = _bar(tracker, transient, fields)
            tracker._bar = bar
            bar.start()
            stack.callback(bar.stop)
        if outer is not None:
            outer.tracker = tracker
            stack.callback(setattr, outer, "tracker", None)
        if own is not None:
            _current = own
            stack.callback(_clear_current)
            stack.enter_context(_ticking(own.line, sys.stderr))
        yield tracker
        if bar is not None and tracker.total:
            bar.update(tracker._task, completed=tracker.total)


@contextmanager
def progress_bar(total_bytes: int, bytes_read: Callable[[], int], label: str,
                 enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """A trace read as a stream: yields ``update(requests_so_far)``; the bar (and the lines) track the bytes read,
    which is what the time left is known in."""
    with track(label, total_bytes or None, _BYTES_COLUMNS, enabled=enabled, transient=True) as tracker:
        def update(requests: int) -> None:
            elapsed = time.monotonic() - started
            rate = f" ({requests / elapsed:,.0f}/s)" if elapsed > 0 else ""
            tracker.update(bytes_read(), note=f"{requests:,} requests{rate}")

        started = time.monotonic()
        yield update


def _before_fork() -> None:
    _write_lock.acquire()


def _after_fork_in_child() -> None:
    global _current
    _write_lock.release()
    _current = None  # the thread that printed the lines is not in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_write_lock.release, after_in_child=_after_fork_in_child)
