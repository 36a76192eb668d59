"""Counts, durations, byte sizes and warm-ups as people write them ("100k", "5m", "40GiB", "300s"), read once for
the API and the CLI.

Every parser raises ``ValueError`` with the text it could not read; the CLI turns that into its one-line error.
"""

from __future__ import annotations

import operator
import re

import numpy as np

__all__ = ["first_counted", "format_bytes", "format_count", "parse_bytes", "parse_count", "parse_ratio",
           "parse_seconds", "parse_warmup"]

_COUNT_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9}
_SECOND_SUFFIXES = {"s": 1, "m": 60, "h": 3600}
# "KiB" is 2^10 and "KB" 10^3, as IEC 80000-13 has them; a bare "k"/"G" is refused, because "128k" read as
# 128,000 bytes by one tool and 131,072 by another is the confusion these units exist to avoid
_BINARY_PREFIXES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
_SI_PREFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BYTES = re.compile(r"(?P<number>[0-9.]+(?:e[+-]?[0-9]+)?)\s*(?:(?P<binary>[kmgtp])ib|(?P<si>[kmgtp]?)b)?")
_BINARY_NAMES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


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


def parse_ratio(text: str) -> float:
    """``"30%"`` or ``"0.3"`` -> 0.3, a ratio in (0, 1]. A bare number above 1 is refused rather than read as a
    percentage, since "30" could be either."""
    raw = str(text).strip()
    percent = raw.endswith("%")
    try:
        value = float(raw[:-1] if percent else raw)
    except ValueError:
        raise ValueError(f"expected a ratio such as 30% or 0.3, got {text!r}") from None
    if percent:
        value /= 100
    elif value > 1:
        raise ValueError(f"expected a ratio such as 30% or 0.3, got {text!r} (write {raw}% for a percentage)")
    if not 0 < value <= 1:
        raise ValueError(f"expected a ratio above 0% and at most 100%, got {text!r}")
    return value


def parse_bytes(text: str) -> int:
    """``"131072"``, ``"128KiB"``, ``"40GiB"`` (binary), ``"40GB"`` (SI, 40e9) -> a positive whole number of bytes."""
    raw = str(text).strip().lower().replace("_", "").replace(",", "")
    found = _BYTES.fullmatch(raw)
    if found is None:
        hint = " (say KiB/GiB for binary units or KB/GB for SI ones)" if raw[-1:] in ("k", "m", "g", "t", "p") else ""
        raise ValueError(f"expected a size such as 128KiB, 40GiB, 40GB or a number of bytes, got {text!r}{hint}")
    try:
        number = float(found["number"])
    except ValueError:
        raise ValueError(f"expected a size such as 128KiB, 40GiB, 40GB or a number of bytes, got {text!r}") from None
    scale = _BINARY_PREFIXES[found["binary"]] if found["binary"] else _SI_PREFIXES[found["si"] or ""]
    value = number * scale
    if not value > 0 or value != int(value) or value == float("inf"):
        raise ValueError(f"expected a positive whole number of bytes, got {text!r}")
    return int(value)


def format_bytes(n: float) -> str:
    """Bytes in binary units as people read them: ``3.2 GiB``, ``128 KiB``, ``0.98 GiB``, ``512 B``."""
    value, step = float(n), 0
    if not 0 <= value < float("inf"):
        return str(n)
    # step up from 1000 of a unit, not 1024, so that no figure reads "1,020 MiB"
    while value >= 999.5 and step < len(_BINARY_NAMES) - 1:
        value /= 1024
        step += 1
    if value == int(value):
        return f"{int(value):,} {_BINARY_NAMES[step]}"
    digits = 2 if value < 1 else 1 if value < 100 else 0
    return f"{value:,.{digits}f} {_BINARY_NAMES[step]}"


def format_count(n: float) -> str:
    """A count in a few digits: ``10.8M``, ``512k``, ``999``."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:,.0f}"


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
