# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Mattson stack distances under the LRU engine's stamping rule (SEMANTICS §3), in one pass.

Why one pass suffices: with LRU and reverse-order stamping, the cache of capacity C before a request holds exactly
the C most recently stamped distinct keys (the top of the LRU stack) that have not expired; a request sees the
state left by the previous request (its lookups happen before its own stamping). So block i of a request hits at
capacity C and TTL T iff every block 0..i has stack depth <= C and was last stamped at ``s`` with ``s + T > t``.
The pass records, per block, the prefix maximum of the depths and the prefix minimum of the last-stamp times;
``bin_hits`` turns those into hit counts for any grid of capacities and TTLs.

Stack depth = the weight of the keys whose latest stamp is at or after the key's own. Stamp positions are bits in
two bitmaps (one per key weight) with a Fenwick tree over the 64-bit words, so a depth costs a popcount plus a short
tree walk (usually reused from the previous block's), and everything stays small enough for the CPU cache: positions
are renumbered 1..live when they run out, so the bitmaps hold a few times the live keys, not one bit per block of
the trace. Keys map to their latest stamp through an open-addressing hash table. Nothing here allocates a Python
object per block.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.math cimport INFINITY

import numpy as np


cdef extern from *:
    void __builtin_prefetch(const void*) nogil


cdef inline int64_t _popcount(uint64_t x) noexcept nogil:
    """SWAR popcount, inlined (the builtin becomes a libgcc call without -mpopcnt)."""
    x = x - ((x >> 1) & 0x5555555555555555ULL)
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL
    return <int64_t> ((x * 0x0101010101010101ULL) >> 56)


cdef int64_t C_DEPTH_COLD = 0x7FFFFFFFFFFFFFFF
cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL
cdef enum:
    PREFETCH_AHEAD = 8   # blocks between a slot's prefetch and its lookup


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    """splitmix64 finaliser: the sampling hash, independent of the table's slot hash."""
    x ^= x >> 30
    x *= 0xBF58476D1CE4E5B9ULL
    x ^= x >> 27
    x *= 0x94D049BB133111EBULL
    x ^= x >> 31
    return x


cdef struct Entry:    # 16 bytes: the table is the pass's one big random-access structure
    uint64_t key
    int32_t pos        # latest stamp position (1-based); 0 = in the table, not stamped yet; -1 = empty slot
    uint32_t req_heavy  # request of the latest stamping << 1 | 1 when the key weighs 1 / rate (sampled)


cdef struct Table:
    Entry* e           # one array of structs: a lookup costs one cache miss
    int64_t size       # power of two
    int64_t count
    int shift


cdef int _table_init(Table* tb, int64_t size) noexcept nogil:
    cdef int64_t i
    tb.size = size
    tb.count = 0
    tb.shift = 64
    while size > 1:
        size >>= 1
        tb.shift -= 1
    tb.e = <Entry*> malloc(tb.size * sizeof(Entry))
    if tb.e == NULL:
        return -1
    for i in range(tb.size):
        tb.e[i].pos = -1
    return 0


cdef inline int64_t _home(Table* tb, uint64_t key) noexcept nogil:
    return <int64_t> ((key * GOLDEN) >> tb.shift)


cdef inline int64_t _slot(Table* tb, uint64_t key) noexcept nogil:
    """The slot holding key, or the empty slot where it belongs."""
    cdef int64_t mask = tb.size - 1
    cdef int64_t i = _home(tb, key)
    while tb.e[i].pos != -1 and tb.e[i].key != key:
        i = (i + 1) & mask
    return i


cdef int _table_grow(Table* tb) noexcept nogil:
    cdef Table old = tb[0]
    cdef int64_t i
    if _table_init(tb, old.size * 2) != 0:
        tb[0] = old
        return -1
    for i in range(old.size):
        if old.e[i].pos != -1:
            tb.e[_slot(tb, old.e[i].key)] = old.e[i]
    tb.count = old.count
    free(old.e)
    return 0


cdef struct Stamps:
    uint64_t* bits     # [2 * words]: word w of the light keys' marks at 2w, of the heavy keys' at 2w + 1
    int64_t* tree      # Fenwick tree over words 1..words: the weight of the marks in each word
    int64_t words
    int64_t clock      # last position used (positions are 1-based, bit index = position - 1)
    int64_t total      # weight of all marks
    int64_t light      # weight of a light key (1, or the unit of the fixed-point weights when sampling)
    int64_t heavy      # weight of a heavy (sampled) key
    int64_t cached_word   # _weight_below's cache: the weight of the words before cached_word (-1 = none)
    int64_t cached_below


cdef inline int64_t _weight(Stamps* st, int64_t heavy) noexcept nogil:
    return st.heavy if heavy else st.light


cdef inline int64_t _word_weight(Stamps* st, int64_t w) noexcept nogil:
    return _popcount(st.bits[2 * w]) * st.light + _popcount(st.bits[2 * w + 1]) * st.heavy


cdef inline int64_t _weight_below(Stamps* st, int64_t pos) noexcept nogil:
    """Weight of the marks at positions < pos.

    The weight of the words before the queried one is cached: a request's blocks were mostly stamped side by side,
    so the next query usually lands in the same word or the one before, and skips the tree walk. The cache is only
    valid while no mark changes (``st.cached_word = -1`` resets it)."""
    cdef int64_t b = pos - 1, w = b >> 6, i, s
    cdef uint64_t mask = (1ULL << (b & 63)) - 1
    if w != st.cached_word:
        if st.cached_word >= 0 and w == st.cached_word - 1:
            st.cached_below -= _word_weight(st, w)
        elif st.cached_word >= 0 and w == st.cached_word + 1:
            st.cached_below += _word_weight(st, st.cached_word)
        else:
            s = 0
            i = w
            while i > 0:
                s += st.tree[i]
                i &= i - 1
            st.cached_below = s
        st.cached_word = w
    return (st.cached_below + _popcount(st.bits[2 * w] & mask) * st.light
            + _popcount(st.bits[2 * w + 1] & mask) * st.heavy)


cdef inline int64_t _flip(Stamps* st, int64_t pos, int64_t heavy, bint on) noexcept nogil:
    """Set or clear a mark's bit; return its word (the tree is updated by ``_tree_add``, batched per word)."""
    cdef int64_t b = pos - 1
    if on:
        st.bits[2 * (b >> 6) + heavy] |= 1ULL << (b & 63)
    else:
        st.bits[2 * (b >> 6) + heavy] &= ~(1ULL << (b & 63))
    return b >> 6


cdef inline void _tree_add(Stamps* st, int64_t word, int64_t v) noexcept nogil:
    cdef int64_t i = word + 1
    if v == 0 or word < 0:
        return
    while i <= st.words:
        st.tree[i] += v
        i += i & (-i)


cdef int _stamps_compact(Stamps* st, Table* tb, int64_t need) noexcept nogil:
    """Renumber the live marks 1..live in stamp order, in bitmaps with room for ``need`` more stamps.

    Only the order of positions matters, so this keeps the bitmaps at a few times the live keys instead of one
    bit per block of the trace. A key's new position is the rank of its old one (a prefix popcount)."""
    # room for 3x the live keys: compaction scans the whole table, so it should come rarely
    cdef int64_t words = (4 * (tb.count + need) + 64) // 64 + 1
    if 64 * words >= (1LL << 31):
        return -2   # positions are int32 in the table entries
    cdef uint64_t* bits = <uint64_t*> calloc(2 * words, sizeof(uint64_t))
    cdef int64_t* tree = <int64_t*> calloc(words + 1, sizeof(int64_t))
    cdef int64_t* rank = <int64_t*> malloc((st.words + 1) * sizeof(int64_t))
    cdef int64_t w, i, j, b, live = 0
    cdef uint64_t mask
    cdef Entry* en
    if bits == NULL or tree == NULL or rank == NULL:
        free(bits)
        free(tree)
        free(rank)
        return -1
    for w in range(st.words):
        rank[w] = live
        live += _popcount(st.bits[2 * w] | st.bits[2 * w + 1])
    for i in range(tb.size):
        en = &tb.e[i]
        if en.pos > 0:
            b = en.pos - 1
            mask = (1ULL << (b & 63)) - 1
            en.pos = rank[b >> 6] + _popcount((st.bits[2 * (b >> 6)] | st.bits[2 * (b >> 6) + 1]) & mask) + 1
            b = en.pos - 1
            bits[2 * (b >> 6) + (en.req_heavy & 1)] |= 1ULL << (b & 63)
            tree[(b >> 6) + 1] += _weight(st, (en.req_heavy & 1))
    for i in range(1, words + 1):   # linear-time Fenwick build
        j = i + (i & (-i))
        if j <= words:
            tree[j] += tree[i]
    free(rank)
    free(st.bits)
    free(st.tree)
    st.bits = bits
    st.tree = tree
    st.words = words
    st.clock = live
    st.cached_word = -1
    return 0


cdef inline bint _tracked(uint64_t key, int64_t position, bint sampling, uint64_t threshold,
                          int64_t always_blocks) noexcept nogil:
    """Sampling keeps a key iff it sits in the first ``always_blocks`` of its request or its hash falls below the
    rate. With chained keys a key's position is its depth in the prefix trie, so both tests are properties of the
    key: a key is always in or always out."""
    return not sampling or position < always_blocks or _mix(key) < threshold


def stack_pass(const double[::1] t, const int64_t[::1] block_offsets, const uint64_t[::1] keys,
               double sample_rate=1.0, int64_t always_blocks=0):
    """Per block: the prefix-max stack depth and prefix-min last-stamp time before its request.

    Returns ``(depth, stamped, distinct)``: ``depth[j]`` (float64) is ``inf`` when some block up to j in its request
    was never stamped, ``-1`` for a block sampling left out; ``stamped[j]`` (int32) is the request that made the
    oldest latest-stamp among blocks 0..j (-1 when cold or left out). Without sampling depths are exact integers.
    With ``sample_rate < 1`` a tracked key weighs 1 / rate (1 for the first ``always_blocks`` of a
    request), and a depth is the weight of the tracked keys stamped since, an estimate of the true depth.
    ``distinct`` is the (estimated) number of distinct keys.
    """
    cdef int64_t n_req = t.shape[0]
    cdef int64_t m = keys.shape[0]
    if block_offsets.shape[0] != n_req + 1 or (n_req and (block_offsets[0] != 0 or block_offsets[n_req] != m)):
        raise ValueError("block_offsets must rise from 0 to len(keys), one entry per request + 1")
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
    if always_blocks < 0:
        raise ValueError(f"always_blocks must not be negative, got {always_blocks}")
    if n_req >= (1 << 31) - 1:
        raise ValueError(f"{n_req:,} requests: the pass numbers requests with 31 bits; split the trace")
    cdef bint sampling = sample_rate < 1.0
    cdef uint64_t threshold = <uint64_t> (sample_rate * 18446744073709551616.0) if sampling else 0
    cdef Stamps st
    # fixed-point weights keep the sums exact (no drift from adding and removing floats): unit = 1/2^16 block
    st.light = (1 << 16) if sampling else 1
    st.heavy = <int64_t> (st.light / sample_rate + 0.5)
    st.words = 0
    st.clock = 0
    st.total = 0
    st.bits = NULL
    st.tree = NULL
    st.cached_word = -1
    st.cached_below = 0
    cdef double inv_unit = 1.0 / st.light
    depth_arr = np.empty(m, dtype=np.float64)
    stamped_arr = np.empty(m, dtype=np.int32)
    cdef double[::1] depth = depth_arr
    cdef int32_t[::1] stamped = stamped_arr
    cdef int64_t max_len = 0, r
    for r in range(n_req):
        if block_offsets[r + 1] - block_offsets[r] > max_len:
            max_len = block_offsets[r + 1] - block_offsets[r]
    cdef int64_t* slots = <int64_t*> malloc((max_len + 1) * sizeof(int64_t))
    cdef Table tb
    tb.e = NULL
    cdef int ok = _table_init(&tb, 1 << 12)
    cdef int64_t start, end, n, j, s, p, d, max_d, req_first_pos, n_here, w, word, heavy
    cdef int64_t off_word, on_word, off_sum, on_sum
    cdef int64_t min_r
    cdef uint64_t key
    cdef Entry* en
    try:
        if slots == NULL or ok != 0 or _stamps_compact(&st, &tb, max_len) != 0:
            raise MemoryError()
        with nogil:
            for r in range(n_req):
                start = block_offsets[r]
                end = block_offsets[r + 1]
                n = end - start
                # room for this request's keys (load <= 1/2) and stamps, made before any slot is remembered
                while (tb.count + n) * 2 > tb.size:
                    if _table_grow(&tb) != 0:
                        with gil:
                            raise MemoryError()
                if st.clock + n > 64 * st.words:
                    ok = _stamps_compact(&st, &tb, max_len)
                    if ok == -2:
                        with gil:
                            raise ValueError(f"{tb.count:,} distinct keys: the exact pass numbers stamps with 31 "
                                             "bits; use sample_rate < 1")
                    if ok != 0:
                        with gil:
                            raise MemoryError()
                # lookups see the stack as the previous request left it
                max_d = 0
                min_r = n_req
                n_here = 0
                for j in range(start, end):
                    if j + PREFETCH_AHEAD < end:
                        __builtin_prefetch(&tb.e[_home(&tb, keys[j + PREFETCH_AHEAD])])
                    key = keys[j]
                    if not _tracked(key, j - start, sampling, threshold, always_blocks):
                        depth[j] = -1.0
                        stamped[j] = -1
                        continue
                    s = _slot(&tb, key)
                    en = &tb.e[s]
                    if en.pos == -1:
                        en.key = key
                        en.pos = 0
                        en.req_heavy = 1 if sampling and j - start >= always_blocks else 0
                        tb.count += 1
                    slots[n_here] = s
                    n_here += 1
                    p = en.pos
                    if p == 0:
                        max_d = C_DEPTH_COLD
                    elif max_d != C_DEPTH_COLD:
                        d = st.total - _weight_below(&st, p)
                        if d > max_d:
                            max_d = d
                        if (en.req_heavy >> 1) < min_r:
                            min_r = en.req_heavy >> 1
                    if max_d == C_DEPTH_COLD:
                        depth[j] = INFINITY
                        stamped[j] = -1
                    else:
                        depth[j] = max_d * inv_unit
                        stamped[j] = <int32_t> min_r
                # stamp in reverse order: the deepest block gets the oldest stamp; a key repeated in the request
                # keeps the stamp of its deepest occurrence (as the engine stamps each cached key once)
                # (tree updates are summed per word: old stamps sit in runs, new ones are consecutive)
                req_first_pos = st.clock + 1
                off_word = on_word = -1
                off_sum = on_sum = 0
                while n_here > 0:
                    n_here -= 1
                    en = &tb.e[slots[n_here]]
                    p = en.pos
                    if p >= req_first_pos:
                        continue
                    heavy = en.req_heavy & 1
                    w = _weight(&st, heavy)
                    if p == 0:
                        st.total += w
                    else:
                        word = _flip(&st, p, heavy, False)
                        if word != off_word:
                            _tree_add(&st, off_word, off_sum)
                            off_word = word
                            off_sum = 0
                        off_sum -= w
                    st.clock += 1
                    word = _flip(&st, st.clock, heavy, True)
                    if word != on_word:
                        _tree_add(&st, on_word, on_sum)
                        on_word = word
                        on_sum = 0
                    on_sum += w
                    en.pos = st.clock
                    en.req_heavy = <uint32_t> (r << 1) | heavy
                _tree_add(&st, off_word, off_sum)
                _tree_add(&st, on_word, on_sum)
                st.cached_word = -1
    finally:
        free(slots)
        free(st.bits)
        free(st.tree)
        free(tb.e)
    return depth_arr, stamped_arr, st.total * inv_unit


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
             const uint8_t[::1] counted, const int64_t[::1] hit_cap_blocks, const double[::1] depth,
             const int32_t[::1] stamped, const double[::1] capacities, const double[::1] ttls,
             double sample_rate=1.0, int64_t always_blocks=0):
    """Hit blocks and hit tokens over counted requests for every (capacity, TTL) pair of two ascending grids.

    ``ttls`` may hold ``inf`` for no expiry; ``hit_cap_blocks[r]`` caps request r's hit (SEMANTICS §3 step 2).
    Each tracked block counts with the weight sampling gave its key (1 without sampling). Returns
    ``(hit_blocks, hit_tokens, blocks, block_tokens)``: two float64 [capacities, ttls] tables of weighted sums
    (exact integers without sampling), and the weighted tracked blocks and their tokens.
    """
    cdef int64_t n_req = t.shape[0], nc = capacities.shape[0], nt = ttls.shape[0]
    hb_arr = np.zeros((nc + 1, nt + 1), dtype=np.float64)
    ht_arr = np.zeros((nc + 1, nt + 1), dtype=np.float64)
    cdef double[:, ::1] hb = hb_arr
    cdef double[:, ::1] ht = ht_arr
    cdef int64_t r, j, start, end, ci, ti
    cdef double d, w, n_blocks = 0, n_tokens = 0
    cdef double sampled_w = 1.0 / sample_rate
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
                w = 1.0 if j - start < always_blocks else sampled_w
                n_blocks += w
                n_tokens += w * block_tokens[j]
                if d == INFINITY or j - start >= hit_cap_blocks[r]:
                    continue
                ci = _first_capacity(caps, nc, d)
                ti = _first_ttl(tt, nt, t[stamped[j]], t[r])
                hb[ci, ti] += w
                ht[ci, ti] += w * block_tokens[j]
    hit_blocks = hb_arr.cumsum(axis=0).cumsum(axis=1)[:nc, :nt]
    hit_tokens = ht_arr.cumsum(axis=0).cumsum(axis=1)[:nc, :nt]
    return np.ascontiguousarray(hit_blocks), np.ascontiguousarray(hit_tokens), n_blocks, n_tokens
