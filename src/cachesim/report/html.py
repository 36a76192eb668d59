"""One self-contained HTML page of any cachesim result (replay, sweep, mrc, cost, fleet, interference): the trace
and configuration it came from, its figures embedded as PNG data, the tables the command prints, no script and
no outside resource, so it opens anywhere (mail it, attach it to a ticket).

The kind of result is read off the JSON's content (:func:`result_kind`), not its file name.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from cachesim import figures
from cachesim.policies import heading as policy_heading
from cachesim.report._tables import capacity_text, format_cell, ttl_text
from cachesim.report.sweep import SCREEN_METRICS
from cachesim.requests import TraceError

if TYPE_CHECKING:
    from cachesim.sweep import SweepResult

__all__ = ["KINDS", "render_report", "result_kind", "write_report"]

# what each kind is made by, for the page and for the error on JSON that is none of them
KINDS = {"replay": "cachesim replay --json", "sweep": "cachesim sweep -o RESULT.json", "mrc": "cachesim mrc --json",
         "cost": "cachesim cost --json", "fleet": "cachesim fleet --json",
         "interference": "cachesim interference --json"}
MAX_ROWS = 50          # tenant rows in a table; the JSON has them all
MAX_BAR_TENANTS = 16   # tenants in a bar chart, the busiest

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
.meta{color:#555;margin:.2em 0}.trace{font-size:1.05em;margin:.3em 0}
table{border-collapse:collapse;margin:.8em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.text,th.text{text-align:left}tr.total td{font-weight:600;border-top:2px solid #bbb}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600}dd{margin:0}.note{color:#8a5a00}caption{caption-side:bottom;color:#555;font-size:.9em}
"""


# -- scaffolding every page shares ------------------------------------------------------------------------------

def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _grid(columns: Sequence[str], rows: Sequence[Sequence[Any]], left: Sequence[str] = (), note: str = "",
          total: Sequence[Any] | None = None) -> str:
    """A table of cells already formatted as the command prints them; ``left`` names the text columns."""
    kinds = ["text" if c in left else "num" for c in columns]
    head = "".join(f'<th class="{k}">{_esc(c)}</th>' for c, k in zip(columns, kinds, strict=True))

    def line(cells, css=""):
        return f"<tr{css}>" + "".join(f'<td class="{k}">{_esc(v)}</td>' for v, k in zip(cells, kinds, strict=True)) \
            + "</tr>"

    body = [line(r) for r in rows] + ([line(total, ' class="total"')] if total is not None else [])
    caption = f"<caption>{_esc(note)}</caption>" if note else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], left: Sequence[str] = ()) -> str:
    """Row dicts as a table, each cell by :func:`format_cell` (headers: the column names, spaced)."""
    shown = [c.replace("_", " ") for c in columns]
    return _grid(shown, [[format_cell(c, row.get(c)) for c in columns] for row in rows],
                 left=[c.replace("_", " ") for c in left])


def _more(total: int, shown: int, what: str = "tenants") -> str:
    return f"{total - shown} more {what} in the JSON" if total > shown else ""


def _figure(fig) -> str:
    caption = figures.figure_title(fig)
    data = base64.b64encode(figures.figure_png(fig)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _figures(make: Callable[[], list]) -> str:
    """The figures ``make`` draws, or a note when matplotlib is missing (the page still carries the tables)."""
    try:
        made = make()
    except ImportError:
        return '<p class="note">Figures need the plot extra: pip install \'cachesim[plot]\'.</p>'
    return "\n".join(_figure(fig) for fig in made)


def _definitions(defs: Mapping[str, str]) -> str:
    items = "".join(f"<dt>{_esc(k.replace('_', ' '))}</dt><dd>{_esc(v)}</dd>" for k, v in defs.items())
    return f"<h2>Definitions</h2><dl>{items}</dl>" if items else ""


def _header(label: str | None, source: str | None, kind: str, facts: str, config: str) -> str:
    """Which trace and which configuration the page is about, first thing on it."""
    if label:
        trace = _esc(label)
    else:  # the JSON of some commands does not record it; say so rather than leave it out
        trace = (f"not recorded in {_esc(source or 'this result')} ({_esc(KINDS[kind])} does not carry the "
                 "trace's name)")
    return (f'<p class="trace"><b>Trace:</b> {trace}</p>' + (f'<p class="meta">{_esc(facts)}</p>' if facts else "")
            + f'<p class="meta"><b>Configuration:</b> {_esc(config)}</p>')


def _trace_label(data: Mapping[str, Any]) -> str | None:
    trace = data.get("trace")
    label = trace.get("label") if isinstance(trace, Mapping) else trace
    return str(label) if label else None


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{_esc(title)}</title><style>{_CSS}</style></head>\n'
            f"<body>\n<h1>{_esc(title)}</h1>\n{body}\n</body></html>\n")


