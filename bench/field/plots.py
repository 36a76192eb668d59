"""Line plots for the scaling benchmarks, log-scale x by default (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path


def line_plot(path: Path, x: list, series: dict[str, list], xlabel: str, ylabel: str, title: str,
              goals: dict[str, float] | None = None, logy: bool = False, logx: bool = True) -> Path | None:
    """Write the plot to ``path`` (a tracked file) only when the run updates the docs; None when it did not."""
    from field.results import updating

    if not updating():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for label, ys in series.items():
        ax.plot(x, ys, marker="o", label=label)
    for label, y in (goals or {}).items():
        ax.axhline(y, color="grey", linestyle="--", linewidth=1)
        ax.annotate(label, (x[-1], y), textcoords="offset points", xytext=(0, 3), fontsize=8, color="grey",
                    ha="right")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
