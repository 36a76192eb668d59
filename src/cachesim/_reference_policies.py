"""The reference engine's built-in policies: each one's victim rule and bookkeeping, in plain Python.

Every policy plugs into the one serve step of SEMANTICS §3 through the same hooks, which the reference engine
calls at the same points as the compiled core calls its own:

- ``before_insert(key, full)`` — ``key`` missed and is about to be inserted; ``full``: the cache is at capacity,
  so a victim is chosen next (S3-FIFO looks the key up in its ghost here, before an eviction can push it out);
- ``inserted(entry, full)`` — the entry is cached now (unstamped);
- ``used(entry, inserted_now)`` — the request is stamped, deepest block first;
- ``victim(candidate, used)`` — the key to evict (``candidate(key)``: not in ``used``, the keys this request uses,
  and a leaf unless victims="any"), or None;
- ``removed(entry, evicted)`` — the entry leaves (a capacity eviction, or an expiry);
- ``gained_child(entry)`` / ``became_leaf(entry)`` — with leaf victims, an entry gets its first cached child or
  loses its last one.

The queue policies (SIEVE, S3-FIFO, CLOCK, SLRU, ARC, 2Q) keep only leaves in their queues: an entry that gets a child
leaves its queue ("parked", keeping its marks and its queue's membership) and re-enters it at the eviction end when its
last child goes, so it is the next to be looked at unless it is used again. Without that a queue would rotate
past the same interior blocks at every eviction (the slowdown of a long prefix cache, SEMANTICS §4).
"""

from __future__ import annotations

import math
from collections import OrderedDict

INF = math.inf


class _Policy:
    queued = False   # keeps leaves in queues (parks interior entries)

    def __init__(self, engine, params: dict):
        self.engine = engine
        self.params = params

    def before_insert(self, key: int, full: bool) -> None:
        pass

    def inserted(self, entry, full: bool) -> None:
        pass

    def used(self, entry, inserted_now: bool) -> None:
        pass

    def removed(self, entry, evicted: bool) -> None:
        pass

    def gained_child(self, entry) -> None:
        pass

    def became_leaf(self, entry) -> None:
        pass


class Scored(_Policy):
    """The candidate with the smallest score goes first (fifo, lfu, two-class, priority, belady)."""

    SCORES = {
        "fifo": lambda e: (e.insert_serial,),
        "lfu": lambda e: (e.freq, e.stamp),
        "two-class": lambda e: (e.freq >= 2, e.stamp),       # probation (used once) before protected, each LRU
        "priority": lambda e: (e.freq, -e.depth, e.stamp),   # rarely shared first, then deep blocks, then old
        "belady": lambda e: (-e.next_use, e.stamp),          # farthest next use first; never again = infinity
    }

    def __init__(self, engine, params, name):
        super().__init__(engine, params)
        self.score = self.SCORES[name]

    def victim(self, candidate, used):
        entries = self.engine.entries
        for key in sorted(entries, key=lambda k: self.score(entries[k])):
            if candidate(key):
                return key
        return None


class Lru(_Policy):
    def victim(self, candidate, used):
        # the least recently stamped entry not in use (under LRU the oldest is always a leaf: no need to ask)
        return next((k for k in self.engine.entries if k not in used), None)


class _Queued(_Policy):
    """Queues of leaves, oldest (the eviction end) first."""

    queued = True

    def __init__(self, engine, params, n_queues=1):
        super().__init__(engine, params)
        self.queues: list[list[int]] = [[] for _ in range(n_queues)]
        self.members = [0] * n_queues   # listed and parked entries of each queue

    def _enqueue(self, entry, q: int) -> None:
        entry.queue = q
        entry.listed = True
        self.queues[q].append(entry.key)
        self.members[q] += 1

    def removed(self, entry, evicted):
        self.members[entry.queue] -= 1
        if entry.listed:
            self._unlist(entry)

    def _unlist(self, entry) -> None:
        self.queues[entry.queue].remove(entry.key)
        entry.listed = False

    def gained_child(self, entry):
        if entry.listed:
            self._unlist(entry)

    def _take(self, q: int, candidate) -> int | None:
        """The first candidate from queue q's tail, else from the other one's (two queues); a tail that is not a
        candidate goes to its queue's head."""
        for queue in (self.queues[q], self.queues[1 - q]):
            for _ in range(len(queue)):
                if candidate(queue[0]):
                    return queue[0]
                queue.append(queue.pop(0))
        return None

    def became_leaf(self, entry):
        if not entry.listed:
            self.queues[entry.queue].insert(0, entry.key)
            entry.listed = True


