"""The price registry: dated, sourced rate rows read from ``prices.toml`` (shipped) and optionally a user's file.

A row is a :class:`PriceRow`. Lookup picks the row of (provider, model or alias) valid at a date, for a request's
input size (long-context rows apply to the whole request above ``above_input_tokens``) and a period (DeepSeek's
peak / off-peak). Multipliers are never hard-coded: every rate comes from a row.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import tomllib

__all__ = ["PriceRow", "PriceTable", "load_prices", "RATE_FIELDS"]

RATE_FIELDS = ("input", "read", "write_5m", "write_1h", "write_30m", "output", "storage_per_hour")
_REQUIRED = ("provider", "model", "input", "read", "output", "as_of", "source")
_KNOWN = set(RATE_FIELDS) | {"provider", "model", "aliases", "above_input_tokens", "valid_from", "valid_until",
                             "period", "as_of", "source", "note"}
_PERIODS = ("flat", "peak", "off-peak")


def _parse_when(value, where: str) -> _dt.datetime:
    """A TOML date or datetime (or ISO string) as an aware UTC datetime."""
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc)
    if isinstance(value, str):
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{where}: expected a date such as 2026-08-16 or 2026-08-16T16:00:00Z, "
                             f"got {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)
    raise ValueError(f"{where}: expected a date, got {value!r}")


@dataclass(frozen=True)
class PriceRow:
    provider: str
    model: str
    input: float
    read: float
    output: float
    as_of: str
    source: str
    write_5m: float | None = None
    write_1h: float | None = None
    write_30m: float | None = None
    storage_per_hour: float | None = None
    above_input_tokens: int = 0
    valid_from: _dt.datetime | None = None
    valid_until: _dt.datetime | None = None
    period: str = "flat"
    aliases: tuple[str, ...] = ()
    note: str = ""
    origin: str = ""      # the file the row came from

    def names(self) -> tuple[str, ...]:
        return (self.model, *self.aliases)

    def valid_at(self, when: _dt.datetime) -> bool:
        return ((self.valid_from is None or self.valid_from <= when)
                and (self.valid_until is None or when < self.valid_until))

    def identity(self) -> tuple:
        return (self.provider, self.model, self.above_input_tokens, self.period, self.valid_from)


@dataclass
class PriceTable:
    rows: list[PriceRow]
    version: str = ""
    default_date: _dt.datetime = field(default_factory=lambda: _dt.datetime(2026, 10, 1, tzinfo=_dt.timezone.utc))
    files: list[str] = field(default_factory=list)

    def models(self, provider: str | None = None) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            if provider is None or row.provider == provider:
                seen.setdefault(row.model, None)
        return list(seen)

    def candidates(self, provider: str, model: str, when: _dt.datetime | None = None,
                   period: str = "flat") -> list[PriceRow]:
        """The rows of a model at ``when``, one per long-context tier, lowest tier first."""
        when = when or self.default_date
        rows = [r for r in self.rows if r.provider == provider and model in r.names() and r.valid_at(when)]
        if not rows:
            known = ", ".join(self.models(provider)) or "none"
            raise ValueError(f"no price for {provider} model {model!r} at {when:%Y-%m-%d %H:%M} UTC "
                             f"(known {provider} models: {known}); add a row with `cachesim prices --file`")
        periods = {r.period for r in rows}
        if period not in periods:
            # a model with a single flat price serves every period; one with periods needs the right one
            if periods == {"flat"}:
                period = "flat"
            else:
                raise ValueError(f"{provider} {model!r} has prices for {sorted(periods)}, not {period!r}")
        rows = sorted((r for r in rows if r.period == period), key=lambda r: r.above_input_tokens)
        return rows

    def has_periods(self, provider: str, model: str, when: _dt.datetime | None = None) -> bool:
        when = when or self.default_date
        return any(r.period != "flat" for r in self.rows
                   if r.provider == provider and model in r.names() and r.valid_at(when))


def _row(obj: dict, where: str, origin: str) -> PriceRow:
    unknown = sorted(set(obj) - _KNOWN)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    for name in _REQUIRED:
        if name not in obj:
            raise ValueError(f"{where}: missing field {name!r}")
    kwargs: dict = {}
    for name in ("provider", "model", "source", "note"):
        if name in obj:
            if not isinstance(obj[name], str) or not obj[name]:
                raise ValueError(f"{where}: field {name!r} must be a non-empty string")
            kwargs[name] = obj[name]
    kwargs["as_of"] = _parse_when(obj["as_of"], f"{where}: field 'as_of'").strftime("%Y-%m-%d")
    for name in RATE_FIELDS:
        if name in obj:
            value = obj[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{where}: field {name!r} must be a non-negative number (USD per 1M tokens)")
            kwargs[name] = float(value)
    if "above_input_tokens" in obj:
        value = obj["above_input_tokens"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{where}: field 'above_input_tokens' must be a whole number >= 0")
        kwargs["above_input_tokens"] = value
    for name in ("valid_from", "valid_until"):
        if name in obj:
            kwargs[name] = _parse_when(obj[name], f"{where}: field {name!r}")
    if "period" in obj:
        if obj["period"] not in _PERIODS:
            raise ValueError(f"{where}: field 'period' must be one of {_PERIODS}")
        kwargs["period"] = obj["period"]
    if "aliases" in obj:
        if not isinstance(obj["aliases"], list) or not all(isinstance(a, str) for a in obj["aliases"]):
            raise ValueError(f"{where}: field 'aliases' must be a list of strings")
        kwargs["aliases"] = tuple(obj["aliases"])
    return PriceRow(origin=origin, **kwargs)


def _read_file(text: str, origin: str) -> tuple[list[PriceRow], dict]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{origin}: not valid TOML: {exc}") from None
    rows_raw = data.get("price", [])
    if not isinstance(rows_raw, list):
        raise ValueError(f"{origin}: 'price' must be an array of tables ([[price]])")
    rows = [_row(obj, f"{origin}: price row {i + 1}", origin) for i, obj in enumerate(rows_raw)]
    return rows, data


def canonical_model(model: str, known: set[str]) -> str:
    """A model id as logs write it, as the registry names it: ``claude-haiku-4-5-20251001`` (a dated snapshot, the
    version written with a dash, as Anthropic's API ids are) is ``claude-haiku-4.5``; ``gpt-4o-2024-08-06`` is
    ``gpt-4o``; ``gpt-5.1-codex`` is ``gpt-5.1``. The first of these forms the registry knows, or the id unchanged
    when it knows none."""
    import re

    undated = re.sub(r"-(\d{8}|\d{4}-\d{2}-\d{2})$", "", model)
    # OpenAI's -codex models are priced as their base model (openai.com/api/pricing); -codex-mini ones are not
    base = re.sub(r"-codex$", "", undated)
    for form in (model, undated, re.sub(r"-(\d+)-(\d+)$", r"-\1.\2", undated), base):
        if form in known:
            return form
    return model


def load_prices(user_file: str | Path | None = None) -> PriceTable:
    """The shipped registry, with the rows of ``user_file`` (same layout) replacing or extending it."""
    shipped = resources.files("cachesim.providers").joinpath("prices.toml")
    rows, meta = _read_file(shipped.read_text(), "prices.toml")
    table = PriceTable(rows=rows, version=str(meta.get("version", "")),
                       default_date=_parse_when(meta.get("default_date", "2026-10-01"), "prices.toml: default_date"),
                       files=["prices.toml (shipped)"])
    if user_file is not None:
        path = Path(user_file)
        extra, user_meta = _read_file(path.read_text(), str(path))
        replaced = {r.identity() for r in extra}
        table.rows = [r for r in table.rows if r.identity() not in replaced] + extra
        if "default_date" in user_meta:
            table.default_date = _parse_when(user_meta["default_date"], f"{path}: default_date")
        table.files.append(str(path))
    return table
