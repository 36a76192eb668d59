"""Reading provider traces: JSON lines with token ids, cache markers, block ends and (optionally) observed usage.

    {"t": 0.0, "tenant": "alice", "session": "s1", "tokens": [101, 2023, ...], "output_tokens": 120,
     "breakpoints": [9000, {"offset": 9317, "ttl": "1h"}], "boundaries": [3000, 9000, 9317],
     "usage": {"cache_read": 9000, "cache_write": 317}}

``breakpoints`` (cache markers: offsets, or objects with an offset and a ttl of "5m" or "1h"), ``boundaries``
(content-block ends), ``output_tokens`` and ``usage`` are optional. ``usage`` gives the provider's reported cache
reads and writes under cachesim's names (``cache_read``, ``cache_write``) or the provider's own (Anthropic
``cache_read_input_tokens`` / ``cache_creation_input_tokens``, OpenAI ``cached_tokens`` / ``cache_write_tokens``,
DeepSeek ``prompt_cache_hit_tokens``, Gemini ``cached_content_token_count``, Bedrock ``cacheReadInputTokens`` /
``cacheWriteInputTokens``), for predicted-against-observed reports.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from cachesim.providers.engine import ProviderInput
from cachesim.readers._base import Interner, int_list, json_lines, require
from cachesim.requests import TokenRequests, TraceError, offsets_from_lengths

__all__ = ["read_provider_trace"]


def _breakpoints(obj) -> tuple[list[int], list[int]]:
    raw = obj.get("breakpoints", [])
    if not isinstance(raw, list):
        raise TraceError("expected a list of offsets", field="breakpoints")
    pos, long = [], []
    for item in raw:
        if isinstance(item, dict):
            offset, ttl = item.get("offset"), item.get("ttl", "5m")
        else:
            offset, ttl = item, "5m"
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TraceError(f"expected a token offset, got {offset!r}", field="breakpoints")
        if ttl not in ("5m", "1h"):
            raise TraceError(f"ttl must be '5m' or '1h', not {ttl!r}", field="breakpoints")
        pos.append(offset)
        long.append(int(ttl == "1h"))
    return pos, long


# the providers' own names for the same two figures (first one present wins)
USAGE_NAMES = {
    "cache_read": ("cache_read", "cache_read_input_tokens", "cached_tokens", "prompt_cache_hit_tokens",
                   "cached_content_token_count", "cacheReadInputTokens"),
    "cache_write": ("cache_write", "cache_creation_input_tokens", "cache_write_tokens", "cacheWriteInputTokens"),
}


def _usage(obj, name: str) -> int:
    usage = obj.get("usage")
    if usage is None:
        return -1
    if not isinstance(usage, dict):
        raise TraceError("expected an object", field="usage")
    key = next((k for k in USAGE_NAMES[name] if k in usage), None)
    if key is None:
        return -1
    value = usage[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TraceError(f"expected a token count, got {value!r}", field=f"usage.{key}")
    return value


def read_provider_trace(path: str | Path) -> ProviderInput:
    times, prompts, outputs, bps, longs, bounds, obs_read, obs_write = [], [], [], [], [], [], [], []
    tenants, sessions = Interner(), Interner()
    tenant_codes, session_codes = [], []
    for line_no, obj in json_lines(path):
        try:
            times.append(require(obj, "t", (int, float), "seconds"))
            tokens = int_list(obj, "tokens", 2**32 - 1)
            if not tokens:
                raise TraceError("empty request: a prompt needs at least one token", field="tokens")
            prompts.append(tokens)
            output = obj.get("output_tokens", -1)
            if isinstance(output, bool) or not isinstance(output, int):
                raise TraceError(f"expected a token count, got {output!r}", field="output_tokens")
            outputs.append(output)
            pos, long = _breakpoints(obj)
            if any(not 1 <= x <= len(tokens) for x in pos) or any(b <= a for a, b in itertools.pairwise(pos)):
                raise TraceError(f"offsets must increase within 1..{len(tokens)}", field="breakpoints")
            bps.append(pos)
            longs.append(long)
            bound = int_list(obj, "boundaries", len(tokens)) if "boundaries" in obj else []
            if 0 in bound:
                raise TraceError("a block end must be >= 1", field="boundaries")
            bounds.append(bound)
            obs_read.append(_usage(obj, "cache_read"))
            obs_write.append(_usage(obj, "cache_write"))
            tenant_codes.append(tenants.code(str(obj.get("tenant", "default"))))
            session = obj.get("session")
            session_codes.append(-1 if session is None else sessions.code(str(session)))
        except TraceError as exc:
            raise exc.located(str(path), line_no) from None
    if not prompts:
        raise TraceError("no requests", file=str(path))
    lengths = np.fromiter((len(p) for p in prompts), dtype=np.int64, count=len(prompts))
    flat = np.fromiter((x for p in prompts for x in p), dtype=np.uint32, count=int(lengths.sum()))
    req = TokenRequests.from_arrays(flat, offsets_from_lengths(lengths), t=times, tenant=tenant_codes,
                                    session=session_codes, output_tokens=outputs, tenant_names=tenants.names)

    def csr(rows):
        counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        return np.fromiter((x for r in rows for x in r), dtype=np.int64, count=int(counts.sum())), \
            offsets_from_lengths(counts)

    bp, bp_off = csr(bps)
    bd, bd_off = csr(bounds)
    observed_read = np.asarray(obs_read, np.int64)
    observed_write = np.asarray(obs_write, np.int64)
    return ProviderInput(requests=req, breakpoints=bp, breakpoint_offsets=bp_off,
                         breakpoint_long=csr(longs)[0].astype(np.int8), boundaries=bd, boundary_offsets=bd_off,
                         observed_read=observed_read if (observed_read >= 0).any() else None,
                         observed_write=observed_write if (observed_write >= 0).any() else None)