def _cache_text(cfg: Mapping[str, Any], policy: str = "lru") -> str:
    """The cache as the commands' "cache:" line reads."""
    parts = [policy_heading(str(cfg.get("policy") or policy)), f"capacity {capacity_text(cfg.get('capacity_blocks'))}",
             ttl_text(cfg.get("ttl_s")), f"hit cap {cfg.get('hit_cap') or 'none'}"]
    if cfg.get("isolation"):
        parts.append(f"isolation per {cfg['isolation']}")
    return " · ".join(parts)


def _ranked(per_tenant: Mapping[str, Mapping[str, Any]], key: str = "prompt_tokens") -> list[str]:
    return sorted(per_tenant, key=lambda name: -per_tenant[name].get(key, 0))


def _lost(lost_to: Mapping[str, int], tenant: str) -> tuple[int, str, int]:
    """Lost to others, top evictor, lost to TTL: tokens a tenant missed because others' insertions (or the TTL)
    evicted them, as the replay and interference tables show them."""
    by_others = {k: v for k, v in lost_to.items() if k not in ("ttl", tenant)}
    top = max(by_others, key=by_others.get) if any(by_others.values()) else ""
    return sum(by_others.values()), top, lost_to.get("ttl", 0)


def _lost_cells(lost_to: Mapping[str, int], tenant: str) -> list[str]:
    others, top, ttl = _lost(lost_to, tenant)
    return [f"{others:,}", top, f"{ttl:,}"]


def _lost_heatmap(tenants: Sequence[str], lost: Mapping[str, Mapping[str, int]]):
    """Who evicted whom: cell [R, E] = tokens tenant R missed because tenant E's insertions evicted them."""
    matrix = [[lost.get(r, {}).get(e, 0) for e in tenants] for r in tenants]
    return figures.heatmap_figure(matrix, tenants, title="lost to: tokens each tenant missed because another "
                                  "tenant's insertions evicted them", row_label="tenant that missed (R)",
                                  col_label="evicting tenant (E)", value_label="tokens lost")


# -- replay ----------------------------------------------------------------------------------------------------

