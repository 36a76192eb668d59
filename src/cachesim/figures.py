"""All of cachesim's figures (matplotlib, the ``plot`` extra): a metric against capacity per policy, tenant x
tenant heat maps (the HTML report and ``cachesim interference --heatmap``), and the LRU hit-ratio curve.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas (no pyplot state, no display, the
caller's backend left alone), so they render the same in a worker, a test or a headless server;
:func:`figure_png` gives bytes that depend on the data alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LABELS", "bar_figure", "curve_figure", "curve_rows", "default_metrics", "figure_png", "figure_title",
           "heatmap_figure", "interference_figure", "metric_figure", "plot_curve", "save_figure", "sweep_figures",
           "sweep_layout", "tenant_heatmap"]

LABELS = {
    "capacity_blocks": "capacity (blocks)",
    "token_hit_ratio": "token hit ratio",
    "block_hit_ratio": "block hit ratio",
    "request_hit_ratio": "request hit ratio",
    "tokens_computed": "tokens computed (prompt - hit tokens)",
    "ttl_s": "TTL (s)",
    "block_size": "block size (tokens)",
}
MAX_HEATMAP_TENANTS = 24
MAX_HEATMAPS = 4
ANNOTATE_MAX = 12     # above this many tenants the cells are too small to carry numbers
HEATMAP_FORMATS = (".png", ".svg", ".pdf")


def new_figure(**options):
    """A Figure on an Agg canvas: the one place matplotlib is loaded, so a missing extra reads the same everywhere."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("figures need matplotlib, the 'plot' extra: pip install 'cachesim[plot]'") from None
    matplotlib.rcParams["svg.hashsalt"] = "cachesim"  # reproducible ids if anyone saves SVG
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**options)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, dpi: float | str = "figure") -> Path:
    """Write ``fig`` in the format its suffix names."""
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def _shown(name: str, value: Any) -> str:
    if value is None:
        return {"capacity_blocks": "unbounded", "ttl_s": "no TTL"}.get(name, "none")
    if name == "ttl_s":
        return f"TTL {value:g} s"
    return f"{value:g}" if isinstance(value, float) else str(value)


MAX_SERIES = 4       # lines per panel before a figure splits into small multiples
PANEL_SIZE = (4.6, 3.3)  # inches per small-multiple panel
MAX_COLUMNS = 3


def metric_figure(rows: Sequence[Mapping[str, Any]], y: str | Sequence[str], x: str = "capacity_blocks",
                  series: Sequence[str] = (), title: str | None = None, panels: Sequence[str] = (),
                  kv_bytes_per_token: float | None = None):
    """``y`` against ``x``, one line per combination of the ``series`` columns (e.g. policy, TTL).

    Generic over the column names, so a cost column plots the same way as a hit ratio. Rows whose ``x`` is None
    (an unbounded cache) become a dashed horizontal line in their series' colour. Several metrics in ``y``, or
    ``panels`` columns, make small multiples: one panel per metric and combination of the panel columns, the same
    series in the same colour in each. Against capacity, a top axis gives GB (with ``kv_bytes_per_token``) or
    tokens, wherever the panel's rows share one block size.
    """
    metrics = [y] if isinstance(y, str) else list(y)
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(p) for p in panels), []).append(row)
    # one colour per series across every panel, so a policy reads the same everywhere
    colours = {key: f"C{i % 10}" for i, key in
               enumerate(dict.fromkeys(tuple(row.get(s) for s in series) for row in rows))}
    cells = [(metric, key, members) for metric in metrics for key, members in groups.items()]
    if len(cells) == 1:
        fig = new_figure(figsize=(7.0, 4.2), dpi=100, layout="constrained")
        axes = [fig.add_subplot()]
    else:
        ncols = min(MAX_COLUMNS, len(cells))
        nrows = math.ceil(len(cells) / ncols)
        fig = new_figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows + 0.4), dpi=100, layout="constrained")
        axes = list(fig.subplots(nrows, ncols, squeeze=False, sharex=True).flat)
        for ax in axes[len(cells):]:
            ax.set_visible(False)
    for ax, (metric, key, members) in zip(axes, cells, strict=False):
        _draw_series(ax, members, metric, x, series, colours, kv_bytes_per_token)
        if len(cells) > 1:
            shown = ", ".join(_shown(p, v) for p, v in zip(panels, key, strict=True))
            ax.set_title(", ".join(part for part in (_label(metric) if len(metrics) > 1 else "", shown) if part),
                         fontsize=10)
    heading = title or (f"{_label(metrics[0])} against {_label(x)}" if len(metrics) == 1
                        else f"hit ratios against {_label(x)}")
    if len(cells) == 1:
        axes[0].set_title(heading)
    else:
        fig.suptitle(heading)
    return fig


