"""Codex CLI rollouts (``~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl``): one JSON line per event,
``{"timestamp": ISO, "type": ..., "payload": {...}}``.

- ``session_meta``: the session (``payload.id``) and, where the file has them, the base instructions
  (``payload.instructions`` or ``payload.base_instructions.text``), the start of every prompt;
- ``turn_context``: the model of the turns that follow (``payload.model``);
- ``response_item``: what the conversation holds — ``message`` (role and text blocks), ``function_call`` /
  ``custom_tool_call`` and their ``*_output``, ``reasoning`` (its summary text; the ``encrypted_content`` is
  opaque and is never tokenized: with ``--sizes observed`` its size is what the bill says);
- ``event_msg`` with ``payload.type == "token_count"``: one model call, billed ``info.last_token_usage``
  (``input_tokens`` with the cached ones inside, ``cached_input_tokens``, ``output_tokens``). Codex writes the same
  count twice at times: a count whose ``total_token_usage`` did not move is not a new call. A count with
  ``info: null`` (a call that was not billed) is no request.

Each call is one request: the base instructions and every response item before the call's own output, as the
Responses API is sent them (Codex re-sends the whole conversation; the previous answer is in the next prompt).
A call's count is written after what it produced (its reasoning, messages and tool calls, and often the tools'
outputs), so the call's prompt ends where the first model output after the previous count begins, and the call is
timed there. The tool definitions are not
in the file: a hidden prefix, estimated from the first call's bill as for Claude Code. With ``--sizes observed``
(the default) each prompt is as long as it was billed (:mod:`cachesim.readers._sizing`). Observed cache reads are
``cached_input_tokens``; writes are ``cache_write_input_tokens`` where a log has them, else 0 (OpenAI bills none).
Other event types (``agent_message``, ``task_started``...) carry no prompt text and are passed over; a file may
still be being written (a cut last line ends it with a note).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cachesim.readers._base import Columns, ReadOptions, ReadResult, Row, Source, json_batches, token_count
from cachesim.readers._render import Prompt, tool_call_text, tool_result_text
from cachesim.readers._sizing import Event, Sizer
from cachesim.readers.apilog import iso_seconds
from cachesim.readers.claude_code import hidden_prefix
from cachesim.requests import TraceError
from cachesim.tokenizers import FingerprintTokenizer, get_tokenizer

NAME = "codex"
TIME_FIELD = "timestamp"
_TYPES = frozenset({"session_meta", "turn_context", "response_item", "event_msg", "compacted"})
# response items the model produces (the rest, messages of the user or system and tool outputs, are its input)
_OUTPUTS = frozenset({"reasoning", "function_call", "custom_tool_call", "local_shell_call", "web_search_call"})


def sniff(first: dict | None, head: bytes) -> bool:
    return first is not None and first.get("type") in _TYPES and isinstance(first.get("payload"), dict)


def _usage(info: dict) -> dict | None:
    last = info.get("last_token_usage")
    if not isinstance(last, dict) or "input_tokens" not in last:
        return None

    def n(name: str) -> int:
        return token_count(last.get(name, 0) or 0, f"payload.info.last_token_usage.{name}")

    return {"observed_input_tokens": n("input_tokens"), "observed_cache_read_tokens": n("cached_input_tokens"),
            "observed_cache_write_tokens": n("cache_write_input_tokens"), "observed_output_tokens": n("output_tokens")}


def _item_prompt(prompt: Prompt, item: dict) -> None:
    kind = item.get("type")
    if kind == "message":
        prompt.content(str(item.get("role", "user")), item.get("content", ""), "payload.content")
    elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
        arguments = item.get("arguments", item.get("input", item.get("action", {})))
        prompt.add("tool_use", "assistant:tool_use", tool_call_text(str(item.get("name", kind)), arguments))
    elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
        output = item.get("output", "")
        if isinstance(output, dict):   # older rollouts: {"content": ..., "metadata": ...}
            output = output.get("content", "")
        prompt.add("tool_result", "user:tool_result", tool_result_text(output, "payload.output"))
    elif kind == "reasoning":
        summary = item.get("summary") or []
        text = "\n".join(s.get("text", "") for s in summary if isinstance(s, dict))
        prompt.add("thinking", "assistant:thinking", text)
    else:   # web search calls and the like: their JSON, as the API echoes them back
        prompt.add(str(kind), f"assistant:{kind}", str(sorted(item.items())))


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    observed_sizes = options.sizes == "observed"
    # sized by the bill, the text only says what repeats: a fingerprint does that 300x faster than tokenizing
    tokenizer = FingerprintTokenizer() if observed_sizes and options.tokenizer is None else get_tokenizer(
        options.tokenizer)
    state = {"session": Path(source.path).name.split(".")[0], "model": None, "total": None, "items": 0,
             "first_output": None, "first_output_t": None}
    events: list[tuple[str, Event]] = []   # the conversation so far, in prompt order
    hidden: list[np.ndarray] = []          # the tool definitions' stand-in, sized from the first bill
    sizer = Sizer()

    def add_event(prompt: Prompt) -> None:
        state["items"] += 1
        events.append((f"{state['session']}#{state['items']}", Event(None, prompt.tokens(), prompt.segments)))

    def parse(obj: dict, line_no: int) -> Row | None:
        kind = obj.get("type")
        payload = obj.get("payload")
        if kind not in _TYPES:
            return None
        if not isinstance(payload, dict):
            raise TraceError("expected an object", field="payload")
        if kind == "session_meta":
            if isinstance(payload.get("id"), str):
                state["session"] = payload["id"]
            base = payload.get("base_instructions")
            text = payload.get("instructions") or (base.get("text") if isinstance(base, dict) else base)
            if isinstance(text, str) and text:
                prompt = Prompt(tokenizer)
                prompt.add("system", "system", text)
                add_event(prompt)
            return None
        if kind == "turn_context":
            if isinstance(payload.get("model"), str):
                state["model"] = payload["model"]
            return None
        if kind == "response_item":
            item_type = payload.get("type")
            is_output = item_type in _OUTPUTS or (item_type == "message" and payload.get("role") == "assistant")
            if is_output and state["first_output"] is None:   # the call being made now starts its output here
                state["first_output"], state["first_output_t"] = len(events), obj.get("timestamp")
            prompt = Prompt(tokenizer)
            _item_prompt(prompt, payload)
            add_event(prompt)
            return None
        if kind != "event_msg" or payload.get("type") != "token_count":
            return None
        info = payload.get("info")
        if info is None:
            return None
        if not isinstance(info, dict):
            raise TraceError("expected an object or null", field="payload.info")
        total = info.get("total_token_usage")
        key = repr(sorted(total.items())) if isinstance(total, dict) else None
        if key is not None and key == state["total"]:
            return None   # the same count written again: not a new call
        state["total"] = key
        observed = _usage(info)
        cut, when = state["first_output"], state["first_output_t"] or obj.get("timestamp")
        state["first_output"] = state["first_output_t"] = None
        if observed is None:
            return None
        if not isinstance(when, str):
            raise TraceError("missing: a token count needs its time", field="timestamp")
        t = iso_seconds(when, "timestamp")
        conversation = events if cut is None else events[:cut]
        billed = observed["observed_input_tokens"]
        if not hidden:
            rendered = sum(len(e.tokens) for _, e in conversation)
            hidden.append(hidden_prefix("main", max(billed - rendered, 0)))
        prefix = hidden[0]
        if observed_sizes:
            sizer.fit(conversation, len(prefix), billed)
        parts = [e.tokens for _, e in conversation]
        tokens = np.concatenate([prefix, *parts]) if parts or len(prefix) else prefix
        if not len(tokens):
            raise TraceError("empty request: nothing in the conversation before this call", field="payload.info")
        segments = ([("hidden", len(prefix))] if len(prefix) else []) + [seg for _, e in conversation
                                                                         for seg in e.segments]
        return Row(t=t, values=tokens, output_tokens=observed["observed_output_tokens"], session=state["session"],
                   segments=segments, observed=observed, model=state["model"])

    def finish() -> list[Row]:
        if observed_sizes:
            sizer.report()
        return []

    return json_batches(source, options, Columns("tokens"), parse, finish=finish, live_tail=True)
