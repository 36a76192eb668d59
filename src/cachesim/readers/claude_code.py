"""Claude Code session transcripts: JSONL events with ``type``, ``uuid``, ``parentUuid``, ``sessionId``,
``isSidechain``, ``timestamp`` and ``message``.

Each assistant message is one request. Its prompt is the hidden prefix (system prompt and tool definitions,
which the transcript does not contain) followed by the conversation so far: the chain of events from the
assistant message's parent up to the root, rendered and tokenized like API logs. The hidden prefix's size is
estimated once per kind of conversation (main, sub-agent) from the first request's billed usage
(``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` minus the rendered conversation);
its tokens are a fixed synthetic run, the same for every session in the file, as the real prefix would be.

- sub-agent sidechains (``isSidechain``) are their own sessions (``<sessionId>/<root uuid>``);
- a message streamed as several events (same ``message.id``, one content block each) is one request; its
  later events extend the conversation only;
- the model of each message is kept (``Trace.meta["model"]``, codes into ``["model_names"]``), so ``cost`` bills
  each request at its own model's rates;
- the billed usage of each message is kept as observed tokens, from its *last* event: every event repeats the
  prompt's counts, but output tokens grow as the message streams (the first event's are a fraction of them);
  of the cache writes, those with a 1-hour TTL (``usage.cache_creation.ephemeral_1h_input_tokens``) are kept too;
- Claude Code places its own cache markers (``cache_control``) at the end of the system prompt and tools and at
  the end of each request; the transcript does not keep them, so each request gets those two, with the TTL its
  writes show (1 hour where it wrote 1-hour entries, else the session's last, 5 minutes at first), and
  ``extras["explicit_markers"]`` tells ``cost`` that the top-level automatic marker was not used;
- messages Claude Code writes itself (model ``<synthetic>``: "No response requested.", API errors) were never
  sent to the API: they are not requests (their text stays in the conversation);
- a file may still be being written: a cut last line (no newline after it) ends the file with a warning;
- a ``parentUuid`` naming an event the file does not hold (a resumed or compacted session continues a chain
  from another file; a file may also have been cut) ends the chain there, as the start of what this file
  knows: the prompt is the hidden prefix and the events from there on, a sidechain's session is named after
  that parent.
Events of other types carry no prompt text: those with a ``uuid`` (system notes, attachments, progress) are
passed through in the chain, those without (``summary``, ``permission-mode``, ``file-history-snapshot``, titles
and other bookkeeping of newer versions) are skipped; a file may begin with any of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from cachesim.readers._base import Columns, ReadOptions, ReadResult, Row, Source, json_batches, require, token_count
from cachesim.readers._render import Prompt
from cachesim.readers._sizing import Event as _Event
from cachesim.readers._sizing import Sizer
from cachesim.readers.apilog import iso_seconds
from cachesim.requests import TraceError
from cachesim.tokenizers import FingerprintTokenizer, get_tokenizer

NAME = "claude-code"
TIME_FIELD = "timestamp"
_PROMPT_TYPES = ("user", "assistant")


# the bookkeeping lines a transcript may begin with (each has a "type" and no "uuid"), as Claude Code writes them
_BOOKKEEPING_TYPES = frozenset({"summary", "permission-mode", "file-history-snapshot", "custom-title", "ai-title",
                                "agent-name", "last-prompt", "mode", "worktree-state", "pr-link", "cost-state"})
_SYNTHETIC_MODEL = "<synthetic>"


def sniff(first: dict | None, head: bytes) -> bool:
    if first is None:
        return False
    if "sessionId" in first and "type" in first and "uuid" in first:
        return True
    if first.get("type") == "summary":
        return "leafUuid" in first
    # a newer transcript opens with bookkeeping lines: it is one when a request event follows in the head
    return first.get("type") in _BOOKKEEPING_TYPES and any(
        isinstance(obj, dict) and "sessionId" in obj and "uuid" in obj and "parentUuid" in obj
        for obj in _head_records(head))


def _head_records(head: bytes) -> Iterator[object]:
    import orjson

    for raw in head.split(b"\n")[:-1]:   # whole lines only
        if raw.strip():
            try:
                yield orjson.loads(raw)
            except orjson.JSONDecodeError:
                return


def hidden_prefix(kind: str, n_tokens: int) -> np.ndarray:
    """A fixed, deterministic stand-in for the hidden system prompt and tools: the same for every session."""
    seed = 0x9E3779B97F4A7C15 if kind == "main" else 0xC2B2AE3D27D4EB4F
    x = (np.arange(n_tokens, dtype=np.uint64) + np.uint64(seed)) * np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(31)
    return (x & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _usage(message: dict) -> dict:
    usage = message.get("usage")
    if not isinstance(usage, dict):
        return {}
    values = {}
    for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"):
        values[name] = token_count(usage.get(name, 0) or 0, f"message.usage.{name}")
    read, write = values["cache_read_input_tokens"], values["cache_creation_input_tokens"]
    observed = {"observed_input_tokens": values["input_tokens"] + read + write, "observed_cache_read_tokens": read,
                "observed_cache_write_tokens": write, "observed_output_tokens": values["output_tokens"]}
    by_ttl = usage.get("cache_creation")
    if isinstance(by_ttl, dict):   # newer logs split the writes by TTL; older ones are all 5-minute writes
        observed["observed_cache_write_1h_tokens"] = token_count(
            by_ttl.get("ephemeral_1h_input_tokens", 0) or 0, "message.usage.cache_creation.ephemeral_1h_input_tokens")
    return observed


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    observed_sizes = options.sizes == "observed"
    # sized by the bill, the text only says what repeats: a fingerprint does that 300x faster than tokenizing
    tokenizer = FingerprintTokenizer() if observed_sizes and options.tokenizer is None else get_tokenizer(
        options.tokenizer)
    events: dict[str, _Event] = {}            # per event uuid; one entry per event, kept across batches
    roots: dict[str, str] = {}                # uuid -> the root of its chain (for sidechain sessions)
    seen_messages: set[str] = set()
    hidden: dict[str, np.ndarray] = {}        # "main" / "sidechain" -> hidden prefix tokens
    pending: list[tuple[str, Row]] = []       # the message being streamed: its row waits for its last usage
    sizer = Sizer()
    session_ttl: dict[str, float] = {}        # session -> the TTL its markers last asked for (seen in its writes)
    unknown: dict[str, int] = {}              # lines of types this reader does not know, skipped and counted

    def finish() -> list[Row]:
        rows = [row for _, row in pending]
        pending.clear()
        if observed_sizes:
            sizer.report()
        if unknown:
            kinds = ", ".join(f"{kind} ({n:,})" for kind, n in sorted(unknown.items(), key=lambda kv: -kv[1]))
            warnings.warn(f"skipped {sum(unknown.values()):,} lines of types this reader does not know: {kinds}",
                          stacklevel=2)
            unknown.clear()
        return rows

    def chain(parent: str | None) -> list[tuple[str, _Event]]:
        found = []
        while parent is not None and parent in events:
            found.append((parent, events[parent]))
            parent = events[parent].parent
        return found[::-1]

    def parse(obj: dict, line_no: int) -> Row | None:
        kind = obj.get("type")
        uuid = obj.get("uuid")
        if uuid is None:  # summaries and other bookkeeping lines
            if kind not in _BOOKKEEPING_TYPES:
                label = kind if isinstance(kind, str) else "(no type)"
                unknown[label] = unknown.get(label, 0) + 1
            return None
        if not isinstance(uuid, str):
            raise TraceError("expected a string", field="uuid")
        parent = obj.get("parentUuid")
        if parent is not None and not isinstance(parent, str):
            raise TraceError("expected a string or null", field="parentUuid")
        roots[uuid] = roots.get(parent, parent) if parent is not None else uuid
        message = obj.get("message") if kind in _PROMPT_TYPES else None
        if message is None:
            events[uuid] = _Event(parent, np.zeros(0, dtype=np.uint32), [], sized=True)   # adds no tokens
            return None
        if not isinstance(message, dict):
            raise TraceError("expected an object", field="message")
        content = message.get("content")
        if content is None:
            raise TraceError("missing", field="message.content")
        prompt = Prompt(tokenizer)
        prompt.content(str(message.get("role", kind)), content, "message.content")
        events[uuid] = _Event(parent, prompt.tokens(), prompt.segments)
        if kind != "assistant" or message.get("model") == _SYNTHETIC_MODEL:
            return None
        message_id = message.get("id", uuid)
        if not isinstance(message_id, str):
            raise TraceError("expected a string", field="message.id")
        if message_id in seen_messages:  # a streamed continuation: its usage is the message's latest
            if pending and pending[0][0] == message_id:
                observed = _usage(message)
                if observed:
                    pending[0][1].observed = observed
                    pending[0][1].output_tokens = observed["observed_output_tokens"]
            return None
        seen_messages.add(message_id)
        session_id = require(obj, "sessionId", (str,), "a session id")
        t = iso_seconds(require(obj, "timestamp", (str,), "an ISO 8601 time"), "timestamp")
        sidechain = bool(obj.get("isSidechain"))
        conversation = chain(parent)
        observed = _usage(message)
        side = "sidechain" if sidechain else "main"
        billed = observed.get("observed_input_tokens")
        if side not in hidden:
            rendered = sum(len(e.tokens) for _, e in conversation)
            hidden[side] = hidden_prefix(side, max((rendered if billed is None else billed) - rendered, 0))
        prefix = hidden[side]
        if observed_sizes and billed is not None:
            sizer.fit(conversation, len(prefix), billed)
        parts = [e.tokens for _, e in conversation]
        segments = [seg for _, e in conversation for seg in e.segments]
        tokens = np.concatenate([prefix, *parts]) if parts or len(prefix) else prefix
        if not len(tokens):
            raise TraceError("empty request: no conversation before this assistant message", field="parentUuid")
        session = f"{session_id}/{roots[uuid]}" if sidechain else session_id
        model = message.get("model")
        ttl_s = _marker_ttl_s(observed, session_ttl, session)
        marks = [(n, ttl_s) for n in dict.fromkeys((len(prefix), len(tokens))) if n > 0]
        row = Row(t=t, values=tokens, output_tokens=observed.get("observed_output_tokens", -1), session=session,
                  segments=([("hidden", len(prefix))] if len(prefix) else []) + segments, observed=observed,
                  line=line_no, model=model if isinstance(model, str) and model else None, breakpoints=marks)
        done = finish()   # a new message: the one before it has streamed its last event
        pending.append((message_id, row))
        return done

    for result in json_batches(source, options, Columns("tokens"), parse, finish=finish, live_tail=True):
        result.extras["explicit_markers"] = [NAME]   # the harness placed its own markers: no automatic one
        yield result


def _marker_ttl_s(observed: dict, session_ttl: dict[str, float], session: str) -> float:
    """The TTL of a request's cache markers, as its writes show it: 1 hour when it wrote 1-hour entries, 5 minutes
    when it wrote only 5-minute ones, else what the session's markers asked for before (5 minutes at first)."""
    long = observed.get("observed_cache_write_1h_tokens", -1)
    written = observed.get("observed_cache_write_tokens", 0)
    if long > 0:
        session_ttl[session] = 3600.0
    elif long == 0 and written > 0:
        session_ttl[session] = 300.0
    return session_ttl.get(session, 300.0)
