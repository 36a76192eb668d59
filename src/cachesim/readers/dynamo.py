"""NVIDIA Dynamo's Mooncake-style request traces with sessions (``python -m dynamo.replay``, format ``mooncake``).

Defined by ai-dynamo/dynamo (``lib/mocker/src/loadgen/trace.rs``, ``Trace::from_mooncake``, and
``docs/benchmarks/mocker-trace-replay.md``): Mooncake's rows, plus multi-turn sessions::

    {"session_id": "s-a", "timestamp": 1000, "input_length": 700, "output_length": 40, "hash_ids": [0, 1]}
    {"session_id": "s-a", "delay": 250, "input_length": 900, "output_length": 12, "hash_ids": [0, 1, 2]}

- every row is one request and describes its whole prompt (``hash_ids`` at the trace's block size, which the
  file does not say: ``--block-size``, dynamo.replay's ``--trace-block-size``);
- ``timestamp`` (or ``created_time``) is milliseconds; rows of one ``session_id`` are its turns in file order.
  A session's first turn arrives at its timestamp (0 without one) and may not have a delay; a later turn
  arrives ``delay`` (or ``delay_ms``) ms after the turn before it, or, without one, its timestamp minus the
  last timestamp the session gave, or with neither, with the turn before it. dynamo.replay waits that delay
  after the previous turn *completes*; cachesim has no service times, so it counts from the previous arrival.
- ``input_length`` (or ``input_tokens``) absent is the ids' full blocks, as in dynamo.replay; present, it must
  match the ids (``ceil(input_length / block size)``), or ``ReadOptions.lengths = "from-ids"`` reads the row
  by its ids. (dynamo.replay cuts a longer input_length to the ids, as from-ids does, and drops ids beyond
  input_length, which from-ids keeps.)
- ``output_length`` (or ``output_tokens``); the session is ``session_id``, else none; one tenant.
- rows of Dynamo's agentic format (``wait_for``: dependencies released on completion) are refused, since
  cachesim does not model when a request completes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from cachesim.readers import mooncake
from cachesim.readers._base import (
    Columns,
    ReadOptions,
    ReadResult,
    Row,
    Source,
    count,
    int_list,
    json_batches,
    label,
    seconds,
)
from cachesim.requests import TraceError

NAME = "dynamo"
TIME_FIELD = "timestamp"
_SESSION_KEYS = ("session_id", "delay", "delay_ms", "created_time", "input_tokens", "output_tokens", "wait_for")


def sniff(first: dict | None, head: bytes) -> bool:
    # what Mooncake's own rows never have; a string timestamp is LMBench's, chat_id Qwen's
    return (first is not None and "hash_ids" in first and any(k in first for k in _SESSION_KEYS)
            and not isinstance(first.get("timestamp"), str) and "chat_id" not in first)


def _either(obj: dict, names: tuple[str, str]):
    """(the name, the value) of whichever of two aliases the row gives; both is ambiguous."""
    given = [n for n in names if obj.get(n) is not None]
    if len(given) > 1:
        raise TraceError(f"both {names[0]} and {names[1]} are given; give one", field=names[1])
    return (given[0], obj[given[0]]) if given else (names[0], None)


def _milliseconds(obj: dict, names: tuple[str, str]) -> float | None:
    """A time or delay in ms as seconds, or None when the row has none; finite and non-negative."""
    name, value = _either(obj, names)
    return None if value is None else seconds(value, name, 1000.0)


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    if options.block_size is None:
        raise TraceError("Dynamo traces do not say their block size (dynamo.replay takes it as --trace-block-size); "
                         "give it with --block-size", field="block_size", file=source.path)
    block_size = options.block_size
    # per session: (arrival of its last turn, the last timestamp it gave or None), one entry per session
    sessions: dict = {}

    def parse(obj: dict, line_no: int) -> Row:
        if obj.get("wait_for"):
            raise TraceError("Dynamo's agentic rows start when the requests they wait for complete; cachesim does "
                             "not model completion times, so it cannot place them", field="wait_for")
        session = label(obj, "session_id")
        timestamp = _milliseconds(obj, ("timestamp", "created_time"))
        delay = _milliseconds(obj, ("delay", "delay_ms"))
        ids = int_list(obj, "hash_ids", 2**64 - 1)
        name, length = _either(obj, ("input_length", "input_tokens"))
        output = count(obj, _either(obj, ("output_length", "output_tokens"))[0], required=False)
        previous = sessions.get(session) if session is not None else None   # a row without one is its own
        if previous is None:
            if delay:
                raise TraceError("a session's first turn has no turn before it to wait for", field="delay")
            t = timestamp or 0.0
        else:
            arrived, last_stamp = previous
            if delay is not None:
                t = arrived + delay
            elif timestamp is not None:
                if last_stamp is None:
                    raise TraceError(f"cannot tell this turn's delay: session {session!r} gave no timestamp "
                                     "before it", field="timestamp")
                if timestamp < last_stamp:
                    raise TraceError(f"{timestamp * 1000:g} ms is before this session's previous timestamp, "
                                     f"{last_stamp * 1000:g} ms", field="timestamp")
                t = arrived + (timestamp - last_stamp)
            else:
                t = arrived
        if not math.isfinite(t):
            raise TraceError(f"the turn's arrival, {t!r} s, is not finite", field="delay")
        if length is None:
            if not ids:
                raise TraceError("no block ids and no input_length: an empty request", field="hash_ids")
            prompt = len(ids) * block_size
            options.count_lengths(1)
        else:
            prompt = mooncake.block_prompt(ids, count(obj, name, positive=True), block_size, options)
        if session is not None:
            sessions[session] = (t, timestamp if timestamp is not None else (previous[1] if previous else None))
        return Row(t=t, values=ids, prompt_tokens=prompt, output_tokens=output, session=session)

    return json_batches(source, options, Columns("blocks", block_size), parse)
