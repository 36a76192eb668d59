"""Azure LLM inference trace CSV (Splitwise, ISCA'24): ``TIMESTAMP,ContextTokens,GeneratedTokens``.

Arrivals and token counts only: no token ids, no block ids, no user or conversation. A prefix cache has
nothing to match, so a plain replay is refused with that reason; :func:`read_arrivals` loads the file as an
arrival/length trace (for workload synthesis, rates and size distributions).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from cachesim.readers._base import ReadOptions, ReadResult, Source, token_count
from cachesim.requests import TokenRequests, TraceError, offsets_from_lengths

NAME = "azure"
TIME_FIELD = "TIMESTAMP"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
# the traces' own form, 2023-11-16 18:17:03.9799600; parsed here, not by numpy, which also takes "NaT", "now",
# time zones (with a warning) and silently wraps years outside 1678..2261 at nanosecond precision
_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")
_EPOCH_DAY = date(1970, 1, 1).toordinal()
# --synthesize builds the whole synthetic workload in memory (about 5 bytes a token at its peak): the most tokens
# it may generate, so a few rows of huge ContextTokens are refused rather than allowed to ask for gigabytes
MAX_SYNTHESIZED_TOKENS = int(os.environ.get("CACHESIM_MAX_SYNTHESIZED_TOKENS", 2**27))


def sniff(first: dict | None, head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf").lstrip().split(b"\n", 1)[0].strip().decode(errors="replace") == HEADER


@dataclass
class Arrivals:
    """An arrival/length trace: when each request came and how long its prompt and output were."""

    t: np.ndarray               # float64 [n]: seconds since the earliest row's timestamp, non-decreasing
    input_tokens: np.ndarray    # int64 [n]
    output_tokens: np.ndarray   # int64 [n]
    lines: np.ndarray           # int64 [n]: file line of each row
    start: np.datetime64        # the earliest row's wall-clock timestamp (microseconds)
    path: str

    @property
    def n_requests(self) -> int:
        return len(self.t)


def read_arrivals(path: str | Path, skip_invalid: bool = False, keep_order: bool = False) -> Arrivals:
    """The whole CSV as arrivals in time order; bad rows raise located errors (or are skipped, counted and
    reported with ``skip_invalid``). Rows out of order are sorted stably, as every reader does (counted in a
    warning), unless ``keep_order``, which refuses them."""
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
        if options.skipped:
            raise TraceError(f"no valid requests: all {options.skipped:,} rows were invalid "
                             f"(first: {options.skip_examples[0]})", file=str(path))
        raise TraceError("no requests: the file has no rows", file=str(path))
    options.report_skips()
    start = min(stamps)
    t = np.asarray([(ns - start) / 1e9 for ns in stamps], dtype=np.float64)  # Python ints: no overflow
    arrivals = Arrivals(t=t, input_tokens=np.asarray(inputs, dtype=np.int64),
                        output_tokens=np.asarray(outputs, dtype=np.int64), lines=np.asarray(lines, dtype=np.int64),
                        start=np.datetime64(start // 1000, "us"), path=str(path))
    return _in_time_order(arrivals, keep_order)


def _in_time_order(arrivals: Arrivals, keep_order: bool) -> Arrivals:
    back = np.flatnonzero(np.diff(arrivals.t) < 0)
    if not back.size:
        return arrivals
    if keep_order:
        i = int(back[0]) + 1
        raise TraceError(f"arrival time {float(arrivals.t[i])!r} s is before the previous request's "
                         f"{float(arrivals.t[i - 1])!r} s (--keep-order refuses to reorder; drop it to sort stably)",
                         field=TIME_FIELD,
                         file=arrivals.path, line=int(arrivals.lines[i]))
    warnings.warn(f"{back.size:,} requests arrived out of order; sorted stably by time", stacklevel=3)
    order = np.argsort(arrivals.t, kind="stable")
    return Arrivals(t=arrivals.t[order], input_tokens=arrivals.input_tokens[order],
                    output_tokens=arrivals.output_tokens[order], lines=arrivals.lines[order], start=arrivals.start,
                    path=arrivals.path)


def _timestamp(text: str) -> int:
    """Nanoseconds since 1970 of a TIMESTAMP cell."""
    match = _STAMP.fullmatch(text)
    day = None
    if match:
        year, month, mday, hour, minute, second = (int(g) for g in match.groups()[:6])
        try:
            day = date(year, month, mday).toordinal() - _EPOCH_DAY
        except ValueError:
            day = None
    if day is None or hour > 23 or minute > 59 or second > 59:
        raise TraceError(f"expected a timestamp such as 2023-11-16 18:17:03.9799600, got {text[:40]!r}",
                         field=TIME_FIELD)
    fraction = match.group(7) or ""
    return ((day * 24 + hour) * 60 + minute) * 60_000_000_000 + second * 1_000_000_000 + int(fraction.ljust(9, "0"))


def _row(text: str) -> tuple[int, int, int]:
    fields = text.split(",")
    if len(fields) != 3:
        raise TraceError(f"expected 3 comma-separated fields, got {len(fields)}", field="row")
    stamp = _timestamp(fields[0].strip())
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


def _scaled_sizes(scale: float) -> dict:
    """The workload's token sizes times ``scale``, kept within what AgentWorkloadConfig accepts (a tool needs a
    token, the timestamp line fits in the system prompt, compaction leaves room) however small the scale."""
    from cachesim.workloads import AgentWorkloadConfig

    defaults = AgentWorkloadConfig()
    sizes = {name: max(type(getattr(defaults, name))(getattr(defaults, name) * scale), 1) for name in _SIZE_FIELDS}
    sizes["tools_tokens"] = max(sizes["tools_tokens"], defaults.n_tools)
    sizes["system_tokens"] = max(sizes["system_tokens"], defaults.timestamp_tokens)
    sizes["timestamp_offset_tokens"] = min(defaults.timestamp_offset_tokens,
                                           sizes["system_tokens"] - defaults.timestamp_tokens)
    floor = sizes["system_tokens"] + sizes["tools_tokens"] + sizes["summary_tokens"] + 1
    sizes["compaction_limit_tokens"] = max(sizes["compaction_limit_tokens"], floor)
    return sizes


def synthesize(arrivals: Arrivals, seed: int = 0, style: str = "native") -> TokenRequests:
    """Give an arrival/length trace content from the built-in agent workload.

    The workload's token sizes (system prompt, tools, turns, results...) are scaled so its median prompt
    matches the trace's median ContextTokens; request i then takes the arrival time and output length of row
    i and the prompt of the workload's i-th request in time order, cut to row i's ContextTokens or padded with
    fresh, unshared token ids. Arrivals and lengths are the trace's; how much prompts share is the workload's,
    so hit ratios describe that pairing, not the original service.
    """
    from cachesim.workloads import agent_workload

    n = arrivals.n_requests
    wanted = arrivals.input_tokens
    users = 8
    base = agent_workload(style=style, n_users=users, seed=seed).requests
    scale = float(np.median(wanted)) / float(np.median(np.diff(base.token_offsets)))
    # the workload grows with its sizes and with the users it needs for n requests
    estimate = int(base.token_offsets[-1] * scale * max(n / base.n_requests, 1.0))
    if max(estimate, int(wanted.sum())) > MAX_SYNTHESIZED_TOKENS:
        raise TraceError(f"synthesizing {n:,} prompts of median {int(np.median(wanted)):,} tokens would generate "
                         f"about {max(estimate, int(wanted.sum())):,} tokens, beyond the "
                         f"{MAX_SYNTHESIZED_TOKENS:,} a synthesized workload may hold in memory (set "
                         "CACHESIM_MAX_SYNTHESIZED_TOKENS to raise it)", field="ContextTokens", file=arrivals.path)
    sizes = _scaled_sizes(scale)
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
