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

TENANT_FIELDS = ("requests", "hit_requests", "prompt_tokens", "hit_tokens", "blocks", "hit_blocks",
                 "inserted_blocks", "evictions_caused", "evicted_owned", "expired_owned", "uncached_blocks")
OUTPUT_FIELDS = ("hit_tokens", "hit_blocks", "inserted_blocks", "evicted_blocks", "expired_blocks",
                 "uncached_blocks")
_FIELD = {name: i for i, name in enumerate(TENANT_FIELDS)}


class EngineInputError(ValueError):
    """A batch the engine cannot serve (its .request and .field say where)."""


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


@dataclass
class _Entry:
    stamp: int          # global use counter at the last stamping
    expires_at: float   # t of last use + ttl
    owner: int          # tenant that inserted it


class Engine:
    """LRU prefix cache, one request at a time, exactly as SEMANTICS §3 reads."""

    def __init__(self, capacity_blocks=None, ttl_s=None, hit_cap=None, block_size=1, warmup_requests=0,
                 warmup_s=0.0, n_tenants=1):
        if capacity_blocks is not None and capacity_blocks <= 0:
            raise ValueError("capacity_blocks must be positive (or None for unbounded)")
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError("ttl_s must be positive (or None for no expiry)")
        if hit_cap not in (None, "prompt-1"):
            raise ValueError(f"hit_cap must be None or 'prompt-1', not {hit_cap!r}")
        if block_size <= 0:
            raise ValueError("block_size must be positive")
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

    @property
    def occupancy(self) -> int:
        return len(self.entries)

    def ensure_tenants(self, n_tenants: int) -> None:
        old = self.tenant_stats.shape[0]
        if n_tenants > old:
            self.tenant_stats = np.vstack([self.tenant_stats, np.zeros((n_tenants - old, len(TENANT_FIELDS)),
                                                                       dtype=np.int64)])
            grown = np.zeros((n_tenants, n_tenants), dtype=np.int64)
            grown[:old, :old] = self.hits_from
            self.hits_from = grown

    def feed(self, t, tenant, prompt_tokens, block_offsets, keys, block_tokens):
        n = len(t)
        outputs = {name: np.zeros(n, dtype=np.int64) for name in OUTPUT_FIELDS}
        for r in range(n):
            try:
                values = self._serve(float(t[r]), int(tenant[r]), int(prompt_tokens[r]),
                                     [int(k) for k in keys[block_offsets[r]:block_offsets[r + 1]]],
                                     [int(x) for x in block_tokens[block_offsets[r]:block_offsets[r + 1]]])
            except EngineInputError as exc:
                exc.request = r
                exc.partial = {name: arr[:r] for name, arr in outputs.items()}
                raise
            for name, value in zip(OUTPUT_FIELDS, values):
                outputs[name][r] = value
        return outputs

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
            del self.entries[key]
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

        # 3. insert the rest; a victim is the least recently stamped entry this request does not use
        used = set(keys[:h])
        inserted = evicted = uncached = 0
        for i in range(h, n):
            key = keys[i]
            if key in self.entries:
                used.add(key)
                continue
            if self.capacity_blocks is not None and len(self.entries) >= self.capacity_blocks:
                victim = next((k for k in self.entries if k not in used), None)
                if victim is None:
                    uncached += 1
                    continue
                if counted:
                    stats[self.entries[victim].owner, _FIELD["evicted_owned"]] += 1
                del self.entries[victim]
                evicted += 1
            self.entries[key] = _Entry(stamp=-1, expires_at=math.inf, owner=tenant)
            used.add(key)
            inserted += 1

        # 4. stamp every cached block of the request, deepest first
        stamped = set()
        for key in reversed(keys):
            if key in used and key not in stamped:
                stamped.add(key)
                entry = self.entries[key]
                self.clock += 1
                entry.stamp = self.clock
                entry.expires_at = t + self.ttl_s
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

    def cached_keys(self):
        """Keys of the cached entries, most recently used first."""
        return np.array(list(reversed(self.entries.keys())), dtype=np.uint64)

    def cached_owners(self):
        return np.array([e.owner for e in reversed(self.entries.values())], dtype=np.int32)

    def memory_bytes(self) -> int:
        return 0


def _input_error(message: str, field: str) -> EngineInputError:
    exc = EngineInputError(message)
    exc.field = field
    return exc
