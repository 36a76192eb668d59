"""What every reader shares: opening files, locating errors, collecting columns into request batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

import numpy as np
import orjson

from cachesim.requests import TraceError


def open_text(path: str | Path) -> IO[bytes]:
    """Open a trace file for reading bytes, raising a TraceError (not an OSError traceback) when it can't be."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise TraceError(f"cannot open: {exc.strerror}", file=str(path)) from None


def json_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; malformed lines raise located errors."""
    with open_text(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                tail = "" if raw.endswith(b"\n") else " (a truncated last line?)"
                raise TraceError(f"malformed JSON: {exc}{tail}", file=str(path), line=line_no) from None
            if not isinstance(obj, dict):
                raise TraceError(f"expected a JSON object per line, got {type(obj).__name__}", file=str(path),
                                 line=line_no)
            yield line_no, obj


def require(obj: dict, name: str, kinds: tuple[type, ...], what: str):
    """obj[name], checked to be one of kinds (bool is never a number)."""
    if name not in obj:
        raise TraceError("missing", field=name)
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TraceError(f"expected {what}, got {type(value).__name__} {str(value)[:40]}", field=name)
    return value


def int_list(obj: dict, name: str, max_value: int) -> list[int]:
    values = require(obj, name, (list,), "a list of integers")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TraceError(f"element {i} is {type(v).__name__} {str(v)[:40]}, expected an integer", field=name)
        if not 0 <= v <= max_value:
            raise TraceError(f"element {i} = {v} is outside 0..{max_value}", field=name)
    return values


@dataclass
class Interner:
    """Labels to small consecutive codes, in order of first appearance."""

    names: list[str] = field(default_factory=list)
    index: dict = field(default_factory=dict)

    def code(self, label) -> int:
        code = self.index.get(label)
        if code is None:
            code = self.index[label] = len(self.names)
            self.names.append(str(label))
        return code


@dataclass
class ReadResult:
    """A reader's output: the request batch, and the file line of each request (for located errors)."""

    requests: object          # TokenRequests | BlockRequests
    lines: np.ndarray         # int64 [n]: 1-based line of each request
    path: str

    def locate(self, exc: TraceError) -> TraceError:
        """Translate a request index in exc.line into this file's line."""
        if exc.file is None and exc.line is not None and 0 <= exc.line < len(self.lines):
            return TraceError(exc.message, field=exc.field, file=self.path, line=int(self.lines[exc.line]))
        return exc.located(file=self.path)
