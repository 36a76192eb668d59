"""``cachesim sweep`` on screen: a row per configuration, the axes that vary, then the headline metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from cachesim.report._tables import add_columns, format_cell, make_console, print_table

if TYPE_CHECKING:
    from cachesim.sweep import SweepResult

# the metrics a sweep's table (and its HTML report) shows; the JSON and CSV carry every column
SCREEN_METRICS = ("token_hit_ratio", "block_hit_ratio", "request_hit_ratio", "tokens_computed", "evictions_capacity",
                  "peak_occupancy_blocks")

# shorter headers where the long word would set a column wider than its numbers
SCREEN_LABELS = {"peak_occupancy_blocks": "peak blocks"}


def print_sweep(result: SweepResult, console=None) -> None:
    """The table on screen: the axes that vary, then the headline metrics."""
    console = console or make_console()
    t = result.trace
    console.print(f"[bold]cachesim sweep[/bold] — {t['label']}: {t['requests']:,} requests, "
                  f"{len(result.rows)} configurations")
    table = Table(header_style="bold")
    names = (*result.axes, *SCREEN_METRICS)
    add_columns(table, [SCREEN_LABELS.get(name, name.replace("_", " ")) for name in names], left=("policy", "preset"))
    for row in result.rows:
        table.add_row(*(format_cell(name, row.get(name)) for name in names))
    print_table(console, table, keys=max(len(result.axes), 1))  # a continued part repeats the axes
