# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Mattson stack distances under the LRU engine's stamping rule (SEMANTICS §3), in one pass fed batch by batch.

Why one pass suffices: with LRU and reverse-order stamping, the cache of capacity C before a request holds exactly
the C most recently stamped distinct keys (the top of the LRU stack) that have not expired; a request sees the
state left by the previous request (its lookups happen before its own stamping). So block i of a request hits at
capacity C and TTL T iff every block 0..i has stack depth <= C and was last stamped at ``s`` with ``s + T > t``.
``StackPass`` records, per block, the prefix maximum of the depths and the prefix minimum of the last-stamp times;
``bin_hits`` turns those into hit counts for any grid of capacities and TTLs. The pass keeps its stack between
``feed`` calls, so a trace streams through it batch by batch and the depths are those of one whole-trace pass.

Stack depth = the weight of the keys whose latest stamp is at or after the key's own. Stamp positions are bits in
two bitmaps (one per key weight) with a Fenwick tree over the 64-bit words, so a depth costs a popcount plus a short
tree walk (usually reused from the previous block's), and everything stays small enough for the CPU cache: positions
are renumbered 1..live when they run out, so the bitmaps hold a few times the live keys, not one bit per block of
the trace. Keys map to their latest stamp through an open-addressing hash table. A key's entry names the request
that stamped it by a number into a table of arrival times, renumbered with the positions, so what the pass holds
grows with the distinct keys and never with the trace. Nothing here allocates a Python object per block.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
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
    uint32_t req_heavy  # number of the latest stamping request (Times) << 1 | 1 when the key weighs 1 / rate


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


cdef struct Times:
    double* t          # arrival time of each request that stamped a key, by the number its keys' entries carry
    int64_t n          # numbers in use
    int64_t cap


cdef int _times_room(Times* tm) noexcept nogil:
    """Room for one more number: the table grows by doubling; compaction keeps it at the live requests."""
    cdef double* grown
    cdef int64_t cap
    if tm.n < tm.cap:
        return 0
    cap = tm.cap * 2 if tm.cap else 1024
    grown = <double*> realloc(tm.t, cap * sizeof(double))
    if grown == NULL:
        return -1
    tm.t = grown
    tm.cap = cap
    return 0


cdef int _stamps_compact(Stamps* st, Table* tb, Times* tm, int64_t need) noexcept nogil:
    """Renumber the live marks 1..live in stamp order, in bitmaps with room for ``need`` more stamps, and the
    requests the entries name 0..live requests.

    Only the order of positions matters, so this keeps the bitmaps at a few times the live keys instead of one
    bit per block of the trace. A key's new position is the rank of its old one (a prefix popcount). Requests
    whose keys have all been stamped again are dropped from the time table: it holds at most one number per live
    key plus the requests since the last compaction, which are fewer than the stamps there was room for."""
    # room for 3x the live keys: compaction scans the whole table, so it should come rarely
    cdef int64_t words = (4 * (tb.count + need) + 64) // 64 + 1
    if 64 * words >= (1LL << 31):
        return -2   # positions are int32 in the table entries
    cdef uint64_t* bits = <uint64_t*> calloc(2 * words, sizeof(uint64_t))
    cdef int64_t* tree = <int64_t*> calloc(words + 1, sizeof(int64_t))
    cdef int64_t* rank = <int64_t*> malloc((st.words + 1) * sizeof(int64_t))
    cdef int32_t* number = <int32_t*> malloc((tm.n + 1) * sizeof(int32_t))
    cdef double* times = <double*> malloc((tm.n + 1) * sizeof(double))
    cdef int64_t w, i, j, b, live = 0, n_times = 0, allocated = tm.n + 1
    cdef uint32_t old
    cdef uint64_t mask
    cdef Entry* en
    if bits == NULL or tree == NULL or rank == NULL or number == NULL or times == NULL:
        free(bits)
        free(tree)
        free(rank)
        free(number)
        free(times)
        return -1
    for w in range(st.words):
        rank[w] = live
        live += _popcount(st.bits[2 * w] | st.bits[2 * w + 1])
    for i in range(tm.n):
        number[i] = -1
    for i in range(tb.size):
        en = &tb.e[i]
        if en.pos > 0:
            b = en.pos - 1
            mask = (1ULL << (b & 63)) - 1
            en.pos = rank[b >> 6] + _popcount((st.bits[2 * (b >> 6)] | st.bits[2 * (b >> 6) + 1]) & mask) + 1
            b = en.pos - 1
            bits[2 * (b >> 6) + (en.req_heavy & 1)] |= 1ULL << (b & 63)
            tree[(b >> 6) + 1] += _weight(st, (en.req_heavy & 1))
            # the new numbers need not keep the old order: the pass compares stamp times, not numbers
            old = en.req_heavy >> 1
            if number[old] < 0:
                number[old] = <int32_t> n_times
                times[n_times] = tm.t[old]
                n_times += 1
            en.req_heavy = (<uint32_t> number[old] << 1) | (en.req_heavy & 1)
    for i in range(1, words + 1):   # linear-time Fenwick build
        j = i + (i & (-i))
        if j <= words:
            tree[j] += tree[i]
    free(rank)
    free(number)
    free(st.bits)
    free(st.tree)
    free(tm.t)
    st.bits = bits
    st.tree = tree
    st.words = words
    st.clock = live
    st.cached_word = -1
    tm.t = times
    tm.n = n_times
    tm.cap = allocated
    return 0


cdef inline bint _tracked(uint64_t key, int64_t position, bint sampling, uint64_t threshold,
                          int64_t always_blocks) noexcept nogil:
    """Sampling keeps a key iff it sits in the first ``always_blocks`` of its request or its hash falls below the
    rate. With chained keys a key's position is its depth in the prefix trie, so both tests are properties of the
    key: a key is always in or always out."""
    return not sampling or position < always_blocks or _mix(key) < threshold


cdef class StackPass:
    """The LRU stack of every key stamped so far, fed a trace batch by batch (``feed``).

    With ``sample_rate < 1`` a tracked key weighs 1 / rate (1 for the first ``always_blocks`` of a request), and
    a depth is the weight of the tracked keys stamped since, an estimate of the true depth. After an error (out
    of memory, too many distinct keys) the state is incomplete and the pass refuses further batches.
    """

    cdef Table tb
    cdef Stamps st
    cdef Times tm
    cdef int64_t* slots          # table slots of the current request's tracked blocks
    cdef int64_t slots_cap
    cdef bint sampling
    cdef uint64_t threshold
    cdef double inv_unit
    cdef bint broken
    cdef readonly double sample_rate
    cdef readonly int64_t always_blocks

    def __cinit__(self, double sample_rate=1.0, int64_t always_blocks=0):
        self.tb.e = NULL
        self.st.bits = NULL
        self.st.tree = NULL
        self.tm.t = NULL
        self.slots = NULL
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        if always_blocks < 0:
            raise ValueError(f"always_blocks must not be negative, got {always_blocks}")
        self.sample_rate = sample_rate
        self.always_blocks = always_blocks
        self.sampling = sample_rate < 1.0
        self.threshold = <uint64_t> (sample_rate * 18446744073709551616.0) if self.sampling else 0
        # fixed-point weights keep the sums exact (no drift from adding and removing floats): unit = 1/2^16 block
        self.st.light = (1 << 16) if self.sampling else 1
        self.st.heavy = <int64_t> (self.st.light / sample_rate + 0.5)
        self.st.words = 0
        self.st.clock = 0
        self.st.total = 0
        self.st.cached_word = -1
        self.st.cached_below = 0
        self.inv_unit = 1.0 / self.st.light
        self.tm.n = 0
        self.tm.cap = 0
        self.slots_cap = 0
        self.broken = False
        if _table_init(&self.tb, 1 << 12) != 0 or _stamps_compact(&self.st, &self.tb, &self.tm, 64) != 0:
            raise MemoryError()

    def __dealloc__(self):
        free(self.tb.e)
        free(self.st.bits)
        free(self.st.tree)
        free(self.tm.t)
        free(self.slots)

    @property
    def distinct(self) -> float:
        """The (estimated, when sampling) number of distinct keys stamped so far."""
        return self.st.total * self.inv_unit

    @property
    def tracked_keys(self) -> int:
        """Keys in the hash table (every distinct key, or the sampled ones)."""
        return self.tb.count

    @property
    def nbytes(self) -> int:
        """Bytes the state holds now: hash table, stamp bitmaps and their tree, time table, slot buffer."""
        return (self.tb.size * sizeof(Entry) + self.st.words * (2 * sizeof(uint64_t) + sizeof(int64_t))
                + self.tm.cap * sizeof(double) + self.slots_cap * sizeof(int64_t))

    def feed(self, const double[::1] t, const int64_t[::1] block_offsets, const uint64_t[::1] keys):
        """Per block of the batch: the prefix-max stack depth and prefix-min last-stamp time before its request.

        Returns ``(depth, stamp_t)``, two float64 arrays: ``depth[j]`` is ``inf`` when some block up to j in its
        request was never stamped, ``-1`` for a block sampling left out (exact integers without sampling);
        ``stamp_t[j]`` is the arrival time of the request that made the oldest latest-stamp among blocks 0..j
        (``inf`` when cold or left out). The caller checks the batch (cachesim.trace.validate): the loops below
        trust every offset.
        """
        cdef int64_t n_req = t.shape[0]
        cdef int64_t m = keys.shape[0]
        if self.broken:
            raise RuntimeError("this stack pass stopped at an error; its state is incomplete, start a new one")
        if block_offsets.shape[0] != n_req + 1 or block_offsets[0] != 0 or block_offsets[n_req] != m:
            raise ValueError("block_offsets must rise from 0 to len(keys), one entry per request + 1")
        depth_arr = np.empty(m, dtype=np.float64)
        stamp_arr = np.empty(m, dtype=np.float64)
        cdef double[::1] depth = depth_arr
        cdef double[::1] stamp_t = stamp_arr
        cdef int64_t max_len = 0, r
        for r in range(n_req):
            if block_offsets[r + 1] - block_offsets[r] > max_len:
                max_len = block_offsets[r + 1] - block_offsets[r]
        cdef int64_t* grown
        if max_len + 1 > self.slots_cap:
            grown = <int64_t*> realloc(self.slots, (max_len + 1) * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self.slots = grown
            self.slots_cap = max_len + 1
        cdef Table* tb = &self.tb
        cdef Stamps* st = &self.st
        cdef Times* tm = &self.tm
        cdef int64_t* slots = self.slots
        cdef bint sampling = self.sampling
        cdef uint64_t threshold = self.threshold
        cdef int64_t always_blocks = self.always_blocks
        cdef double inv_unit = self.inv_unit
        cdef int64_t start, end, n, j, s, p, d, max_d, req_first_pos, n_here, w, word, heavy, number
        cdef int64_t off_word, on_word, off_sum, on_sum
        cdef int ok
        cdef double min_s, s_t
        cdef uint64_t key
        cdef Entry* en
        self.broken = True   # until the batch is through
        with nogil:
            for r in range(n_req):
                start = block_offsets[r]
                end = block_offsets[r + 1]
                n = end - start
                # room for this request's keys (load <= 3/4: the table is most of the memory; 1/2 was no faster)
                # and stamps, made before any slot is remembered
                while (tb.count + n) * 4 > tb.size * 3:
                    if _table_grow(tb) != 0:
                        with gil:
                            raise MemoryError()
                if st.clock + n > 64 * st.words:
                    ok = _stamps_compact(st, tb, tm, max_len)
                    if ok == -2:
                        with gil:
                            raise ValueError(f"{tb.count:,} distinct keys: the exact pass numbers stamps with 31 "
                                             "bits; use sample_rate < 1")
                    if ok != 0:
                        with gil:
                            raise MemoryError()
                # lookups see the stack as the previous request left it
                max_d = 0
                min_s = INFINITY
                n_here = 0
                for j in range(start, end):
                    if j + PREFETCH_AHEAD < end:
                        __builtin_prefetch(&tb.e[_home(tb, keys[j + PREFETCH_AHEAD])])
                    key = keys[j]
                    if not _tracked(key, j - start, sampling, threshold, always_blocks):
                        depth[j] = -1.0
                        stamp_t[j] = INFINITY
                        continue
                    s = _slot(tb, key)
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
                        d = st.total - _weight_below(st, p)
                        if d > max_d:
                            max_d = d
                        s_t = tm.t[en.req_heavy >> 1]
                        if s_t < min_s:
                            min_s = s_t
                    if max_d == C_DEPTH_COLD:
                        depth[j] = INFINITY
                        stamp_t[j] = INFINITY
                    else:
                        depth[j] = max_d * inv_unit
                        stamp_t[j] = min_s
                if n_here == 0:
                    continue   # stamps nothing: needs no number
                if tm.n >= (1LL << 31) - 1:
                    with gil:
                        raise ValueError("2^31 requests with live keys: the pass numbers them with 31 bits")
                if _times_room(tm) != 0:
                    with gil:
                        raise MemoryError()
                number = tm.n
                tm.t[number] = t[r]
                tm.n += 1
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
                    w = _weight(st, heavy)
                    if p == 0:
                        st.total += w
                    else:
                        word = _flip(st, p, heavy, False)
                        if word != off_word:
                            _tree_add(st, off_word, off_sum)
                            off_word = word
                            off_sum = 0
                        off_sum -= w
                    st.clock += 1
                    word = _flip(st, st.clock, heavy, True)
                    if word != on_word:
                        _tree_add(st, on_word, on_sum)
                        on_word = word
                        on_sum = 0
                    on_sum += w
                    en.pos = st.clock
                    en.req_heavy = (<uint32_t> number << 1) | <uint32_t> heavy
                _tree_add(st, off_word, off_sum)
                _tree_add(st, on_word, on_sum)
                st.cached_word = -1
        self.broken = False
        return depth_arr, stamp_arr


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
             const double[::1] stamp_t, const double[::1] capacities, const double[::1] ttls,
             int64_t always_blocks=0):
    """Hit blocks and hit tokens over counted requests for every (capacity, TTL) pair of two ascending grids.

    ``ttls`` may hold ``inf`` for no expiry; ``hit_cap_blocks[r]`` caps request r's hit (SEMANTICS §3 step 2).
    Counts are whole numbers in two classes, so sums over batches are exact in any order: class 0 holds a
    request's first ``always_blocks`` blocks (weight 1 when sampling), class 1 the rest (weight 1 / rate when
    sampling; every block without sampling, where ``always_blocks`` is 0). Returns ``(hits, tracked)``: int64
    ``hits[class, 0 = blocks | 1 = tokens, capacity, ttl]`` and ``tracked[class, 0 | 1]``, the tracked blocks of
    the counted requests and their tokens.
    """
    cdef int64_t n_req = t.shape[0], nc = capacities.shape[0], nt = ttls.shape[0]
    if (block_offsets.shape[0] != n_req + 1 or counted.shape[0] != n_req or hit_cap_blocks.shape[0] != n_req
            or block_offsets[0] != 0 or depth.shape[0] != block_offsets[n_req]
            or stamp_t.shape[0] != depth.shape[0] or block_tokens.shape[0] != depth.shape[0]):
        raise ValueError("bin_hits needs one offset per request + 1 (from 0) and one depth, stamp time and token "
                         "count per block")
    hits_arr = np.zeros((2, 2, nc + 1, nt + 1), dtype=np.int64)
    tracked_arr = np.zeros((2, 2), dtype=np.int64)
    cdef int64_t[:, :, :, ::1] hits = hits_arr
    cdef int64_t[:, ::1] tracked = tracked_arr
    cdef int64_t r, j, start, end, ci, ti, k
    cdef double d
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
                k = 1 if j - start >= always_blocks else 0
                tracked[k, 0] += 1
                tracked[k, 1] += block_tokens[j]
                if d == INFINITY or j - start >= hit_cap_blocks[r]:
                    continue
                ci = _first_capacity(caps, nc, d)
                ti = _first_ttl(tt, nt, stamp_t[j], t[r])
                hits[k, 0, ci, ti] += 1
                hits[k, 1, ci, ti] += block_tokens[j]
    # a block hits at its capacity bin and every larger one, at its TTL bin and every longer one
    out = hits_arr.cumsum(axis=2).cumsum(axis=3)[:, :, :nc, :nt]
    return np.ascontiguousarray(out), tracked_arr
