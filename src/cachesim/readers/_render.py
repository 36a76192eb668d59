"""Rendering LLM request content into segments of tokens, for formats that carry text (API logs, transcripts).

Every piece of a prompt (the tool list, a system block, each message content block) becomes one *segment*: a
short role header and its text, tokenized on its own so segment boundaries are token boundaries and equal
segments give equal tokens wherever they appear. Structured parts (tool definitions, tool calls) are rendered
as canonical JSON (sorted keys), so the same definition always renders the same way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import orjson
import xxhash

from cachesim.requests import TraceError
from cachesim.tokenizers import Tokenizer

TTL_S = {"5m": 300.0, "1h": 3600.0}
_RESULT_ROLE = {"tool_result": "user", "tool_use": "assistant"}  # whichever message carries them
DEFAULT_TTL_S = 300.0


def canonical(value) -> str:
    """Canonical JSON text of a structured value, without cache markers (they are not prompt text)."""
    return orjson.dumps(_strip_cache_control(value), option=orjson.OPT_SORT_KEYS).decode()


def _strip_cache_control(value):
    if isinstance(value, dict):
        return {k: _strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_cache_control(v) for v in value]
    return value


def cache_ttl_s(block) -> float | None:
    """The TTL of a block's ``cache_control`` marker (seconds), or None when it has none."""
    if not isinstance(block, dict) or not block.get("cache_control"):
        return None
    marker = block["cache_control"]
    if not isinstance(marker, dict):
        raise TraceError(f"expected an object such as {{\"type\": \"ephemeral\"}}, got {str(marker)[:40]!r}",
                         field="cache_control")
    ttl = marker.get("ttl")
    return DEFAULT_TTL_S if ttl is None else ttl_seconds(ttl, "cache_control.ttl")


def ttl_seconds(ttl, where: str) -> float:
    """A cache marker's ttl ("5m" or "1h") in seconds."""
    if not isinstance(ttl, str) or ttl not in TTL_S:
        raise TraceError(f"unknown ttl {str(ttl)[:40]!r}; expected one of {', '.join(TTL_S)}", field=where)
    return TTL_S[ttl]


def block_text(block, where: str) -> tuple[str, str]:
    """(kind, text) of one content block (a string, or a typed block of any of the supported APIs)."""
    if isinstance(block, str):
        return "text", block
    if not isinstance(block, dict):
        raise TraceError(f"expected a string or a content block object, got {type(block).__name__}", field=where)
    kind = block.get("type", "text")
    if not isinstance(kind, str):
        raise TraceError(f"expected a block type such as \"text\", got {type(kind).__name__} {str(kind)[:40]}",
                         field=f"{where}.type")
    if kind in ("text", "input_text", "output_text"):
        text = block.get("text")
        if not isinstance(text, str):
            raise TraceError("a text block needs a string text", field=f"{where}.text")
        return "text", text
    if kind == "tool_use":
        return "tool_use", tool_call_text(block.get("name", ""), block.get("input", {}))
    if kind == "tool_result":
        return "tool_result", tool_result_text(block.get("content", ""), f"{where}.content")
    if kind in ("thinking", "redacted_thinking"):
        return "thinking", block.get("thinking") or block.get("data") or ""
    if kind in ("image", "image_url", "input_image", "document", "input_file"):
        # the media itself is not text: a stable stand-in so identical media give identical tokens
        digest = xxhash.xxh64_hexdigest(canonical(block).encode())
        return "media", f"[{kind} {digest}]"
    return kind, canonical(block)


def tool_result_text(content, where: str) -> str:
    """A tool result's text: a string, or a list of content blocks (every API's form)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise TraceError(f"expected a string or a list of content blocks, got {type(content).__name__}",
                         field=where)
    return "\n".join(block_text(c, f"{where}[{j}]")[1] for j, c in enumerate(content))


def tool_call_text(name: str, arguments) -> str:
    """A tool call the same whichever API sent it (arguments as an object, or as a JSON string)."""
    if isinstance(arguments, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            arguments = orjson.loads(arguments)
    return f"{name} {canonical(arguments)}"


def tool_definition_text(tool) -> str:
    """A tool definition the same whichever API sent it: name, description and parameter schema."""
    if not isinstance(tool, dict):
        raise TraceError(f"expected a tool definition object, got {type(tool).__name__}", field="tools")
    spec = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    return canonical({"name": spec.get("name"), "description": spec.get("description"),
                      "parameters": spec.get("parameters", spec.get("input_schema"))})


@dataclass
class Prompt:
    """A prompt being assembled: tokens, segments and cache breakpoints."""

    tokenizer: Tokenizer
    parts: list[np.ndarray] = field(default_factory=list)
    segments: list[tuple[str, int]] = field(default_factory=list)
    breakpoints: list[tuple[int, float]] = field(default_factory=list)
    n_tokens: int = 0

    def add(self, kind: str, header: str, text: str, ttl_s: float | None = None) -> None:
        tokens = self.tokenizer.encode(f"<|{header}|>\n{text}")
        self.add_tokens(kind, tokens, ttl_s)

    def add_tokens(self, kind: str, tokens: np.ndarray, ttl_s: float | None = None) -> None:
        self.parts.append(tokens)
        self.segments.append((kind, len(tokens)))
        self.n_tokens += len(tokens)
        if ttl_s is not None:
            self.breakpoints.append((self.n_tokens, ttl_s))

    def content(self, role: str, content, where: str) -> None:
        """A message's content: a string, or a list of blocks (one segment each)."""
        if isinstance(content, str):
            self.add(role, role, content)
            return
        if not isinstance(content, list):
            raise TraceError(f"expected a string or a list of content blocks, got {type(content).__name__}",
                             field=where)
        for j, block in enumerate(content):
            kind, text = block_text(block, f"{where}[{j}]")
            if kind == "text":
                self.add(role, role, text, cache_ttl_s(block))
            else:
                self.add(kind, f"{_RESULT_ROLE.get(kind, role)}:{kind}", text, cache_ttl_s(block))

    def tokens(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=np.uint32)
