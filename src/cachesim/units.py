"""Counts, durations and warm-ups as people write them ("100k", "5m", "300s"), read once for the API and the CLI.

Every parser raises ``ValueError`` with the text it could not read; the CLI turns that into its one-line error.
"""

from __future__ import annotations

import operator

import numpy as np

__all__ = ["first_counted", "parse_count", "parse_seconds", "parse_warmup"]

_COUNT_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9}
_SECOND_SUFFIXES = {"s": 1, "m": 60, "h": 3600}


def parse_count(text: str) -> int:
    """``"100000"``, ``"100k"``, ``"1.5M"`` -> a positive whole number."""
    raw = str(text).strip().lower().replace("_", "").replace(",", "")
    scale = _COUNT_SUFFIXES.get(raw[-1:], 1)
    number = raw[:-1] if scale != 1 else raw
    try:
        value = float(number) * scale
    except ValueError:
        raise ValueError(f"expected a number such as 100000 or 100k, got {text!r}") from None
    if value != int(value) or value <= 0:
        raise ValueError(f"expected a positive whole number, got {text!r}")
    return int(value)


def parse_seconds(text: str) -> float:
    """``"300"``, ``"300s"``, ``"5m"``, ``"1h"`` -> seconds (positive)."""
    raw = str(text).strip().lower()
    scale = _SECOND_SUFFIXES.get(raw[-1:])
    try:
        value = float(raw[:-1]) * scale if scale else float(raw)
    except ValueError:
        raise ValueError(f"expected seconds such as 300, 300s, 5m or 1h, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"expected a positive duration, got {text!r}")
    return value


def parse_warmup(value: int | float | str | None) -> tuple[int, float]:
    """The warm-up as (requests, seconds): ``100`` or ``"100"`` = the first 100 requests; ``"300s"`` = the first
    300 seconds of the trace."""
    if value is None:
        return 0, 0.0
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("s"):
                seconds = float(text[:-1])
                if seconds >= 0:
                    return 0, seconds
            elif int(text) >= 0:
                return int(text), 0.0
        except ValueError:
            pass
        raise ValueError(f"warmup must be a number of requests (e.g. 100) or seconds (e.g. 300s), got {value!r}")
    if not isinstance(value, bool):
        try:
            requests = operator.index(value)
        except TypeError:
            requests = -1
        if requests >= 0:
            return int(requests), 0.0
    raise ValueError(f"warmup must be a number of requests (e.g. 100) or seconds (e.g. '300s'), got {value!r}")


def first_counted(t: np.ndarray, warmup_requests: int, warmup_s: float) -> int:
    """Index of the first request the warm-up counts in a time-sorted trace (SEMANTICS §5): request ``r`` counts
    when ``r >= warmup_requests`` and ``t[r] >= t[0] + warmup_s`` — the engines' rule, for whole arrays."""
    n = len(t)
    start = min(warmup_requests, n)
    if warmup_s and n:
        start = max(start, int(np.searchsorted(t, t[0] + warmup_s, side="left")))
    return start