def _replay_body(data: Mapping[str, Any], source: str | None, kv: float | None) -> str:
    from cachesim._contract import RATIO_DEFINITIONS

    s, cfg = data["summary"], data["config"]
    tenants = data.get("per_tenant", {})
    block_size = data.get("block_size")
    config = f"{_cache_text(cfg)} · {data.get('impl', '?')} engine"
    if kv and cfg.get("capacity_blocks") and block_size:
        config += f" · {cfg['capacity_blocks'] * block_size * kv / 1e9:,.2f} GB at {kv:,.0f} KV bytes per token"
    facts = (f"{s['requests_seen']:,} requests · blocks of {block_size} tokens (from {data.get('block_source', '?')})"
             f" · {len(tenants)} tenant(s)")
    parts = [_header(_trace_label(data), source, "replay", facts, config)]
    if data.get("partial"):
        p = data["partial"]
        parts.append(f'<p class="note">PARTIAL: stopped by an error after {p.get("requests_replayed", 0):,} '
                     f'requests: {_esc(p.get("stopped_by", ""))}</p>')
    if cfg.get("warmup_requests") or cfg.get("warmup_s"):
        rule = (f"first {cfg['warmup_requests']:,} requests" if cfg.get("warmup_requests")
                else f"first {cfg['warmup_s']:g} s")
        counted = f"after warmup ({rule}: {s['warmup']['excluded_requests']:,} requests left out)"
    else:
        counted = "all requests (no warmup)"
    ev = s.get("evictions", {})
    summary_rows = [
        ["requests counted", f"{s['requests']:,}", "", counted],
        ["token hit ratio", f"{s['token_hit_ratio']:.4f}", f"{s['hit_tokens']:,} / {s['prompt_tokens']:,}",
         RATIO_DEFINITIONS["token_hit_ratio"]],
        ["block hit ratio", f"{s['block_hit_ratio']:.4f}", f"{s['hit_blocks']:,} / {s['blocks']:,}",
         RATIO_DEFINITIONS["block_hit_ratio"]],
        ["request hit ratio", f"{s['request_hit_ratio']:.4f}", f"{s['hit_requests']:,} / {s['requests']:,}",
         RATIO_DEFINITIONS["request_hit_ratio"]],
        ["inserted blocks", f"{s['inserted_blocks']:,}", "", "blocks newly cached"],
        ["evictions (capacity)", f"{ev.get('capacity', 0):,}", "", "blocks evicted to make room"],
        ["expiries (TTL)", f"{ev.get('ttl', 0):,}", "", "blocks removed by the TTL"],
        ["uncached blocks", f"{s.get('uncached_blocks', 0):,}", "", "blocks that found no room"],
        ["peak occupancy", f"{s['peak_occupancy_blocks']:,}", "", "most blocks cached at once"],
    ]
    ranked = _ranked(tenants)
    attributed = "lost_to" in data
    hits = data.get("hits_from", {})

    def make():
        if len(ranked) < 2:
            return [figures.bar_figure(["token", "block", "request"], {"hit ratio": [
                s["token_hit_ratio"], s["block_hit_ratio"], s["request_hit_ratio"]]},
                title="hit ratios", ylabel="hit ratio")]
        shown = ranked[:MAX_BAR_TENANTS]
        prompt = [max(tenants[t]["prompt_tokens"], 1) for t in shown]
        bars = {"token hit ratio": [tenants[t]["token_hit_ratio"] for t in shown],
                "hit in others' entries": [_from_others(tenants[t], t) / p for t, p in zip(shown, prompt, strict=True)]}
        if attributed:
            bars["lost to others' evictions"] = [_lost(tenants[t].get("lost_to", {}), t)[0] / p
                                                 for t, p in zip(shown, prompt, strict=True)]
        made = [figures.bar_figure(shown, bars, title="per tenant: token hit ratio; prompt tokens hit in (or lost "
                                   "to) other tenants' entries",
                                   ylabel="share of prompt tokens")]
        if len(hits.get("tenants", [])) > 1:
            made.append(figures.interference_figure(hits["tokens"], hits["tenants"]))
        if attributed:
            made.append(_lost_heatmap(ranked, {t: tenants[t].get("lost_to", {}) for t in ranked}))
        return made

    parts += ["<h2>Figures</h2>", _figures(make), "<h2>Summary</h2>",
              _grid(["metric", "value", "counts", "definition"], summary_rows, left=["metric", "definition"])]
    if len(ranked) > 1:
        columns = ["tenant", "requests", "prompt tokens", "token hit ratio", "hit from others"]
        if attributed:
            columns += ["lost to others", "top evictor", "lost to TTL"]
        rows = []
        for name in ranked[:MAX_ROWS]:
            row = tenants[name]
            cells = [name, f"{row['requests']:,}", f"{row['prompt_tokens']:,}", f"{row['token_hit_ratio']:.4f}",
                     f"{_from_others(row, name):,}"]
            rows.append(cells + (_lost_cells(row.get("lost_to", {}), name) if attributed else []))
        parts += ["<h2>Per tenant</h2>", _grid(columns, rows, left=["tenant", "top evictor"],
                                               note=_more(len(ranked), MAX_ROWS))]
    parts += ["<h2>Configuration</h2>", _table(list(cfg), [cfg], left=list(cfg)),
              _definitions(s.get("definitions", {}))]
    return "\n".join(parts)


def _from_others(row: Mapping[str, Any], tenant: str) -> int:
    return sum(v for owner, v in row.get("hits_from", {}).items() if owner != tenant)


# -- sweep -----------------------------------------------------------------------------------------------------

def _sweep_body(result: SweepResult, kv: float | None) -> str:
    from cachesim.sweep import DEFINITIONS

    t = result.trace
    axes = ", ".join(f"{name} ({len(values)})" for name, values in result.axes.items())
    facts = (f"{t['requests']:,} requests · {t['tenants']} tenant(s) · blocks of "
             f"{', '.join(map(str, t['block_sizes']))} tokens from {t['block_source']}")
    config = f"{len(result.rows)} configurations over {axes}"
    columns = [*result.axes, *(m for m in SCREEN_METRICS if m not in result.axes)]
    return "\n".join([_header(t.get("label"), None, "sweep", facts, config), "<h2>Figures</h2>",
                      _figures(lambda: figures.sweep_figures(result, kv_bytes_per_token=kv)), "<h2>Summary</h2>",
                      _table(columns, result.rows, left=("policy", "preset")), _definitions(DEFINITIONS)])


