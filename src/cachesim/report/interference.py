"""``cachesim interference`` on screen: the remedies side by side, and who evicted whom."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from cachesim.report._tables import add_columns, capacity_text, make_console, note_more, print_table, ttl_text

if TYPE_CHECKING:
    from cachesim.interference import InterferenceReport


def print_report(report: InterferenceReport, label: str, console=None, max_tenants: int = 20) -> None:
    """The remedies side by side: token hit ratio per tenant, and the share of its loss each remedy recovers."""
    console = console or make_console()
    cfg = report.config
    console.print(f"[bold]cachesim interference[/bold] — {label}")
    console.print(f"cache: LRU · capacity {capacity_text(cfg.capacity_blocks)} · {ttl_text(cfg.ttl_s)} · "
                  f"hit cap {cfg.hit_cap or 'none'}")
    table = Table(title="token hit ratio per tenant (in brackets: share of the loss alone -> shared recovered)",
                  header_style="bold")
    others = [p.name for p in report.remedies if p.name != "shared"]
    add_columns(table, ("tenant", "requests", "prompt tokens", report.counterfactual_name, "shared", "drop", *others))
    ranked = sorted(report.tenant_names, key=lambda t: -report.shared.per_tenant[t]["prompt_tokens"])
    for tenant in ranked[:max_tenants]:
        shared = report.shared.per_tenant[tenant]
        alone = report.alone.per_tenant[tenant]["token_hit_ratio"]
        cells = [tenant, f"{shared['requests']:,}", f"{shared['prompt_tokens']:,}", f"{alone:.4f}",
                 f"{shared['token_hit_ratio']:.4f}", f"{alone - shared['token_hit_ratio']:+.4f}"]
        for name in others:
            value = report.results[name].per_tenant[tenant]["token_hit_ratio"]
            share = report.recovered(name, tenant)
            cells.append(f"{value:.4f}" + (f" ({share:+.0%})" if share is not None else ""))
        table.add_row(*cells)
    totals = {name: res.totals() for name, res in report.results.items()}
    alone_all, shared_all = totals[report.counterfactual_name], totals["shared"]
    table.add_row("[bold]all[/bold]", f"{shared_all['requests']:,}", f"{shared_all['prompt_tokens']:,}",
                  f"{alone_all['token_hit_ratio']:.4f}", f"{shared_all['token_hit_ratio']:.4f}",
                  f"{alone_all['token_hit_ratio'] - shared_all['token_hit_ratio']:+.4f}",
                  *(f"{totals[name]['token_hit_ratio']:.4f}" for name in others), end_section=True)
    note_more(table, len(ranked), max_tenants)
    print_table(console, table)
    lost_to = report.lost_to()
    if lost_to is not None:
        evicted = Table(title="shared cache: tokens each tenant missed because another tenant's insertions (or the "
                              "TTL) evicted them", header_style="bold")
        add_columns(evicted, ("tenant", "lost to others", "top evictor", "lost to TTL"), left=("tenant", "top evictor"))
        for tenant in ranked[:max_tenants]:
            by_others = {k: v for k, v in lost_to[tenant].items() if k not in ("ttl", tenant)}
            top = max(by_others, key=by_others.get) if any(by_others.values()) else ""
            evicted.add_row(tenant, f"{sum(by_others.values()):,}", top, f"{lost_to[tenant].get('ttl', 0):,}")
        print_table(console, evicted)
    console.print(f"[bold]{report.counterfactual_name}[/bold]: "
                  + ("each tenant replayed alone at the full capacity"
                     if report.counterfactual_name == "alone" else "each tenant replayed alone at an equal share"))
    for plan in report.remedies:
        console.print(f"[bold]{plan.name}[/bold]: {plan.description}")
