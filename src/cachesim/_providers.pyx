# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: language = c++
"""Compiled serve loops of the provider prompt caches (``cachesim.providers``).

Provider caches differ from the core's block LRU: they are unbounded, entries expire by TTL only, and the rules
decide *where* entries are written (breakpoints, 128-token units, 64-token units) and which positions a request may
look up. So they get their own loops here; the plain-Python twin in ``providers/_reference.py`` implements the same
rules and the tests compare the two.

Keys. ``key(p)`` names the first ``p`` tokens of a prompt: a chain over 16-token units,
``h[0] = 0, h[k] = XXH3_64(bytes(tokens[16(k-1):16k]), seed=h[k-1])``, then
``key(p) = XXH3_64(bytes(tokens[16*(p//16):p]), seed=h[p//16])`` (the tail may be empty). One chain per request
makes the key of any position cost at most 15 tokens of hashing. A namespace (workspace, routed replica, ...) is
folded in with :func:`nskey`, so the chain does not depend on it and other replicas can be probed cheaply.

Entries live in an open-addressing table (linear probing). An expired entry stays for ``forget_s`` more seconds so
the miss-cause logic can say "there was an entry here but it expired"; after that it counts as absent and the
next growth of the table drops it, which bounds memory by the traffic of the last TTL + ``forget_s``.

Every loop runs without the GIL over raw pointers into numpy arrays; per-request outputs go to numpy arrays.
"""

from cpython.mem cimport PyMem_RawMalloc, PyMem_RawFree
from libc.stdint cimport int8_t, int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memset
from libc.math cimport ceil, INFINITY
from libcpp.deque cimport deque
from libcpp.utility cimport pair
from libcpp.vector cimport vector


import numpy as np

# XXH3 comes from the core (the xxhash extension's own function, resolved once there): keys stay bit-identical
# with xxhash.xxh3_64_intdigest, as the reference's are.
from cachesim._core cimport xxh3_64_seeded as _xxh3

cdef enum:
    UNIT = 16

# per-request flags (why a request read less than it might have); Python maps them to miss causes
FLAG_BELOW_MIN = 1
FLAG_EXPIRED = 2
FLAG_LOOKBACK = 4
FLAG_OVERFLOW = 8
FLAG_NOT_READY = 16
FLAG_ERROR = 32
FLAG_SERVER_MISS = 64
FLAG_EVICTED = 128

cdef enum:
    F_BELOW_MIN = 1
    F_EXPIRED = 2
    F_LOOKBACK = 4
    F_OVERFLOW = 8
    F_NOT_READY = 16
    F_ERROR = 32
    F_SERVER_MISS = 64
    F_EVICTED = 128
    A_RESIDENT = 1           # Entry.aux bits of a prefix unit under a capacity: counted in its replica
    A_EVICTED = 2            # evicted for capacity; the evicting tenant is in aux >> 8

# error codes of a rejected Anthropic request (the API's HTTP 400)
cdef enum:
    E_TOO_MANY_BREAKPOINTS = 1
    E_TTL_ORDER = 2
    M_ANTHROPIC = 0
    M_OPENAI56 = 1

ERR_TOO_MANY_BREAKPOINTS = E_TOO_MANY_BREAKPOINTS
ERR_TTL_ORDER = E_TTL_ORDER
MODE_ANTHROPIC = M_ANTHROPIC
MODE_OPENAI56 = M_OPENAI56


cdef inline uint64_t fmix64(uint64_t k) noexcept nogil:
    k ^= k >> 33
    k *= 0xFF51AFD7ED558CCDULL
    k ^= k >> 33
    k *= 0xC4CEB93FE53B94CFULL
    k ^= k >> 33
    return k


cdef inline uint64_t c_nskey(uint64_t key, uint64_t ns) noexcept nogil:
    return fmix64(key ^ fmix64(ns + 0x9E3779B97F4A7C15ULL))


def nskey(uint64_t key, uint64_t ns):
    """A key inside namespace ``ns`` (for tests of the reference's twin)."""
    return c_nskey(key, ns)


