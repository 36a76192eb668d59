"""The executable specification: SEMANTICS.md in plain Python, slow and obviously correct.

Selected only explicitly (``impl="reference"`` or ``CACHESIM_PUREPYTHON=1``); the test suite runs every
property against this model and the compiled core side by side. It mirrors the core's public surface
(``compile_*``, ``relabel_keys``, ``Engine``) so the API layer can use either.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import xxhash

from cachesim._contract import (
    OUTPUT_FIELDS,
    POLICIES,
    TENANT_FIELDS,
    EngineInputError,
    PolicyError,
    check_engine_config,
    is_hook_policy,
    parse_policy,
    resolve_policy,
)
from cachesim._reference_policies import make as make_policy
from cachesim._statistics import grow_tenant_statistics

__all__ = ["OUTPUT_FIELDS", "TENANT_FIELDS", "EngineInputError", "Engine", "compile_id_blocks", "compile_token_blocks",
           "dense_ids", "first_trace_fault", "next_uses", "relabel_keys", "xxh3_64"]

_FIELD = {name: i for i, name in enumerate(TENANT_FIELDS)}


def xxh3_64(data: bytes, seed: int = 0) -> int:
    return xxhash.xxh3_64_intdigest(bytes(data), seed=seed)


def compile_token_blocks(tokens, token_offsets, block_size: int, partial_tail: bool = False, seed: int = 0):
    """SEMANTICS §2 for token blocks: key[i] = XXH3_64(le32 tokens of block i, seed=key[i-1])."""
    if block_size <= 0:
        raise ValueError("block_size must be positive")
    tokens = np.asarray(tokens, dtype="<u4")
    block_offsets, keys, block_tokens = [0], [], []
    for r in range(len(token_offsets) - 1):
        prompt = tokens[token_offsets[r]:token_offsets[r + 1]]
        key = seed
        for start in range(0, len(prompt), block_size):
            block = prompt[start:start + block_size]
            if len(block) < block_size and not partial_tail:
                break
            key = xxh3_64(block.tobytes(), key)
            keys.append(key)
            block_tokens.append(len(block))
        block_offsets.append(len(keys))
    return (np.array(block_offsets, dtype=np.int64), np.array(keys, dtype=np.uint64),
            np.array(block_tokens, dtype=np.uint32))


def compile_id_blocks(ids, id_offsets, seed: int = 0):
    """SEMANTICS §2 for id blocks: each id hashed as little-endian uint64 with its parent key as seed."""
    keys = []
    for r in range(len(id_offsets) - 1):
        key = seed
        for block_id in ids[id_offsets[r]:id_offsets[r + 1]]:
            key = xxh3_64(int(block_id).to_bytes(8, "little"), key)
            keys.append(key)
    return np.array(keys, dtype=np.uint64)


def relabel_keys(keys, block_offsets, tenant, tenant_seeds):
    """Per-tenant namespaces: XXH3_64(le64(key), seed=tenant_seed)."""
    out = []
    for r in range(len(block_offsets) - 1):
        seed = int(tenant_seeds[tenant[r]])
        for key in keys[block_offsets[r]:block_offsets[r + 1]]:
            out.append(xxh3_64(int(key).to_bytes(8, "little"), seed))
    return np.array(out, dtype=np.uint64)


def first_trace_fault(t, tenant, prompt_tokens, block_offsets, block_tokens, keys, block_size, n_tenants,
                      max_prompt_tokens, first=0, stop=-1) -> tuple[int, int]:
    """``(request, fault)``: the first of requests ``[first, stop)`` (default: all) that breaks what the serve loops
    assume and the index of its first fault in ``TRACE_FAULTS`` (checked in that order within a request), or
    ``(stop, -1)``."""
    n, m = len(t), len(keys)
    stop = n if stop < 0 else stop
    requests = np.arange(first, stop)
    starts, ends = block_offsets[first:stop], block_offsets[first + 1:stop + 1]
    bad_offsets = (starts < 0) | (ends < starts) | (ends > m)
    sound = first + (int(np.argmax(bad_offsets)) if bad_offsets.any() else stop - first)
    earlier = np.concatenate([[-np.inf], t[:-1]])[first:stop]
    first_of: dict[int, int] = {}   # fault code -> its first request

    def note(code: int, mask) -> None:
        hits = requests[mask]
        if hits.size:
            first_of[code] = int(hits[0])

    span = slice(first, stop)
    note(0, bad_offsets)
    with np.errstate(invalid="ignore"):
        note(1, ~np.isfinite(t[span]))
        note(2, t[span] < 0)
        note(3, t[span] < earlier)
    note(4, (tenant[span] < 0) | (tenant[span] >= n_tenants))
    note(5, prompt_tokens[span] <= 0)
    note(6, prompt_tokens[span] > max_prompt_tokens)
    for r in range(first, min(sound, min(first_of.values(), default=stop) + 1)):   # block faults, sound offsets
        run = slice(int(block_offsets[r]), int(block_offsets[r + 1]))
        tokens, run_keys = block_tokens[run].astype(np.int64), keys[run].tolist()
        for code, broken in ((7, bool(((tokens == 0) | (tokens > block_size)).any())),
                             (8, int(tokens.sum()) > int(prompt_tokens[r])),
                             (9, 2**64 - 1 in run_keys),
                             (10, len(set(run_keys)) < len(run_keys))):
            if broken:
                first_of.setdefault(code, r)
        if any(r == request for request in first_of.values()):
            break
    if not first_of:
        return stop, -1
    request = min(first_of.values())
    return request, min(code for code, r in first_of.items() if r == request)


NEVER = 2**63 - 1   # next_uses() of a block no later request uses


def next_uses(keys, block_offsets):
    """For each block, the index of the next request that uses its key, or NEVER: the future an offline policy
    (belady) evicts by, found in one backward pass."""
    out = np.full(len(keys), NEVER, dtype=np.int64)
    last: dict[int, int] = {}
    for r in range(len(block_offsets) - 2, -1, -1):
        for j in range(int(block_offsets[r]), int(block_offsets[r + 1])):
            key = int(keys[j])
            out[j] = last.get(key, NEVER)
            last[key] = r
    return out


def dense_ids(keys):
    """Number distinct keys by first appearance: (ids, distinct_keys) with distinct_keys[ids[i]] == keys[i]."""
    number: dict[int, int] = {}
    ids = np.array([number.setdefault(int(key), len(number)) for key in keys], dtype=np.uint64)
    return ids, np.array(list(number), dtype=np.uint64)


TTL = "ttl"  # the evictor of expired entries in harm attribution

class _RecentKeys:
    """Keys remembered with a value for the last ``size`` puts (a key discarded since is forgotten)."""

    def __init__(self, size: int):
        self.size = size
        self.puts = 0
        self.latest: dict[int, tuple[int, object]] = {}   # key -> (number of its latest put, value)

    def put(self, key: int, value) -> None:
        if self.size:
            self.puts += 1
            self.latest[key] = (self.puts, value)

    def get(self, key: int, default=None):
        put = self.latest.get(key)
        return put[1] if put is not None and put[0] > self.puts - self.size else default

    def __contains__(self, key: int) -> bool:
        put = self.latest.get(key)
        return put is not None and put[0] > self.puts - self.size

    def discard(self, key: int) -> None:
        self.latest.pop(key, None)


@dataclass
class _Entry:
    key: int                # chained block key
    stamp: int              # global use counter at the last stamping
    expires_at: float       # t of last use + ttl
    owner: int              # tenant that inserted it
    insert_serial: int = 0  # order of insertion
    freq: int = 0           # requests that used it
    depth: int = 0          # position of its block in the prompt
    parent_key: int | None = None
    visited: int = 0        # SIEVE: used since the hand passed (0/1); S3-FIFO: uses (up to 255); CLOCK: counter
    queue: int = 0          # the queue or segment it belongs to (S3-FIFO, SLRU)
    listed: bool = False    # in its queue (a queue policy parks an entry while it has children)
    next_use: float = math.inf   # belady: the request that uses it next
    priority: float = 0.0   # gdsf: its priority, set at each use


class Engine:
    """LRU prefix cache, one request at a time, exactly as SEMANTICS §3 reads."""

    def __init__(self, capacity_blocks=None, ttl_s=None, hit_cap=None, block_size=1, warmup_requests=0,
                 warmup_s=0.0, n_tenants=1, policy="lru", victims="leaves", interference=False,
                 ghost_blocks=None, direct_keys=False):
        # direct_keys (keys are dense ids) changes how the compiled core indexes them, never what it computes:
        # a dict serves ids and keys alike
        check_engine_config(capacity_blocks=capacity_blocks, ttl_s=ttl_s, hit_cap=hit_cap, block_size=block_size,
                            warmup_requests=warmup_requests, warmup_s=warmup_s, policy=policy, victims=victims,
                            ghost_blocks=ghost_blocks)
        policy = resolve_policy(policy)   # a plugin spec: an instance of its class
        self.policy = policy
        self.victims = victims
        self.orphaned_blocks = 0
        self.serial = 0
        # harm attribution (SEMANTICS §6): evicted key -> evictor tenant (or TTL), bounded, oldest first
        self.interference = interference
        self.evictors = _RecentKeys((capacity_blocks or 1 << 20) if ghost_blocks is None else ghost_blocks)
        self.capacity_blocks = capacity_blocks
        self.ttl_s = math.inf if ttl_s is None else float(ttl_s)
        self.hit_cap = hit_cap
        self.block_size = block_size
        self.warmup_requests = warmup_requests
        self.warmup_s = warmup_s
        # Ordered by stamp, oldest first: the stamp of every (re)used entry is a new maximum, and the entry
        # is moved to the end when stamped, so iteration order is stamp order.
        self.entries: OrderedDict[int, _Entry] = OrderedDict()
        self.clock = 0
        self.requests_seen = 0
        self.first_t = math.inf
        self.last_t = -math.inf
        self.peak_occupancy = 0
        self.tenant_stats = np.zeros((max(n_tenants, 1), len(TENANT_FIELDS)), dtype=np.int64)
        self.hits_from = np.zeros((max(n_tenants, 1), max(n_tenants, 1)), dtype=np.int64)
        self.lost_to = np.zeros((max(n_tenants, 1), max(n_tenants, 1) + 1), dtype=np.int64)
        self.evictions_by = np.zeros((max(n_tenants, 1), max(n_tenants, 1)), dtype=np.int64)
        # a built-in policy's bookkeeping (cachesim._reference_policies); a custom one is asked at each eviction
        self.rules = None
        self.offline = False
        self.broken = False
        if isinstance(policy, str):
            name, params = parse_policy(policy)
            self.rules = make_policy(self, name, params)
            self.offline = POLICIES[name].offline
        elif is_hook_policy(policy):
            self.rules = _HookPolicyRules(self, policy)
        self.next_use = None

    @property
    def occupancy(self) -> int:
        return len(self.entries)

    def ensure_tenants(self, n_tenants: int) -> None:
        """Grow the statistics to at least n_tenants tenants (between batches)."""
        grow_tenant_statistics(self, n_tenants)

    def feed(self, t, tenant, prompt_tokens, block_offsets, keys, block_tokens, per_request=True, next_use=None):
        """``next_use`` (offline policies only): for each block, the index in this batch of the next request that
        uses its key, or a number past the batch (next_uses() gives it)."""
        n = len(t)
        if self.broken:
            raise PolicyError("this engine stopped at a policy's error in an earlier batch (its state is "
                              "mid-request): start a new one")
        if self.offline:
            if next_use is None or len(next_use) != len(keys):
                raise ValueError("an offline policy (belady) needs next_use, one per block: next_uses(keys, offsets)")
            self.next_use = next_use
        outputs = {name: np.zeros(n, dtype=np.int64) for name in OUTPUT_FIELDS}
        for r in range(n):
            self.block0 = int(block_offsets[r])
            try:
                values = self._serve(float(t[r]), int(tenant[r]), int(prompt_tokens[r]),
                                     [int(k) for k in keys[block_offsets[r]:block_offsets[r + 1]]],
                                     [int(x) for x in block_tokens[block_offsets[r]:block_offsets[r + 1]]])
            except (EngineInputError, PolicyError) as exc:
                exc.request = r
                exc.partial = {name: arr[:r] for name, arr in outputs.items()} if per_request else None
                self.broken = isinstance(exc, PolicyError)
                raise
            for name, value in zip(OUTPUT_FIELDS, values, strict=True):
                outputs[name][r] = value
        return outputs if per_request else None

    def _serve(self, t, tenant, prompt_tokens, keys, block_tokens):
        if math.isnan(t):
            raise _input_error("arrival time is NaN", "t")
        if t < self.last_t:
            raise _input_error(f"arrival time {t!r} is before the previous request's {self.last_t!r}", "t")
        if not 0 <= tenant < self.tenant_stats.shape[0]:
            raise _input_error(f"tenant code {tenant} outside 0..{self.tenant_stats.shape[0] - 1}", "tenant")
        if self.requests_seen == 0:
            self.first_t = t
        self.last_t = t
        counted = self.requests_seen >= self.warmup_requests and t >= self.first_t + self.warmup_s
        self.requests_seen += 1
        stats = self.tenant_stats

        # 1. expire every entry with expires_at <= t. The TTL is uniform and entries are in stamp order, so
        # expiry times never decrease along the order: the expired entries are exactly a leading run.
        expired = 0
        while self.entries:
            key, entry = next(iter(self.entries.items()))
            if entry.expires_at > t:
                break
            if counted:
                stats[entry.owner, _FIELD["expired_owned"]] += 1
            self._remove(key)
            if self.interference:
                self.evictors.put(key, TTL)
            expired += 1

        # 2. lookup: the number of leading keys that are all cached
        n = len(keys)
        h = 0
        while h < n and keys[h] in self.entries:
            h += 1
        hit_blocks = h
        if self.hit_cap == "prompt-1":
            hit_blocks = max(0, min(h, (prompt_tokens - 1) // self.block_size))
        hit_tokens = sum(block_tokens[:hit_blocks])
        if counted:
            for i in range(hit_blocks):
                self.hits_from[tenant, self.entries[keys[i]].owner] += block_tokens[i]

        # 3. insert the rest; a victim is the policy's choice among entries this request does not use
        used = set(keys[:h])
        new = set()
        inserted = evicted = uncached = 0
        if self.interference and counted:
            # the run of blocks after the hit that an eviction or expiry took, as the cache stands on arrival
            for i in range(h, n):
                if keys[i] in self.entries:
                    continue
                if keys[i] not in self.evictors:
                    break
                evictor = self.evictors.get(keys[i])
                self.lost_to[tenant, 0 if evictor == TTL else 1 + evictor] += block_tokens[i]
        for i in range(h, n):
            key = keys[i]
            if key in self.entries:
                used.add(key)
                continue
            full = self.capacity_blocks is not None and len(self.entries) >= self.capacity_blocks
            if self.rules is not None:
                self.rules.before_insert(key, full)
            if full:
                victim = self._victim(used)
                if victim is None:
                    uncached += 1
                    continue
                if counted:
                    stats[self.entries[victim].owner, _FIELD["evicted_owned"]] += 1
                if self.interference:
                    self.evictors.put(victim, tenant)
                    if counted:
                        self.evictions_by[tenant, self.entries[victim].owner] += 1
                self._remove(victim, evicted=True)
                evicted += 1
            self.serial += 1
            entry = self.entries[key] = _Entry(key=key, stamp=-1, expires_at=math.inf, owner=tenant,
                                               insert_serial=self.serial,
                                               depth=i, parent_key=keys[i - 1] if i else None)
            self.evictors.discard(key)
            if self.rules is not None:
                self.rules.inserted(entry, full)
                parent = self.entries.get(keys[i - 1]) if i else None
                if (parent is not None and self.rules.queued and self.victims == "leaves"
                        and parent.insert_serial < entry.insert_serial):
                    self.rules.gained_child(parent)
            used.add(key)
            new.add(key)
            inserted += 1

        # 4. stamp every cached block of the request, deepest first
        stamped = set()
        for i in range(n - 1, -1, -1):
            key = keys[i]
            if key in used and key not in stamped:
                stamped.add(key)
                entry = self.entries[key]
                self.clock += 1
                entry.stamp = self.clock
                entry.expires_at = t + self.ttl_s
                entry.freq += 1
                if self.next_use is not None:
                    entry.next_use = int(self.next_use[self.block0 + i])
                if self.rules is not None:
                    self.rules.used(entry, key in new)
                self._hook("on_insert" if key in new else "on_use", key)
                self.entries.move_to_end(key)

        if counted:
            row = stats[tenant]
            for name, value in (("requests", 1), ("hit_requests", int(hit_blocks > 0)),
                                ("prompt_tokens", prompt_tokens), ("hit_tokens", hit_tokens), ("blocks", n),
                                ("hit_blocks", hit_blocks), ("inserted_blocks", inserted),
                                ("evictions_caused", evicted), ("uncached_blocks", uncached)):
                row[_FIELD[name]] += value
            self.peak_occupancy = max(self.peak_occupancy, len(self.entries))
        return hit_tokens, hit_blocks, inserted, evicted, expired, uncached

    # -- victims (SEMANTICS §4) -------------------------------------------------------------------------------

    def _children(self, key: int) -> list[int]:
        """Cached entries inserted under this incarnation of key (their parent was cached when they came)."""
        parent = self.entries[key]
        return [k for k, e in self.entries.items() if e.parent_key == key and e.insert_serial > parent.insert_serial]

    def _candidate(self, key: int, used: set) -> bool:
        return key not in used and (self.victims == "any" or not self._children(key))

    def _hook(self, name: str, key: int) -> None:
        """Tell a choose(candidates) policy (cachesim.policies.Policy) what happened to a block."""
        if self.rules is None:
            hook = getattr(self.policy, name, None)
            if hook is not None:
                hook(self.entries[key])

    def _victim(self, used: set) -> int | None:
        if self.rules is None:   # a choose(candidates) policy
            candidates = [e for k, e in self.entries.items() if self._candidate(k, used)]
            if not candidates:
                return None
            victim = self.policy.choose(candidates)
            if victim is not None and not any(e.key == victim for e in candidates):
                raise ValueError(f"policy {self.policy!r} chose {victim!r}, which is not one of the candidates")
            return victim
        return self.rules.victim(lambda key: self._candidate(key, used), used)

    def _remove(self, key: int, evicted: bool = False) -> None:
        self._hook("on_remove", key)
        if self.victims == "any":
            self.orphaned_blocks += len(self._children(key))
        entry = self.entries[key]
        if self.rules is not None:
            self.rules.removed(entry, evicted)
        del self.entries[key]
        parent = self.entries.get(entry.parent_key) if entry.parent_key is not None else None
        if (self.rules is not None and self.rules.queued and self.victims == "leaves" and parent is not None
                and parent.insert_serial < entry.insert_serial and not self._children(parent.key)):
            self.rules.became_leaf(parent)

    def cached_keys(self):
        """Keys of the cached entries, most recently used first."""
        return np.array(list(reversed(self.entries.keys())), dtype=np.uint64)

    def cached_owners(self):
        return np.array([e.owner for e in reversed(self.entries.values())], dtype=np.int32)

    def memory_bytes(self) -> int:
        return 0


class _HookPolicyRules:
    """A cachesim.HookPolicy behind the built-in policies' hooks (cachesim._reference_policies), told what the
    compiled core tells it, in the same order: blocks by key, a parent's first child and its last one going."""

    queued = True   # so that the engine reports gained_child and became_leaf (filtered to the first child here)

    def __init__(self, engine, policy):
        self.engine = engine
        self.policy = policy
        self.name = getattr(policy, "name", type(policy).__name__)

    def _call(self, hook: str, *args):
        method = getattr(self.policy, hook, None)
        if method is None:
            return None
        try:
            return method(*args)
        except Exception as exc:
            raise PolicyError(f"policy {self.name!r} raised {type(exc).__name__}: {exc}") from exc

    def before_insert(self, key, full):
        pass

    def inserted(self, entry, full):
        self._call("inserted", entry.key, entry.depth)

    def used(self, entry, inserted_now):
        self._call("used", entry.key, inserted_now)

    def removed(self, entry, evicted):
        self._call("removed", entry.key, evicted)

    def gained_child(self, entry):
        if len(self.engine._children(entry.key)) == 1:
            self._call("gained_child", entry.key)

    def became_leaf(self, entry):
        self._call("became_leaf", entry.key)

    def victim(self, candidate, used):
        entries = self.engine.entries

        def is_candidate(key) -> bool:
            return isinstance(key, int) and key in entries and candidate(key)

        key = self._call("victim", is_candidate)
        if key is not None and not is_candidate(key):
            raise PolicyError(f"policy {self.name!r} chose block {key!r}, which may not be evicted now (not cached, "
                              "used by this request, or not a leaf)")
        return key


def _input_error(message: str, field: str) -> EngineInputError:
    exc = EngineInputError(message)
    exc.field = field
    return exc
