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

__all__ = ["LABELS", "curve_figure", "default_metrics", "figure_png", "heatmap_figure", "interference_figure",
           "metric_figure", "plot_curve", "save_figure", "sweep_figures", "tenant_heatmap"]

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


def metric_figure(rows: Sequence[Mapping[str, Any]], y: str, x: str = "capacity_blocks",
                  series: Sequence[str] = (), title: str | None = None):
    """``y`` against ``x``, one line per combination of the ``series`` columns (e.g. policy, TTL).

    Generic over the column names, so a cost column plots the same way as a hit ratio. Rows whose ``x`` is None
    (an unbounded cache) become a dashed horizontal line in their series' colour.
    """
    fig = new_figure(figsize=(7.0, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(s) for s in series), []).append(row)
    finite_x = [row[x] for row in rows if row.get(x) is not None]
    numeric = all(isinstance(v, (int, float)) for v in finite_x)
    categories = [] if numeric else list(dict.fromkeys(str(v) for v in finite_x))
    for i, (key, members) in enumerate(groups.items()):
        label = ", ".join(_shown(s, v) for s, v in zip(series, key, strict=True)) or _label(y)
        colour = f"C{i % 10}"
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
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    ax.grid(True, alpha=0.3)
    if any(r.get(x) is None for r in rows):
        ax.text(0.99, 0.01, f"dashed: {_shown(x, None)}", transform=ax.transAxes, ha="right", va="bottom",
                fontsize=8, color="0.4")
    if len(groups) > 1 or series:
        ax.legend(fontsize=8, loc="best")
    ax.set_title(title or f"{_label(y)} against {_label(x)}")
    return fig


def _short(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def heatmap_figure(matrix, names: Sequence[str], *, title: str, row_label: str, col_label: str, value_label: str,
                   max_tenants: int | None = MAX_HEATMAP_TENANTS):
    """A tenant x tenant matrix (cell [R, O]) as a heat map, the one drawing behind every heat map.

    With more than ``max_tenants`` tenants only the ones with the most weight (as row or column) are drawn.
    """
    matrix = np.asarray(matrix)
    names = list(names)
    if matrix.shape != (len(names), len(names)):
        raise ValueError(f"matrix is {matrix.shape}, expected {len(names)} x {len(names)} for {len(names)} tenants")
    if max_tenants is not None and len(names) > max_tenants:
        weight = matrix.sum(axis=0) + matrix.sum(axis=1)
        keep = np.sort(np.argsort(-weight, kind="stable")[:max_tenants])
        matrix, names = matrix[np.ix_(keep, keep)], [names[i] for i in keep]
    n = len(names)
    side = min(3.0 + 0.35 * n, 24.0)
    fig = new_figure(figsize=(side + 1.5, side), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=value_label)
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    if n <= ANNOTATE_MAX:
        top = matrix.max() if matrix.size else 0
        for (r, o), value in np.ndenumerate(matrix):
            ax.text(o, r, _short(value), ha="center", va="center", fontsize=8,
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


def sweep_figures(result, metrics: Sequence[str] | None = None) -> list:
    """The figures of a :class:`~cachesim.sweep.SweepResult`: each metric against capacity (one line per
    policy and other varying axes; by default :func:`default_metrics`), then interference heat maps of a few
    configurations. Each figure's axes title says what it shows."""
    metrics = default_metrics(result.rows) if metrics is None else metrics
    axes = result.axes
    x = _x_axis(axes) or next(iter(axes))
    series = [name for name, values in axes.items() if name != x and len(values) > 1]
    figures = [metric_figure(result.rows, y, x=x, series=series) for y in metrics]
    for index in _heatmap_rows(result, x):
        row = result.rows[index]
        shown = ", ".join(_shown(name, row[name]) for name in axes if len(axes[name]) > 1)
        m = result.interference[index]
        figures.append(interference_figure(m["tokens"], m["tenants"], title=f"interference: {shown}"))
    return figures


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


def curve_figure(curves, kv_bytes_per_token: float | None = None, title: str | None = None):
    """Token and block hit ratio against capacity (blocks below, GB above when KV bytes are given) of one or
    more :class:`~cachesim.mrc.Curve`. Unbounded points are left out (no place on a log axis)."""
    curves = [curves] if hasattr(curves, "capacities_blocks") else list(curves)
    fig = new_figure(figsize=(8, 5))
    ax = fig.add_subplot()
    for c in curves:
        finite = c.capacities_blocks > 0
        label = "no TTL" if c.ttl_s is None else f"TTL {c.ttl_s:g} s"
        line, = ax.plot(c.capacities_blocks[finite], c.token_hit_ratio[finite], marker=".", label=f"token, {label}")
        ax.plot(c.capacities_blocks[finite], c.block_hit_ratio[finite], linestyle="--", color=line.get_color(),
                label=f"block, {label}")
    ax.set_xscale("log")
    ax.set_xlabel(f"capacity (blocks of {curves[0].block_size} tokens)")
    ax.set_ylabel("hit ratio")
    ax.set_ylim(0, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    if kv_bytes_per_token:
        per_block_gb = curves[0].block_size * kv_bytes_per_token / 1e9
        top = ax.secondary_xaxis("top", functions=(lambda b: b * per_block_gb, lambda g: g / per_block_gb))
        top.set_xlabel(f"capacity (GB at {kv_bytes_per_token:,.0f} KV bytes per token)")
    sampled = curves[0].sample_rate < 1
    ax.set_title(title or ("LRU hit-ratio curve" + (f" (sampled at {curves[0].sample_rate:g})" if sampled else "")))
    fig.tight_layout()
    return fig


def plot_curve(curves, path: str | Path, kv_bytes_per_token: float | None = None, title: str | None = None) -> None:
    """Write :func:`curve_figure` to ``path`` (PNG, SVG or PDF by its suffix)."""
    save_figure(curve_figure(curves, kv_bytes_per_token, title), path, dpi=120)
