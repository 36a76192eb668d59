"""cachesim's native JSONL: one request per line (schema and examples in docs/formats.md).

    {"t": 0.0, "tenant": "alice", "session": "s1", "tokens": [101, 2023, ...], "output_tokens": 120}

``t`` is seconds (required); ``tenant`` and ``session`` are optional labels (strings or integers);
``tokens`` are uint32 token ids. Instead of ``tokens`` a line may give ``block_ids`` (uint64) with
``prompt_tokens`` and ``block_size`` (the same on every line): blocks given by the trace, the last one partial
(``ReadOptions.lengths`` says what a row whose ids do not match its length is).
The output length is ``output_tokens`` (alias ``output_length``) or the length of ``output_ids``.
``breakpoints`` (prefix lengths in tokens, optionally ``{"tokens": n, "ttl": "1h"}``; ``"offset"`` for
``"tokens"`` too), ``segments`` (``[{"kind": ..., "tokens": n}]``, covering the prompt), ``boundaries``
(content-block ends, for the providers' block lookback) and ``usage`` (the provider's reported cache reads and
writes, under cachesim's names ``cache_read``/``cache_write`` or a provider's own) are carried into ``Trace.meta``;
so a provider trace for ``cachesim cost`` is a native token trace with these fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

from cachesim.readers._base import (
    Columns,
    ReadOptions,
    ReadResult,
    Row,
    Source,
    check_block_count,
    count,
    int_list,
    json_batches,
    label,
    require,
    seconds,
    token_count,
)
from cachesim.readers._render import ttl_seconds
from cachesim.readers.mooncake import _scan
from cachesim.requests import TokenRequests, TraceError

NAME = "native"
_KEYS = (b"t", b"output_tokens", b"output_length")
_KINDS = (0, 2, 2)  # _scan's NUMBER, UINT_OPT, UINT_OPT
_LABELS = (b"tenant", b"session")


def sniff(first: dict | None, head: bytes) -> bool:
    return first is not None and "t" in first and ("tokens" in first or "block_ids" in first)


def _output(obj: dict) -> int:
    if "output_ids" in obj:
        return len(int_list(obj, "output_ids", 2**32 - 1))
    name = "output_length" if "output_length" in obj else "output_tokens"
    return count(obj, name, required=False)


def _extras(obj: dict, n_tokens: int) -> tuple[list[tuple[int, float]] | None, list[tuple[str, int]] | None]:
    """``breakpoints`` (prefix lengths, or ``{"tokens": n, "ttl": "5m"|"1h"}``) and ``segments``."""
    breakpoints = None
    if "breakpoints" in obj:
        marks = require(obj, "breakpoints", (list,), "a list of prefix lengths")
        breakpoints = []
        for i, mark in enumerate(marks):
            ttl_s = float("nan")
            if isinstance(mark, dict):
                if mark.get("ttl") is not None:
                    ttl_s = ttl_seconds(mark["ttl"], f"breakpoints[{i}].ttl")
                mark = mark.get("tokens", mark.get("offset"))   # "offset": the provider traces' name
            if isinstance(mark, bool) or not isinstance(mark, int) or not 0 < mark <= n_tokens:
                raise TraceError(f"element {i} = {str(mark)[:20]} is not a prefix length in 1..{n_tokens}",
                                 field="breakpoints")
            breakpoints.append((mark, ttl_s))
    segments = None
    if "segments" in obj:
        items = require(obj, "segments", (list,), "a list of segments")
        segments = []
        for i, seg in enumerate(items):
            if not isinstance(seg, dict):
                raise TraceError(f"element {i} is not an object", field="segments")
            segments.append((str(seg.get("kind", "text")), count(seg, "tokens")))
        total = sum(n for _, n in segments)
        if total != n_tokens:
            raise TraceError(f"segments cover {total} tokens, the prompt has {n_tokens}", field="segments")
    return breakpoints, segments


def _boundaries(obj: dict, n_tokens: int) -> list[int] | None:
    """``boundaries``: content-block ends (prefix lengths in tokens), for the providers' block lookback."""
    if "boundaries" not in obj:
        return None
    ends = int_list(obj, "boundaries", n_tokens)
    if 0 in ends:
        raise TraceError("a block end must be >= 1", field="boundaries")
    return ends


# the provider's reported cache figures under cachesim's names or the providers' own (first one present wins)
USAGE_NAMES = {
    "observed_cache_read_tokens": ("cache_read", "cache_read_input_tokens", "cached_tokens",
                                   "prompt_cache_hit_tokens", "cached_content_token_count", "cacheReadInputTokens"),
    "observed_cache_write_tokens": ("cache_write", "cache_creation_input_tokens", "cache_write_tokens",
                                    "cacheWriteInputTokens"),
}


