"""Baselines written for the field benchmarks: a pure-Python LRU and the block hashing others do in Python."""

from __future__ import annotations

import hashlib
import pickle
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
import xxhash

# vLLM seeds the first block's parent with a fixed "none hash"; any 32 bytes serve for timing
NONE_HASH = hashlib.sha256(b"cachesim field benchmark: no parent").digest()


def ordered_dict_lru_misses(keys: Iterable, capacity: int) -> int:
    """Misses of an LRU cache of ``capacity`` objects over a key stream: the textbook OrderedDict LRU."""
    cache: OrderedDict = OrderedDict()
    misses = 0
    for key in keys:
        if key in cache:
            cache.move_to_end(key)
        else:
            misses += 1
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return misses


def vllm_style_keys(token_lists: list[list[int]], block_size: int) -> list[list[bytes]]:
    """Chained block keys the way vLLM's prefix caching hashes them in Python: for every full block,
    SHA-256 of the pickled tuple (parent key, block's token ids, extra keys)."""
    out = []
    for tokens in token_lists:
        parent = NONE_HASH
        keys = []
        for start in range(0, len(tokens) - block_size + 1, block_size):
            block = tuple(tokens[start:start + block_size])
            parent = hashlib.sha256(pickle.dumps((parent, block, None), protocol=pickle.HIGHEST_PROTOCOL)).digest()
            keys.append(parent)
        out.append(keys)
    return out


def xxhash_loop_keys(tokens: np.ndarray, token_offsets: np.ndarray, block_size: int) -> np.ndarray:
    """The same chain as cachesim's compile (SEMANTICS §2), one Python call to XXH3 per full block:
    key = XXH3_64(little-endian uint32 token bytes of the block, seed = parent key), first seed 0."""
    data = memoryview(np.ascontiguousarray(tokens, dtype="<u4")).cast("B")
    step = 4 * block_size
    keys = []
    for r in range(len(token_offsets) - 1):
        start, end = 4 * int(token_offsets[r]), 4 * int(token_offsets[r + 1])
        key = 0
        for pos in range(start, end - step + 1, step):
            key = xxhash.xxh3_64_intdigest(data[pos:pos + step], seed=key)
            keys.append(key)
    return np.array(keys, dtype=np.uint64)
