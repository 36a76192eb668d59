"""The declared type and range of every rule-set option, read once from text (``cost --set/--vs``) and checked
once for every rule set built (the rule sets' ``__post_init__``), so no option reaches an engine unchecked.

A name means the same thing in every provider that has it (``ttft_s``, ``isolation``, ``seed``...), so the
registry is keyed by name. ``none`` is accepted where a rule set's default is None, and means that default
(the model's own minimum, unit or retention; no capacity limit).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cachesim import units

__all__ = ["OPTIONS", "Option", "check_fields", "parse_bool", "parse_option"]

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
_NONE_WORDS = ("none", "null")


def parse_bool(text: str) -> bool:
    """true/false, yes/no, 1/0 in any case; anything else is a ValueError (``bool("False")`` is True)."""
    word = str(text).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true/false, yes/no or 1/0, got {text!r}")


def _number(text: str, cast: Callable, seconds: bool):
    raw = str(text).strip().replace("_", "")
    try:
        return cast(raw)
    except ValueError:
        pass
    if seconds:
        return units.parse_seconds(raw)   # 90s, 5m, 1h; its error names what it expected
    try:
        return units.parse_count(raw)     # 4k tokens
    except (ValueError, OverflowError):
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _iso_date(text: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"expected a date YYYY-MM-DD, got {text!r}")
    date.fromisoformat(text)  # a month 13 or a 30 February is its own ValueError
    return text


@dataclass(frozen=True)
class Option:
    """One option: its kind (bool, int, float, str, ``dates`` or ``utc``), and for numbers a range, for names
    the choices."""

    kind: str
    low: float | None = None        # the least value allowed (inclusive) ...
    above: float | None = None      # ... or the value it must exceed
    high: float | None = None       # the greatest value allowed (inclusive) ...
    below: float | None = None      # ... or the value it must stay under
    choices: tuple[str, ...] = ()
    seconds: bool = False           # a duration: 300, 300s, 5m, 1h

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        what = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a name",
                "dates": "dates YYYY-MM-DD, comma-separated", "utc": "a UTC time such as 2026-10-01T00:00:00Z"}
        text = what[self.kind] + (" of seconds" if self.seconds else "")
        if self.above is not None:
            text += f" > {self.above:g}"
        elif self.low is not None:
            text += f" >= {self.low:g}"
        if self.high is not None:
            text += f" and <= {self.high:g}"
        elif self.below is not None:
            text += f" and < {self.below:g}"
        return text

    def parse(self, text: str):
        """The value ``text`` stands for (``none`` for None), checked; a ValueError says what was expected."""
        word = str(text).strip().lower()
        if word in _NONE_WORDS and word not in self.choices:
            return None
        if self.kind == "bool":
            return parse_bool(text)
        if self.kind in ("int", "float"):
            value = _number(text, int if self.kind == "int" else float, self.seconds)
        elif self.kind == "dates":
            value = _dates(text)
        else:
            value = str(text).strip()
        if not self._fits(value):
            raise ValueError(f"expected {self.describe()}, got {text!r}")
        return value

    def check(self, value) -> None:
        """A ValueError unless ``value`` is of this kind and in range (None is the caller's business)."""
        if not self._fits(value):
            raise ValueError(f"expected {self.describe()}, got {value!r}")

    def _fits(self, value) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind in ("int", "float"):
            kinds = (int,) if self.kind == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
                return False
            return ((self.low is None or value >= self.low) and (self.above is None or value > self.above)
                    and (self.high is None or value <= self.high) and (self.below is None or value < self.below))
        if self.kind == "dates":
            try:
                return isinstance(value, tuple) and all(_iso_date(d) for d in value)
            except (TypeError, ValueError):
                return False
        if not isinstance(value, str) or not value:
            return False
        if self.kind == "utc":
            return _is_utc(value)
        return not self.choices or value in self.choices


def _dates(text: str) -> tuple[str, ...]:
    """``2026-10-01,2026-10-02`` or a JSON list of them; empty for none."""
    raw = str(text).strip()
    if raw.startswith("["):
        try:
            items = json.loads(raw)
        except ValueError:
            raise ValueError(f"expected dates YYYY-MM-DD, comma-separated, got {text!r}") from None
        return tuple(str(d) for d in items)
    return tuple(d.strip() for d in raw.split(",") if d.strip())


def _is_utc(text: str) -> bool:
    # the engine reads the wall clock off this time, so another offset would silently shift peak hours
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return when.utcoffset() in (None, timedelta(0))


def _seconds(low: float | None = None, above: float | None = 0.0) -> Option:
    return Option("float", low=low, above=None if low is not None else above, seconds=True)


_FLAG = Option("bool")
_SEED = Option("int", low=0)                 # numpy's generators take no negative seed
_DURATION = _seconds()                       # a TTL or an idle time: > 0, or every entry would be dead at birth
_DELAY = _seconds(low=0.0)                   # a wait that may be nothing

OPTIONS: dict[str, Option] = {
    "model": Option("str"),                  # the rule set knows its models (minimum tables, GPT-5.6+)
    "platform": Option("str", choices=("api", "bedrock")),
    "isolation": Option("str", choices=("shared", "tenant")),
    "automatic": _FLAG,
    "automatic_ttl": Option("str", choices=("5m", "1h")),
    "lookback_blocks": Option("int", low=1),
    "max_breakpoints": Option("int", low=1),
    "ttl_5m_s": _DURATION,
    "ttl_1h_s": _DURATION,
    "ttl_s": _DURATION,
    "idle_ttl_s": _DURATION,
    "in_memory_idle_s": _DURATION,
    "extended_idle_s": _DURATION,
    "extended_max_age_s": _DURATION,
    "ttft_s": _DELAY,
    "grace_s": _DELAY,
    "delay_s": _DELAY,
    "response_s": _DELAY,
    "refresh_whole_path": _FLAG,
    "miss_probability": Option("float", low=0.0, high=1.0),
    "min_tokens": Option("int", low=0),
    "per_segment_minimum": _FLAG,
    "batch": _FLAG,
    "us_inference": _FLAG,
    "regional_endpoint": _FLAG,
    "seed": _SEED,
    "retention": Option("str", choices=("in_memory", "24h")),
    "zdr": _FLAG,
    "unit_tokens": Option("int", low=1),
    "hidden_tokens": Option("int", low=0),
    "routing_prefix_tokens": Option("int", low=1),
    "requests_per_minute": Option("float", above=0.0),
    "cache_key": Option("str", choices=("none", "tenant", "session")),
    "capacity_tokens": Option("int", low=1),
    "implicit": _FLAG,
    "max_writes": Option("int", low=1),
    "block_tokens": Option("int", low=1),
    "bill_creation": _FLAG,
    "interval_tokens": Option("int", low=1),
    "start_utc": Option("utc"),
    "holidays": Option("dates"),
}


def parse_option(name: str, text: str, option: Option | None = None):
    """The value of rule option ``name`` (or of ``option``) written as ``text``; a ValueError naming it otherwise."""
    option = option or OPTIONS.get(name)
    if option is None:
        raise ValueError(f"unknown rule option {name!r}; options: {', '.join(sorted(OPTIONS))}")
    try:
        return option.parse(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def check_fields(rules) -> None:
    """Every field of a rule set against its declared type and range; None only where the default is None."""
    for field in dataclasses.fields(rules):
        value = getattr(rules, field.name)
        if value is None and field.default is None:
            continue
        if field.name == "holidays" and isinstance(value, list):
            object.__setattr__(rules, "holidays", tuple(value))  # a frozen rule set keeps it hashable
            value = rules.holidays
        try:
            OPTIONS[field.name].check(value)
        except ValueError as exc:
            raise ValueError(f"{rules.provider} option {field.name}: {exc}") from None
