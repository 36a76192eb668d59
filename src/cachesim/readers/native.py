"""cachesim's native JSONL: one request per line.

    {"t": 0.0, "tenant": "alice", "session": "s1", "tokens": [101, 2023, ...], "output_tokens": 120}

``t`` is seconds (required); ``tenant`` and ``session`` are optional labels (strings or integers);
``tokens`` are uint32 token ids. Instead of ``tokens`` a line may give ``block_ids`` (uint64) with
``prompt_tokens`` and ``block_size`` (the same on every line): blocks given by the trace, the last one partial.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cachesim.readers._base import Interner, ReadResult, int_list, json_lines, require
from cachesim.requests import BlockRequests, TokenRequests, TraceError, offsets_from_lengths

NAME = "native"


def sniff(first: dict) -> bool:
    return "t" in first and ("tokens" in first or "block_ids" in first)


def read(path: str | Path, block_size: int | None = None) -> ReadResult:
    times, lengths, lines, outputs, prompt_tokens, flat = [], [], [], [], [], []
    tenants, sessions = Interner(), Interner()
    tenant_codes, session_codes = [], []
    kind = None
    file_block_size = None
    for line_no, obj in json_lines(path):
        try:
            t = require(obj, "t", (int, float), "seconds")
            this_kind = "tokens" if "tokens" in obj else "block_ids" if "block_ids" in obj else None
            if this_kind is None:
                raise TraceError("missing: a line needs tokens or block_ids", field="tokens")
            if kind is not None and this_kind != kind:
                raise TraceError(f"this line gives {this_kind} but earlier lines give {kind}", field=this_kind)
            kind = this_kind
            if kind == "tokens":
                values = int_list(obj, "tokens", 2**32 - 1)
                if not values:
                    raise TraceError("empty request: a prompt needs at least one token", field="tokens")
            else:
                values = int_list(obj, "block_ids", 2**64 - 1)
                prompt_tokens.append(require(obj, "prompt_tokens", (int,), "a token count"))
                size = require(obj, "block_size", (int,), "tokens per block")
                if file_block_size is not None and size != file_block_size:
                    raise TraceError(f"{size} differs from earlier lines' {file_block_size}", field="block_size")
                file_block_size = size
            output = obj.get("output_tokens", -1)
            if isinstance(output, bool) or not isinstance(output, int):
                raise TraceError(f"expected a token count, got {output!r}", field="output_tokens")
            tenant = obj.get("tenant", "default")
            session = obj.get("session")
            for name, label in (("tenant", tenant), ("session", session)):
                if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int))):
                    raise TraceError(f"expected a string or integer label, got {label!r}", field=name)
        except TraceError as exc:
            raise exc.located(file=str(path), line=line_no) from None
        times.append(t)
        flat.extend(values)
        lengths.append(len(values))
        lines.append(line_no)
        outputs.append(output)
        tenant_codes.append(tenants.code(tenant))
        session_codes.append(-1 if session is None else sessions.code(session))
    if not lines:
        raise TraceError("no requests: the file is empty", file=str(path))
    common = dict(t=np.asarray(times, dtype=np.float64), tenant=np.asarray(tenant_codes, dtype=np.int32),
                  tenant_names=tenants.names, session=np.asarray(session_codes, dtype=np.int64),
                  output_tokens=np.asarray(outputs, dtype=np.int64))
    offsets = offsets_from_lengths(np.asarray(lengths, dtype=np.int64))
    if kind == "tokens":
        requests = TokenRequests(**common, tokens=np.asarray(flat, dtype=np.uint32), token_offsets=offsets)
    else:
        requests = BlockRequests(**common, block_ids=np.asarray(flat, dtype=np.uint64), block_offsets=offsets,
                                 prompt_tokens=np.asarray(prompt_tokens, dtype=np.int64),
                                 block_size=int(file_block_size))
    return ReadResult(requests, np.asarray(lines, dtype=np.int64), str(path))


def write(path: str | Path, requests: TokenRequests) -> None:
    """Write token requests as native JSONL (session codes become integer labels)."""
    import orjson

    with open(path, "wb") as out:
        for i in range(requests.n_requests):
            record = {"t": float(requests.t[i]), "tenant": requests.tenant_names[requests.tenant[i]]}
            if requests.session[i] >= 0:
                record["session"] = int(requests.session[i])
            record["tokens"] = requests.tokens[requests.token_offsets[i]:requests.token_offsets[i + 1]].tolist()
            if requests.output_tokens[i] >= 0:
                record["output_tokens"] = int(requests.output_tokens[i])
            out.write(orjson.dumps(record) + b"\n")
