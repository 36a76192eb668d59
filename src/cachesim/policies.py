"""Eviction policies: the built-in ones (compiled, with their sources) and a protocol for your own.

Every policy plugs into the one serve step of SEMANTICS §3: only the choice of victim differs. A victim is never
a block the current request uses, and by default only a *leaf* (a block with no cached block inserted under it),
so the cache stays prefix-closed; ``victims="any"`` lifts that and counts the entries it orphans.

Custom policies
---------------
Subclass :class:`Policy` (or write any object with the same methods) and replay with the reference engine::

    class MostRecentlyUsed(cachesim.Policy):
        name = "mru"
        def choose(self, candidates):
            return max(candidates, key=lambda block: block.stamp).key

    cachesim.replay(trace, capacity_blocks=1000, policy=MostRecentlyUsed(), impl="reference")

This is the **slow path**: it runs in the pure-Python reference engine, one Python call per eviction, so it suits
prototyping and property tests (:mod:`cachesim.testing` checks the same invariants as for the built-in
policies), not million-request traces. A policy that proves itself belongs in ``_core.pyx``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cachesim._contract import POLICIES

__all__ = ["BUILTIN_POLICIES", "BlockState", "Policy"]

# name -> (victim rule, source): a view of the registry (cachesim._contract.POLICIES), kept for its users
BUILTIN_POLICIES: dict[str, tuple[str, str]] = {name: (spec.rule, spec.source) for name, spec in POLICIES.items()}


class BlockState(Protocol):
    """What a custom policy may read of a cached block (the reference engine's entry)."""

    key: int                # chained block key
    stamp: int              # global use counter at its last use (higher = more recent)
    freq: int               # requests that used it
    depth: int              # position of its block in the prompt (0 = first block)
    insert_serial: int      # order of insertion (higher = newer)
    owner: int              # tenant code that inserted it
    expires_at: float       # time it expires (inf without a TTL)


@runtime_checkable
class Policy(Protocol):
    """A custom eviction policy for the reference engine (the slow path; see the module docstring).

    ``choose`` gets the blocks that may be evicted now (not used by the current request; leaves unless
    victims="any") and returns the key of the victim, or None to evict nothing (the block then stays uncached).
    The hooks are optional notifications.
    """

    name: str

    def choose(self, candidates: Sequence[BlockState]) -> int | None: ...

    def on_insert(self, block: BlockState) -> None: ...

    def on_use(self, block: BlockState) -> None: ...

    def on_remove(self, block: BlockState) -> None: ...


def describe(policy) -> str:
    """A policy's name: a built-in name, or a custom policy's ``name`` attribute."""
    return policy if isinstance(policy, str) else getattr(policy, "name", type(policy).__name__)
