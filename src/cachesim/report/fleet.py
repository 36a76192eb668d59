"""``cachesim fleet`` on screen: routers side by side, per tenant and per replica."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from cachesim.report._tables import add_columns, capacity_text, make_console, note_more, print_table

if TYPE_CHECKING:
    from cachesim.fleet import FleetResult


def print_fleet(results: Sequence[FleetResult], label: str, console=None, per_replica: bool = False,
                max_tenants: int = 20) -> None:
    """Routers side by side; with ``per_replica`` (or a single router) each replica's row too."""
    # imported here: cachesim.fleet re-exports this module's function while it loads
    from cachesim.fleet import ROUTER_DESCRIPTIONS

    console = console or make_console()
    first = results[0]
    cfg, load = first.config, first.load
    console.print(f"[bold]cachesim fleet[/bold] — {label}")
    console.print(f"{first.n_replicas} replicas · each LRU, capacity {capacity_text(cfg.capacity_blocks)}"
                  f"{'' if cfg.ttl_s is None else f', TTL {cfg.ttl_s:g} s'} · load model: prefill "
                  f"{load.prefill_tokens_per_s:,.0f} tok/s, decode {load.decode_tokens_per_s:,.0f} tok/s, one FIFO "
                  "queue per replica")
    table = Table(title="routers", header_style="bold")
    add_columns(table, ("router", "token hit ratio", "TTFT mean s", "TTFT p50 s", "TTFT p99 s", "util max",
                        "util mean", "requests max/mean", "predicted/hit"), left=("router",))
    for res in results:
        s = res.summary()
        predicted = s["predicted_hit_tokens"]
        table.add_row(res.router.name, f"{s['token_hit_ratio']:.4f}", f"{s['ttft_mean_s']:.3f}",
                      f"{s['ttft_p50_s']:.3f}", f"{s['ttft_p99_s']:.3f}", f"{s['utilisation_max']:.3f}",
                      f"{s['utilisation_mean']:.3f}", f"{s['request_imbalance']:.3f}",
                      "—" if predicted is None else f"{predicted / s['hit_tokens']:.3f}" if s["hit_tokens"] else "—")
    print_table(console, table)
    names = first.tenant_names
    if len(names) > 1:
        tenants = [res.per_tenant() for res in results]
        t = Table(title="token hit ratio per tenant", header_style="bold")
        add_columns(t, ("tenant", "requests", *(res.router.name for res in results)))
        ranked = sorted(names, key=lambda name: -tenants[0][name]["prompt_tokens"])
        for name in ranked[:max_tenants]:
            t.add_row(name, f"{tenants[0][name]['requests']:,}",
                      *(f"{rows[name]['token_hit_ratio']:.4f}" for rows in tenants))
        note_more(t, len(ranked), max_tenants)
        print_table(console, t)
    if not (per_replica or len(results) == 1):
        return
    for res in results:
        t = Table(title=f"per replica — {res.router.name}: {ROUTER_DESCRIPTIONS[res.router.name]}",
                  header_style="bold")
        add_columns(t, ("replica", "requests", "prompt tokens", "token hit ratio", "utilisation", "TTFT mean s",
                        "TTFT p99 s", "peak blocks", "evictions"), left=())
        for row in res.per_replica():
            t.add_row(str(row["replica"]), f"{row['requests']:,}", f"{row['prompt_tokens']:,}",
                      f"{row['token_hit_ratio']:.4f}", f"{row['utilisation']:.3f}", f"{row['ttft_mean_s']:.3f}",
                      f"{row['ttft_p99_s']:.3f}", f"{row['peak_occupancy_blocks']:,}", f"{row['evictions']:,}")
        print_table(console, t)
