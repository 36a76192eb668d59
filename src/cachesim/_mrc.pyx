# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Mattson stack distances under the LRU engine's stamping rule (SEMANTICS §3), in one pass.

Why one pass suffices: with LRU and reverse-order stamping, the cache of capacity C before a request holds exactly
the C most recently stamped distinct keys (the top of the LRU stack) that have not expired; a request sees the
state left by the previous request (its lookups happen before its own stamping). So block i of a request hits at
capacity C and TTL T iff every block 0..i has stack depth <= C and was last stamped at ``s`` with ``s + T > t``.
The pass records, per block, the prefix maximum of the depths and the prefix minimum of the last-stamp times;
``bin_hits`` turns those into hit counts for any grid of capacities and TTLs.

Stack depths come from a Fenwick tree over stamp positions (a 1 at the position of every key's latest stamp):
depth = number of keys stamped at or after the key's latest stamp. Keys map to their latest stamp through an
open-addressing hash table; nothing here allocates a Python object per block.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.math cimport INFINITY

import numpy as np

DEPTH_COLD = np.iinfo(np.int64).max   # never stamped before: a miss at every capacity
DEPTH_UNSAMPLED = -1                  # left out by spatial sampling

cdef int64_t C_DEPTH_COLD = 0x7FFFFFFFFFFFFFFF
cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    """splitmix64 finaliser: the sampling hash, independent of the table's slot hash."""
    x ^= x >> 30
    x *= 0xBF58476D1CE4E5B9ULL
    x ^= x >> 27
    x *= 0x94D049BB133111EBULL
    x ^= x >> 31
    return x


cdef struct Table:
    uint64_t* keys
    int64_t* pos      # latest stamp position (1-based), 0 = in the table but never stamped
    double* stamped_t
    uint8_t* used
    int64_t size      # power of two
    int64_t count
    int shift


cdef int _table_init(Table* tb, int64_t size) noexcept nogil:
    tb.size = size
    tb.count = 0
    tb.shift = 64
    while size > 1:
        size >>= 1
        tb.shift -= 1
    tb.keys = <uint64_t*> malloc(tb.size * sizeof(uint64_t))
    tb.pos = <int64_t*> malloc(tb.size * sizeof(int64_t))
    tb.stamped_t = <double*> malloc(tb.size * sizeof(double))
    tb.used = <uint8_t*> calloc(tb.size, sizeof(uint8_t))
    if tb.keys == NULL or tb.pos == NULL or tb.stamped_t == NULL or tb.used == NULL:
        return -1
    return 0


cdef void _table_free(Table* tb) noexcept nogil:
    free(tb.keys)
    free(tb.pos)
    free(tb.stamped_t)
    free(tb.used)


cdef inline int64_t _slot(Table* tb, uint64_t key) noexcept nogil:
    """The slot holding key, or the empty slot where it belongs."""
    cdef int64_t mask = tb.size - 1
    cdef int64_t i = <int64_t> ((key * GOLDEN) >> tb.shift)
    while tb.used[i] and tb.keys[i] != key:
        i = (i + 1) & mask
    return i


cdef int _table_grow(Table* tb) noexcept nogil:
    cdef Table old = tb[0]
    cdef int64_t i, j
    if _table_init(tb, old.size * 2) != 0:
        return -1
    for i in range(old.size):
        if old.used[i]:
            j = _slot(tb, old.keys[i])
            tb.used[j] = 1
            tb.keys[j] = old.keys[i]
            tb.pos[j] = old.pos[i]
            tb.stamped_t[j] = old.stamped_t[i]
    tb.count = old.count
    _table_free(&old)
    return 0


cdef inline int64_t _prefix(int32_t* tree, int64_t i) noexcept nogil:
    """Marks at positions 1..i."""
    cdef int64_t s = 0
    while i > 0:
        s += tree[i]
        i &= i - 1
    return s


cdef inline void _add(int32_t* tree, int64_t n, int64_t i, int32_t v) noexcept nogil:
    while i <= n:
        tree[i] += v
        i += i & (-i)


def stack_pass(const double[::1] t, const int64_t[::1] block_offsets, const uint64_t[::1] keys,
               double sample_rate=1.0):
    """Per block: the prefix-max stack depth and prefix-min last-stamp time before its request.

    Returns ``(depth, stamped_t, distinct)``: ``depth[j]`` is ``DEPTH_COLD`` when some block up to j in its request
    was never stamped, ``DEPTH_UNSAMPLED`` for a block spatial sampling left out (``sample_rate < 1``: a key is
    kept iff a hash of it falls below the rate, so a key is always in or always out); ``distinct`` counts the
    distinct (sampled) keys.
    """
    cdef int64_t n_req = t.shape[0]
    cdef int64_t m = keys.shape[0]
    if block_offsets.shape[0] != n_req + 1 or (n_req and (block_offsets[0] != 0 or block_offsets[n_req] != m)):
        raise ValueError("block_offsets must rise from 0 to len(keys), one entry per request + 1")
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    cdef bint sampling = sample_rate < 1.0
    cdef uint64_t threshold = <uint64_t> (sample_rate * 18446744073709551616.0) if sampling else 0
    depth_arr = np.empty(m, dtype=np.int64)
    stamped_arr = np.empty(m, dtype=np.float64)
    cdef int64_t[::1] depth = depth_arr
    cdef double[::1] stamped = stamped_arr
    cdef int64_t max_len = 0, r
    for r in range(n_req):
        if block_offsets[r + 1] - block_offsets[r] > max_len:
            max_len = block_offsets[r + 1] - block_offsets[r]
    cdef int64_t* slots = <int64_t*> malloc((max_len + 1) * sizeof(int64_t))
    cdef int32_t* tree = <int32_t*> calloc(m + 1, sizeof(int32_t))
    cdef Table tb
    cdef int ok = _table_init(&tb, 1 << 16)
    cdef int64_t start, end, j, s, p, d, max_d, clock = 0, distinct = 0, req_first_pos, n_here
    cdef double tr, min_t
    cdef uint64_t key
    try:
        if slots == NULL or tree == NULL or ok != 0:
            raise MemoryError()
        with nogil:
            for r in range(n_req):
                start = block_offsets[r]
                end = block_offsets[r + 1]
                tr = t[r]
                if (tb.count + (end - start)) * 2 > tb.size:
                    while (tb.count + (end - start)) * 2 > tb.size:
                        if _table_grow(&tb) != 0:
                            break
                    if (tb.count + (end - start)) * 2 > tb.size:
                        with gil:
                            raise MemoryError()
                # lookups see the stack as the previous request left it
                max_d = 0
                min_t = INFINITY
                n_here = 0
                for j in range(start, end):
                    key = keys[j]
                    if sampling and _mix(key) >= threshold:
                        depth[j] = -1
                        stamped[j] = INFINITY
                        continue
                    s = _slot(&tb, key)
                    if not tb.used[s]:
                        tb.used[s] = 1
                        tb.keys[s] = key
                        tb.pos[s] = 0
                        tb.count += 1
                    slots[n_here] = s
                    n_here += 1
                    p = tb.pos[s]
                    if p == 0:
                        max_d = C_DEPTH_COLD
                    elif max_d != C_DEPTH_COLD:
                        d = distinct - _prefix(tree, p - 1)
                        if d > max_d:
                            max_d = d
                        if tb.stamped_t[s] < min_t:
                            min_t = tb.stamped_t[s]
                    depth[j] = max_d
                    stamped[j] = min_t if max_d != C_DEPTH_COLD else -INFINITY
                # stamp in reverse order: the deepest block gets the oldest stamp; a key repeated in the request
                # keeps the stamp of its deepest occurrence (as the engine stamps each cached key once)
                req_first_pos = clock + 1
                while n_here > 0:
                    n_here -= 1
                    s = slots[n_here]
                    p = tb.pos[s]
                    if p >= req_first_pos:
                        continue
                    clock += 1
                    if p == 0:
                        distinct += 1
                    else:
                        _add(tree, m, p, -1)
                    _add(tree, m, clock, 1)
                    tb.pos[s] = clock
                    tb.stamped_t[s] = tr
    finally:
        free(slots)
        free(tree)
        _table_free(&tb)
    return depth_arr, stamped_arr, distinct


cdef inline int64_t _first_capacity(const double* caps, int64_t n, double d) noexcept nogil:
    """Index of the smallest capacity >= d (n if none)."""
    cdef int64_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if caps[mid] >= d:
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef inline int64_t _first_ttl(const double* ttls, int64_t n, double stamped, double t) noexcept nogil:
    """Index of the smallest TTL that keeps an entry stamped at ``stamped`` alive at t (n if none).

    Alive means ``stamped + ttl > t``, the engine's own expression (expires_at = stamp time + ttl, expired when
    expires_at <= t), evaluated as is so float rounding agrees with a replay.
    """
    cdef int64_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if stamped + ttls[mid] > t:
            hi = mid
        else:
            lo = mid + 1
    return lo


def bin_hits(const double[::1] t, const int64_t[::1] block_offsets, const uint32_t[::1] block_tokens,
             const uint8_t[::1] counted, const int64_t[::1] hit_cap_blocks, const int64_t[::1] depth,
             const double[::1] stamped, const double[::1] capacities, const double[::1] ttls):
    """Hit blocks and hit tokens over counted requests for every (capacity, TTL) pair of two ascending grids.

    ``capacities`` are in depth units (a sampled pass passes capacity * rate); ``ttls`` may hold ``inf`` for no
    expiry; ``hit_cap_blocks[r]`` caps request r's hit (SEMANTICS §3 step 2). Returns ``(hit_blocks, hit_tokens,
    blocks, block_tokens)``: two int64 [capacities, ttls] tables, and the (sampled) blocks and their tokens.
    """
    cdef int64_t n_req = t.shape[0], nc = capacities.shape[0], nt = ttls.shape[0]
    hb_arr = np.zeros((nc + 1, nt + 1), dtype=np.int64)
    ht_arr = np.zeros((nc + 1, nt + 1), dtype=np.int64)
    cdef int64_t[:, ::1] hb = hb_arr
    cdef int64_t[:, ::1] ht = ht_arr
    cdef int64_t r, j, start, end, ci, ti, d, n_blocks = 0, n_tokens = 0
    cdef const double* caps = &capacities[0] if nc else NULL
    cdef const double* tt = &ttls[0] if nt else NULL
    with nogil:
        for r in range(n_req):
            if not counted[r]:
                continue
            start = block_offsets[r]
            end = block_offsets[r + 1]
            for j in range(start, end):
                d = depth[j]
                if d < 0:
                    continue
                n_blocks += 1
                n_tokens += block_tokens[j]
                if d == C_DEPTH_COLD or j - start >= hit_cap_blocks[r]:
                    continue
                ci = _first_capacity(caps, nc, <double> d)
                ti = _first_ttl(tt, nt, stamped[j], t[r])
                hb[ci, ti] += 1
                ht[ci, ti] += block_tokens[j]
    hit_blocks = hb_arr.cumsum(axis=0).cumsum(axis=1)[:nc, :nt]
    hit_tokens = ht_arr.cumsum(axis=0).cumsum(axis=1)[:nc, :nt]
    return np.ascontiguousarray(hit_blocks), np.ascontiguousarray(hit_tokens), n_blocks, n_tokens
