"""Azure LLM inference trace CSV (Splitwise, ISCA'24): ``TIMESTAMP,ContextTokens,GeneratedTokens``.

Arrivals and token counts only: no token ids, no block ids, no user or conversation. A prefix cache has
nothing to match, so a plain replay is refused with that reason; :func:`read_arrivals` loads the file as an
arrival/length trace (for workload synthesis, rates and size distributions).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cachesim.readers._base import ReadOptions, ReadResult, Source, token_count
from cachesim.requests import TokenRequests, TraceError, offsets_from_lengths

NAME = "azure"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def sniff(first: dict | None, head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf").lstrip().split(b"\n", 1)[0].strip().decode(errors="replace") == HEADER


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
    header_seen = False  # the header is the first non-blank line
    for data, first_line, _ in source.chunks(options):
        for offset, raw in enumerate(bytes(data).split(b"\n")):
            line_no = first_line + offset
            text = raw.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
            if not text:
                continue
            if not header_seen:
                if text != HEADER:
                    raise TraceError(f"expected the header {HEADER!r}, got {text[:60]!r}", file=str(path),
                                     line=line_no)
                header_seen = True
                continue
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
    for name, value in zip(("ContextTokens", "GeneratedTokens"), fields[1:], strict=True):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            raise TraceError(f"expected a non-negative integer, got {value[:40]!r}", field=name)
        counts.append(token_count(int(value), name))
    if counts[0] == 0:
        raise TraceError("a prompt needs at least one token", field="ContextTokens")
    return stamp, counts[0], counts[1]


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    raise TraceError("the Azure LLM inference trace has arrival times and token counts but no token or block ids, "
                     "so a prefix cache has nothing to match; replay it with --synthesize to give each request "
                     "synthetic content, or load it with cachesim.readers.azure.read_arrivals", file=source.path)


_SIZE_FIELDS = ("system_tokens", "tools_tokens", "user_tokens_median", "user_tokens_max", "tool_call_tokens_median",
                "tool_result_tokens_median", "tool_result_max_tokens", "answer_tokens_median", "summary_tokens",
                "compaction_limit_tokens", "subtask_prompt_tokens_median")


def synthesize(arrivals: Arrivals, seed: int = 0, style: str = "native") -> TokenRequests:
    """Give an arrival/length trace content from the built-in agent workload.

    The workload's token sizes (system prompt, tools, turns, results...) are scaled so its median prompt
    matches the trace's median ContextTokens; request i then takes the arrival time and output length of row
    i and the prompt of the workload's i-th request in time order, cut to row i's ContextTokens or padded with
    fresh, unshared token ids. Arrivals and lengths are the trace's; how much prompts share is the workload's,
    so hit ratios describe that pairing, not the original service.
    """
    from cachesim.workloads import AgentWorkloadConfig, agent_workload

    n = arrivals.n_requests
    wanted = arrivals.input_tokens
    base = agent_workload(style=style, n_users=8, seed=seed).requests
    scale = float(np.median(wanted)) / float(np.median(np.diff(base.token_offsets)))
    defaults = AgentWorkloadConfig()
    sizes = {name: max(type(getattr(defaults, name))(getattr(defaults, name) * scale), 1) for name in _SIZE_FIELDS}
    sizes["timestamp_offset_tokens"] = min(defaults.timestamp_offset_tokens, sizes["system_tokens"] - 1)
    users = 8
    while True:
        workload = agent_workload(style=style, n_users=users, seed=seed, **sizes).requests
        if workload.n_requests >= n:
            break
        users = int(users * max(2.0, 1.2 * n / max(workload.n_requests, 1)))
    order = np.argsort(workload.t, kind="stable")[:n]
    starts, ends = workload.token_offsets[order], workload.token_offsets[order + 1]
    taken = np.minimum(ends - starts, wanted)
    offsets = offsets_from_lengths(wanted)
    tokens = np.empty(int(offsets[-1]), dtype=np.uint32)
    rng = np.random.default_rng(seed)
    pad_ids = rng.integers(0, 2**32, size=int((wanted - taken).sum()), dtype=np.uint64).astype(np.uint32)
    pad_at = 0
    for i in range(n):  # one slice per request, not per token
        a, k = int(offsets[i]), int(taken[i])
        tokens[a:a + k] = workload.tokens[starts[i]:starts[i] + k]
        pad = int(wanted[i]) - k
        tokens[a + k:a + k + pad] = pad_ids[pad_at:pad_at + pad]
        pad_at += pad
    return TokenRequests(t=arrivals.t.copy(), tenant=workload.tenant[order].astype(np.int32),
                         tenant_names=list(workload.tenant_names), session=workload.session[order].astype(np.int64),
                         output_tokens=arrivals.output_tokens.copy(), tokens=tokens, token_offsets=offsets)