class Sieve(_Queued):
    """A hand walks from the oldest insertion towards the newest, clearing "visited" marks, and stops at the
    first unmarked candidate; entries that are not candidates are passed over unchanged."""

    def __init__(self, engine, params):
        super().__init__(engine, params)
        self.hand: int | None = None    # the key the next search starts at (None = the oldest)

    def inserted(self, entry, full):
        entry.visited = 0
        self._enqueue(entry, 0)

    def used(self, entry, inserted_now):
        if not inserted_now:
            entry.visited = 1

    def _unlist(self, entry):
        queue = self.queues[0]
        i = queue.index(entry.key)
        if self.hand == entry.key:
            self.hand = queue[i + 1] if i + 1 < len(queue) else None
        del queue[i]
        entry.listed = False

    def became_leaf(self, entry):
        # back where the hand looks next
        if not entry.listed:
            queue = self.queues[0]
            queue.insert(queue.index(self.hand) if self.hand is not None else 0, entry.key)
            self.hand = entry.key
            entry.listed = True

    def victim(self, candidate, used):
        queue, entries = self.queues[0], self.engine.entries
        if not queue:
            return None
        i = queue.index(self.hand) if self.hand is not None else 0
        for _ in range(2 * len(queue) + 1):
            key = queue[i]
            if candidate(key):
                if entries[key].visited:
                    entries[key].visited = 0
                else:
                    self.hand = queue[i + 1] if i + 1 < len(queue) else None
                    return key
            i = (i + 1) % len(queue)
        return None


class S3Fifo(_Queued):
    """libCacheSim's S3FIFO (its rules, parameters and defaults). Queue 0 is the small FIFO, queue 1 the main one.

    - sizes: small = floor(capacity x small-size-ratio), main = the rest, ghost = floor(capacity x
      ghost-size-ratio) ids;
    - a missed key found in the ghost leaves it and is inserted into the main queue; otherwise into the small one,
      except while the cache is not yet full and the small queue holds its share (then main);
    - a victim comes from the main queue while it holds more than its share or the small queue is empty, else
      from the small queue;
    - small tail: used move-to-main-threshold times or more since insertion -> to the main queue's head, count
      reset; else evicted, its key into the ghost (the ghost's oldest id goes when it is full);
    - main tail: count >= 1 -> reinserted at the head with min(count, 3) - 1; else evicted;
    - a tail that is not a candidate (used by this request) is rotated to its queue's head, marks unchanged; a
      queue rotated through without a candidate hands over to the other queue once.
    """

    def __init__(self, engine, params):
        super().__init__(engine, params, n_queues=2)
        capacity = engine.capacity_blocks or 0
        self.small_size = int(capacity * params["small-size-ratio"])
        self.main_size = capacity - self.small_size
        self.ghost_size = int(capacity * params["ghost-size-ratio"])
        self.threshold = params["move-to-main-threshold"]
        self.ghost: OrderedDict[int, None] = OrderedDict()   # oldest first
        self.ghost_hit = False

    def before_insert(self, key, full):
        self.ghost_hit = self.ghost.pop(key, 0) is None

    def inserted(self, entry, full):
        entry.visited = 0
        to_main = self.ghost_hit or (not full and self.members[0] >= self.small_size)
        self.ghost_hit = False
        self._enqueue(entry, 1 if to_main else 0)

    def used(self, entry, inserted_now):
        if not inserted_now:
            entry.visited = min(entry.visited + 1, 255)

    def removed(self, entry, evicted):
        if evicted and entry.queue == 0 and self.ghost_size > 0:
            self.ghost[entry.key] = None
            if len(self.ghost) > self.ghost_size:
                self.ghost.popitem(last=False)
        super().removed(entry, evicted)

    def victim(self, candidate, used):
        entries = self.engine.entries
        from_main = self.members[1] > self.main_size or self.members[0] == 0
        switched = False
        skipped = 0
        while True:
            queue = self.queues[1 if from_main else 0]
            if not queue or skipped >= len(queue):
                if switched:
                    return None
                from_main, switched, skipped = not from_main, True, 0
                continue
            key = queue[0]
            entry = entries[key]
            if not candidate(key):                       # not evictable now: to the head of its queue
                queue.append(queue.pop(0))
                skipped += 1
                continue
            if from_main and entry.visited >= 1:         # one more round, with its count decremented
                queue.append(queue.pop(0))
                entry.visited = min(entry.visited, 3) - 1
                skipped = 0
                continue
            if not from_main and entry.visited >= self.threshold:   # used enough while small: to main
                queue.pop(0)
                self.members[0] -= 1
                entry.visited = 0
                self._enqueue(entry, 1)
                skipped = 0
                continue
            return key


