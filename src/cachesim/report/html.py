"""One self-contained HTML page of a sweep or replay result: figures embedded as PNG data, the summary tables,
no script and no outside resource, so it opens anywhere (mail it, attach it to a ticket)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cachesim import figures
from cachesim.report._tables import format_cell
from cachesim.report.sweep import SCREEN_METRICS
from cachesim.requests import TraceError

if TYPE_CHECKING:
    from cachesim.sweep import SweepResult

__all__ = ["render_report", "write_report"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
.meta{color:#555}table{border-collapse:collapse;margin:.8em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.text,th.text{text-align:left}figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600}dd{margin:0}.note{color:#8a5a00}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(name: str, value: Any) -> str:
    kind = "text" if isinstance(value, str) else "num"
    return f'<td class="{kind}">{_esc(format_cell(name, value))}</td>'


def _table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{_esc(c.replace('_', ' '))}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(_cell(c, row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _figure(fig, caption: str) -> str:
    data = base64.b64encode(figures.figure_png(fig)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _figures_or_note(make) -> str:
    try:
        made = make()
    except ImportError:  # no matplotlib: the page still carries the tables
        return '<p class="note">Figures need the plot extra: pip install \'cachesim[plot]\'.</p>'
    return "\n".join(_figure(fig, caption) for fig, caption in made)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{_esc(title)}</title><style>{_CSS}</style></head>\n'
            f"<body>\n<h1>{_esc(title)}</h1>\n{body}\n</body></html>\n")


def _definitions(defs: Mapping[str, str]) -> str:
    items = "".join(f"<dt>{_esc(k.replace('_', ' '))}</dt><dd>{_esc(v)}</dd>" for k, v in defs.items())
    return f"<h2>Definitions</h2><dl>{items}</dl>"


def _sweep_body(result: SweepResult) -> str:
    from cachesim.sweep import DEFINITIONS

    t = result.trace
    axes = ", ".join(f"{name} ({len(values)})" for name, values in result.axes.items())
    meta = (f'<p class="meta">Trace {_esc(t["label"])}: {t["requests"]:,} requests, {t["tenants"]} tenant(s), '
            f'blocks of {", ".join(map(str, t["block_sizes"]))} tokens from {_esc(t["block_source"])}. '
            f"{len(result.rows)} configurations over {_esc(axes)}.</p>")

    def make():
        return [(fig, fig.axes[0].get_title()) for fig in figures.sweep_figures(result)]

    columns = [*result.axes, *(m for m in SCREEN_METRICS if m not in result.axes)]
    return "\n".join([meta, "<h2>Figures</h2>", _figures_or_note(make), "<h2>Summary</h2>",
                      _table(columns, result.rows), _definitions(DEFINITIONS)])


def _replay_body(data: Mapping[str, Any]) -> str:
    summary, config = data["summary"], data["config"]
    shown = {k: v for k, v in config.items()}
    meta = (f'<p class="meta">Blocks of {data.get("block_size", "?")} tokens from '
            f'{_esc(data.get("block_source", "?"))}; {_esc(data.get("impl", "?"))} engine.</p>')
    config_table = _table(list(shown), [shown])
    metrics = ["requests", "prompt_tokens", "hit_tokens", "token_hit_ratio", "blocks", "hit_blocks",
               "block_hit_ratio", "hit_requests", "request_hit_ratio", "inserted_blocks", "peak_occupancy_blocks"]
    rows = [{"metric": m.replace("_", " "), "value": format_cell(m, summary[m])} for m in metrics if m in summary]
    tenants = data.get("per_tenant", {})
    tenant_rows = [{"tenant": name, **{k: v for k, v in row.items() if not isinstance(v, dict)}}
                   for name, row in sorted(tenants.items(), key=lambda kv: -kv[1].get("prompt_tokens", 0))]
    hits = data.get("hits_from", {})
    parts = [meta, "<h2>Configuration</h2>", config_table, "<h2>Summary</h2>", _table(["metric", "value"], rows)]
    if len(hits.get("tenants", [])) > 1:
        parts += ["<h2>Interference</h2>", _figures_or_note(lambda: [(
            figures.interference_figure(hits["tokens"], hits["tenants"]),
            "tokens each tenant (row) hit in entries each tenant (column) inserted")])]
    if len(tenant_rows) > 1:
        parts += ["<h2>Per tenant</h2>",
                  _table(["tenant", "requests", "prompt_tokens", "hit_tokens", "token_hit_ratio"], tenant_rows[:50])]
    parts.append(_definitions(summary.get("definitions", {})))
    return "\n".join(parts)


def render_report(data: Mapping[str, Any] | SweepResult, title: str | None = None) -> str:
    """The page for a sweep result (or its JSON) or a replay result's JSON (``Result.to_dict()``)."""
    # imported here: cachesim.sweep imports this package while it loads
    from cachesim.sweep import SWEEP_FORMAT, SweepResult

    if isinstance(data, SweepResult):
        return _page(title or "cachesim sweep", _sweep_body(data))
    if data.get("kind") == SWEEP_FORMAT:
        return _page(title or "cachesim sweep", _sweep_body(SweepResult.from_dict(data)))
    if "summary" in data and "config" in data:
        return _page(title or "cachesim replay", _replay_body(data))
    raise ValueError("not a cachesim result: expected the JSON of cachesim sweep -o or cachesim replay --json")


def write_report(result_path: str | Path, out_path: str | Path, title: str | None = None) -> None:
    """Read RESULT.json and write the self-contained page."""
    try:
        data = orjson.loads(Path(result_path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise TraceError(f"malformed JSON: {exc}", file=str(result_path)) from None
    if not isinstance(data, dict):
        raise TraceError("not a cachesim result (expected a JSON object)", file=str(result_path))
    try:
        page = render_report(data, title)
    except (KeyError, TypeError) as exc:
        raise TraceError(f"not a cachesim result: missing or malformed {exc}", file=str(result_path)) from None
    except ValueError as exc:
        raise TraceError(str(exc), file=str(result_path)) from None
    Path(out_path).write_text(page, encoding="utf-8")
