"""Reading provider traces: native token JSONL with cache markers, block ends and (optionally) observed usage.

    {"t": 0.0, "tenant": "alice", "session": "s1", "tokens": [101, 2023, ...], "output_tokens": 120,
     "breakpoints": [9000, {"offset": 9317, "ttl": "1h"}], "boundaries": [3000, 9000, 9317],
     "usage": {"cache_read": 9000, "cache_write": 317}}

This is cachesim's native format (:mod:`cachesim.readers.native` reads every field), so ``cachesim cost`` reads it
through the same readers as every other trace; :func:`read_provider_trace` is kept for code that calls it.
"""

from __future__ import annotations

from pathlib import Path

from cachesim.providers.engine import ProviderInput

__all__ = ["read_provider_trace"]


def read_provider_trace(path: str | Path, **reading) -> ProviderInput:
    """Any token-level trace file as a :class:`ProviderInput` (``reading``: read_requests' keywords)."""
    from cachesim.readers import read_requests

    return ProviderInput.from_read(read_requests(path, **reading))