# -- mrc -------------------------------------------------------------------------------------------------------

def _mrc_body(data: Mapping[str, Any], source: str | None, kv: float | None) -> str:
    curves = data["curves"]
    first = curves[0]
    kv = kv or first.get("kv_bytes_per_token")
    sampled = first["sample_rate"] < 1
    facts = (f"{data['requests']:,} requests · blocks of {first['block_size']} tokens · "
             f"{'~' if sampled else ''}{data['distinct_blocks']:,.0f} distinct blocks · longest request "
             f"{data['longest_request_blocks']:,} blocks")
    ttls = [ttl_text(c["ttl_s"]) for c in curves]
    config = (f"LRU · TTLs: {', '.join(ttls)} · "
              + (f"estimate sampled at rate {first['sample_rate']:g}" if sampled
                 else "exact: each row equals a replay at that capacity")
              + (f" · {kv:,.0f} KV bytes per token" if kv else ""))
    columns = ["capacity blocks", *(["capacity GB"] if kv else [])]
    for ttl in ttls:
        columns += [f"token {ttl}", f"block {ttl}"]
    rows = []
    for i, point in enumerate(first["points"]):
        cap = point["capacity_blocks"]
        row = [capacity_text(cap).removesuffix(" blocks")]
        if kv:
            row.append("unbounded" if cap is None else f"{cap * first['block_size'] * kv / 1e9:,.2f}")
        for c in curves:
            row += [f"{c['points'][i]['token_hit_ratio']:.4f}", f"{c['points'][i]['block_hit_ratio']:.4f}"]
        rows.append(row)
    name = Path(str(data.get("trace", ""))).name
    others = data.get("policies") or []   # mrc --policy / --bound: other policies and belady, beside LRU
    shown = [*curves, *others]
    heading = "hit-ratio curves" if others else "LRU hit-ratio curve"
    parts = [_header(_trace_label(data), source, "mrc", facts, config), "<h2>Figures</h2>",
             _figures(lambda: [figures.curve_figure(shown, kv, title=f"{heading}: {name}" if name else None)]),
             "<h2>Hit ratio by capacity</h2>", _grid(columns, rows)]
    if others:
        method = ("miniature simulations (estimates)" if any(c["method"] == "miniature" for c in others)
                  else "a replay at each capacity")
        parts += [f"<h2>Other policies, and the bound</h2><p class=\"meta\">token hit ratio; each column is {method}; "
                  "belady is the most any policy can hit at that capacity</p>",
                  _grid(["capacity blocks", "lru", *(c["policy"] for c in others)],
                        [[capacity_text(p["capacity_blocks"]).removesuffix(" blocks"), f"{p['token_hit_ratio']:.4f}",
                          *(f"{c['points'][i]['token_hit_ratio']:.4f}" for c in others)]
                         for i, p in enumerate(first["points"])])]
    if kv:
        parts.append(f'<p class="meta">GB = blocks x {first["block_size"]} tokens x {kv:,.0f} KV bytes per token '
                     "/ 1e9</p>")
    parts.append(_definitions(first.get("definitions", {})))
    return "\n".join(parts)


# -- cost ------------------------------------------------------------------------------------------------------

def _write_labels(rules: Mapping[str, Any]) -> list[str]:
    """The cache-write classes the rule set bills (Anthropic: 5m and 1h), as the cost table names them; the rule
    set is the provider's class whose fields the JSON lists (OpenAI before and from GPT-5.6 differ)."""
    import dataclasses

    from cachesim.providers.rules import PROVIDERS

    for cls in PROVIDERS.values():
        if cls.provider == rules["provider"] and {f.name for f in dataclasses.fields(cls)} == set(rules) - {"provider"}:
            return [f"cache {f.replace('write_', 'write ')}" for f in cls.write_fields]
    return ["cache write"]


def _bill_parts(s: Mapping[str, Any]) -> dict[str, int]:
    """Prompt tokens by how they were billed, in the parts every provider has (a figure compares providers)."""
    return {"uncached input": s["uncached_tokens"], "cache write": s["write_short_tokens"] + s["write_long_tokens"],
            "cache read": s["read_tokens"]}