def _draw_series(ax, rows: Sequence[Mapping[str, Any]], y: str, x: str, series: Sequence[str],
                 colours: Mapping[tuple, str], kv_bytes_per_token: float | None) -> None:
    """One panel of :func:`metric_figure`."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(s) for s in series), []).append(row)
    finite_x = [row[x] for row in rows if row.get(x) is not None]
    numeric = all(isinstance(v, (int, float)) for v in finite_x)
    categories = [] if numeric else list(dict.fromkeys(str(v) for v in finite_x))
    for key, members in groups.items():
        label = ", ".join(_shown(s, v) for s, v in zip(series, key, strict=True)) or _label(y)
        colour = colours.get(key, "C0")
        points = sorted(((r[x] if numeric else categories.index(str(r[x])), r[y]) for r in members
                         if r.get(x) is not None and r.get(y) is not None), key=lambda p: p[0])
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=4, color=colour,
                    label=label)
        for r in members:
            if r.get(x) is None and r.get(y) is not None:
                ax.axhline(r[y], color=colour, linestyle="--", linewidth=1,
                           label=None if points else f"{label} ({_shown(x, None)})")
    if numeric and finite_x and min(finite_x) > 0 and max(finite_x) / min(finite_x) >= 20:
        ax.set_xscale("log")
    if categories:
        ax.set_xticks(range(len(categories)), categories)
    if y.endswith("_ratio"):
        ax.set_ylim(0, 1)
    else:
        _readable_ticks(ax.yaxis, max((abs(r[y]) for r in rows if isinstance(r.get(y), (int, float))), default=0))
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    ax.grid(True, alpha=0.3)
    block_sizes = {r.get("block_size") for r in rows}
    if x == "capacity_blocks" and numeric and finite_x and len(block_sizes) == 1 and None not in block_sizes:
        _capacity_axis(ax, block_sizes.pop(), kv_bytes_per_token)
    if any(r.get(x) is None for r in rows):
        ax.text(0.99, 0.01, f"dashed: {_shown(x, None)}", transform=ax.transAxes, ha="right", va="bottom",
                fontsize=8, color="0.4")
    if len(groups) > 1 or series:
        ax.legend(fontsize=8, loc="best")


def _capacity_axis(ax, block_size: int, kv_bytes_per_token: float | None) -> None:
    """A top axis stating a capacity in blocks as GB of KV cache (when its bytes per token are known) or tokens."""
    per_block = block_size * (kv_bytes_per_token / 1e9 if kv_bytes_per_token else 1)
    top = ax.secondary_xaxis("top", functions=(lambda b: b * per_block, lambda v: v / per_block))
    if ax.get_xscale() == "log":  # plain numbers at the decades, none at the minor ticks (they collide)
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        top.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        top.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v < 1e4 else _short(v)))
        top.xaxis.set_minor_formatter(NullFormatter())
    top.set_xlabel(f"capacity (GB at {kv_bytes_per_token:,.0f} KV bytes per token)" if kv_bytes_per_token
                   else f"capacity (tokens, {block_size} per block)", fontsize=8)


def _readable_ticks(axis, largest: float) -> None:
    """Large counts as 6.1M or 200k at the ticks, not with a 1e6 offset."""
    if largest >= 1e4:
        from matplotlib.ticker import FuncFormatter

        axis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))


def figure_title(fig) -> str:
    """What a figure shows: its overall title, else its one panel's."""
    return fig.get_suptitle() or (fig.axes[0].get_title() if fig.axes else "")