def _usage(obj: dict) -> dict | None:
    """``usage``: what the provider reported, as observed tokens."""
    if "usage" not in obj:
        return None
    usage = require(obj, "usage", (dict,), "an object of token counts")
    observed = {}
    for name, keys in USAGE_NAMES.items():
        key = next((k for k in keys if k in usage), None)
        if key is not None:
            observed[name] = token_count(usage[key], f"usage.{key}")
    return observed


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    state: dict = {"kind": None, "block_size": None}

    def parse(obj: dict, line_no: int) -> Row:
        t = seconds(require(obj, "t", (int, float), "seconds"), "t")
        kind = "tokens" if "tokens" in obj else "blocks" if "block_ids" in obj else None
        if kind is None:
            raise TraceError("missing: a line needs tokens or block_ids", field="tokens")
        if state["kind"] is not None and kind != state["kind"]:
            raise TraceError(f"this line gives {kind} but earlier lines give {state['kind']}",
                             field="tokens" if kind == "tokens" else "block_ids")
        if kind == "tokens":
            values = int_list(obj, "tokens", 2**32 - 1)
            if not values:
                raise TraceError("empty request: a prompt needs at least one token", field="tokens")
            prompt = given = len(values)
        else:
            values = int_list(obj, "block_ids", 2**64 - 1)
            given = count(obj, "prompt_tokens", positive=True)
            size = count(obj, "block_size", positive=True)
            if state["block_size"] is not None and size != state["block_size"]:
                raise TraceError(f"{size} differs from earlier lines' {state['block_size']}", field="block_size")
            prompt = check_block_count(len(values), given, size, "block_ids", options.lengths)
            state["block_size"] = size
        breakpoints, segments = _extras(obj, given)
        if prompt != given and (breakpoints or segments):
            # they measure the file's prompt_tokens, which --lengths from-ids has just replaced
            raise TraceError(f"--lengths from-ids reads this row as {prompt} tokens (its ids), but its breakpoints "
                             f"or segments describe its prompt_tokens of {given}", field="block_ids")
        row = Row(t=t, values=values, prompt_tokens=prompt, output_tokens=_output(obj),
                  tenant=label(obj, "tenant", "default"), session=label(obj, "session"), breakpoints=breakpoints,
                  segments=segments, boundaries=_boundaries(obj, given) if kind == "tokens" else None,
                  observed=_usage(obj))
        if kind == "blocks":  # the row is read from here on: count it once (ReadOptions.count_lengths)
            options.count_lengths(1, int(prompt < given), int(prompt > given))
        state["kind"] = kind
        columns.kind, columns.block_size = kind, state["block_size"]
        return row

    def fast(data, first_line: int) -> ReadResult | None:
        """Token-id lines with only t, tokens, tenant, session and an output count: the compiled scanner."""
        if _scan is None or state["kind"] == "blocks":
            return None
        scalars, ids, offsets, lines, failed, labels = _scan.scan_lines(data, _KEYS, _KINDS, b"tokens", first_line,
                                                                        _LABELS, True)
        t = scalars[:, 0]
        if (failed >= 0 or not len(lines) or np.any(~(t >= 0)) or np.any(~np.isfinite(t))
                or np.any(np.diff(offsets) <= 0) or (len(ids) and ids.max() > 0xFFFFFFFF)):
            return None
        try:
            raw = bytes(data)
            tenants = [_label(raw, kind, a, b, "default") for kind, a, b in labels[:, 0].tolist()]
            sessions = [_label(raw, kind, a, b, None) for kind, a, b in labels[:, 1].tolist()]
        except UnicodeDecodeError:
            return None
        output = np.where(np.isnan(scalars[:, 2]), scalars[:, 1], scalars[:, 2])  # output_length wins, as below
        state["kind"] = columns.kind = "tokens"
        requests = TokenRequests(t=t, tenant=np.asarray([columns.tenants.code(x) for x in tenants], dtype=np.int32),
                                 tenant_names=list(columns.tenants.names),
                                 session=np.asarray([-1 if x is None else columns.sessions.code(x) for x in sessions],
                                                    dtype=np.int64),
                                 output_tokens=np.where(np.isnan(output), -1, output).astype(np.int64),
                                 tokens=ids.astype(np.uint32), token_offsets=offsets)
        return ReadResult(requests, lines, source.path)

    columns = Columns("tokens")
    return json_batches(source, options, columns, parse, fast=fast)


def _label(raw: bytes, kind: int, start: int, end: int, default):
    if kind == 0:
        return default
    text = raw[start:end]
    return text.decode("utf-8") if kind == 1 else int(text)


def write(path: str | Path, requests: TokenRequests) -> None:
    """Write token requests as native JSONL (session codes become integer labels)."""
    with open(path, "wb") as out:
        for i in range(requests.n_requests):
            record = {"t": float(requests.t[i]), "tenant": requests.tenant_names[requests.tenant[i]]}
            if requests.session[i] >= 0:
                record["session"] = int(requests.session[i])
            record["tokens"] = requests.tokens[requests.token_offsets[i]:requests.token_offsets[i + 1]].tolist()
            if requests.output_tokens[i] >= 0:
                record["output_tokens"] = int(requests.output_tokens[i])
            out.write(orjson.dumps(record) + b"\n")
