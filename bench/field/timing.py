"""CPU time of the calling thread: the machine is shared (load averages of 3-6 on 2 cores while these were
written), and wall time counts the waits for a core; every timed thing here runs on the calling thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

clock = time.thread_time


def timed(fn: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    """(fn's result, CPU seconds it took on this thread)."""
    start = clock()
    result = fn(*args, **kwargs)
    return result, clock() - start