cdef inline void c_chain(const uint32_t* toks, int64_t n, uint64_t* chain) noexcept nogil:
    cdef int64_t k
    chain[0] = 0
    for k in range(1, n // UNIT + 1):
        chain[k] = _xxh3(toks + (k - 1) * UNIT, UNIT * 4, chain[k - 1])


cdef inline uint64_t c_key_at(const uint32_t* toks, const uint64_t* chain, int64_t p) noexcept nogil:
    cdef int64_t q = p // UNIT
    return _xxh3(toks + q * UNIT, (p - q * UNIT) * 4, chain[q])


def prefix_keys(const uint32_t[::1] tokens, const int64_t[::1] token_offsets, const int64_t[::1] positions,
                const int64_t[::1] position_offsets):
    """``key(p)`` of each listed position of each request (CSR), uint64."""
    cdef Py_ssize_t n = token_offsets.shape[0] - 1, r, i
    out_arr = np.empty(positions.shape[0], dtype=np.uint64)
    cdef uint64_t[::1] out = out_arr
    cdef int64_t longest = 0
    for r in range(n):
        longest = max(longest, token_offsets[r + 1] - token_offsets[r])
    chain_arr = np.empty(longest // UNIT + 1, dtype=np.uint64)
    cdef uint64_t[::1] chain = chain_arr
    cdef const uint32_t* toks
    cdef int64_t length
    with nogil:
        for r in range(n):
            toks = &tokens[0] + token_offsets[r] if tokens.shape[0] else NULL
            length = token_offsets[r + 1] - token_offsets[r]
            c_chain(toks, length, &chain[0])
            for i in range(position_offsets[r], position_offsets[r + 1]):
                out[i] = c_key_at(toks, &chain[0], positions[i])
    return out_arr


# ---------------------------------------------------------------------------------------------------------------
# Entry table

ctypedef struct Entry:
    uint64_t key           # 0 = empty slot
    double expires_at
    double available_at
    double base            # prefix units: created_at; breakpoints: the entry's TTL; routing: requests in window
    # aux: DeepSeek: bitmask of unit ends in this node; routing: round-robin counter;
    # prefix units under a capacity: A_RESIDENT | A_EVICTED | evicting tenant << 8
    uint64_t aux
    int32_t writer         # request that last wrote (or touched) it; routing: most replicas used
    int32_t creator        # request that created it (whose write a later hit reads)
    int64_t seq            # prefix units under a capacity: order of the last touch (LRU)


cdef class _Table:
    cdef Entry* slots
    cdef int64_t capacity
    cdef int64_t used
    cdef double now         # the current request's time (set by the serve loop)
    cdef double forget_s    # an entry expired this long ago is forgotten: absent to lookups, dropped on growth
    cdef bint lru           # prefix units under a capacity: resident units are never dropped on growth

    def __cinit__(self, int64_t capacity=1024, double forget_s=INFINITY):
        cdef int64_t cap = 16
        while cap < capacity:
            cap *= 2
        self.slots = <Entry*> PyMem_RawMalloc(cap * sizeof(Entry))
        if self.slots == NULL:
            raise MemoryError()
        memset(self.slots, 0, cap * sizeof(Entry))
        self.capacity = cap
        self.used = 0
        self.now = -INFINITY
        self.forget_s = forget_s
        self.lru = False

    def __dealloc__(self):
        PyMem_RawFree(self.slots)

    def __len__(self):
        return self.used

    cdef inline Entry* find(self, uint64_t key) noexcept nogil:
        if key == 0:
            key = 1
        cdef uint64_t mask = <uint64_t> self.capacity - 1
        cdef uint64_t i = (key * 0x9E3779B97F4A7C15ULL) >> 20 & mask
        while True:
            if self.slots[i].key == key:
                return &self.slots[i]
            if self.slots[i].key == 0:
                return NULL
            i = (i + 1) & mask

    cdef inline Entry* recall(self, uint64_t key) noexcept nogil:
        """Like :meth:`find`, but an entry expired more than ``forget_s`` ago counts as absent."""
        cdef Entry* e = self.find(key)
        if e != NULL and self.now >= e.expires_at + self.forget_s:
            return NULL
        return e

    cdef inline bint keeps(self, Entry* e) noexcept nogil:
        return self.now < e.expires_at + self.forget_s or (self.lru and e.aux & A_RESIDENT)

    cdef int grow(self) noexcept nogil:
        """Rehash without the forgotten entries, doubling the table unless that freed enough room."""
        cdef Entry* old = self.slots
        cdef int64_t old_cap = self.capacity, j, kept = 0
        for j in range(old_cap):
            if old[j].key != 0 and self.keeps(&old[j]):
                kept += 1
        cdef int64_t cap = old_cap if kept * 4 < old_cap else old_cap * 2
        cdef Entry* fresh = <Entry*> PyMem_RawMalloc(cap * sizeof(Entry))
        if fresh == NULL:
            return -1
        memset(fresh, 0, cap * sizeof(Entry))
        cdef uint64_t mask = <uint64_t> cap - 1, i
        for j in range(old_cap):
            if old[j].key != 0 and self.keeps(&old[j]):
                i = (old[j].key * 0x9E3779B97F4A7C15ULL) >> 20 & mask
                while fresh[i].key != 0:
                    i = (i + 1) & mask
                fresh[i] = old[j]
        self.slots = fresh
        self.capacity = cap
        self.used = kept
        PyMem_RawFree(old)
        return 0

    cdef Entry* insert(self, uint64_t key, bint* fresh) noexcept nogil:
        """The entry of ``key``, created zeroed (``fresh[0] = True``) if absent; NULL when out of memory."""
        if key == 0:
            key = 1
        cdef Entry* e = self.recall(key)
        if e != NULL:
            fresh[0] = False
            return e
        e = self.find(key)
        if e != NULL:
            # forgotten: reuse its slot as a new entry (aux and seq stay: callers that use them reset them)
            e.expires_at = 0
            e.available_at = 0
            e.base = 0
            e.writer = 0
            e.creator = 0
            fresh[0] = True
            return e
        if (self.used + 1) * 2 > self.capacity:
            if self.grow() != 0:
                return NULL
        cdef uint64_t mask = <uint64_t> self.capacity - 1
        cdef uint64_t i = (key * 0x9E3779B97F4A7C15ULL) >> 20 & mask
        while self.slots[i].key != 0:
            i = (i + 1) & mask
        self.slots[i].key = key
        self.used += 1
        fresh[0] = True
        return &self.slots[i]


cdef inline bint live(Entry* e, double t) noexcept nogil:
    return e != NULL and e.available_at <= t and t < e.expires_at


cdef int64_t _longest(const int64_t[::1] offsets) noexcept nogil:
    cdef int64_t best = 0, r
    for r in range(offsets.shape[0] - 1):
        if offsets[r + 1] - offsets[r] > best:
            best = offsets[r + 1] - offsets[r]
    return best


# ---------------------------------------------------------------------------------------------------------------
# Routing (OpenAI): hash of the first R tokens and the prompt_cache_key; spill-over past a per-minute rate

def route(const uint32_t[::1] tokens, const int64_t[::1] token_offsets, const double[::1] t,
          const int64_t[::1] cache_key, int64_t prefix_tokens, double per_minute, double window_s, uint64_t seed):
    """Per request: routing key, replica index, replica count ``k = ceil(rate / per_minute)`` (the rate counts the
    requests of the same routing key in ``(t - window_s, t]``, this one included) and the most replicas the key
    has used so far, and the replica's namespace ``nskey(routing key, replica)``. Round robin over the ``k``
    replicas from a seeded start per key."""
    cdef Py_ssize_t n = t.shape[0], r, lo = 0
    rk_arr = np.empty(n, dtype=np.uint64)
    replica_arr = np.empty(n, dtype=np.int32)
    k_arr = np.empty(n, dtype=np.int32)
    kmax_arr = np.empty(n, dtype=np.int32)
    ns_arr = np.empty(n, dtype=np.uint64)
    cdef int32_t[::1] kmax = kmax_arr
    cdef uint64_t[::1] ns = ns_arr
    cdef uint64_t[::1] rk = rk_arr
    cdef int32_t[::1] replica = replica_arr
    cdef int32_t[::1] kk = k_arr
    cdef _Table table = _Table(64)
    cdef uint64_t chain[64]   # enough for the routing prefix; longer prefixes are cut to 1008 tokens
    cdef const uint32_t* toks
    cdef int64_t length, p, k
    cdef Entry* e
    cdef bint fresh
    cdef int err = 0
    if prefix_tokens < 1 or prefix_tokens > 63 * UNIT:
        raise ValueError(f"routing prefix must be 1..{63 * UNIT} tokens, not {prefix_tokens}")
    with nogil:
        for r in range(n):
            toks = &tokens[0] + token_offsets[r] if tokens.shape[0] else NULL
            length = token_offsets[r + 1] - token_offsets[r]
            p = min(length, prefix_tokens)
            c_chain(toks, p, chain)
            rk[r] = c_nskey(c_key_at(toks, chain, p), <uint64_t> (cache_key[r] + 1))
            while t[lo] <= t[r] - window_s:
                table.find(rk[lo]).base -= 1
                lo += 1
            e = table.insert(rk[r], &fresh)
            if e == NULL:
                err = 1
                break
            if fresh:
                e.aux = c_nskey(rk[r], seed) & 0xFFFF    # seeded start of the round robin
            e.base += 1
            k = <int64_t> ceil(e.base / per_minute)
            if k < 1:
                k = 1
            kk[r] = <int32_t> k
            if k > e.writer:
                e.writer = k          # the most replicas this key has spread over so far
            kmax[r] = <int32_t> e.writer
            replica[r] = <int32_t> (e.aux % <uint64_t> k)
            ns[r] = c_nskey(rk[r], <uint64_t> replica[r])
            e.aux += 1
    if err:
        raise MemoryError()
    return rk_arr, replica_arr, k_arr, kmax_arr, ns_arr


# ---------------------------------------------------------------------------------------------------------------
# Breakpoint caches: Anthropic, OpenAI GPT-5.6+ (entries written only at breakpoints, looked up boundary-exact)

cdef inline int64_t _index_of(const int64_t* a, int64_t n, int64_t x) noexcept nogil:
    """Index of ``x`` in the sorted array ``a[0:n]``, or -1."""
    cdef int64_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < n and a[lo] == x else -1


cdef struct Probe:
    int64_t hit          # highest live position found (0 = none)
    int64_t expired      # highest position holding an expired entry
    int64_t not_ready    # highest position holding an entry not yet available
    Entry* entry


cdef inline void _probe(_Table table, const uint32_t* toks, const uint64_t* chain, uint64_t ns, int64_t q,
                        double t, Probe* pr) noexcept nogil:
    cdef Entry* e = table.recall(c_nskey(c_key_at(toks, chain, q), ns))
    if e == NULL:
        return
    if t >= e.expires_at:
        if q > pr.expired:
            pr.expired = q
    elif e.available_at > t:
        if q > pr.not_ready:
            pr.not_ready = q
    elif q > pr.hit:
        pr.hit = q
        pr.entry = e


cdef inline void _refresh(Entry* e, double t, int64_t r) noexcept nogil:
    e.expires_at = t + e.base
    e.writer = r


cdef inline int _write(_Table table, uint64_t key, double t, double ttl_s, double ttft_s, int64_t r) noexcept nogil:
    cdef bint fresh
    cdef Entry* e = table.insert(key, &fresh)
    if e == NULL:
        return -1
    if fresh or t >= e.expires_at:
        e.available_at = t + ttft_s
        e.expires_at = t + ttl_s
        e.creator = r
    else:
        # a concurrent write of the same prefix: the earlier one becomes readable first, the later lasts longer
        e.available_at = min(e.available_at, t + ttft_s)
        e.expires_at = max(e.expires_at, t + ttl_s)
    e.base = ttl_s
    e.writer = r
    return 0


def serve_breakpoints(int mode, const uint32_t[::1] tokens, const int64_t[::1] token_offsets, const double[::1] t,
                      const uint64_t[::1] ns, const int64_t[::1] boundaries, const int64_t[::1] boundary_offsets,
                      const int64_t[::1] breakpoints, const int8_t[::1] bp_long, const int64_t[::1] bp_offsets,
                      bint automatic, int8_t automatic_long, int64_t min_tokens, int64_t lookback_blocks,
                      int64_t max_breakpoints, double ttl_short_s, double ttl_long_s, double ttft_s,
                      bint refresh_path, const double[::1] miss_draw, double miss_probability,
                      double forget_s=INFINITY, bint per_segment_minimum=False):
    """Serve every request; returns per-request ``read, write_short, write_long, flags, error, hit_from`` arrays
    (``hit_from``: the request that created the entry read, -1 for none).

    ``boundaries`` (CSR, sorted, unique) must contain every breakpoint and, when ``automatic``, the prompt end.
    Anthropic (mode 0): each breakpoint looks back over ``lookback_blocks`` boundaries (itself included) for an
    entry at exactly that position; every cacheable breakpoint above the hit writes; more than
    ``max_breakpoints`` breakpoints, or a 5m one before a 1h one, rejects the request (error, nothing billed).
    A breakpoint is cacheable at ``min_tokens`` from the prompt start, or with ``per_segment_minimum`` at
    ``min_tokens`` past the previous cacheable breakpoint (Bedrock's "first checkpoint after 1,024, second after
    2,048" reading).
    OpenAI 5.6+ (mode 1): the lookup set is the first 2 and latest 50 explicit breakpoints, the implicit one
    (prompt end), the 20 block ends before it and the first block end; the implicit and the latest explicit
    breakpoints up to ``max_breakpoints`` write, all with the short TTL class.
    """
    cdef Py_ssize_t n = t.shape[0], r
    read_arr = np.zeros(n, dtype=np.int64)
    ws_arr = np.zeros(n, dtype=np.int64)
    wl_arr = np.zeros(n, dtype=np.int64)
    flags_arr = np.zeros(n, dtype=np.int32)
    error_arr = np.zeros(n, dtype=np.int8)
    hit_from_arr = np.full(n, -1, dtype=np.int64)
    cdef int64_t[::1] hit_from = hit_from_arr
    cdef Entry* best
    cdef int64_t[::1] read = read_arr
    cdef int64_t[::1] w_short = ws_arr
    cdef int64_t[::1] w_long = wl_arr
    cdef int32_t[::1] flags = flags_arr
    cdef int8_t[::1] error = error_arr
    chain_arr = np.empty(_longest(token_offsets) // UNIT + 2, dtype=np.uint64)
    cdef uint64_t[::1] chain = chain_arr
    # the request's breakpoints with the automatic one merged in: positions, TTL class, cacheable
    cdef int64_t max_bps = 0
    for r in range(n):
        max_bps = max(max_bps, bp_offsets[r + 1] - bp_offsets[r])
    bp_pos_arr = np.empty(max_bps + 2, dtype=np.int64)
    bp_cls_arr = np.empty(max_bps + 2, dtype=np.int8)
    cdef int64_t[::1] bp_pos = bp_pos_arr
    cdef int8_t[::1] bp_cls = bp_cls_arr
    bp_ok_arr = np.empty(max_bps + 2, dtype=np.int8)
    cdef int8_t[::1] bp_ok = bp_ok_arr
    cdef bint any_ok
    cdef int64_t prev_ok
    cdef bint use_draws = miss_draw.shape[0] == n and miss_probability > 0
    cdef _Table table = _Table(64, forget_s)
    cdef const uint32_t* toks
    cdef const int64_t* bnd
    cdef int64_t length, nb, nbp, i, j, jb, q, hit, b_pos, c_pos, n_explicit, slots
    cdef uint64_t ns_r
    cdef Probe pr
    cdef Entry* e
    cdef int err = 0
    cdef bint seen_short
    with nogil:
        for r in range(n):
            toks = &tokens[0] + token_offsets[r] if tokens.shape[0] else NULL
            length = token_offsets[r + 1] - token_offsets[r]
            table.now = t[r]
            bnd = &boundaries[0] + boundary_offsets[r] if boundaries.shape[0] else NULL
            nb = boundary_offsets[r + 1] - boundary_offsets[r]
            ns_r = ns[r]
            # merge the automatic breakpoint (prompt end) into the explicit ones
            nbp = 0
            for i in range(bp_offsets[r], bp_offsets[r + 1]):
                bp_pos[nbp] = breakpoints[i]
                bp_cls[nbp] = bp_long[i]
                nbp += 1
            n_explicit = nbp
            if automatic:
                if nbp and bp_pos[nbp - 1] == length:
                    if bp_cls[nbp - 1] != automatic_long and mode == M_ANTHROPIC:
                        error[r] = E_TTL_ORDER       # the API rejects a second TTL on the same block
                        flags[r] |= F_ERROR
                        continue
                else:
                    bp_pos[nbp] = length
                    bp_cls[nbp] = automatic_long
                    nbp += 1
            if mode == M_ANTHROPIC:
                if nbp > max_breakpoints:
                    error[r] = E_TOO_MANY_BREAKPOINTS
                    flags[r] |= F_ERROR
                    continue
                seen_short = False
                for i in range(nbp):
                    if bp_cls[i] == 0:
                        seen_short = True
                    elif seen_short:
                        error[r] = E_TTL_ORDER
                        break
                if error[r]:
                    flags[r] |= F_ERROR
                    continue
            if nbp == 0:
                continue
            any_ok = False
            prev_ok = 0
            for i in range(nbp):
                bp_ok[i] = bp_pos[i] - (prev_ok if per_segment_minimum else 0) >= min_tokens
                if bp_ok[i]:
                    prev_ok = bp_pos[i]
                    any_ok = True
            if not any_ok:
                flags[r] |= F_BELOW_MIN
                continue
            c_chain(toks, length, &chain[0])
            pr.hit = 0
            pr.expired = 0
            pr.not_ready = 0
            pr.entry = NULL
            if use_draws and miss_draw[r] < miss_probability:
                flags[r] |= F_SERVER_MISS
            elif mode == M_ANTHROPIC:
                # every breakpoint looks back over its window; each one's highest live entry is read and refreshed
                hit = 0
                best = NULL
                for i in range(nbp - 1, -1, -1):
                    if not bp_ok[i]:
                        continue
                    jb = _index_of(bnd, nb, bp_pos[i])
                    pr.entry = NULL
                    pr.hit = 0
                    for j in range(jb, max(jb - lookback_blocks, -1), -1):
                        _probe(table, toks, &chain[0], ns_r, bnd[j], t[r], &pr)
                        if pr.entry != NULL:
                            break
                    if pr.entry != NULL:
                        _refresh(pr.entry, t[r], r)
                        if pr.hit > hit:
                            hit = pr.hit
                            best = pr.entry
                pr.hit = hit
                if best != NULL:
                    hit_from[r] = best.creator
                # an entry above the hit, in a block the windows did not reach
                jb = _index_of(bnd, nb, bp_pos[nbp - 1])
                for j in range(jb - lookback_blocks, -1, -1):
                    q = bnd[j]
                    if q <= pr.hit:
                        break
                    if live(table.recall(c_nskey(c_key_at(toks, &chain[0], q), ns_r)), t[r]):
                        flags[r] |= F_LOOKBACK
                        break
            else:
                # OpenAI 5.6+: one lookup set, the highest live entry wins
                for i in range(n_explicit):
                    if i < 2 or i >= n_explicit - 50:
                        _probe(table, toks, &chain[0], ns_r, bp_pos[i], t[r], &pr)
                if automatic:
                    jb = _index_of(bnd, nb, length)
                    for j in range(jb, max(jb - 21, -1), -1):
                        _probe(table, toks, &chain[0], ns_r, bnd[j], t[r], &pr)
                if automatic and nb:      # the end of the initial developer block: implicit mode only
                    _probe(table, toks, &chain[0], ns_r, bnd[0], t[r], &pr)
                if pr.hit:
                    e = table.find(c_nskey(c_key_at(toks, &chain[0], pr.hit), ns_r))
                    _refresh(e, t[r], r)
                    hit_from[r] = e.creator
            hit = pr.hit
            if pr.expired > hit:
                flags[r] |= F_EXPIRED
            if pr.not_ready > hit:
                flags[r] |= F_NOT_READY
            if refresh_path:
                for j in range(nb):
                    q = bnd[j]
                    if q >= hit:
                        break
                    e = table.recall(c_nskey(c_key_at(toks, &chain[0], q), ns_r))
                    if live(e, t[r]):
                        _refresh(e, t[r], r)
            # writes and billing positions
            if mode == M_ANTHROPIC:
                b_pos = hit
                c_pos = hit
                for i in range(nbp):
                    q = bp_pos[i]
                    if not bp_ok[i] or q <= hit:
                        continue
                    if bp_cls[i] and q > b_pos:
                        b_pos = q
                    if q > c_pos:
                        c_pos = q
                    if _write(table, c_nskey(c_key_at(toks, &chain[0], q), ns_r), t[r],
                              ttl_long_s if bp_cls[i] else ttl_short_s, ttft_s, r) != 0:
                        err = 1
                        break
                read[r] = hit
                w_long[r] = b_pos - hit
                w_short[r] = c_pos - b_pos
            else:
                # the implicit breakpoint (the last position) first, then the latest explicit ones
                c_pos = hit
                slots = 0
                for i in range(nbp - 1, -1, -1):
                    if slots >= max_breakpoints:
                        break
                    slots += 1
                    q = bp_pos[i]
                    if not bp_ok[i] or q <= hit:
                        continue
                    if q > c_pos:
                        c_pos = q
                    if _write(table, c_nskey(c_key_at(toks, &chain[0], q), ns_r), t[r], ttl_short_s, ttft_s,
                              r) != 0:
                        err = 1
                        break
                read[r] = hit
                w_short[r] = c_pos - hit
            if err:
                break
    if err:
        raise MemoryError("cachesim: out of memory in the provider cache table")
    return read_arr, ws_arr, wl_arr, flags_arr, error_arr, hit_from_arr


# ---------------------------------------------------------------------------------------------------------------
# Prefix-unit caches: OpenAI before GPT-5.6, Gemini implicit (longest common prefix at a unit granularity)

def serve_units(const uint32_t[::1] tokens, const int64_t[::1] token_offsets, const double[::1] t,
                const uint64_t[::1] ns, const uint64_t[::1] route_key, const int32_t[::1] replicas,
                const int32_t[::1] replica_max,
                int64_t unit_tokens, int64_t hidden_tokens, int64_t round_to, bint token_exact,
                int64_t min_tokens, double idle_ttl_s, double max_age_s, double ttft_s,
                const double[::1] miss_draw, double miss_probability, double forget_s=INFINITY,
                const int32_t[::1] tenant=None, int64_t capacity_units=0):
    """Serve every request; returns per-request ``read, flags, evicted_by, hit_from`` arrays.

    Units end at ``k*unit_tokens - hidden_tokens`` (k >= 1, positive). The hit is the longest run of live units
    from the start, extended token by token into the next unit against the latest prompt through that unit when
    ``token_exact``; it counts only if it and the prompt are at least ``min_tokens`` and is then rounded down to
    ``round_to``. Every unit of the prompt is then (re)inserted with an idle TTL, capped at ``max_age_s`` after
    creation. ``route_key``/``replicas``/``replica_max`` (when given) let a request that missed check the other
    replicas of its routing key (``ns = nskey(route_key, replica)``) for a longer match: ``replica_overflow``.

    ``capacity_units > 0`` bounds each namespace (replica) to that many units, evicting the least recently touched
    (one FIFO of touches per replica, stale items skipped). A request touches its units deepest first, so a prefix is
    always more recent than its extensions, and inserts at most ``capacity_units`` of them. A lookup that stops at
    an evicted unit reports ``evicted`` and the tenant whose insertion evicted it (``evicted_by``, else -1).
    """
    cdef Py_ssize_t n = t.shape[0], r
    read_arr = np.zeros(n, dtype=np.int64)
    flags_arr = np.zeros(n, dtype=np.int32)
    evicted_by_arr = np.full(n, -1, dtype=np.int32)
    hit_from_arr = np.full(n, -1, dtype=np.int64)
    cdef int64_t[::1] hit_from = hit_from_arr
    cdef int64_t[::1] read = read_arr
    cdef int32_t[::1] flags = flags_arr
    cdef int32_t[::1] evicted_by = evicted_by_arr
    chain_arr = np.empty(_longest(token_offsets) // UNIT + 2, dtype=np.uint64)
    cdef uint64_t[::1] chain = chain_arr
    cdef bint routed = replicas.shape[0] == n
    cdef bint bounded = capacity_units > 0
    if bounded and (tenant is None or tenant.shape[0] != n):
        raise ValueError("a capacity needs the tenant of every request")
    cdef _Table replica_ids = _Table(64)       # namespace -> index into queues / resident
    cdef vector[deque[pair[int64_t, uint64_t]]] queues
    cdef vector[int64_t] resident
    cdef int64_t seq = 0, rep, n_units, n_ins
    cdef pair[int64_t, uint64_t] item
    cdef Entry* v
    cdef bint use_draws = miss_draw.shape[0] == n and miss_probability > 0
    cdef _Table table = _Table(64, forget_s)
    table.lru = bounded
    cdef const uint32_t* toks
    cdef const uint32_t* other
    cdef int64_t length, first, p, matched, cached, other_len, x, lim, j, alt
    cdef uint64_t ns_r
    cdef Entry* e
    cdef Entry* last
    cdef bint fresh
    cdef int err = 0
    if unit_tokens < 1 or round_to < 1:
        raise ValueError("unit_tokens and round_to must be >= 1")
    # the first unit end: the smallest k*unit - hidden that is >= 1
    first = unit_tokens - hidden_tokens % unit_tokens
    with nogil:
        for r in range(n):
            toks = &tokens[0] + token_offsets[r] if tokens.shape[0] else NULL
            length = token_offsets[r + 1] - token_offsets[r]
            ns_r = ns[r]
            table.now = t[r]
            c_chain(toks, length, &chain[0])
            matched = 0
            last = NULL
            if use_draws and miss_draw[r] < miss_probability:
                flags[r] |= F_SERVER_MISS
            else:
                p = first
                while p <= length:
                    e = table.recall(c_nskey(c_key_at(toks, &chain[0], p), ns_r))
                    if e != NULL and e.aux & A_EVICTED:
                        flags[r] |= F_EVICTED
                        evicted_by[r] = <int32_t> (e.aux >> 8)
                        break
                    if not live(e, t[r]):
                        if e != NULL:
                            flags[r] |= F_EXPIRED if t[r] >= e.expires_at else F_NOT_READY
                        break
                    matched = p
                    last = e
                    p += unit_tokens
                if token_exact and last != NULL:
                    # the partial unit after the match, against the latest prompt that went through it
                    other = &tokens[0] + token_offsets[last.writer]
                    other_len = token_offsets[last.writer + 1] - token_offsets[last.writer]
                    lim = min(length, other_len)
                    lim = min(lim, matched + unit_tokens - 1)
                    x = matched
                    while x < lim and toks[x] == other[x]:
                        x += 1
                    matched = x
            cached = matched - matched % round_to
            if length < min_tokens or cached < min_tokens:
                if length < min_tokens:
                    flags[r] |= F_BELOW_MIN
                cached = 0
            read[r] = cached
            if cached:
                hit_from[r] = last.creator
            if routed and not (flags[r] & F_SERVER_MISS):
                # would another replica of this routing key have served more?
                for alt in range(replica_max[r]):
                    if alt == replicas[r]:
                        continue
                    p = first
                    x = 0
                    while p <= length:
                        if not live(table.recall(c_nskey(c_key_at(toks, &chain[0], p), c_nskey(route_key[r], alt))),
                                    t[r]):
                            break
                        x = p
                        p += unit_tokens
                    if x >= min_tokens and x - x % round_to > cached:
                        flags[r] |= F_OVERFLOW
                        break
            # insert (and touch) every unit of the prompt
            if not bounded:
                p = first
                while p <= length:
                    e = table.insert(c_nskey(c_key_at(toks, &chain[0], p), ns_r), &fresh)
                    if e == NULL:
                        err = 1
                        break
                    if fresh or t[r] >= e.expires_at:
                        e.base = t[r]
                        e.available_at = t[r] + ttft_s
                        e.creator = r
                    e.expires_at = min(t[r] + idle_ttl_s, e.base + max_age_s)
                    e.writer = r
                    p += unit_tokens
            else:
                e = replica_ids.insert(ns_r, &fresh)
                if e == NULL:
                    err = 1
                    break
                if fresh:
                    e.writer = <int32_t> queues.size()
                    queues.push_back(deque[pair[int64_t, uint64_t]]())
                    resident.push_back(0)
                rep = e.writer
                n_units = (length - first) // unit_tokens + 1 if length >= first else 0
                n_ins = min(n_units, capacity_units)
                for j in range(n_ins - 1, -1, -1):        # deepest first: the prefix ends most recent
                    p = first + j * unit_tokens
                    e = table.insert(c_nskey(c_key_at(toks, &chain[0], p), ns_r), &fresh)
                    if e == NULL:
                        err = 1
                        break
                    if fresh or t[r] >= e.expires_at or e.aux & A_EVICTED:
                        e.base = t[r]
                        e.available_at = t[r] + ttft_s
                        e.creator = r
                        e.aux &= ~(<uint64_t> A_EVICTED)
                    if not e.aux & A_RESIDENT:
                        # make room: pop the replica's least recently touched units
                        while resident[rep] >= capacity_units and not queues[rep].empty():
                            item = queues[rep].front()
                            queues[rep].pop_front()
                            v = table.find(item.second)
                            if v == NULL or v.seq != item.first or not v.aux & A_RESIDENT:
                                continue          # touched again later, or already gone
                            v.aux &= ~(<uint64_t> A_RESIDENT)
                            resident[rep] -= 1
                            if t[r] < v.expires_at:
                                v.aux = (v.aux & 0xFF) | A_EVICTED | (<uint64_t> tenant[r] << 8)
                                v.expires_at = t[r]
                        e.aux |= A_RESIDENT
                        resident[rep] += 1
                    e.expires_at = min(t[r] + idle_ttl_s, e.base + max_age_s)
                    e.writer = r
                    seq += 1
                    e.seq = seq
                    queues[rep].push_back(pair[int64_t, uint64_t](seq, e.key))
            if err:
                break
    if err:
        raise MemoryError("cachesim: out of memory in the provider cache table")
    return read_arr, flags_arr, evicted_by_arr, hit_from_arr


# ---------------------------------------------------------------------------------------------------------------
# Session diagnostics

def common_prefix(const uint32_t[::1] tokens, const int64_t[::1] token_offsets, const int64_t[::1] other):
    """Per request ``r``: the length of the common prefix of prompts ``r`` and ``other[r]`` (0 when ``other[r]``
    is negative)."""
    cdef Py_ssize_t n = token_offsets.shape[0] - 1, r
    out_arr = np.zeros(n, dtype=np.int64)
    cdef int64_t[::1] out = out_arr
    cdef int64_t a, b, la, lb, x, lim
    with nogil:
        for r in range(n):
            if other[r] < 0:
                continue
            a = token_offsets[r]
            b = token_offsets[other[r]]
            la = token_offsets[r + 1] - a
            lb = token_offsets[other[r] + 1] - b
            lim = min(la, lb)
            x = 0
            while x < lim and tokens[a + x] == tokens[b + x]:
                x += 1
            out[r] = x
    return out_arr


# ---------------------------------------------------------------------------------------------------------------
# DeepSeek: exact-length "cache prefix units" found through a path of fixed-size nodes

cdef inline int _ds_unit(_Table units, const uint32_t* toks, const uint64_t* chain, uint64_t ns, int64_t p,
                         double t_avail, double expires, int64_t r) noexcept nogil:
    """Persist the unit ending at ``p`` (its path node is marked by :func:`_ds_path`)."""
    cdef bint fresh
    cdef Entry* e = units.insert(c_nskey(c_key_at(toks, chain, p), ns), &fresh)
    if e == NULL:
        return -1
    if fresh or t_avail >= e.expires_at:
        e.available_at = t_avail
        e.expires_at = expires
        e.creator = r
    else:
        e.available_at = min(e.available_at, t_avail)
        e.expires_at = max(e.expires_at, expires)
    e.writer = r
    return 0


cdef inline int _ds_path(_Table path, const uint32_t* toks, const uint64_t* chain, uint64_t ns, int64_t length,
                         int64_t unit, int64_t interval, int64_t common, double t_avail,
                         double expires) noexcept nogil:
    """One walk over the path nodes of a prompt, marking the ends of the units written after it: the input's end,
    the multiples of ``interval`` inside it, and ``common`` (0 for none)."""
    cdef bint fresh
    cdef Entry* e
    cdef int64_t k, p
    for k in range(1, length // unit + 1):
        e = path.insert(c_nskey(c_key_at(toks, chain, k * unit), ns), &fresh)
        if e == NULL:
            return -1
        if fresh or t_avail >= e.expires_at:
            e.aux = 0        # every unit through an expired node has expired too: forget their ends
        e.expires_at = max(e.expires_at, expires)
        if k == length // unit:
            e.aux |= (<uint64_t> 1) << (length - k * unit)
        if common and k == common // unit:
            e.aux |= (<uint64_t> 1) << (common - k * unit)
        p = ((k * unit + interval - 1) // interval) * interval     # the multiples of interval inside node k
        while p < (k + 1) * unit and p < length:
            e.aux |= (<uint64_t> 1) << (p - k * unit)
            p += interval
    return 0


def serve_deepseek(const uint32_t[::1] tokens, const int64_t[::1] token_offsets, const double[::1] t,
                   const uint64_t[::1] ns, int64_t unit_tokens, int64_t interval_tokens, double available_after_s,
                   double idle_ttl_s, const double[::1] miss_draw, double miss_probability,
                   double forget_s=INFINITY):
    """Serve every request; returns per-request ``read, flags, hit_from`` arrays.

    A unit is an exact prefix length; a request hits the longest live unit that is a prefix of it (never shorter
    than ``unit_tokens``). Candidates are found through path nodes at multiples of ``unit_tokens``, each holding a
    bitmask of the unit ends inside it. After each request (usable ``available_after_s`` later) units are written at
    the end of its input, at every ``interval_tokens`` inside it, and, when it shared a live path beyond its hit, at
    that common prefix rounded down to ``unit_tokens``.
    """
    cdef Py_ssize_t n = t.shape[0], r
    read_arr = np.zeros(n, dtype=np.int64)
    flags_arr = np.zeros(n, dtype=np.int32)
    cdef int64_t[::1] read = read_arr
    hit_from_arr = np.full(n, -1, dtype=np.int64)
    cdef int64_t[::1] hit_from = hit_from_arr
    cdef int32_t[::1] flags = flags_arr
    if unit_tokens < 1 or unit_tokens > 64 or interval_tokens < 1:
        raise ValueError("unit_tokens must be 1..64 and interval_tokens >= 1")
    chain_arr = np.empty(_longest(token_offsets) // UNIT + 2, dtype=np.uint64)
    cdef uint64_t[::1] chain = chain_arr
    cdef bint use_draws = miss_draw.shape[0] == n and miss_probability > 0
    cdef _Table units = _Table(64, forget_s)
    cdef _Table path = _Table(64, forget_s)
    cdef const uint32_t* toks
    cdef int64_t length, k, k_all, k_live, off, p, hit, common, u = unit_tokens
    cdef uint64_t ns_r, mask
    cdef Entry* e
    cdef Entry* node
    cdef double t_avail, expires
    cdef int err = 0
    with nogil:
        for r in range(n):
            toks = &tokens[0] + token_offsets[r] if tokens.shape[0] else NULL
            length = token_offsets[r + 1] - token_offsets[r]
            ns_r = ns[r]
            units.now = t[r]
            path.now = t[r]
            if length < u:
                flags[r] |= F_BELOW_MIN
                continue
            c_chain(toks, length, &chain[0])
            # the path: k_all nodes exist, the first k_live of them are live
            k_all = 0
            k_live = 0
            k = 1
            while k * u <= length:
                node = path.recall(c_nskey(c_key_at(toks, &chain[0], k * u), ns_r))
                if node == NULL:
                    break
                k_all = k
                if k_live == k - 1 and t[r] < node.expires_at:
                    k_live = k
                k += 1
            hit = 0
            if use_draws and miss_draw[r] < miss_probability:
                flags[r] |= F_SERVER_MISS
            else:
                k = k_all
                while k >= 1 and hit == 0:
                    node = path.find(c_nskey(c_key_at(toks, &chain[0], k * u), ns_r))
                    mask = node.aux
                    off = u - 1
                    while off >= 0:
                        p = k * u + off
                        if (mask >> off) & 1 and p <= length:
                            e = units.recall(c_nskey(c_key_at(toks, &chain[0], p), ns_r))
                            if e != NULL:
                                if t[r] >= e.expires_at:
                                    flags[r] |= F_EXPIRED
                                elif e.available_at > t[r]:
                                    flags[r] |= F_NOT_READY
                                else:
                                    hit = p
                                    hit_from[r] = e.creator
                                    e.expires_at = max(e.expires_at, t[r] + idle_ttl_s)
                                    break
                        off -= 1
                    k -= 1
                if hit:
                    for k in range(1, hit // u + 1):
                        node = path.find(c_nskey(c_key_at(toks, &chain[0], k * u), ns_r))
                        node.expires_at = max(node.expires_at, t[r] + idle_ttl_s)
            read[r] = hit
            # writes after the response: the input's end, fixed intervals inside it, the common prefix
            t_avail = t[r] + available_after_s
            expires = t_avail + idle_ttl_s
            common = k_live * u if k_live >= 1 and hit < k_live * u < length else 0
            if _ds_unit(units, toks, &chain[0], ns_r, length, t_avail, expires, r) != 0:
                err = 1
                break
            p = interval_tokens
            while p < length:
                if p >= u and _ds_unit(units, toks, &chain[0], ns_r, p, t_avail, expires, r) != 0:
                    err = 1
                    break
                p += interval_tokens
            if err:
                break
            if common and _ds_unit(units, toks, &chain[0], ns_r, common, t_avail, expires, r) != 0:
                err = 1
                break
            if _ds_path(path, toks, &chain[0], ns_r, length, u, interval_tokens, common, t_avail, expires) != 0:
                err = 1
                break
    if err:
        raise MemoryError("cachesim: out of memory in the provider cache table")
    return read_arr, flags_arr, hit_from_arr
