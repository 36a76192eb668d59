"""Trace readers: one module per format, one registry that sniffs the content and dispatches."""

from __future__ import annotations

from pathlib import Path

from cachesim.readers import mooncake, native
from cachesim.readers._base import ReadResult, json_lines
from cachesim.requests import TraceError
from cachesim.trace import Trace, compile_trace

__all__ = ["FORMATS", "detect_format", "read_requests", "read_trace"]

# name -> module with NAME, sniff(first_object) and read(path, block_size) -> ReadResult
FORMATS = {module.NAME: module for module in (mooncake, native)}


def detect_format(path: str | Path) -> str:
    """The name of the format whose sniffer accepts the file's first record."""
    for _, first in json_lines(path):
        for name, module in FORMATS.items():
            if module.sniff(first):
                return name
        raise TraceError(f"unknown format: the first record has fields {sorted(first)[:8]}; "
                         f"known formats: {', '.join(FORMATS)} (choose one with --format)", file=str(path))
    raise TraceError("no requests: the file is empty", file=str(path))


def read_requests(path: str | Path, format: str | None = None, block_size: int | None = None) -> ReadResult:
    name = format or detect_format(path)
    if name not in FORMATS:
        raise TraceError(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}", file=str(path))
    return FORMATS[name].read(path, block_size=block_size)


def read_trace(path: str | Path, format: str | None = None, block_size: int | None = None,
               partial_tail: bool = False, impl: str | None = None) -> Trace:
    """Read and compile a trace file; errors name the file, line and field."""
    result: ReadResult = read_requests(path, format, block_size)
    try:
        trace = compile_trace(result.requests, block_size if _is_tokens(result) else None,
                              partial_tail=partial_tail, sort=True, impl=impl)
    except TraceError as exc:
        raise result.locate(exc) from None
    trace.meta["path"] = str(path)
    return trace


def _is_tokens(result: ReadResult) -> bool:
    from cachesim.requests import TokenRequests

    return isinstance(result.requests, TokenRequests)