def _price_text(row: Mapping[str, Any]) -> str:
    """A price row as the cost command's "prices:" line names it: model, tier, period, date and source."""
    tier = f" >{row['above_input_tokens']:,}" if row.get("above_input_tokens") else ""
    period = f" {row['period']}" if row.get("period", "flat") != "flat" else ""
    return f"{row['model']}{tier}{period} as of {row['as_of']} ({row['source']})"


def _cost_body(data: Mapping[str, Any], source: str | None) -> str:
    s, rules = data["summary"], data["rules"]
    labels = _write_labels(rules)
    prices = "; ".join(_price_text(p) for p in data.get("prices", []))
    facts = f"{s['requests']:,} requests · {s['prompt_tokens']:,} prompt tokens · {len(data.get('tenants', {}))} " \
            f"tenant(s) · prices: {prices}"
    options = ", ".join(f"{k}={v}" for k, v in rules.items() if k not in ("provider", "model") and v is not None)
    config = f"rules: {s['provider']} {s['model']} · {options}"
    prompt = max(s["prompt_tokens"], 1)
    bill = [("uncached input", s["uncached_tokens"]),
            *zip(labels, (s["write_short_tokens"], s["write_long_tokens"]), strict=False),
            ("cache read", s["read_tokens"])]
    token_rows = [[name, f"{value:,}", f"{value / prompt:.1%}"] for name, value in bill]
    token_rows += [["prompt total", f"{s['prompt_tokens']:,}", ""], ["output", f"{s['output_tokens']:,}", ""]]
    dollars = (f"dollars: ${s['cost_usd']:,.4f} with the cache · ${s['cost_uncached_usd']:,.4f} without · saved "
               f"${s['savings_usd']:,.4f} ({s['savings_ratio']:.1%}) · {s['requests']:,} requests"
               + (f", {s['rejected_requests']:,} rejected" if s.get("rejected_requests") else ""))
    scenarios = [(f"{s['provider']} {s['model']}", s)]
    vs = data.get("vs")
    if vs:
        change = ", ".join(f"{k}={v}" for k, v in vs["changes"].items())
        scenarios.append((f"{vs['summary']['provider']} {vs['summary']['model']}\n(with {change})", vs["summary"]))
    bounds = data.get("in_memory_bounds") or {}
    tenants = data.get("tenants", {})
    ranked = _ranked(tenants, "cost_usd")

    def dollars_figure(bills: Sequence[tuple[str, float, float]], what: str):
        return figures.bar_figure([b[0] for b in bills], {"with the cache": [b[1] for b in bills],
                                                          "without the cache": [b[2] for b in bills]},
                                  title=f"bill per {what} (USD)", ylabel="USD", value_format="${:,.2f}")

    def make():
        parts_of = [_bill_parts(sc) for _, sc in scenarios]
        costs = [(name, sc["cost_usd"], sc["cost_uncached_usd"]) for name, sc in scenarios]
        # the retention range bills the same traffic, so its uncached bill is the base's
        costs += [(f"in_memory idle {key[5:-1]} s", b["cost_usd"], s["cost_uncached_usd"]) for key, b in bounds.items()]
        made = [figures.bar_figure([name for name, _ in scenarios], {p: [b[p] for b in parts_of] for p in parts_of[0]},
                                   title="bill breakdown: prompt tokens by how they were billed",
                                   ylabel="prompt tokens", stacked=True, value_format="{:,.0f}"),
                dollars_figure(costs, "scenario")]
        if len(ranked) > 1:
            made.append(dollars_figure([(t, tenants[t]["cost_usd"], tenants[t]["cost_uncached_usd"])
                                        for t in ranked[:MAX_BAR_TENANTS]], "tenant"))
        return made

    parts = [_header(_trace_label(data), source, "cost", facts, config), "<h2>Figures</h2>", _figures(make),
             "<h2>Bill</h2>", _grid(["", "tokens", "share"], token_rows, left=[""]), f"<p>{_esc(dollars)}</p>"]
    causes = {k: v for k, v in s.get("miss_causes", {}).items() if v and k != "none"}
    if causes:
        parts.append(f"<p>miss causes (requests): {_esc(', '.join(f'{k} {v:,}' for k, v in causes.items()))}</p>")
    if vs:
        v = vs["summary"]
        delta = s["cost_usd"] - v["cost_usd"]
        share = abs(delta) / s["cost_usd"] if s["cost_usd"] else 0.0
        parts.append(f"<p>with {_esc(change)}: {_esc(v['provider'])} {_esc(v['model'])}, hit ratio "
                     f"{v['token_hit_ratio']:.3f}, ${v['cost_usd']:,.4f} with the cache: the change "
                     f"{'saves' if delta >= 0 else 'costs'} ${abs(delta):,.4f} ({share:.1%})</p>")
    if bounds:
        parts.append("<p>in_memory retention is a range: " + _esc("; ".join(
            f"idle {key[5:-1]} s: hit ratio {b['token_hit_ratio']:.3f}, ${b['cost_usd']:,.4f}"
            for key, b in bounds.items())) + "</p>")
    if len(ranked) > 1:
        rows = [[name, f"{r['requests']:,}", f"{r['prompt_tokens']:,}", f"{r['token_hit_ratio']:.3f}",
                 f"{r['read_from_other_tenants']:,}", f"{r['cost_usd']:.4f}", f"{r['cost_uncached_usd']:.4f}",
                 f"{r['savings_usd']:.4f}"] for name, r in ((n, tenants[n]) for n in ranked[:MAX_ROWS])]
        parts += ["<h2>Per tenant</h2>", _grid(["tenant", "requests", "prompt tokens", "hit ratio", "read from others",
                                                "with cache $", "without $", "saved $"], rows, left=["tenant"],
                                               note=_more(len(ranked), MAX_ROWS))]
    evicted = data.get("evicted_by") or {}
    if evicted:
        pairs = sorted(((c, victim, e) for victim, row in evicted.items() for e, c in row.items()),
                       key=lambda x: (-x[0], x[1], x[2]))
        parts += ["<h2>Evictions</h2>", _grid(["tenant", "evicting tenant", "requests"],
                                              [[v, e, f"{c:,}"] for c, v, e in pairs[:MAX_ROWS]],
                                              left=["tenant", "evicting tenant"], note=_more(len(pairs), MAX_ROWS,
                                                                                            "pairs"))]
    for name, row in (data.get("observed_vs_predicted") or {}).items():
        parts.append(f"<p>observed vs predicted cache {_esc(name)}: {row['observed_tokens']:,} vs "
                     f"{row['predicted_tokens']:,} tokens over {row['requests']:,} requests; mean absolute error "
                     f"{row['mae_tokens']:,.1f} tokens; {row['exact_requests']:,} exact</p>")
    parts += ["<h2>Rules</h2>", _grid(list(rules), [[str(v) for v in rules.values()]], left=list(rules))]
    return "\n".join(parts)


