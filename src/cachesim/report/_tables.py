"""What every table on screen shares: the console it prints to, and how a number reads in a cell."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table


def make_console(wide: bool = False) -> Console:
    """The console a command prints to; ``wide``: the terminal's own width, or 120 columns when writing to a pipe
    or file (rich would assume 80, too narrow for the provider tables)."""
    console = Console()
    return console if not wide or console.is_terminal else Console(width=120)


def format_cell(name: str, value: Any) -> str:
    """A table cell as people read it: ratios to 4 places, counts with separators, None as unbounded/none."""
    if value is None:
        return "unbounded" if name == "capacity_blocks" else "none"
    if isinstance(value, float):
        return f"{value:.4f}" if name.endswith("ratio") else f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def capacity_text(blocks: int | None) -> str:
    return "unbounded" if blocks is None else f"{blocks:,} blocks"


def ttl_text(ttl_s: float | None) -> str:
    return "no TTL" if ttl_s is None else f"TTL {ttl_s:g} s"


def add_columns(table: Table, names: Iterable[str], left: Iterable[str] = ("tenant",)) -> None:
    """Columns right-aligned (numbers) except the text ones named in ``left``."""
    left = set(left)
    for name in names:
        table.add_column(name, justify="left" if name in left else "right")


def note_more(table: Table, total: int, shown: int, what: str = "tenants") -> None:
    """Say below the table how many rows were left out for the JSON output to carry."""
    if total > shown:
        table.caption = f"{total - shown} more {what} in the JSON output"