class Clock(_Queued):
    """libCacheSim's Clock: a FIFO whose tail, while its n-bit use counter is above 0, is decremented and moved to
    the head; the first tail with 0 is the victim. A block enters with init-freq; each use adds 1, up to
    2^bits - 1. A tail that is not a candidate is moved to the head, its counter unchanged."""

    def __init__(self, engine, params):
        super().__init__(engine, params)
        self.max_freq = (1 << params["n-bit-counter"]) - 1
        self.init_freq = min(params["init-freq"], self.max_freq)

    def inserted(self, entry, full):
        entry.visited = self.init_freq
        self._enqueue(entry, 0)

    def used(self, entry, inserted_now):
        if not inserted_now:
            entry.visited = min(entry.visited + 1, self.max_freq)

    def victim(self, candidate, used):
        queue, entries = self.queues[0], self.engine.entries
        skipped = 0
        while queue and skipped < len(queue):
            key = queue[0]
            if not candidate(key):
                queue.append(queue.pop(0))
                skipped += 1
            elif entries[key].visited >= 1:
                entries[key].visited -= 1
                queue.append(queue.pop(0))
                skipped = 0
            else:
                return key
        return None


class Slru(_Policy):
    """libCacheSim's SLRU: n LRU segments, each capacity / n blocks (the remainder to the lowest, so that their
    sum is the capacity). A block enters the lowest segment with room (segment 0 when none has), and each use
    moves it to the head of the segment above (the top segment: to its head); a segment over its size moves its
    LRU block to the head of the one below, in cascade. The victim is the LRU candidate of the lowest segment
    that has one; a block of this request met on the way goes to its segment's head.

    With leaf victims a block with children is parked as in the queue policies: unlinked from its segment (it
    still counts in it, and a use still moves it up), linked again at its segment's LRU end when its last child
    goes. (The fill phase puts a prompt's first blocks in segment 0 and its later ones above, so without parking
    segment 0's LRU end would hold interior blocks that every eviction walks past.)

    libCacheSim sizes every segment capacity / n, rounded down, and a cascade reaching segment 0 evicts there,
    during a hit; cachesim evicts only while inserting, so where n does not divide the capacity it keeps the
    remainder in segment 0 instead (docs/policies.md)."""

    queued = True

    def __init__(self, engine, params):
        super().__init__(engine, params)
        n = params["n-seg"]
        capacity = engine.capacity_blocks or 0
        self.sizes = [capacity // n] * n
        self.sizes[0] += capacity - n * (capacity // n)
        self.segments: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(n)]   # linked, LRU first
        self.members = [0] * n

    def inserted(self, entry, full):
        n = len(self.segments)
        entry.queue = next((i for i in range(n) if self.members[i] < self.sizes[i]), 0)
        self.members[entry.queue] += 1
        self.segments[entry.queue][entry.key] = None
        entry.listed = True

    def used(self, entry, inserted_now):
        if inserted_now or entry.queue == len(self.segments) - 1:
            if entry.listed:
                self.segments[entry.queue].move_to_end(entry.key)
            return
        if entry.listed:
            del self.segments[entry.queue][entry.key]
        self.members[entry.queue] -= 1
        entry.queue += 1
        self.members[entry.queue] += 1
        if entry.listed:
            self.segments[entry.queue][entry.key] = None
        level = entry.queue
        while level > 0 and self.members[level] > self.sizes[level] and self.segments[level]:
            key, _ = self.segments[level].popitem(last=False)
            self.members[level] -= 1
            self.members[level - 1] += 1
            self.engine.entries[key].queue = level - 1
            self.segments[level - 1][key] = None
            level -= 1

    def removed(self, entry, evicted):
        self.members[entry.queue] -= 1
        if entry.listed:
            del self.segments[entry.queue][entry.key]

    def gained_child(self, entry):
        if entry.listed:
            del self.segments[entry.queue][entry.key]
            entry.listed = False

    def became_leaf(self, entry):
        if not entry.listed:
            self.segments[entry.queue][entry.key] = None
            self.segments[entry.queue].move_to_end(entry.key, last=False)
            entry.listed = True

    def victim(self, candidate, used):
        # a block this request uses, met on the way, goes to its segment's head (stamping moves it up anyway)
        for segment in self.segments:
            for key in list(segment):
                if key in used:
                    segment.move_to_end(key)
                elif candidate(key):
                    return key
        return None


class Arc(_Queued):
    """libCacheSim's ARC (Megiddo and Modha, FAST 2003). Queue 0 is T1 (seen once), queue 1 T2 (seen again), each
    LRU; B1 and B2 are ghost lists of keys evicted from T1 and T2, oldest first; p (a float, from 0) is T1's target.

    - a hit in T1 moves the block to T2's head; a hit in T2 to T2's head;
    - a missed key found in B1 leaves it and p += max(|B2| / |B1|, 1), up to the capacity; found in B2: p -=
      max(|B1| / |B2|, 1), down to 0 (sizes before the key leaves); either way it is inserted at T2's head,
      otherwise at T1's head;
    - a victim (the cache is full) on a ghost hit is REPLACE's; on a plain miss: if |T1| + |B1| >= capacity, B1's
      oldest key is forgotten and the victim is REPLACE's, or, B1 being empty, T1's LRU block, not remembered;
      else, if |T1| + |T2| + |B1| + |B2| >= 2 x capacity, B2's oldest key is forgotten, and the victim is
      REPLACE's;
    - REPLACE: T1's LRU block, into B1, if T1 is not empty and |T1| > p (or |T1| = p on a B2 hit), or T2 is empty;
      else T2's LRU block, into B2;
    - each ghost list holds at most capacity keys (its oldest goes; libCacheSim never needs more without expiry);
    - a tail that is not a candidate is rotated to its list's head; a list with no candidate hands over to the
      other. |T1| and |T2| count parked blocks.
    """

    def __init__(self, engine, params):
        super().__init__(engine, params, n_queues=2)
        self.capacity = engine.capacity_blocks or 0
        self.p = 0.0
        self.ghosts: tuple[OrderedDict[int, None], OrderedDict[int, None]] = (OrderedDict(), OrderedDict())
        self.ghost_hit = 0      # the key being inserted was in B1 (1) or B2 (2)
        self.remember = True    # the victim's key goes into its ghost list

    def before_insert(self, key, full):
        b1, b2 = self.ghosts
        self.ghost_hit = 0
        if key in b1:
            self.p = min(self.p + max(len(b2) / len(b1), 1), self.capacity)
            del b1[key]
            self.ghost_hit = 1
        elif key in b2:
            self.p = max(self.p - max(len(b1) / len(b2), 1), 0)
            del b2[key]
            self.ghost_hit = 2

    def inserted(self, entry, full):
        self._enqueue(entry, 1 if self.ghost_hit else 0)
        self.ghost_hit = 0

    def used(self, entry, inserted_now):
        queue = self.queues[entry.queue]
        if entry.listed:
            queue.remove(entry.key)
        if entry.queue == 0 and not inserted_now:   # seen again: to T2 (a parked block too, still parked)
            self.members[0] -= 1
            self.members[1] += 1
            entry.queue = 1
        if entry.listed:
            self.queues[entry.queue].append(entry.key)   # to its list's head

    def removed(self, entry, evicted):
        if evicted and self.remember and self.capacity > 0:
            ghost = self.ghosts[entry.queue]
            ghost[entry.key] = None
            if len(ghost) > self.capacity:
                ghost.popitem(last=False)
        super().removed(entry, evicted)

    def victim(self, candidate, used):
        b1, b2 = self.ghosts
        t1, t2 = self.members
        c = self.capacity
        self.remember = True
        if not self.ghost_hit:
            if t1 + len(b1) + 1 > c:
                if not b1:
                    self.remember = False
                    return self._take(0, candidate)
                b1.popitem(last=False)
            elif t1 + t2 + len(b1) + len(b2) >= 2 * c and b2:
                b2.popitem(last=False)
        from_t1 = (t1 > 0 and (t1 > self.p or (t1 == self.p and self.ghost_hit == 2))) or t2 == 0
        return self._take(0 if from_t1 else 1, candidate)


class TwoQ(_Queued):
    """libCacheSim's TwoQ (Johnson and Shasha, VLDB 1994, the full version). Queue 0 is A1in, a FIFO, queue 1 Am, an
    LRU; A1out is a ghost FIFO of keys evicted from A1in.

    - sizes: A1in = floor(capacity x Ain-size-ratio), A1out = floor(capacity x Aout-size-ratio) ids;
    - a missed key found in A1out leaves it and is inserted at Am's head; otherwise at A1in's head;
    - a hit in A1in changes nothing; a hit in Am moves the block to Am's head;
    - the victim is A1in's oldest block (its key into A1out, whose oldest id goes when it is full) while A1in holds
      more than its share, else Am's LRU block (forgotten);
    - a tail that is not a candidate is rotated to its queue's head; a queue with no candidate hands over to the
      other.

    libCacheSim inserts a ghost hit into Am as a cache of its own, which evicts Am's LRU block when Am is at its
    share (capacity - A1in) even if the cache is not full; that never happens at unit sizes without expiry, and
    cachesim, evicting only while inserting, lets Am run over its share then (docs/policies.md)."""

    def __init__(self, engine, params):
        super().__init__(engine, params, n_queues=2)
        capacity = engine.capacity_blocks or 0
        self.in_size = int(capacity * params["Ain-size-ratio"])
        self.out_size = int(capacity * params["Aout-size-ratio"])
        self.ghost: OrderedDict[int, None] = OrderedDict()   # A1out, oldest first
        self.ghost_hit = False

    def before_insert(self, key, full):
        self.ghost_hit = self.ghost.pop(key, 0) is None

    def inserted(self, entry, full):
        self._enqueue(entry, 1 if self.ghost_hit else 0)
        self.ghost_hit = False

    def used(self, entry, inserted_now):
        if entry.queue == 1 and entry.listed:   # Am is an LRU; A1in a FIFO
            queue = self.queues[1]
            queue.remove(entry.key)
            queue.append(entry.key)

    def removed(self, entry, evicted):
        if evicted and entry.queue == 0 and self.out_size > 0:
            self.ghost[entry.key] = None
            if len(self.ghost) > self.out_size:
                self.ghost.popitem(last=False)
        super().removed(entry, evicted)

    def victim(self, candidate, used):
        return self._take(0 if self.members[0] > self.in_size else 1, candidate)


class Gdsf(_Policy):
    """Greedy-Dual-Size-Frequency with a block's recomputation cost for its value: at each use a block's priority
    becomes L + uses x cost, where L is the priority of the last victim (the inflation that ages what is not
    used); the victim is the candidate of lowest priority, then least recently used. A block of ``block_size``
    tokens at depth d costs 1 + (d + 1/2) x block_size / attention-tokens: its tokens' projections and MLP (1),
    plus attention over the d blocks before it and half of its own, which costs as much as the rest at
    attention-tokens of context. attention-tokens=0 gives every block cost 1: libCacheSim's GDSF at unit sizes."""

    def __init__(self, engine, params):
        super().__init__(engine, params)
        self.inflation = 0.0
        attention = params["attention-tokens"]
        self.per_depth = engine.block_size / attention if attention > 0 else 0.0

    def cost(self, entry) -> float:
        return 1.0 + (entry.depth + 0.5) * self.per_depth if self.per_depth else 1.0

    def used(self, entry, inserted_now):
        entry.priority = self.inflation + entry.freq * self.cost(entry)

    def removed(self, entry, evicted):
        if evicted:
            self.inflation = entry.priority

    def victim(self, candidate, used):
        entries = self.engine.entries
        for key in sorted(entries, key=lambda k: (entries[k].priority, entries[k].stamp)):
            if candidate(key):
                return key
        return None


def make(engine, name: str, params: dict) -> _Policy:
    """The reference policy object of a built-in policy."""
    if name == "lru":
        return Lru(engine, params)
    if name in Scored.SCORES:
        return Scored(engine, params, name)
    return {"sieve": Sieve, "s3fifo": S3Fifo, "clock": Clock, "slru": Slru, "arc": Arc,
            "twoq": TwoQ, "gdsf": Gdsf}[name](engine, params)
