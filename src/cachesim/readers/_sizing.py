"""Prompt sizes from the bill (``--sizes observed``): transcripts whose requests say how many tokens they were
billed (Claude Code, Codex) get prompts of exactly that length.

A transcript is a tree (or a list) of events, each adding tokens to later prompts. When a billed request arrives,
the events no earlier request has sized take the difference between its bill and what is sized already, in
proportion to their rendered length; an event keeps the size it was first given, so later prompts still start
with earlier ones, and the cache rules, not the tokenizer, decide the hits.
"""

from __future__ import annotations

import warnings

import numpy as np


class Event:
    """One transcript event in the conversation tree: its parent, the tokens it adds to later prompts, their
    segments, and whether a billed prompt has fixed its size yet (``--sizes observed``)."""

    __slots__ = ("parent", "tokens", "segments", "sized")

    def __init__(self, parent: str | None, tokens: np.ndarray, segments: list, sized: bool = False):
        self.parent, self.tokens, self.segments, self.sized = parent, tokens, segments, sized


def spread(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (equally when they are all 0), largest remainders first, so
    the parts add up to it exactly."""
    if not weights:
        return []
    w = np.asarray(weights, dtype=np.float64)
    w = w if w.sum() > 0 else np.ones_like(w)
    exact = total * w / w.sum()
    parts = np.floor(exact).astype(np.int64)
    short = total - int(parts.sum())
    parts[np.argsort(-(exact - parts), kind="stable")[:short]] += 1
    return parts.tolist()


def resized(event: Event, n_tokens: int, uuid: str) -> None:
    """The event's tokens stretched or cut to ``n_tokens`` (its own ids repeated, so the same text gives the same
    ids), its segments in proportion; an event whose text renders to nothing gets ids of its own."""
    if len(event.tokens):
        event.tokens = np.resize(event.tokens, n_tokens).astype(np.uint32)
    else:
        seed = int.from_bytes(uuid.encode()[:8].ljust(8, b"\0"), "little")
        x = (np.arange(n_tokens, dtype=np.uint64) + np.uint64(seed)) * np.uint64(0x9E3779B97F4A7C15)
        event.tokens = ((x ^ (x >> np.uint64(29))) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    kinds = [kind for kind, _ in event.segments] or ["content"]
    counts = spread(n_tokens, [n for _, n in event.segments] or [1])
    event.segments = [(kind, n) for kind, n in zip(kinds, counts, strict=True) if n]
    event.sized = True


class Sizer:
    """Fits events to bills, and counts the requests it could not fit (reported once, as a note)."""

    def __init__(self):
        self.shorter = 0   # billed fewer tokens than the conversation before them already holds
        self.no_room = 0   # billed more, with no new event to take the difference

    def fit(self, conversation: list[tuple[str, Event]], prefix_tokens: int, billed: int) -> None:
        """Size the events of ``conversation`` ((id, event) in prompt order) that no earlier request has sized, so
        that the prompt, ``prefix_tokens`` of hidden prefix and then these events, is ``billed`` tokens long."""
        new = [(name, event) for name, event in conversation if not event.sized]
        need = billed - prefix_tokens - sum(len(e.tokens) for _, e in conversation if e.sized)
        if need < 0 or (not new and need > 0):
            if need < 0:
                self.shorter += 1
            else:
                self.no_room += 1
            for _, event in new:
                event.sized = True   # keep their text's size, so later requests still share the prefix
            return
        for (name, event), n in zip(new, spread(need, [len(e.tokens) for _, e in new]), strict=True):
            resized(event, n, name)

    def report(self) -> None:
        if self.shorter + self.no_room:
            warnings.warn(f"{self.shorter + self.no_room:,} requests keep their text's size under --sizes observed: "
                          f"{self.shorter:,} were billed fewer tokens than the conversation before them holds "
                          f"(compacted, or thinking dropped), {self.no_room:,} more with no new content to spread "
                          "the difference over", stacklevel=3)
            self.shorter = self.no_room = 0
