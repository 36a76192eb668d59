"""``cachesim size`` on screen: one line per TTL, the smallest capacity for the target or why there is none.

Plain lines rather than a table: each answer must read whole at any terminal width, in a pipe or a log.
"""

from __future__ import annotations

from typing import Any

from cachesim._contract import RATIO_DEFINITIONS
from cachesim.report._tables import ttl_text
from cachesim.units import format_bytes, format_count


def percent_text(ratio: float, digits: int = 2) -> str:
    """``0.3`` -> ``30%`` (digits=None: as few as the value needs), ``0.29314`` -> ``29.31%``."""
    return f"{ratio * 100:.4g}%" if digits is None else f"{ratio:.{digits}%}"


def size_line(row: dict[str, Any], target: float, model_name: str | None) -> str:
    """One TTL's answer, from a row of ``sizes`` in the JSON output."""
    label = ttl_text(row["ttl_s"])
    ceiling = percent_text(row["ceiling_token_hit_ratio"])
    if row["capacity_blocks"] is None:
        at = row["ceiling_capacity_blocks"]
        reached = f", reached at {at:,} blocks" if at else ""
        return (f"{label}: {percent_text(target, None)} is out of reach; the ceiling (unbounded capacity) is "
                f"{ceiling}{reached}")
    size = f"{row['capacity_blocks']:,} blocks = {format_count(row['capacity_tokens'])} tokens"
    if row["capacity_bytes"] is not None:
        size += f" = {format_bytes(row['capacity_bytes'])} for {model_name}"
    return f"{label}: {size} ({percent_text(row['token_hit_ratio'])} there; ceiling {ceiling})"


def print_sizes(data: dict[str, Any], out=None) -> None:
    """A header, a line per TTL, then where the bytes per token come from."""
    target, model = data["target_token_hit_ratio"], data["model"]
    lines = [f"cachesim size — {data['trace']}: {data['requests']:,} requests, {data['block_size']}-token blocks, "
             f"LRU; the smallest capacity for a {percent_text(target, None)} token hit ratio"]
    lines += [size_line(row, target, model["name"] if model else None) for row in data["sizes"]]
    if model:
        source = f" ({model['source']})" if model["source"] else ""
        lines.append(f"{model['name']}: {model['arithmetic']}{source}")
        if model["note"]:
            lines.append(f"note: {model['note']}")
    lines.append(f"token hit ratio = {RATIO_DEFINITIONS['token_hit_ratio']}; each size equals a replay at it "
                 "(block slots: a partial block fills a whole slot)")
    print("\n".join(lines), file=out)
