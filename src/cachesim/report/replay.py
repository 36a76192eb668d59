"""A replay's result on screen (tables) and for machines (CSV)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.table import Table

from cachesim._contract import RATIO_DEFINITIONS
from cachesim.policies import heading as policy_heading
from cachesim.report._tables import add_columns, capacity_text, make_console, note_more, print_table, ttl_text

if TYPE_CHECKING:
    from cachesim.replay import Result
    from cachesim.trace import Trace

MAX_TENANT_ROWS = 20


def describe_config(result: Result) -> str:
    cfg = result.config
    parts = [policy_heading(cfg.policy), f"capacity {capacity_text(cfg.capacity_blocks)}", ttl_text(cfg.ttl_s),
             f"hit cap {cfg.hit_cap or 'none'}"]
    if cfg.isolation:
        parts.append(f"isolation per {cfg.isolation}")
    parts.append(f"{result.impl} engine")
    return " · ".join(parts)


def _warmup_text(result: Result) -> str:
    cfg = result.config
    if not cfg.warmup_requests and not cfg.warmup_s:
        return "all requests (no warmup)"
    rule = f"first {cfg.warmup_requests:,} requests" if cfg.warmup_requests else f"first {cfg.warmup_s:g} s"
    excluded = result.summary()["warmup"]["excluded_requests"]
    return f"after warmup ({rule}: {excluded:,} requests left out)"


def print_replay(result: Result, trace: Trace, label: str, console: Console | None = None) -> None:
    console = console or make_console()
    s = result.summary()
    console.print(f"[bold]cachesim replay[/bold] — {label}")
    console.print(f"trace: {trace.n_requests:,} requests · {trace.n_blocks:,} blocks of {trace.block_size} tokens "
                  f"(from {trace.block_source}) · {len(trace.tenant_names)} tenant(s)")
    console.print(f"cache: {describe_config(result)}")
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("counts", justify="right", no_wrap=True)
    table.add_column("definition")
    table.add_row("requests counted", f"{s['requests']:,}", "", _warmup_text(result))
    table.add_row("token hit ratio", f"{s['token_hit_ratio']:.4f}", f"{s['hit_tokens']:,} / {s['prompt_tokens']:,}",
                  RATIO_DEFINITIONS["token_hit_ratio"])
    table.add_row("block hit ratio", f"{s['block_hit_ratio']:.4f}", f"{s['hit_blocks']:,} / {s['blocks']:,}",
                  RATIO_DEFINITIONS["block_hit_ratio"])
    table.add_row("request hit ratio", f"{s['request_hit_ratio']:.4f}", f"{s['hit_requests']:,} / {s['requests']:,}",
                  RATIO_DEFINITIONS["request_hit_ratio"])
    table.add_row("inserted blocks", f"{s['inserted_blocks']:,}", "", "blocks newly cached")
    table.add_row("evictions (capacity)", f"{s['evictions']['capacity']:,}", "", "blocks evicted to make room")
    table.add_row("expiries (TTL)", f"{s['evictions']['ttl']:,}", "", "blocks removed by the TTL")
    table.add_row("uncached blocks", f"{s['uncached_blocks']:,}", "", "blocks that found no room")
    table.add_row("peak occupancy", f"{s['peak_occupancy_blocks']:,}", "", "most blocks cached at once")
    print_table(console, table)
    tenants = result.per_tenant()
    if len(tenants) > 1:
        attributed = result.lost_to is not None
        t = Table(title="per tenant: tokens hit in other tenants' entries" +
                  ("; tokens lost to others' evictions (top evictor) and to the TTL" if attributed else ""),
                  header_style="bold")
        columns = ["tenant", "requests", "prompt tokens", "token hit ratio", "hit from others"]
        if attributed:
            columns += ["lost to others", "top evictor", "lost to TTL"]
        add_columns(t, columns, left=("tenant", "top evictor"))
        ranked = sorted(tenants.items(), key=lambda kv: -kv[1]["prompt_tokens"])
        for name, row in ranked[:MAX_TENANT_ROWS]:
            others = sum(v for owner, v in row["hits_from"].items() if owner != name)
            cells = [name, f"{row['requests']:,}", f"{row['prompt_tokens']:,}", f"{row['token_hit_ratio']:.4f}",
                     f"{others:,}"]
            if attributed:
                lost = {k: v for k, v in row["lost_to"].items() if k not in ("ttl", name)}
                top = max(lost, key=lost.get) if lost else ""
                cells += [f"{sum(lost.values()):,}", top, f"{row['lost_to'].get('ttl', 0):,}"]
            t.add_row(*cells)
        note_more(t, len(ranked), MAX_TENANT_ROWS)
        print_table(console, t)


def write_per_request_csv(result: Result, path: str | Path) -> None:
    """Per-request outputs as CSV, or as Parquet for a name ending ``.parquet`` (typed columns, zstd)."""
    if result.per_request is None:
        raise ValueError("per-request outputs were not kept")
    if str(path).endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = len(next(iter(result.per_request.values()))) if result.per_request else 0
        columns = {"request": np.arange(n, dtype=np.int64)}
        columns.update({name: np.asarray(values) for name, values in result.per_request.items()})
        pq.write_table(pa.table(columns), path, compression="zstd")
        return
    columns = list(result.per_request)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["request", *columns])
        arrays = [result.per_request[c] for c in columns]
        for i in range(len(arrays[0]) if arrays else 0):
            writer.writerow([i, *(_cell(a[i]) for a in arrays)])


def _cell(value) -> str:
    if isinstance(value, float) or getattr(value, "dtype", None) is not None and value.dtype.kind == "f":
        return repr(float(value)) if math.isfinite(value) else ""
    return str(value)