def bar_figure(categories: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, ylabel: str,
               stacked: bool = False, panels: bool = False, value_format: str = "{:.3f}"):
    """Bars per category (tenant, router, scenario): grouped by series side by side, ``stacked`` on one another
    (a bill's parts), or with ``panels`` one small panel per series, each on its own scale."""
    categories = [str(c) for c in categories]
    names = list(series)
    ratio = ylabel.endswith("ratio")
    if panels:
        ncols = min(MAX_COLUMNS, len(names))
        nrows = math.ceil(len(names) / ncols)
        fig = new_figure(figsize=(max(PANEL_SIZE[0], 0.45 * len(categories) + 1.5) * ncols,
                                  PANEL_SIZE[1] * nrows + 0.8), dpi=100, layout="constrained")
        axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        for i, (ax, name) in enumerate(zip(axes, names, strict=False)):
            bars = ax.bar(range(len(categories)), series[name], color=f"C{i % 10}")
            ax.bar_label(bars, [value_format.format(v) for v in series[name]], fontsize=7)
            ax.set_title(name, fontsize=10)
            _category_axis(ax, categories)
        fig.suptitle(title, wrap=True)
        return fig
    fig = new_figure(figsize=(max(7.0, 0.5 * len(categories) * (1 if stacked else max(1, len(names) / 2)) + 2.5),
                              4.4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(categories), dtype=np.float64)
    width = 0.8 if stacked else 0.8 / max(len(names), 1)
    bottom = np.zeros(len(categories))
    for i, name in enumerate(names):
        values = np.asarray(series[name], dtype=np.float64)
        if stacked:
            ax.bar(positions, values, width, bottom=bottom, label=name, color=f"C{i % 10}")
            bottom += values
        else:
            bars = ax.bar(positions + (i - (len(names) - 1) / 2) * width, values, width, label=name,
                          color=f"C{i % 10}")
            if len(categories) * len(names) <= 24:  # room for a number on each bar
                ax.bar_label(bars, [value_format.format(v) for v in values], fontsize=7)
    if stacked:
        ax.bar_label(ax.containers[-1], [value_format.format(v) for v in bottom], fontsize=8)
    _category_axis(ax, categories)
    if ratio:
        ax.set_ylim(0, 1.08)
    else:
        _readable_ticks(ax.yaxis, max(bottom.max(initial=0), *(max(v, default=0) for v in series.values())))
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    if len(names) > 1:
        ax.legend(fontsize=8, loc="best")
    ax.set_title(title, fontsize=11, wrap=True)
    return fig


def _category_axis(ax, categories: Sequence[str]) -> None:
    longest = max((len(line) for c in categories for line in c.splitlines()), default=0)
    long = len(categories) > 8 or longest * len(categories) > 60
    ax.set_xticks(range(len(categories)), categories, rotation=40 if long else 0, ha="right" if long else "center",
                  fontsize=8)


def _short(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def heatmap_figure(matrix, names: Sequence[str], *, title: str, row_label: str, col_label: str, value_label: str,
                   max_tenants: int | None = MAX_HEATMAP_TENANTS, col_names: Sequence[str] | None = None,
                   value_format=None):
    """A tenant x tenant matrix (cell [R, O]) as a heat map, the one drawing behind every heat map; with
    ``col_names`` the columns are something else (routers, remedies) and the matrix may be rectangular.

    With more than ``max_tenants`` tenants only the ones with the most weight (as row or column) are drawn.
    """
    matrix = np.asarray(matrix)
    names = list(names)
    square = col_names is None
    cols = names if square else list(col_names)
    if matrix.shape != (len(names), len(cols)):
        raise ValueError(f"matrix is {matrix.shape}, expected {len(names)} x {len(cols)}")
    if max_tenants is not None and len(names) > max_tenants:
        weight = matrix.sum(axis=1) + (matrix.sum(axis=0) if square else 0)
        keep = np.sort(np.argsort(-weight, kind="stable")[:max_tenants])
        matrix = matrix[np.ix_(keep, keep)] if square else matrix[keep]
        names = [names[i] for i in keep]
        cols = names if square else cols
    n, m = len(names), len(cols)
    width, height = min(3.0 + 0.35 * m, 24.0), min(3.0 + 0.35 * n, 24.0)
    fig = new_figure(figsize=(width + 1.5 + (0 if square else 1.0), height), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=value_label)
    ax.set_xticks(range(m), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    if max(n, m) <= ANNOTATE_MAX:
        top = matrix.max() if matrix.size else 0
        for (r, o), value in np.ndenumerate(matrix):
            ax.text(o, r, (value_format or _short)(value), ha="center", va="center", fontsize=8,
                    color="black" if top and value > 0.6 * top else "white")
    ax.set_title(title, fontsize=10, wrap=True)
    return fig


def interference_figure(tokens: Sequence[Sequence[int]], tenants: Sequence[str], title: str | None = None):
    """Who hit whose entries: cell [R, O] = tokens tenant R hit in entries tenant O inserted (Result.hits_from).

    With many tenants only the ones with the most hit tokens (as requester or owner) are drawn.
    """
    return heatmap_figure(np.asarray(tokens, dtype=np.int64), tenants,
                          title=title or "interference: hit tokens by requester and owner",
                          row_label="requester: tenant that hit them",
                          col_label="owner: tenant that inserted the entries",
                          value_label="hit tokens")


def tenant_heatmap(matrix, tenant_names: Sequence[str], path: str | Path, *, title: str,
                   row_label: str = "tenant that hit (R)", col_label: str = "tenant that inserted (O)",
                   value_label: str = "tokens") -> Path:
    """Write a tenant x tenant matrix (e.g. ``hits_from[R][O]``) as a heat map of every tenant; the format
    follows the file suffix."""
    path = Path(path)
    if path.suffix.lower() not in HEATMAP_FORMATS:
        raise ValueError(f"{path}: a heat map is written as {', '.join(HEATMAP_FORMATS)}, "
                         f"not {path.suffix or 'no suffix'!r}")
    fig = heatmap_figure(np.asarray(matrix, dtype=np.float64), tenant_names, title=title, row_label=row_label,
                         col_label=col_label, value_label=value_label, max_tenants=None)
    return save_figure(fig, path)


def _x_axis(axes: Mapping[str, list]) -> str | None:
    """What the curves run along: capacity if it varies, else the first numeric axis that varies."""
    varying = [name for name, values in axes.items() if len(values) > 1]
    if "capacity_blocks" in varying:
        return "capacity_blocks"
    for name in varying:
        if all(isinstance(v, (int, float)) or v is None for v in axes[name]):
            return name
    return varying[0] if varying else None


DEFAULT_METRICS = ("token_hit_ratio", "tokens_computed")


def default_metrics(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The hit ratio, the tokens computed, and any cost column (``cost*``) a cost model put in the rows."""
    costs = [name for name in (rows[0] if rows else {}) if name.startswith("cost")
             and all(isinstance(r.get(name), (int, float)) or r.get(name) is None for r in rows)]
    return [*DEFAULT_METRICS, *costs]


def sweep_figures(result, metrics: Sequence[str] | None = None, kv_bytes_per_token: float | None = None) -> list:
    """The figures of a :class:`~cachesim.sweep.SweepResult`: each metric against capacity (by default
    :func:`default_metrics`; one line per value of the other varying axes, small multiples over some of them when
    that would be more than :data:`MAX_SERIES` lines), then interference heat maps of a few configurations.
    Each figure's title (:func:`figure_title`) says what it shows."""
    metrics = default_metrics(result.rows) if metrics is None else metrics
    axes = result.axes
    x = _x_axis(axes) or next(iter(axes))
    series, panels = sweep_layout(axes, x)
    figures = [metric_figure(result.rows, y, x=x, series=series, panels=panels,
                             kv_bytes_per_token=kv_bytes_per_token) for y in metrics]
    for index in _heatmap_rows(result, x):
        row = result.rows[index]
        shown = ", ".join(_shown(name, row[name]) for name in axes if len(axes[name]) > 1)
        m = result.interference[index]
        figures.append(interference_figure(m["tokens"], m["tenants"], title=f"interference: {shown}"))
    return figures


def sweep_layout(axes: Mapping[str, list], x: str) -> tuple[list[str], list[str]]:
    """Which varying axes (besides ``x``) are lines and which split the figure into panels: the fewest panels
    that leave at most :data:`MAX_SERIES` lines in each; the block size splits first, so a panel's capacities
    share one size (and a GB axis)."""
    varying = [name for name, values in axes.items() if name != x and len(values) > 1]
    series, panels = list(varying), []
    while series and math.prod(len(axes[name]) for name in series) > MAX_SERIES:
        def panel_count(name: str) -> tuple[int, int]:
            rest = math.prod(len(axes[n]) for n in series if n != name)
            # first: leaves few enough lines; then the fewest panels; the block size before the rest
            return (rest > MAX_SERIES, len(axes[name]) * (0 if name == "block_size" else 1))
        chosen = min(series, key=panel_count)
        series.remove(chosen)
        panels.append(chosen)
    return series, panels


def _heatmap_rows(result, x: str) -> list[int]:
    """The configurations worth a heat map: per series, the one with the most room (the largest x)."""
    if not result.interference:
        return []
    best: dict[tuple, tuple[float, int]] = {}
    for index in sorted(result.interference):
        row = result.rows[index]
        key = tuple((name, row.get(name)) for name in result.axes if name != x)
        value = row.get(x)
        rank = math.inf if value is None else value if isinstance(value, (int, float)) else index
        if key not in best or rank > best[key][0]:
            best[key] = (rank, index)
    return sorted(i for _, i in best.values())[:MAX_HEATMAPS]


def figure_png(fig) -> bytes:
    """PNG bytes that depend on the figure alone (no timestamp or software tag)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def curve_rows(curves) -> list[dict[str, Any]]:
    """The points of :class:`~cachesim.mrc.Curve` objects, or of their ``to_dict()`` (``cachesim mrc --json``),
    as rows: capacity (None: unbounded), TTL, block size and both hit ratios."""
    curves = [curves] if hasattr(curves, "capacities_blocks") or isinstance(curves, Mapping) else list(curves)
    rows = []
    for c in curves:
        data = c.to_dict() if hasattr(c, "to_dict") else c
        rows += [{"capacity_blocks": p["capacity_blocks"], "ttl_s": data["ttl_s"], "block_size": data["block_size"],
                  "policy": data.get("policy", "lru"),
                  "token_hit_ratio": p["token_hit_ratio"], "block_hit_ratio": p["block_hit_ratio"]}
                 for p in data["points"]]
    return rows


def curve_figure(curves, kv_bytes_per_token: float | None = None, title: str | None = None):
    """Token and block hit ratio (a panel each) against capacity, one line per TTL, of one or more
    :class:`~cachesim.mrc.Curve` (or their dicts): blocks below, GB above when KV bytes are given (else
    tokens); an unbounded capacity is a dashed level."""
    rows = curve_rows(curves)
    first = curves if hasattr(curves, "sample_rate") or isinstance(curves, Mapping) else next(iter(curves))
    rate = first.sample_rate if hasattr(first, "sample_rate") else first["sample_rate"]
    sampled = f" (sampled at {rate:g})" if rate < 1 else ""
    policies = list(dict.fromkeys(row["policy"] for row in rows))
    series = ["ttl_s"] if len(policies) == 1 else ["policy", "ttl_s"]   # a line per policy, beside LRU and belady
    default = f"{policies[0].upper()} hit-ratio curve{sampled}" if len(policies) == 1 else "hit-ratio curves"
    return metric_figure(rows, ["token_hit_ratio", "block_hit_ratio"], series=series,
                         title=title or default, kv_bytes_per_token=kv_bytes_per_token)


def plot_curve(curves, path: str | Path, kv_bytes_per_token: float | None = None, title: str | None = None) -> None:
    """Write :func:`curve_figure` to ``path`` (PNG, SVG or PDF by its suffix)."""
    save_figure(curve_figure(curves, kv_bytes_per_token, title), path, dpi=120)