# -- fleet -----------------------------------------------------------------------------------------------------

def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _fleet_body(data: Mapping[str, Any], source: str | None) -> str:
    t, routers = data["trace"], data["routers"]
    first = routers[0]
    load, cache = first["load_model"], first["cache"]
    facts = f"{t['requests']:,} requests · {t['blocks']:,} blocks of {t['block_size']} tokens"
    config = (f"{data['replicas']} replicas · each {_cache_text(cache)} · load model: prefill "
              f"{load['prefill_tokens_per_s']:,.0f} tok/s, decode {load['decode_tokens_per_s']:,.0f} tok/s, one "
              "FIFO queue per replica")
    names = [r["router"]["name"] for r in routers]
    rows = []
    for r in routers:
        s = r["summary"]
        predicted = s.get("predicted_hit_tokens")
        rows.append([r["router"]["name"], f"{s['token_hit_ratio']:.4f}", f"{s['ttft_mean_s']:.3f}",
                     f"{s['ttft_p50_s']:.3f}", f"{s['ttft_p99_s']:.3f}", f"{s['utilisation_max']:.3f}",
                     f"{s['utilisation_mean']:.3f}", f"{s['request_imbalance']:.3f}",
                     _ratio(predicted / s["hit_tokens"] if predicted is not None and s["hit_tokens"] else None)])
    tenants = _ranked(first["per_tenant"])

    def make():
        made = [figures.bar_figure(names, {
            "token hit ratio": [r["summary"]["token_hit_ratio"] for r in routers],
            "TTFT p99 s": [r["summary"]["ttft_p99_s"] for r in routers],
            "utilisation max": [r["summary"]["utilisation_max"] for r in routers]},
            title="routers compared: hit ratio, tail time to first token, busiest replica", ylabel="",
            panels=True)]
        if len(tenants) > 1:
            matrix = [[r["per_tenant"][name]["token_hit_ratio"] for r in routers] for name in tenants]
            made.append(figures.heatmap_figure(matrix, tenants, col_names=names, title="token hit ratio per tenant "
                                               "and router", row_label="tenant", col_label="router",
                                               value_label="token hit ratio", value_format="{:.2f}".format))
        return made

    parts = [_header(_trace_label(data), source, "fleet", facts, config), "<h2>Figures</h2>", _figures(make),
             "<h2>Routers</h2>",
             _grid(["router", "token hit ratio", "TTFT mean s", "TTFT p50 s", "TTFT p99 s", "util max", "util mean",
                    "requests max/mean", "predicted/hit"], rows, left=["router"])]
    if len(tenants) > 1:
        rows = [[name, f"{first['per_tenant'][name]['requests']:,}",
                 *(f"{r['per_tenant'][name]['token_hit_ratio']:.4f}" for r in routers)] for name in tenants[:MAX_ROWS]]
        parts += ["<h2>Token hit ratio per tenant</h2>", _grid(["tenant", "requests", *names], rows, left=["tenant"],
                                                                note=_more(len(tenants), MAX_ROWS))]
    parts.append("<h2>Per replica</h2>")
    for r in routers:
        rows = [[str(p["replica"]), f"{p['requests']:,}", f"{p['prompt_tokens']:,}", f"{p['token_hit_ratio']:.4f}",
                 f"{p['utilisation']:.3f}", f"{p['ttft_mean_s']:.3f}", f"{p['ttft_p99_s']:.3f}",
                 f"{p['peak_occupancy_blocks']:,}", f"{p['evictions']:,}"] for p in r["per_replica"]]
        parts.append(f"<details><summary>{_esc(r['router']['name'])}: {_esc(r['router'].get('description', ''))}"
                     "</summary>" + _grid(["replica", "requests", "prompt tokens", "token hit ratio", "utilisation",
                                           "TTFT mean s", "TTFT p99 s", "peak blocks", "evictions"], rows)
                     + "</details>")
    return "\n".join(parts)


