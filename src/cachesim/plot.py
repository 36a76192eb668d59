"""Pictures (matplotlib, an optional extra: ``pip install 'cachesim[plot]'``), drawn off-screen (Agg)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["tenant_heatmap"]

_FORMATS = (".png", ".svg", ".pdf")
ANNOTATE_MAX = 12     # above this many tenants the cells are too small to carry numbers


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("pictures need matplotlib: pip install 'cachesim[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _short(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def tenant_heatmap(matrix: np.ndarray, tenant_names: Sequence[str], path: str | Path, *, title: str,
                   row_label: str = "tenant that hit (R)", col_label: str = "tenant that inserted (O)",
                   value_label: str = "tokens") -> Path:
    """A tenant x tenant matrix (e.g. ``hits_from[R][O]``) as a heat map; the format follows the file suffix."""
    path = Path(path)
    if path.suffix.lower() not in _FORMATS:
        raise ValueError(f"{path}: a heat map is written as {', '.join(_FORMATS)}, not {path.suffix or 'no suffix'!r}")
    matrix = np.asarray(matrix, dtype=np.float64)
    n = len(tenant_names)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix is {matrix.shape}, expected {n} x {n} for {n} tenants")
    plt = _pyplot()
    side = min(max(4.0, 0.55 * n + 2.5), 24.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    try:
        image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(n), labels=list(tenant_names), rotation=45, ha="right")
        ax.set_yticks(range(n), labels=list(tenant_names))
        ax.set_xlabel(col_label)
        ax.set_ylabel(row_label)
        ax.set_title(textwrap.fill(title, width=int(side * 8)), fontsize=10)
        fig.colorbar(image, ax=ax, label=value_label)
        if n <= ANNOTATE_MAX:
            high = matrix.max() if matrix.size else 0.0
            for r in range(n):
                for o in range(n):
                    ax.text(o, r, _short(matrix[r, o]), ha="center", va="center",
                            color="black" if high and matrix[r, o] > 0.6 * high else "white", fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
