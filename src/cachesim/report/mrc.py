"""``cachesim mrc`` on screen: a row per capacity, token and block hit ratio per TTL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table

from cachesim._contract import RATIO_DEFINITIONS
from cachesim.report._tables import make_console, print_table

if TYPE_CHECKING:
    from cachesim.mrc import Curve, CurveStream


def _capacity_text(blocks: int) -> str:
    return "unbounded" if blocks < 0 else f"{blocks:,}"  # a curve stores unbounded as -1


def print_curves(curves: Sequence[Curve], seen: CurveStream, label: str, kv_bytes_per_token: float | None = None,
                 console=None) -> None:
    """The curves as one table on screen: a row per capacity, token and block hit ratio per TTL; ``seen`` is the
    stream the trace went through (what it saw of the trace)."""
    console = console or make_console()
    first = curves[0]
    console.print(f"[bold]cachesim mrc[/bold] — {label}")
    sampled = first.sample_rate < 1
    stack = seen.stack
    console.print(f"trace: {stack.requests:,} requests · {stack.blocks:,} blocks of {stack.block_size} tokens "
                  f"(from {stack.block_source}) · {'~' if sampled else ''}{stack.distinct_keys:,.0f} distinct "
                  f"blocks · longest request {stack.longest_request_blocks:,} blocks")
    if sampled:
        console.print(f"[yellow]estimate[/yellow]: sampled at rate {first.sample_rate:g}, with every key of the first "
                      f"{stack.always_blocks} blocks of each request tracked; see docs/mrc.md for the error")
    else:
        console.print("exact: each row equals a replay (LRU, SEMANTICS §3) at that capacity")
    table = Table(show_header=True, header_style="bold")
    table.add_column("capacity\nblocks", justify="right", no_wrap=True)
    gb = first.capacities_gb(kv_bytes_per_token) if kv_bytes_per_token else None
    if gb is not None:
        table.add_column("capacity\nGB", justify="right", no_wrap=True)
    for c in curves:
        ttl = "no TTL" if c.ttl_s is None else f"TTL {c.ttl_s:g}s"
        table.add_column(f"token\n{ttl}", justify="right", no_wrap=True)
        table.add_column(f"block\n{ttl}", justify="right", no_wrap=True)
    for i, cap in enumerate(first.capacities_blocks):
        row = [_capacity_text(int(cap))]
        if gb is not None:
            row.append("unbounded" if cap < 0 else f"{gb[i]:,.2f}")
        for c in curves:
            row += [f"{c.token_hit_ratio[i]:.4f}", f"{c.block_hit_ratio[i]:.4f}"]
        table.add_row(*row)
    print_table(console, table)
    if gb is not None:
        console.print(f"GB = blocks x {first.block_size} tokens x {kv_bytes_per_token:,.0f} KV bytes per token / 1e9")
    console.print(f"columns: token hit ratio = {RATIO_DEFINITIONS['token_hit_ratio']}; "
                  f"block hit ratio = {RATIO_DEFINITIONS['block_hit_ratio']}")


def print_policy_curves(lru: Curve, curves: Sequence[Curve], console=None) -> None:
    """Other policies' token hit ratios at the LRU curve's capacities (no TTL), LRU's beside them."""
    console = console or make_console()
    sampled = [c for c in curves if c.method == "miniature"]
    if sampled:
        console.print(f"[yellow]estimate[/yellow]: miniature simulations of {sampled[0].sample_rate:g} of the prefix "
                      "trees in caches scaled by the same rate (docs/mrc.md gives the measured error)")
    else:
        console.print("each policy column is a replay at that capacity; belady is the bound no policy exceeds")
    table = Table(show_header=True, header_style="bold")
    table.add_column("capacity\nblocks", justify="right", no_wrap=True)
    table.add_column("token\nlru", justify="right", no_wrap=True)
    for c in curves:
        table.add_column(f"token\n{c.policy}", justify="right", no_wrap=True)
    for i, cap in enumerate(lru.capacities_blocks):
        table.add_row(_capacity_text(int(cap)), f"{lru.token_hit_ratio[i]:.4f}",
                      *(f"{c.token_hit_ratio[i]:.4f}" for c in curves))
    print_table(console, table)
