"""Invariants every replay result must satisfy, whatever its input (SEMANTICS §5)."""

from __future__ import annotations

_COUNTS = ("requests", "prompt_tokens", "hit_tokens", "blocks", "hit_blocks", "hit_requests", "inserted_blocks",
           "uncached_blocks")


def totals_problems(row: dict, where: str) -> list[str]:
    out = []
    for name in _COUNTS:
        v = row.get(name)
        if not isinstance(v, int) or v < 0:
            out.append(f"{where}.{name} = {v!r} is not a count >= 0")
    if out:
        return out
    if row["hit_tokens"] > row["prompt_tokens"]:
        out.append(f"{where}: hit_tokens {row['hit_tokens']} > prompt_tokens {row['prompt_tokens']}")
    if row["hit_blocks"] > row["blocks"]:
        out.append(f"{where}: hit_blocks {row['hit_blocks']} > blocks {row['blocks']}")
    if row["hit_requests"] > row["requests"]:
        out.append(f"{where}: hit_requests {row['hit_requests']} > requests {row['requests']}")
    for group in ("evictions", "evicted_owned"):
        for k, v in (row.get(group) or {}).items():
            if not isinstance(v, int) or v < 0:
                out.append(f"{where}.{group}.{k} = {v!r}")
    for k in ("token_hit_ratio", "block_hit_ratio", "request_hit_ratio"):
        v = row.get(k)
        if v is not None and not (isinstance(v, (int, float)) and 0 <= v <= 1):
            out.append(f"{where}.{k} = {v!r} outside [0, 1]")
    return out


def replay_problems(data: dict, *, requests: int | None = None, prompt_tokens: int | None = None) -> list[str]:
    """What is wrong with a replay's --json output; ``requests``/``prompt_tokens``: what the input holds."""
    if not isinstance(data, dict) or "summary" not in data:
        return ["no summary in the JSON"]
    s = data["summary"]
    out = totals_problems(s, "summary")
    tenants = data.get("per_tenant") or {}
    for name, row in tenants.items():
        out += totals_problems(row, f"per_tenant[{name!r}]")
    if out:
        return out
    for name in _COUNTS:  # tenants partition the counted requests
        total = sum(row[name] for row in tenants.values())
        if tenants and total != s[name]:
            out.append(f"sum over tenants of {name} = {total} != summary {s[name]}")
    if s.get("requests_seen", 0) < s["requests"]:
        out.append(f"requests {s['requests']} > requests_seen {s.get('requests_seen')}")
    if requests is not None and s.get("requests_seen") != requests:
        out.append(f"requests_seen {s.get('requests_seen')} != {requests} records accepted")
    if prompt_tokens is not None and s["prompt_tokens"] != prompt_tokens:
        out.append(f"prompt_tokens {s['prompt_tokens']} != {prompt_tokens} in the records")
    return out
