"""Eviction policies: the built-in ones (compiled, with their sources) and a protocol for your own.

Every policy plugs into the one serve step of SEMANTICS §3: only the choice of victim differs. A victim is never
a block the current request uses, and by default only a *leaf* (a block with no cached block inserted under it),
so the cache stays prefix-closed; ``victims="any"`` lifts that and counts the entries it orphans.

Custom policies
---------------
Two ways to write one.

:class:`HookPolicy` keeps its own order through notifications and names a victim when asked; both engines run it,
the compiled core at about a million blocks a second for a policy with O(1) bookkeeping (its hooks are direct
Python calls from the serve loop; no scan of the cache)::

    class PythonLru(cachesim.HookPolicy):
        name = "python-lru"
        def __init__(self):
            self.order = collections.OrderedDict()     # least recently used first
        def used(self, key, inserted_now):              # every block a request uses, deepest first
            self.order[key] = None
            self.order.move_to_end(key)
        def removed(self, key, evicted):
            del self.order[key]
        def victim(self, is_candidate):                 # is_candidate(key): not used by this request, a leaf
            return next((key for key in self.order if is_candidate(key)), None)

    cachesim.replay(trace, capacity_blocks=1000, policy=PythonLru())

:class:`Policy` sees every candidate's state at each eviction: simpler to write, and the **slow path** — the
reference engine only (``impl="reference"``), one scan of the cache per eviction::

    class MostRecentlyUsed(cachesim.Policy):
        name = "mru"
        def choose(self, candidates):
            return max(candidates, key=lambda block: block.stamp).key

    cachesim.replay(trace, capacity_blocks=1000, policy=MostRecentlyUsed(), impl="reference")

It suits prototyping and property tests (:mod:`cachesim.testing` checks the same invariants as for the built-in
policies), not million-request traces. A policy that proves itself belongs in ``_core.pyx``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cachesim._contract import POLICIES, is_policy_plugin

__all__ = ["BUILTIN_POLICIES", "BlockState", "HookPolicy", "Policy"]

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


class HookPolicy:
    """A custom eviction policy that keeps its own bookkeeping (see the module docstring); both engines run it.

    Blocks are named by their chained key (an int). The engine calls, in the order the compiled core and the
    reference both follow (SEMANTICS §3):

    - ``inserted(key, depth)`` — a missed block is cached (depth: its position in the prompt, 0 = first);
    - ``used(key, inserted_now)`` — at the end of each request, for every block it hit or inserted, deepest first
      (``inserted_now``: this request inserted it);
    - ``victim(is_candidate)`` — the cache is full and a block must go: return the key of a block for which
      ``is_candidate(key)`` is true (cached, not used by this request, and a leaf unless victims="any"), or None
      to leave the new block uncached. Returning any other key stops the replay with a PolicyError;
    - ``removed(key, evicted)`` — a block leaves (``evicted``: for capacity, else it expired);
    - ``gained_child(key)`` / ``became_leaf(key)`` — with leaf victims, a cached block gets its first cached
      child (it may not be evicted while it has one) or loses its last one.

    Every hook but ``victim`` is optional. An exception in a hook stops the replay at that request with a
    PolicyError whose cause it is (the results of the requests before it are in ``.partial``).

    The object you configure is a template: each cache works on its own ``copy.deepcopy`` of it, so the one you
    passed stays as it was. To read a policy's state after a replay, replay with a :class:`cachesim.Simulator`
    and look at ``simulator.policy``.
    """

    name = "custom"

    def inserted(self, key: int, depth: int) -> None:
        pass

    def used(self, key: int, inserted_now: bool) -> None:
        pass

    def removed(self, key: int, evicted: bool) -> None:
        pass

    def gained_child(self, key: int) -> None:
        pass

    def became_leaf(self, key: int) -> None:
        pass

    def victim(self, is_candidate) -> int | None:
        raise NotImplementedError(f"{type(self).__name__}.victim(is_candidate) chooses the block to evict")


def describe(policy) -> str:
    """A policy's name: a built-in name, or a custom policy's ``name`` attribute."""
    return policy if isinstance(policy, str) else getattr(policy, "name", type(policy).__name__)


def heading(policy) -> str:
    """A policy as a report's heading names it: a built-in in capitals (LRU, S3FIFO:...), anything else (a file
    of your own, a custom policy's name) as written."""
    text = describe(policy)
    return text if is_policy_plugin(text) or not isinstance(policy, str) else text.upper()
