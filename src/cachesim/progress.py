"""A progress bar for long reads: requests and bytes, their rates, and the time left; quiet when not a TTY."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class _Requests(ProgressColumn):
    """Requests so far and per second (the bar itself tracks bytes, which is what the ETA is known in)."""

    def render(self, task: Task) -> Text:
        n = task.fields.get("requests", 0)
        elapsed = task.elapsed or 0.0
        rate = f" ({n / elapsed:,.0f}/s)" if elapsed > 0 else ""
        return Text(f"{n:,} requests{rate}", style="progress.data.speed")


def wants_progress(stream=None) -> bool:
    """Show a bar only when a person is watching: stderr is a terminal."""
    stream = stream if stream is not None else sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


@contextmanager
def progress_bar(total_bytes: int, bytes_read: Callable[[], int], label: str,
                 enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yields ``update(requests_so_far)``; draws on stderr when enabled (default: stderr is a TTY)."""
    if not (wants_progress() if enabled is None else enabled):
        yield lambda requests: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), _Requests(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total_bytes or None, requests=0)

        def update(requests: int) -> None:
            bar.update(task, completed=bytes_read(), requests=requests)

        yield update
        bar.update(task, completed=total_bytes)