# -- interference ----------------------------------------------------------------------------------------------

def _interference_body(data: Mapping[str, Any], source: str | None) -> str:
    t, cfg = data["trace"], data["config"]
    remedies, alone = data["remedies"], data["counterfactual"]
    shared = remedies["shared"]
    others = [name for name in remedies if name != "shared"]
    alone_name = alone.get("name", "alone")
    facts = f"{t['requests']:,} requests · {t['blocks']:,} blocks of {t['block_size']} tokens · " \
            f"{len(data['tenants'])} tenant(s)"
    ranked = _ranked(shared["per_tenant"])
    rows = []
    for name in ranked[:MAX_ROWS]:
        row, a = shared["per_tenant"][name], alone["per_tenant"][name]["token_hit_ratio"]
        cells = [name, f"{row['requests']:,}", f"{row['prompt_tokens']:,}", f"{a:.4f}", f"{row['token_hit_ratio']:.4f}",
                 f"{a - row['token_hit_ratio']:+.4f}"]
        for plan in others:
            share = remedies[plan].get("recovered", {}).get(name)
            cells.append(f"{remedies[plan]['per_tenant'][name]['token_hit_ratio']:.4f}"
                         + (f" ({share:+.0%})" if share is not None else ""))
        rows.append(cells)
    at, st = alone["total"], shared["total"]
    total = ["all", f"{st['requests']:,}", f"{st['prompt_tokens']:,}", f"{at['token_hit_ratio']:.4f}",
             f"{st['token_hit_ratio']:.4f}", f"{at['token_hit_ratio'] - st['token_hit_ratio']:+.4f}",
             *(f"{remedies[plan]['total']['token_hit_ratio']:.4f}" for plan in others)]
    lost = data.get("shared_lost_to")

    def make():
        shown = ranked[:MAX_BAR_TENANTS]
        plans = {alone_name: alone, "shared": shared, **{p: remedies[p] for p in others}}
        made = [figures.bar_figure(shown, {p: [plan["per_tenant"][n]["token_hit_ratio"] for n in shown]
                                           for p, plan in plans.items()},
                                   title=f"token hit ratio per tenant: {alone_name}, shared and each remedy",
                                   ylabel="token hit ratio")]
        hits = shared["hits_from"]
        made.append(figures.interference_figure(hits["tokens"], hits["tenants"], title="shared cache: tokens "
                                                "tenant R hit in entries tenant O inserted"))
        if lost:
            made.append(_lost_heatmap(ranked, lost))
        return made

    parts = [_header(_trace_label(data), source, "interference", facts, f"{_cache_text(cfg)}"),
             "<h2>Figures</h2>", _figures(make),
             "<h2>Token hit ratio per tenant</h2><p class=\"meta\">in brackets: share of the loss alone -&gt; shared "
             "recovered</p>",
             _grid(["tenant", "requests", "prompt tokens", alone_name, "shared", "drop", *others], rows,
                   left=["tenant"], note=_more(len(ranked), MAX_ROWS), total=total)]
    if lost:
        evicted = [[name, *_lost_cells(lost.get(name, {}), name)] for name in ranked[:MAX_ROWS]]
        parts += ["<h2>Shared cache: tokens lost to other tenants' evictions</h2>",
                  _grid(["tenant", "lost to others", "top evictor", "lost to TTL"], evicted,
                        left=["tenant", "top evictor"])]
    plans = {alone_name: ("each tenant replayed alone at the full capacity" if alone_name == "alone"
                          else "each tenant replayed alone at an equal share"),
             **{name: plan.get("description", "") for name, plan in remedies.items()}}
    parts.append(_definitions({**plans, **data.get("definitions", {})}))
    return "\n".join(parts)


