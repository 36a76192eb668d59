"""Azure LLM inference trace CSV (Splitwise, ISCA'24): ``TIMESTAMP,ContextTokens,GeneratedTokens``.

Arrivals and token counts only: no token ids, no block ids, no user or conversation. A prefix cache has
nothing to match, so a plain replay is refused with that reason; :func:`read_arrivals` loads the file as an
arrival/length trace (for workload synthesis, rates and size distributions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from cachesim.readers._base import ReadOptions, ReadResult, Source
from cachesim.requests import TraceError

NAME = "azure"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def sniff(first: dict | None, head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip().decode(errors="replace") == HEADER


@dataclass
class Arrivals:
    """An arrival/length trace: when each request came and how long its prompt and output were."""

    t: np.ndarray               # float64 [n]: seconds since the first row's timestamp
    input_tokens: np.ndarray    # int64 [n]
    output_tokens: np.ndarray   # int64 [n]
    lines: np.ndarray           # int64 [n]: file line of each row
    start: np.datetime64        # the first row's wall-clock timestamp
    path: str

    @property
    def n_requests(self) -> int:
        return len(self.t)


def read_arrivals(path: str | Path, skip_invalid: bool = False) -> Arrivals:
    """The whole CSV as arrivals; bad rows raise located errors (or are skipped with ``skip_invalid``)."""
    options = ReadOptions(skip_invalid=skip_invalid)
    stamps, inputs, outputs, lines = [], [], [], []
    source = Source(path)
    for data, first_line, _ in source.chunks(options.batch_bytes):
        for offset, raw in enumerate(bytes(data).split(b"\n")):
            line_no = first_line + offset
            text = raw.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
            if not text or (line_no == 1 and text == HEADER):
                continue
            if line_no == 1:
                raise TraceError(f"expected the header {HEADER!r}, got {text[:60]!r}", file=str(path), line=1)
            try:
                stamp, context, generated = _row(text)
            except TraceError as exc:
                error = exc.located(file=str(path), line=line_no)
                if not skip_invalid:
                    raise error from None
                options.skip(error)
                continue
            stamps.append(stamp)
            inputs.append(context)
            outputs.append(generated)
            lines.append(line_no)
    if not lines:
        raise TraceError("no requests: the file has no rows", file=str(path))
    times = np.array(stamps, dtype="datetime64[ns]")
    start = times.min()
    return Arrivals(t=(times - start).astype(np.int64) / 1e9, input_tokens=np.asarray(inputs, dtype=np.int64),
                    output_tokens=np.asarray(outputs, dtype=np.int64), lines=np.asarray(lines, dtype=np.int64),
                    start=start, path=str(path))


def _row(text: str) -> tuple[str, int, int]:
    fields = text.split(",")
    if len(fields) != 3:
        raise TraceError(f"expected 3 comma-separated fields, got {len(fields)}", field="row")
    stamp = fields[0].strip()
    try:
        np.datetime64(stamp, "ns")
    except ValueError:
        raise TraceError(f"expected a timestamp such as 2023-11-16 18:17:03.9799600, got {stamp[:40]!r}",
                         field="TIMESTAMP") from None
    counts = []
    for name, value in zip(("ContextTokens", "GeneratedTokens"), fields[1:]):
        value = value.strip()
        if not value.isdigit():
            raise TraceError(f"expected a non-negative integer, got {value[:40]!r}", field=name)
        counts.append(int(value))
    if counts[0] == 0:
        raise TraceError("a prompt needs at least one token", field="ContextTokens")
    return stamp, counts[0], counts[1]


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    raise TraceError("the Azure LLM inference trace has arrival times and token counts but no token or block ids, "
                     "so a prefix cache has nothing to match; replay it with --synthesize to give each request "
                     "synthetic content, or load it with cachesim.readers.azure.read_arrivals", file=source.path)
