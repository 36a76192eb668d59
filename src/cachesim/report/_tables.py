"""What every table on screen shares: the console it prints to, how a number reads in a cell, and how a table is
laid out to fit that console without cutting a number (:func:`print_table`)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

__all__ = ["NARROW_COLUMNS", "WIDE_COLUMNS", "add_columns", "capacity_text", "format_cell", "make_console",
           "note_more", "print_table", "screen_width", "ttl_text"]

NARROW_COLUMNS = 80   # a pipe, a file, a CI log: what a reader of them can be assumed to see
WIDE_COLUMNS = 160
# a word of a text column (a definition, a note) longer than this folds rather than forcing a narrower layout;
# number columns and the key columns never fold
TEXT_FOLD = 16


def screen_width(wide: bool = False) -> int:
    """The width tables are laid out for: COLUMNS when set (as rich and the shells read it); else the terminal's
    width when stdout is one; else 80, since a pipe or a file has no width of its own. ``wide``: at least 160."""
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else None
    if width is None:
        try:
            width = os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else None
        except (AttributeError, ValueError, OSError):  # a replaced stdout (pytest's capture) has no descriptor
            width = None
    width = width or NARROW_COLUMNS
    return max(width, WIDE_COLUMNS) if wide else width


def make_console(wide: bool = False) -> Console:
    """The console a command prints to, as wide as :func:`screen_width` says (rich alone would look at stdin and
    stderr too, so a redirected stdout would get the terminal's width and a file would differ from a pipe)."""
    return Console(width=screen_width(wide))


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


# --- fitting -------------------------------------------------------------------------------------------------------
# A table is printed from the rich Table a printer built (columns with add_columns, rows with add_row): right-justified
# columns hold numbers, whose cells may wrap only between words, never inside one; left-justified ones hold text.
# The layout tried in turn: every column at its natural width; narrower columns with wrapped headers; the same
# without cell padding; the columns split over several tables that each repeat the key columns; one block of
# ``name  value`` lines per row.


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain


def _longest(words: Iterable[str]) -> int:
    return max((cell_len(w) for w in words), default=0)


def _header_pieces(word: str) -> list[str]:
    """Where a header word may break when its column is narrower than it: after a hyphen, slash or underscore."""
    return [piece for piece in re.split(r"(?<=[-/_])", word) if piece]


class _Col:
    """One column's measures: ``least`` it can take without cutting a number (or a key), ``easy`` with its cells
    on one line and its header words whole, ``full`` with its header on its own lines too."""

    def __init__(self, header: str, cells: list, justify: str, key: bool):
        self.header, self.cells, self.justify = header, cells, justify
        self.first = key or justify == "right"  # keys and numbers get their easy width before any text does
        plain = [_plain(c) for c in cells]
        lines = [line for text in plain for line in text.splitlines()]
        words = [w for line in lines for w in line.split()]
        data_least = _longest(words)
        if justify != "right" and not key:
            data_least = min(data_least, TEXT_FOLD)
        head_words = header.split()
        self.least = max(1, data_least, _longest(p for w in head_words for p in _header_pieces(w)))
        self.easy = max(self.least, _longest(lines), _longest(head_words))
        self.full = max(self.easy, _longest(header.splitlines()))


def _widths(cols: Sequence[_Col], room: int) -> list[int] | None:
    """Column widths summing to at most ``room``, or None when even the least widths do not fit: from the least,
    spare columns are handed out one at a time in turn, up to the easy width of the key and number columns (a
    number on one line reads better than a sentence on fewer), then of every column, then to their full width."""
    widths = [c.least for c in cols]
    spare = room - sum(widths)
    if spare < 0:
        return None
    for target in ([c.easy if c.first else c.least for c in cols], [c.easy for c in cols], [c.full for c in cols]):
        while spare > 0:
            wanting = [i for i, w in enumerate(widths) if w < target[i]]
            if not wanting:
                break
            for i in wanting[:spare]:
                widths[i] += 1
            spare -= min(spare, len(wanting))
    return widths


def _wrap_header(header: str, width: int) -> str:
    """The header in lines of at most ``width`` cells: its own line breaks kept, words wrapped, and a word wider
    than the column broken after a hyphen or slash."""
    out = []
    for line in header.split("\n"):
        current = ""
        for word in line.split():
            pieces, pending = [], ""
            for piece in _header_pieces(word) if cell_len(word) > width else [word]:
                if pending and cell_len(pending + piece) > width:
                    pieces.append(pending)
                    pending = ""
                pending += piece
            pieces.append(pending)
            for j, piece in enumerate(pieces):
                if j == 0 and current and cell_len(current) + 1 + cell_len(piece) <= width:
                    current += " " + piece
                else:
                    if current:
                        out.append(current)
                    current = piece
        out.append(current)
    return "\n".join(out)


def _fit(cols: Sequence[_Col], width: int) -> tuple[list[int], bool] | None:
    """Widths for ``cols`` in ``width`` and whether they need the tight style, or None when they do not fit. The
    table's borders: one after each column and before the first; unless tight, a space of padding either side of
    each cell (tight drops it: the borders alone keep numbers apart)."""
    for tight in (False, True):
        widths = _widths(cols, width - (1 if tight else 3) * len(cols) - 1)
        if widths is not None:
            return widths, tight
    return None


def _render(source: Table, cols: Sequence[_Col], fit: tuple[list[int], bool], title, caption) -> Table:
    widths, tight = fit
    table = Table(title=title, caption=caption, header_style=source.header_style, title_justify=source.title_justify,
                  show_header=source.show_header, box=source.box, padding=0 if tight else (0, 1))
    for col, width in zip(cols, widths, strict=True):
        # fold, not ellipsis: widths never fall below a number's length, so only a long text word can fold
        table.add_column(_wrap_header(col.header, width), justify=col.justify, width=width, overflow="fold")
    for r, row in enumerate(source.rows):
        table.add_row(*(col.cells[r] for col in cols), end_section=row.end_section)
    return table


def _stacked(source: Table, cols: Sequence[_Col], keys: int, width: int) -> Group:
    """One block per row: its key cells on a line, then a ``name  value`` line per other column, indented."""
    names = [" ".join(c.header.split()) for c in cols[keys:]]
    values = [cell for c in cols[keys:] for cell in c.cells]
    # room for the indent and the gap between name and value, 2 each; below that rich squeezes as it can
    widths = _widths([_Col("", names, "left", True), _Col("", values, "right", True)], width - 4)
    out: list = [Text(str(source.title), style="bold")] if source.title else []
    for r in range(len(source.rows)):
        key = " · ".join(text for c in cols[:keys] if (text := _plain(c.cells[r]).strip()))
        grid = Table.grid(padding=(0, 2, 0, 0))
        for justify, w in zip(("left", "right"), widths or (None, None), strict=True):
            grid.add_column(justify=justify, width=w, overflow="fold")
        for name, c in zip(names, cols[keys:], strict=True):
            grid.add_row(name, c.cells[r])
        out += [Text(key, style="bold", overflow="fold"), Padding(grid, (0, 0, 0, 2), expand=False)]
    if source.caption:
        out.append(Text(str(source.caption)))
    return Group(*out)


def fit_tables(table: Table, width: int, keys: int | None = None) -> list[Table | Group]:
    """``table`` laid out in ``width`` columns with every number whole: itself with narrower columns and wrapped
    headers (then without cell padding), else its columns split over several tables repeating the first ``keys``
    columns (default: the leading text columns, at least one), else one block of ``name  value`` lines per row."""
    if keys is None:
        keys = next((i for i, c in enumerate(table.columns) if c.justify == "right"), len(table.columns)) or 1
    keys = min(keys, len(table.columns))
    cols = [_Col(_plain(c.header), list(c.cells), c.justify, i < keys) for i, c in enumerate(table.columns)]
    whole = _fit(cols, width)
    if whole is not None:
        return [_render(table, cols, whole, table.title, table.caption)]
    head, rest = cols[:keys], cols[keys:]
    if not rest:  # nothing to split off: each row's cells on a line of their own
        return [_stacked(table, cols, keys, width)]
    parts: list[list[_Col]] = []
    for col in rest:
        if parts and _fit([*head, *parts[-1], col], width) is not None:
            parts[-1].append(col)
        elif _fit([*head, col], width) is not None:
            parts.append([col])
        else:
            return [_stacked(table, cols, keys, width)]
    out: list[Table | Group] = []
    for i, part in enumerate(parts):
        shown = [*head, *part]
        fit = _fit(shown, width)
        title = table.title
        if i and title:  # a long title would stand taller than a narrow part
            title = f"{title} (continued)" if cell_len(str(title)) + 12 <= sum(fit[0]) + 3 * len(shown) \
                else "(continued)"
        out.append(_render(table, shown, fit, title, table.caption if i == len(parts) - 1 else None))
    return out


def print_table(console: Console, table: Table, keys: int | None = None) -> None:
    """Print ``table`` so it fits ``console`` without cutting a number: see :func:`fit_tables`. Every printer of
    the package prints its tables through here."""
    for part in fit_tables(table, console.width, keys):
        console.print(part)
