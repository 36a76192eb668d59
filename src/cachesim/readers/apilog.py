"""API request logs: JSONL of OpenAI Chat Completions / Responses or Anthropic Messages request bodies.

A line is a request body, or a wrapper ``{"t": 12.5, "request": {...}, "response": {"usage": {...}}}``
(``usage`` may also sit at the top level). The prompt is rendered in cache order (tools, system, messages;
see :mod:`cachesim.readers._render`) and tokenized (``--tokenizer``; the built-in one by default).

- ``cache_control`` markers become breakpoints at the end of their block, with their TTL (5m default, 1h);
- the tenant is ``user`` (OpenAI) or ``metadata.user_id`` (Anthropic), else ``default``; the session is
  ``prompt_cache_key``, else ``metadata.session_id``;
- the response usage is kept as observed tokens: prompt total, cache reads (``cached_tokens``,
  ``cache_read_input_tokens``), cache writes (``cache_creation_input_tokens``) and output.
- time: ``t`` (seconds), ``timestamp`` (seconds or ISO 8601) or ``created``/``created_at`` (epoch seconds);
  a record without one takes the previous record's time, so file order is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from cachesim.readers._base import (
    Columns,
    ReadOptions,
    ReadResult,
    Row,
    Source,
    json_batches,
    label,
    seconds,
    token_count,
)
from cachesim.readers._render import (
    Prompt,
    cache_ttl_s,
    canonical,
    tool_call_text,
    tool_definition_text,
    tool_result_text,
)
from cachesim.requests import TraceError
from cachesim.tokenizers import get_tokenizer

NAME = "apilog"
TIME_FIELD = "t"


def _body(obj: dict) -> dict:
    return obj["request"] if isinstance(obj.get("request"), dict) else obj


def sniff(first: dict | None, head: bytes) -> bool:
    if first is None:
        return False
    body = _body(first)
    return isinstance(body, dict) and ("messages" in body or "input" in body) and "model" in body


def iso_seconds(text: str, name: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise TraceError(f"expected seconds or an ISO 8601 time, got {text[:40]!r}", field=name) from None


def _time(obj: dict, previous: float) -> float:
    for name in ("t", "timestamp", "created", "created_at"):
        if name in obj:
            value = obj[name]
            return iso_seconds(value, name) if isinstance(value, str) else seconds(value, name)
    return previous


def _observed(obj: dict) -> dict:
    usage = obj.get("usage")
    response = obj.get("response")
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if not isinstance(usage, dict):
        return {}

    def n(*path) -> int:
        value = usage
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return 0
        return token_count(value, "usage." + ".".join(path))

    if "cache_read_input_tokens" in usage or "cache_creation_input_tokens" in usage:  # Anthropic
        read, write = n("cache_read_input_tokens"), n("cache_creation_input_tokens")
        return {"observed_input_tokens": n("input_tokens") + read + write, "observed_cache_read_tokens": read,
                "observed_cache_write_tokens": write, "observed_output_tokens": n("output_tokens")}
    if "prompt_tokens" in usage:  # Chat Completions
        return {"observed_input_tokens": n("prompt_tokens"),
                "observed_cache_read_tokens": n("prompt_tokens_details", "cached_tokens"),
                "observed_output_tokens": n("completion_tokens")}
    return {"observed_input_tokens": n("input_tokens"),  # Responses, or Anthropic without cache fields
            "observed_cache_read_tokens": n("input_tokens_details", "cached_tokens"),
            "observed_output_tokens": n("output_tokens")}


def render(body: dict, prompt: Prompt) -> None:
    """Tools, system, then messages (or Responses ``input`` items), one segment per block."""
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise TraceError("expected a list of tool definitions", field="tools")
    for tool in tools:
        prompt.add("tools", "tool", tool_definition_text(tool), cache_ttl_s(tool))
    system = body.get("system", body.get("instructions"))
    if system is not None:
        prompt.content("system", system, "system")
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise TraceError("expected a non-empty list of messages", field="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message:
                raise TraceError("expected a message object with a role", field=f"messages[{i}]")
            _message(message, prompt, f"messages[{i}]")
        return
    items = body["input"]
    if isinstance(items, str):
        prompt.add("user", "user", items)
        return
    if not isinstance(items, list) or not items:
        raise TraceError("expected a string or a non-empty list of input items", field="input")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise TraceError("expected an input item object", field=f"input[{i}]")
        if "role" in item:
            _message(item, prompt, f"input[{i}]")
        elif item.get("type") == "function_call_output":
            prompt.add("tool_result", "user:tool_result", str(item.get("output", "")))
        elif item.get("type") == "function_call":
            prompt.add("tool_use", "assistant:tool_use", tool_call_text(item.get("name", ""), item.get("arguments")))
        else:
            prompt.add(str(item.get("type", "item")), str(item.get("type", "item")), canonical(item))


def _message(message: dict, prompt: Prompt, where: str) -> None:
    role = str(message["role"])
    content = message.get("content")
    if role == "tool":  # a Chat Completions tool result: rendered as every API's tool result is
        prompt.add("tool_result", "user:tool_result", tool_result_text(content, f"{where}.content"))
        return
    if role == "developer":
        role = "system"
    if content:
        prompt.content(role, content, f"{where}.content")
    calls = message.get("tool_calls") or []   # Chat Completions assistant tool calls
    if not isinstance(calls, list):
        raise TraceError(f"expected a list of tool calls, got {type(calls).__name__}", field=f"{where}.tool_calls")
    for j, call in enumerate(calls):
        # {"function": {"name", "arguments"}}, or a custom tool's {"custom": {"name", "input"}}
        function = call.get("function", call.get("custom", {})) if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise TraceError("expected a tool call object with a function object", field=f"{where}.tool_calls[{j}]")
        prompt.add("tool_use", "assistant:tool_use",
                   tool_call_text(function.get("name", ""), function.get("arguments", function.get("input"))))


def _labels(body: dict, obj: dict) -> tuple[object, object]:
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    tenant = body.get("user") if body.get("user") is not None else metadata.get("user_id", "default")
    session = body.get("prompt_cache_key", metadata.get("session_id"))
    for name, value in (("user", tenant), ("prompt_cache_key", session)):
        label({name: value}, name)
    return tenant, session


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    tokenizer = get_tokenizer(options.tokenizer)
    state = {"t": 0.0}

    def parse(obj: dict, line_no: int) -> Row:
        body = _body(obj)
        if "messages" not in body and "input" not in body:
            raise TraceError("missing: a request body needs messages (Chat Completions, Messages) or input "
                             "(Responses)", field="messages")
        t = _time(obj, state["t"])
        prompt = Prompt(tokenizer)
        render(body, prompt)
        tokens = prompt.tokens()
        if not len(tokens):
            raise TraceError("empty request: the prompt renders to no tokens", field="messages")
        observed = _observed(obj)
        tenant, session = _labels(body, obj)
        state["t"] = t
        return Row(t=t, values=tokens, output_tokens=observed.get("observed_output_tokens", -1), tenant=tenant,
                   session=session, breakpoints=prompt.breakpoints, segments=prompt.segments, observed=observed)

    return json_batches(source, options, Columns("tokens"), parse)
