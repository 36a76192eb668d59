"""kv-cache-tester agentic coding traces (Claude Code sessions with sub-agents, 64-token blocks), one trace a line.

Defined by callanjfox/kv-cache-tester (``docs/trace_replay_tester.md``, ``trace_replay_tester.py``): each trace
is one JSON object, its requests in order, a sub-agent a marker with its own nested requests::

    {"id": "trace_0026", "models": [...], "block_size": 64, "hash_id_scope": "local", "tool_tokens": 11899,
     "system_tokens": 2765, "requests": [
        {"t": 0.0, "type": "n", "model": "...", "in": 15291, "out": 2282, "hash_ids": [1, 2, ...], ...},
        {"t": 134.2, "type": "subagent", "agent_id": "agent_001", "requests": [{"t": 0.0, "type": "s", ...}]}]}

The upstream files hold one trace each, on one line; a file of several is those lines one after another.

- ``t`` is seconds from the conversation's start (every trace starts at 0 s, so the traces of one file replay
  side by side, as the tester's users do); a sub-agent's requests count from its marker's ``t``.
- ``hash_ids`` are one per *full* block: ``len == floor(in / block_size)`` (so on all 49,334 requests of the
  upstream traces). The partial last block has no id: it gets one of its own that no other block has, so its
  tokens are always a miss, as a block no id describes must be. A row that gives the partial block an id too
  (``ceil``) is read as given; any other count is refused, or read by its ids with ``ReadOptions.lengths =
  "from-ids"``.
- ``hash_id_scope: "local"`` (the default, and every upstream trace) numbers ids within one trace: id 7 of one
  trace is not id 7 of the next, so each trace's ids are kept apart (its scope number in the high bits).
  ``"global"`` ids are shared across the traces of a file, sub-agents included.
- a trace is a session (its ``id``); a sub-agent is a session of its own (``<id>/<agent_id>``); one tenant.
- a record that cannot be read is one trace; ``--skip-invalid`` skips (and counts) it whole.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cachesim.readers._base import (
    Columns,
    ReadOptions,
    ReadResult,
    Row,
    Source,
    check_block_count,
    count,
    json_batches,
    label,
    require,
    seconds,
)
from cachesim.requests import TraceError

NAME = "kv-cache-tester"
TIME_FIELD = "t"
SCOPES = ("local", "global")
ID_BITS = 40                   # an id keeps its low 40 bits; a local trace's scope number goes above them
MAX_SCOPES = 1 << 23           # so that no scoped id reaches bit 63, which the partial-block ids have
TAIL_ID = np.uint64(1 << 63)   # partial last blocks: 2^63 + a running number, never an id of the trace


def sniff(first: dict | None, head: bytes) -> bool:
    return (first is not None and isinstance(first.get("requests"), list) and "block_size" in first
            and "id" in first and "models" in first)


class _Reader:
    """State kept across the traces of one stream: the block size, scope numbers, the partial-block counter."""

    def __init__(self, options: ReadOptions, columns: Columns):
        self.options, self.columns = options, columns
        self.local_scopes = 0
        self.tails = 0

    def trace(self, obj: dict) -> list[Row]:
        """Every request of one trace (its sub-agents' included), or a TraceError naming the field."""
        trace_id = label(obj, "id")
        if trace_id is None:
            raise TraceError("missing", field="id")
        size = count(obj, "block_size", positive=True)
        if self.columns.block_size is not None and size != self.columns.block_size:
            raise TraceError(f"{size} differs from earlier traces' {self.columns.block_size} (a file has one block "
                             "size)", field="block_size")
        if self.options.block_size is not None and size != self.options.block_size:
            raise TraceError(f"this trace's blocks are {size} tokens; a block size of {self.options.block_size} "
                             "needs token ids", field="block_size")
        scope = obj.get("hash_id_scope", "local")
        if scope not in SCOPES:
            raise TraceError(f"expected one of {', '.join(SCOPES)}, got {str(scope)[:40]!r}", field="hash_id_scope")
        if scope == "local" and self.local_scopes + 1 >= MAX_SCOPES:
            raise TraceError(f"more than {MAX_SCOPES - 1:,} traces with local ids in one file", field="id")
        code = self.local_scopes + 1 if scope == "local" else 0
        read: list[tuple[Row, int]] = []
        self._requests(require(obj, "requests", (list,), "a list of requests"), "requests", 0.0, str(trace_id),
                       size, code, read)
        self.columns.block_size = size
        self.local_scopes += scope == "local"
        self.options.count_lengths(len(read), sum(row.prompt_tokens < given for row, given in read),
                                   sum(row.prompt_tokens > given for row, given in read))
        return [row for row, _ in read]

    def _requests(self, items: list, where: str, base: float, session: str, size: int, code: int,
                  read: list[tuple[Row, int]]) -> None:
        """The requests of ``items`` (the list at field ``where``) into ``read``, with the length each gives."""
        for i, item in enumerate(items):
            at = f"{where}[{i}]"
            try:
                if not isinstance(item, dict):
                    raise TraceError("expected an object")
                if item.get("type") != "subagent":
                    read.append(self._request(item, base, session, size, code))
                    continue
                agent = label(item, "agent_id")
                if agent is None:
                    raise TraceError("missing", field="agent_id")
                start = base + seconds(require(item, "t", (int, float), "seconds"), "t")
                nested = require(item, "requests", (list,), "a list of requests")
            except TraceError as exc:
                raise TraceError(exc.message, field=f"{at}.{exc.field}" if exc.field else at) from None
            self._requests(nested, f"{at}.requests", start, f"{session}/{agent}", size, code, read)

    def _request(self, item: dict, base: float, session: str, size: int, code: int) -> tuple[Row, int]:
        if item.get("type") not in ("n", "s"):
            raise TraceError(f"expected \"n\", \"s\" or \"subagent\", got {str(item.get('type'))[:40]!r}",
                             field="type")
        t = base + seconds(require(item, "t", (int, float), "seconds"), "t")
        given = count(item, "in", positive=True)
        output = count(item, "out", required=False)
        ids = np.asarray(_ids(require(item, "hash_ids", (list,), "a list of integers")), dtype=np.uint64)
        if code:
            ids |= np.uint64(code << ID_BITS)
        full, partial = divmod(given, size)
        prompt = given
        if len(ids) == full and partial:   # the format's own count: the partial last block has no id
            ids = np.append(ids, TAIL_ID + np.uint64(self.tails))
            self.tails += 1
        elif len(ids) != full and len(ids) != full + bool(partial):
            if self.options.lengths != "from-ids":
                raise TraceError(f"{len(ids)} block ids for {given} tokens; kv-cache-tester traces have one per "
                                 f"full block of {size}: floor({given}/{size}) = {full} (--lengths from-ids reads "
                                 "such rows by their ids)", field="hash_ids")
            prompt = check_block_count(len(ids), given, size, "hash_ids", "from-ids")
        return Row(t=t, values=ids, prompt_tokens=prompt, output_tokens=output, session=session), given


def _ids(values: list) -> list[int]:
    limit = (1 << ID_BITS) - 1
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit:
            raise TraceError(f"element {i} = {str(v)[:40]} is not an id in 0..{limit:,}", field="hash_ids")
    return values


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    """Bounded batches of a JSONL of traces: each record is one whole trace, read by _Reader.trace."""
    columns = Columns("blocks", None)
    reader = _Reader(options, columns)
    return json_batches(source, options, columns, lambda obj, _line: reader.trace(obj))