# -- kinds -----------------------------------------------------------------------------------------------------

def result_kind(data: Mapping[str, Any]) -> str:
    """Which command's JSON ``data`` is, from the keys each one writes; ValueError for none of them."""
    from cachesim.sweep import SWEEP_FORMAT

    if data.get("kind") == SWEEP_FORMAT:
        return "sweep"
    if "curves" in data:
        return "mrc"
    if "routers" in data and "replicas" in data:
        return "fleet"
    if "remedies" in data and "counterfactual" in data:
        return "interference"
    if "summary" in data and "rules" in data:
        return "cost"
    if "summary" in data and "config" in data:
        return "replay"
    raise ValueError("not a cachesim result: expected the JSON of " + ", ".join(KINDS.values()))


def render_report(data: Mapping[str, Any] | SweepResult, title: str | None = None, *, source: str | None = None,
                  kv_bytes_per_token: float | None = None) -> str:
    """The page of a result: a :class:`~cachesim.sweep.SweepResult` or the JSON any command writes (``source``:
    the file it came from, named when the JSON does not name its trace). ``kv_bytes_per_token`` states
    capacities in GB too."""
    # imported here: cachesim.sweep imports this package while it loads
    from cachesim.sweep import SweepResult

    kv = kv_bytes_per_token
    if isinstance(data, SweepResult):
        kind, body = "sweep", _sweep_body(data, kv)
    else:
        kind = result_kind(data)
        body = {"sweep": lambda: _sweep_body(SweepResult.from_dict(data), kv),
                "replay": lambda: _replay_body(data, source, kv), "mrc": lambda: _mrc_body(data, source, kv),
                "cost": lambda: _cost_body(data, source), "fleet": lambda: _fleet_body(data, source),
                "interference": lambda: _interference_body(data, source)}[kind]()
    label = data.trace.get("label") if isinstance(data, SweepResult) else _trace_label(data)
    return _page(title or f"cachesim {kind}" + (f": {Path(label).name}" if label else ""), body)


_TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def write_report(result_path: str | Path, out_path: str | Path, title: str | None = None,
                 kv_bytes_per_token: float | None = None) -> None:
    """Read RESULT.json and write the self-contained page."""
    path = Path(result_path)
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        if path.suffix.lower() in _TABLE_SUFFIXES:  # a sweep's table has its rows but not its trace or axes
            raise TraceError("a sweep table (CSV/Parquet) carries no trace or axes: write the sweep with "
                             "-o RESULT.json and report that", file=str(path)) from None
        raise TraceError(f"malformed JSON: {exc}", file=str(path)) from None
    if not isinstance(data, dict):
        raise TraceError("not a cachesim result (expected a JSON object)", file=str(path))
    try:
        page = render_report(data, title, source=str(path), kv_bytes_per_token=kv_bytes_per_token)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise TraceError(f"not a cachesim result: {result_kind(data)} JSON with a missing or malformed field "
                         f"({exc})", file=str(path)) from None
    except ValueError as exc:
        raise TraceError(str(exc), file=str(path)) from None
    Path(out_path).write_text(page, encoding="utf-8")
