# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""cachesim's compiled core: block-key compilation and the prefix-cache engine.

Design
------
Keys. A block key names its whole prefix (SEMANTICS §2): ``key[i] = XXH3_64(bytes(block i), seed=key[i-1])``.
The prefix trie therefore needs no parent pointers: a flat hash set of keys *is* the trie, and "the first h
blocks are cached" is h successful lookups. XXH3 comes from the installed ``xxhash`` extension itself, resolved
once at import with dlopen/dlsym: the keys are bit-identical with ``xxhash.xxh3_64_intdigest`` by construction
(the same machine code), xxhash stays the only hashing dependency, and no C source is vendored.

Layout. Entries live in parallel flat arrays addressed by int32 index, as scikit-learn's tree nodes are: key
(8 bytes), recency position and owner tenant (4 each), and only with a TTL the expiry time. Parallel, not one
struct, because the passes that touch one field of many entries (the recency scans below) then read 4 bytes an
entry, not 16: at 1 M cached that kept the dense-id prefix replay 1.4x faster in a prototype. The hash index is
an open-addressing table of 8-byte slots holding 32 hash bits beside the entry index, in buckets of eight on one
cache line, probed a bucket at a time (see KeyIndex): a lookup reads one line and an entry only when the hash
bits match, and moving slots (deletion, growth) never reads one. Homes are multiply-shifted onto any number of
buckets, so a bounded cache's table is sized to its capacity. A sparser table fills fewer buckets, whose
deletions must refill the hole, which is what eviction-heavy replays pay for; with the use log below,
16 + 8/0.5 + 4 * 1.875 = 39.5 bytes per cached block without a TTL and 24 + 8/0.75 + 4 * 1.25 = 39.7 with one.
Pool, table and log grow on demand, so a large capacity costs nothing until it fills. Every four capacities'
evictions, a pool larger than the L2 is renumbered in use order (Engine._defragment), so that blocks used
together stay on shared cache lines as the engine ages.

Recency. A log of uses orders entries by last use: using an entry appends its index to the log and records the
position in the entry (pos); an entry's older records go stale, and a record is live while its entry's pos names
it. The least recent entry is the first live record from the log's oldest end, so LRU eviction reads the log in
order and knows its next victims ahead, where a linked list's evictions chase pointers through memory in whatever
order the list has come to (at 1 M cached, half the time of a dense-id replay waited on that chase, and it grew
as the engine aged). When the log is full its live records are compacted to its front, in order, which costs
about two reads a use; it grows only while compaction frees less than half of it, up to its share of the memory
budget. Because the TTL is uniform and refreshed on every use, expiry times are non-decreasing along the log, so
expiry pops from its oldest end while ``expires_at <= t``. Entries the current request uses are taken out of the
order ("pinned": their pos is PINNED, so their records are stale) until the request is stamped, so a victim is
never one of them (SEMANTICS §3.3) and the oldest live entry is always a legal victim.

Stamping. The request's blocks are appended deepest first, so block 0 ends newest: a parent is always
more recent than its children, which keeps an LRU cache prefix-closed.

The serve loop runs without the GIL over raw pointers into numpy arrays: no Python object per block. Errors are
return codes, raised as exceptions once the GIL is back.

One-block batches. A batch whose every request is one block (a plain key stream) under LRU without interference
tracking takes a loop of its own (_serve_one_block_lru): for one block, lookup-pin-stamp is move-to-head and a miss
takes the least recent entry over, so the per-request machinery of prefixes is not needed, and the hot state can live in
locals (stores through the pool could alias the engine's fields, which the general loop must then reload). That
loop (_one_block_lru) is compiled in variants chosen by fused types: hashed keys or dense ids, and a lean variant for
the common statistics-only run of one tenant (no outputs, TTL, hit cap or warm-up in the way) that keeps its counts
in registers. A one-block request of the Mooncake ids on dense ids takes 64 instructions there against 147 in the
full variant (callgrind), and 7 ns instead of 12.

Plain LRU. Multi-block batches under LRU without TTL, victims="any" or interference tracking (the vLLM and
SGLang presets, and sweeps of them) take _prefix_lru: the general loop's three steps with the state in locals
and the victim's entry taken over in place. It took the prefix workload at capacity 10,000 on dense ids from 167
instructions a block to 79, and from 75 to 118 M blocks/s; at capacity 1 M, from 21 to 25 (keys: 8.6 to 11).

Dense ids. With direct_keys the keys are ids 0..u-1 (Trace.dense(), numbered once per trace by dense_ids) and an
int32 array where[id] replaces the hash index: no hashing, probing or deletion shifts per block, at 4 bytes per
distinct id rather than per cached block. Everything else (ghosts included) is unchanged.
"""

cimport cython
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from libc.math cimport INFINITY, isnan

import os
import sys

import numpy as np

from cachesim._contract import (OUTPUT_FIELDS, POLICIES, TENANT_FIELDS, TRACE_FAULTS,  # noqa: F401 (re-exported)
                                EngineInputError, PolicyError, check_engine_config, is_hook_policy,
                                parse_policy, resolve_policy)
from cachesim._statistics import grow_tenant_statistics

# ---------------------------------------------------------------------------------------------------------------
# XXH3 from the xxhash extension

cdef extern from *:
    """
    /* Fetch the cache line at addr ahead of use: hides DRAM latency on random probes. Written as volatile asm
       because GCC 12 (-O1 and up) was seen deleting __builtin_prefetch calls whose address is computed from
       loads once inlined into a loop: the victim scan of _prefix_lru had lost every one of them. */
    #if defined(__GNUC__) && defined(__x86_64__)
    #define cachesim_prefetch(addr) __asm__ volatile("prefetcht0 (%0)" :: "r"(addr))
    #elif defined(__GNUC__) && defined(__aarch64__)
    #define cachesim_prefetch(addr) __asm__ volatile("prfm pldl1keep, [%0]" :: "r"(addr))
    #elif defined(__GNUC__)
    #define cachesim_prefetch(addr) __builtin_prefetch(addr)
    #else
    #define cachesim_prefetch(addr) ((void) (addr))
    #endif
    """
    void _prefetch "cachesim_prefetch"(const void* addr) noexcept nogil

cdef extern from "<dlfcn.h>" nogil:
    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    char* dlerror()
    int RTLD_NOW
    int RTLD_LOCAL

ctypedef uint64_t (*xxh3_64_with_seed_t)(const void* data, size_t length, uint64_t seed) noexcept nogil

cdef xxh3_64_with_seed_t _xxh3 = NULL


cdef _resolve_xxh3():
    global _xxh3
    import xxhash
    import xxhash._xxhash as ext
    cdef bytes path = ext.__file__.encode()
    cdef void* handle = dlopen(path, RTLD_NOW | RTLD_LOCAL)
    if handle == NULL:
        raise ImportError(f"cachesim: cannot dlopen the xxhash extension at {ext.__file__}")
    cdef void* fn = dlsym(handle, b"XXH3_64bits_withSeed")
    if fn == NULL:
        raise ImportError(f"cachesim: the xxhash extension at {ext.__file__} does not export "
                          "XXH3_64bits_withSeed; install the xxhash wheel from PyPI")
    _xxh3 = <xxh3_64_with_seed_t> fn
    # the resolved symbol must be the very function xxhash's Python API calls
    probe = b"cachesim probe block"
    if _xxh3(<const char*> probe, len(probe), 12345) != xxhash.xxh3_64_intdigest(probe, seed=12345):
        raise ImportError("cachesim: XXH3_64bits_withSeed from the xxhash extension disagrees with "
                          "xxhash.xxh3_64_intdigest")


_resolve_xxh3()


cdef uint64_t xxh3_64_seeded(const void* data, size_t length, uint64_t seed) noexcept nogil:
    return _xxh3(data, length, seed)


if sys.byteorder != "little":  # keys hash the little-endian bytes, which on this platform are the memory bytes
    raise ImportError("cachesim's core supports little-endian machines only")

# ---------------------------------------------------------------------------------------------------------------
# Constants shared with Python

cdef enum:
    NIL = -1
    PINNED = -2
    GHOST = -3   # .pos of an evicted entry kept in the index to remember its evictor (interference)
    FREE_LINK = -8  # .pos of a free entry is FREE_LINK - (next free entry): below every code above
    LINKED = 0   # .pos of a cached entry when no use log is kept (Engine.use_log)

# Columns of Engine.tenant_stats, in the order of _contract.TENANT_FIELDS (checked below).
cdef enum:  # tenant statistics fields
    F_REQUESTS = 0
    F_HIT_REQUESTS
    F_PROMPT_TOKENS
    F_HIT_TOKENS
    F_BLOCKS
    F_HIT_BLOCKS
    F_INSERTED
    F_EVICTIONS_CAUSED       # capacity evictions this tenant's insertions caused
    F_EVICTED_OWNED          # this tenant's entries evicted for capacity
    F_EXPIRED_OWNED          # this tenant's entries expired (TTL)
    F_UNCACHED
    N_TENANT_FIELDS

if len(TENANT_FIELDS) != N_TENANT_FIELDS:
    raise ImportError("cachesim._core: its tenant statistics enum disagrees with _contract.TENANT_FIELDS")

# Policies. LRU evicts the least recent entry of the use log (the fast path). The heap policies evict the candidate
# with the smallest score (see Engine._less); the queue policies walk linked queues (SIEVE with a hand, S3-FIFO's
# small and main FIFOs, CLOCK's ring, SLRU's segments, ARC's T1 and T2, 2Q's A1in and Am).
cdef enum:
    P_LRU = 0
    P_FIFO = 1
    P_LFU = 2
    P_TWO_CLASS = 3
    P_PRIORITY = 4
    P_SIEVE = 5
    P_S3FIFO = 6
    P_SLRU = 7
    P_CLOCK = 8
    P_BELADY = 9
    P_ARC = 10
    P_TWOQ = 11
    P_GDSF = 12
    P_PYTHON = 127   # a Python object with the hook protocol (cachesim.policies.HookPolicy): not in the registry

cdef enum:
    MAX_QUEUES = 16   # the size of the engine's per-queue arrays (SLRU's n-seg is at most this)

cdef int64_t NEVER = 0x7FFFFFFFFFFFFFFF   # next_use of a block no later request uses

# The enum in the registry's order: the registry names each code, the core only checks that the two agree.
_POLICY_ENUM = (P_LRU, P_FIFO, P_LFU, P_TWO_CLASS, P_PRIORITY, P_SIEVE, P_S3FIFO, P_SLRU, P_CLOCK, P_BELADY,
                P_ARC, P_TWOQ, P_GDSF)
POLICY_CODES = {name: spec.code for name, spec in POLICIES.items()}
if tuple(POLICY_CODES.values()) != _POLICY_ENUM:
    raise ImportError("cachesim._core: its policy enum disagrees with _contract.POLICIES (a policy added to one "
                      "and not the other?)")

# Harm attribution: lost_to[R, 0] is what TTL expiry cost tenant R, lost_to[R, 1 + E] what evictor E cost it.
cdef enum:
    TTL_EVICTOR = -1

# Error codes of the serve loop (the offending request index goes to error_request).
cdef enum:
    ERR_NO_MEMORY = 1
    ERR_TIME_NAN = 2
    ERR_TIME_DECREASING = 3
    ERR_TENANT = 4
    ERR_POLICY = 5   # a Python policy's hook raised, or chose a block that is not a candidate

# Hash-table load and use-log length: as sparse and as long as the 40-bytes-per-block budget allows (probe runs,
# and so evictions, get costly as the table fills; a shorter log is compacted more often). Entries are 16 bytes
# without a TTL and 24 with one, slots 8 bytes, log records 4.
cdef double MAX_LOAD_NO_TTL = 0.5       # 16 + 8 / 0.5 + 4 * 1.875 = 39.5 bytes per cached block
cdef double LOG_RECORDS_NO_TTL = 1.875  # log records per block of capacity (less LOG_RESERVE_RECORDS)
cdef double MAX_LOAD_TTL = 0.75         # 24 + 8 / 0.75 + 4 * 1.25 = 39.7 bytes per cached block
cdef double LOG_RECORDS_TTL = 1.25
# the engine's fixed state (statistics arrays, scratch) is about 1.6 KB: the log leaves it room in a small cache's
# budget (at capacity 1,000 it would otherwise tip the total over 40 bytes a block)
cdef int64_t LOG_RESERVE_RECORDS = 512
# evictions, in capacities, between two renumberings of the pool in use order (Engine._defragment)
cdef int64_t DEFRAGMENT_TURNOVERS = 4
# Compile-time constants, not module variables: a module variable is a global the compiler must reload after
# every store through a pointer (it could alias), inside the hottest loops.
cdef extern from *:
    """
    #define CACHESIM_EMPTY_SLOT 0xFFFFFFFFFFFFFFFFULL
    #define CACHESIM_FIB 0x9E3779B97F4A7C15ULL
    """
    const uint64_t EMPTY_SLOT "CACHESIM_EMPTY_SLOT"
    const uint64_t FIB "CACHESIM_FIB"        # 2^64 / golden ratio: multiplicative hashing
cdef enum:
    # prefetch distances in blocks (slots first, then the entries they point at)
    PREFETCH_SLOT = 16
    PREFETCH_ENTRY = 8
    ENTRY_BYTES = sizeof(uint64_t) + 2 * sizeof(int32_t)  # key, pos, owner
    PREFETCH_SCAN = 64  # in log records, for compaction: a tight loop of independent reads needs a longer lead


def xxh3_64(const unsigned char[::1] data, uint64_t seed=0):
    """XXH3_64 of a byte buffer through the resolved function (for tests of the binding)."""
    return _xxh3(&data[0] if data.shape[0] else NULL, data.shape[0], seed)


# ---------------------------------------------------------------------------------------------------------------
# Compiling block keys (SEMANTICS §2)

def compile_token_blocks(const uint32_t[::1] tokens, const int64_t[::1] token_offsets, int64_t block_size,
                         bint partial_tail=False, uint64_t seed=0):
    """Cut each request's tokens into blocks and chain their keys.

    Returns ``(block_offsets int64[n+1], keys uint64[m], block_tokens uint32[m])``. Only full blocks are
    cacheable unless ``partial_tail``.
    """
    if block_size <= 0:
        raise ValueError("block_size must be positive")
    cdef Py_ssize_t n = token_offsets.shape[0] - 1, r
    cdef int64_t length, n_blocks, total = 0
    block_offsets_arr = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] block_offsets = block_offsets_arr
    block_offsets[0] = 0
    for r in range(n):
        length = token_offsets[r + 1] - token_offsets[r]
        n_blocks = (length + block_size - 1) // block_size if partial_tail else length // block_size
        total += n_blocks
        block_offsets[r + 1] = total
    keys_arr = np.empty(total, dtype=np.uint64)
    block_tokens_arr = np.empty(total, dtype=np.uint32)
    cdef uint64_t[::1] keys = keys_arr
    cdef uint32_t[::1] block_tokens = block_tokens_arr
    cdef const uint32_t* tok = &tokens[0] if tokens.shape[0] else NULL
    cdef int64_t start, end, pos, b, size
    cdef uint64_t key
    with nogil:
        for r in range(n):
            start = token_offsets[r]
            end = token_offsets[r + 1]
            key = seed
            pos = start
            for b in range(block_offsets[r], block_offsets[r + 1]):
                size = end - pos if end - pos < block_size else block_size
                key = _xxh3(tok + pos, <size_t> size * 4, key)
                keys[b] = key
                block_tokens[b] = <uint32_t> size
                pos += size
    return block_offsets_arr, keys_arr, block_tokens_arr


def compile_id_blocks(const uint64_t[::1] ids, const int64_t[::1] id_offsets, uint64_t seed=0):
    """Chain the keys of id blocks: each id hashed as little-endian uint64 with its parent key as seed."""
    cdef Py_ssize_t n = id_offsets.shape[0] - 1, r
    cdef int64_t b
    keys_arr = np.empty(ids.shape[0], dtype=np.uint64)
    cdef uint64_t[::1] keys = keys_arr
    cdef uint64_t key
    with nogil:
        for r in range(n):
            key = seed
            for b in range(id_offsets[r], id_offsets[r + 1]):
                key = _xxh3(&ids[b], 8, key)
                keys[b] = key
    return keys_arr


def relabel_keys(const uint64_t[::1] keys, const int64_t[::1] block_offsets, const int32_t[::1] tenant,
                 const uint64_t[::1] tenant_seeds):
    """Per-tenant namespaces: ``XXH3_64(le64(key), seed=tenant_seed)`` for every block (see replay isolation)."""
    cdef Py_ssize_t n = block_offsets.shape[0] - 1, r
    cdef int64_t b
    out_arr = np.empty(keys.shape[0], dtype=np.uint64)
    cdef uint64_t[::1] out = out_arr
    cdef uint64_t seed
    with nogil:
        for r in range(n):
            seed = tenant_seeds[tenant[r]]
            for b in range(block_offsets[r], block_offsets[r + 1]):
                out[b] = _xxh3(&keys[b], 8, seed)
    return out_arr


# ---------------------------------------------------------------------------------------------------------------
# KeyIndex: an open-addressing map from uint64 keys to int32 values (indices into a caller's array of keys).
# A slot holds (h32 << 32) | value, h32 being 32 hash bits of the key; slots come in buckets of 8, one cache line.
# h32 picks the home bucket (multiply-shift onto any number of buckets, so a table can be sized exactly) and
# filters the bucket's slots, all compared at once (_tag_mask), so a record is only read when its h32 matches
# and moving slots (deletion, growth) reads no record. A key lives in the first bucket from its home with room
# (bucketed linear probing), so a lookup reads one line and its misprediction-prone probe loop of slot-at-a-time
# linear probing is gone (on the Mooncake keys at 10,000 cached, 79% misses, that loop, the victim's re-probe and
# the deletion shift took most of a request's 43 ns, against 7 ns a request for dense ids; now 21 ns). Deletion
# empties the slot; only when the bucket was full, so later keys may have probed past it, does it refill the hole
# from the buckets after (backward shift by bucket): 11% of deletions at load 0.5. No tombstones.

cdef extern from *:
    """
    /* Masks over the 8 slots of a bucket (bit i = slot i): tags, where the hash bits equal h32 (empty slots
       excluded); values, where the low 32 bits equal value (0xFFFFFFFF: the empty slots, since a stored value
       is never NIL). SSE2 (every x86-64) compares four slots an instruction; elsewhere a loop the compiler
       unrolls. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline __m128i cachesim_half(const uint64_t* p, int high) {
        __m128 a = _mm_load_ps((const float*) p), b = _mm_load_ps((const float*) (p + 2));
        return _mm_castps_si128(high ? _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))
                                     : _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
    }
    static inline unsigned cachesim_dword_mask(const uint64_t* p, int high, uint32_t x) {
        __m128i v = _mm_set1_epi32((int) x);
        return (unsigned) _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(cachesim_half(p, high), v)))
             | (unsigned) _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(cachesim_half(p + 4, high), v))) << 4;
    }
    #else
    static inline unsigned cachesim_dword_mask(const uint64_t* p, int high, uint32_t x) {
        unsigned m = 0;
        for (int i = 0; i < 8; i++)
            m |= (unsigned) ((uint32_t) (high ? p[i] >> 32 : p[i]) == x) << i;
        return m;
    }
    #endif
    static inline unsigned cachesim_value_mask(const uint64_t* p, uint32_t value) {
        return cachesim_dword_mask(p, 0, value);
    }
    static inline unsigned cachesim_tag_mask(const uint64_t* p, uint32_t h32, unsigned empties) {
        return cachesim_dword_mask(p, 1, h32) & ~empties;
    }
    #if defined(__GNUC__)
    #define cachesim_ctz(m) __builtin_ctz(m)
    #else
    static inline int cachesim_ctz(unsigned m) { int i = 0; while (!(m & 1u)) { m >>= 1; i++; } return i; }
    #endif
    """
    unsigned _value_mask "cachesim_value_mask"(const uint64_t* bucket, uint32_t value) noexcept nogil
    unsigned _tag_mask "cachesim_tag_mask"(const uint64_t* bucket, uint32_t h32, unsigned empties) noexcept nogil
    int _ctz "cachesim_ctz"(unsigned mask) noexcept nogil

cdef enum:
    BUCKET_SLOTS = 8  # slots in a bucket: one 64-byte line
    EMPTY_VALUE = 0xFFFFFFFF  # the low half of EMPTY_SLOT


cdef inline uint64_t _hash32(uint64_t key) noexcept nogil:
    return (key * FIB) >> 32


cdef inline int64_t _home_bucket(uint64_t h32, int64_t size) noexcept nogil:
    """The first slot of the home bucket of hash bits h32 in a table of size slots."""
    return <int64_t> (((h32 * (<uint64_t> size >> 3)) >> 32) << 3)  # (unsigned: no sign fix-up for the shifts)


cdef inline int64_t _key_bucket(uint64_t key, int64_t size) noexcept nogil:
    return _home_bucket(_hash32(key), size)


cdef inline int64_t _next_bucket(int64_t i, int64_t size) noexcept nogil:
    i += BUCKET_SLOTS
    return 0 if i == size else i


cdef inline int32_t _slots_find(const uint64_t* slots, int64_t size, uint64_t key,
                                const uint64_t* keys) noexcept nogil:
    """The value stored for key in a table of size slots (the key of value is keys[value]), or NIL."""
    cdef uint64_t h32 = _hash32(key)
    cdef int64_t i = _home_bucket(h32, size)
    cdef unsigned empties, tags
    cdef int32_t value
    while True:
        empties = _value_mask(&slots[i], EMPTY_VALUE)
        tags = _tag_mask(&slots[i], <uint32_t> h32, empties)
        while tags:
            value = <int32_t> (slots[i + _ctz(tags)] & 0xFFFFFFFFULL)
            if keys[value] == key:
                return value
            tags &= tags - 1
        if empties:
            return NIL
        i = _next_bucket(i, size)


cdef inline int32_t _slots_guess(const uint64_t* slots, int64_t size, uint64_t key) noexcept nogil:
    """The value of the first slot of key's home bucket whose hash bits match, unchecked, or NIL: what a prefetch
    of the entry can go on before the lookup."""
    cdef uint64_t h32 = _hash32(key)
    cdef int64_t i = _home_bucket(h32, size)
    cdef unsigned tags = _tag_mask(&slots[i], <uint32_t> h32, _value_mask(&slots[i], EMPTY_VALUE))
    return <int32_t> (slots[i + _ctz(tags)] & 0xFFFFFFFFULL) if tags else NIL


cdef inline int32_t _index_find(KeyIndex* ix, uint64_t key, const uint64_t* keys) noexcept nogil:
    return _slots_find(ix.slots, ix.size, key, keys)


cdef inline void _slots_place(uint64_t* slots, int64_t size, uint64_t slot) noexcept nogil:
    """Put a slot (hash bits << 32 | value) in the first bucket from its home with room."""
    cdef int64_t i = _home_bucket(slot >> 32, size)
    cdef unsigned empties
    while True:
        empties = _value_mask(&slots[i], EMPTY_VALUE)
        if empties:
            slots[i + _ctz(empties)] = slot
            return
        i = _next_bucket(i, size)


cdef inline void _index_place(KeyIndex* ix, uint64_t slot) noexcept nogil:
    _slots_place(ix.slots, ix.size, slot)


cdef inline void _index_delete(KeyIndex* ix, uint64_t key, int32_t value) noexcept nogil:
    """Remove the slot of (key, value), which must be present (a value is stored once)."""
    cdef uint64_t* slots = ix.slots
    cdef int64_t size = ix.size
    cdef int64_t i = _key_bucket(key, size)
    cdef unsigned found
    while True:
        found = _value_mask(&slots[i], <uint32_t> value)
        if found:
            break
        i = _next_bucket(i, size)
    if _value_mask(&slots[i], EMPTY_VALUE):  # a bucket with room: no key probed past it
        slots[i + _ctz(found)] = EMPTY_SLOT
    else:
        _fill_hole(slots, size, i + _ctz(found))


cdef void _fill_hole(uint64_t* slots, int64_t size, int64_t hole) noexcept nogil:
    """Empty the slot at hole, in a bucket that was full: keys in the buckets after it may have probed past it.
    Move such a key into the hole, which moves the hole to its bucket, until a bucket that had room ends the run
    (backward-shift deletion, by bucket)."""
    cdef int64_t hole_bucket = hole - hole % BUCKET_SLOTS, j = hole_bucket, k, home, moved
    cdef bint had_room
    cdef uint64_t slot
    while True:
        j = _next_bucket(j, size)
        moved = -1
        for k in range(j, j + BUCKET_SLOTS):
            slot = slots[k]
            if slot == EMPTY_SLOT:
                continue
            home = _home_bucket(slot >> 32, size)
            # its probe passed the hole's bucket: cyclic distance from its home to j is at least the hole's
            if (j - home if j >= home else j - home + size) >= (j - hole_bucket if j >= hole_bucket
                                                                else j - hole_bucket + size):
                moved = k
                break
        had_room = _value_mask(&slots[j], EMPTY_VALUE) != 0
        if moved >= 0:
            slots[hole] = slots[moved]
            hole, hole_bucket = moved, j
        if had_room:
            break
    slots[hole] = EMPTY_SLOT


cdef int _index_resize(KeyIndex* ix, int64_t size) noexcept nogil:
    """Move every slot into a new table of at least size slots (whole buckets, on a cache line); -1 when out of
    memory (the old table is kept)."""
    size = max((size + BUCKET_SLOTS - 1) // BUCKET_SLOTS, 2) * BUCKET_SLOTS
    cdef char* allocation = <char*> PyMem_RawMalloc(size * sizeof(uint64_t) + 64)
    if allocation == NULL:
        return -1
    cdef uint64_t* slots = <uint64_t*> (allocation + (64 - <size_t> allocation % 64))
    memset(slots, 0xFF, size * sizeof(uint64_t))  # all EMPTY_SLOT
    cdef uint64_t* old_slots = ix.slots
    cdef void* old_allocation = ix.allocation
    cdef int64_t old_size = ix.size if old_slots != NULL else 0
    ix.slots = slots
    ix.allocation = allocation
    ix.size = size
    cdef int64_t i
    for i in range(old_size):
        if old_slots[i] != EMPTY_SLOT:
            _index_place(ix, old_slots[i])
    PyMem_RawFree(old_allocation)
    return 0


cdef inline void _index_init(KeyIndex* ix) noexcept nogil:
    ix.slots = NULL
    ix.allocation = NULL
    ix.size = 0


cdef inline void _index_free(KeyIndex* ix) noexcept nogil:
    PyMem_RawFree(ix.allocation)
    _index_init(ix)


def dense_ids(const uint64_t[::1] keys):
    """Number distinct keys by first appearance: ``(ids uint64[m], distinct_keys uint64[u])`` with
    ``distinct_keys[ids[i]] == keys[i]``. An engine with ``direct_keys=True`` replays the ids with an array for an
    index: no hashing, probing or deletion shifts per block. Worth it when a trace is replayed more than once
    (sweeps): this pass costs about what one hashed replay's lookups do."""
    cdef Py_ssize_t m = keys.shape[0], i
    ids_arr = np.empty(m, dtype=np.uint64)
    cdef uint64_t[::1] ids = ids_arr
    cdef KeyIndex ix
    _index_init(&ix)
    cdef int64_t n = 0, capacity = 1024
    cdef uint64_t* distinct = <uint64_t*> PyMem_RawMalloc(capacity * sizeof(uint64_t))
    cdef int32_t v
    cdef int failed = distinct == NULL or _index_resize(&ix, 2 * capacity) < 0
    with nogil:
        for i in range(m):
            if failed:
                break
            if i + PREFETCH_SLOT < m:
                _prefetch(&ix.slots[_key_bucket(keys[i + PREFETCH_SLOT], ix.size)])
            v = _index_find(&ix, keys[i], distinct)
            if v == NIL:
                if n == 2147483646:  # int32 values, NIL and PINNED excluded
                    failed = 2
                    break
                if n == capacity:
                    capacity *= 2
                    if _grow(<void**> &distinct, capacity, sizeof(uint64_t)) or _index_resize(&ix, 2 * capacity) < 0:
                        failed = 1
                        break
                distinct[n] = keys[i]
                _index_place(&ix, (_hash32(keys[i]) << 32) | <uint32_t> n)
                v = <int32_t> n
                n += 1
            ids[i] = <uint64_t> v
    distinct_arr = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] out = distinct_arr
    for i in range(n):
        out[i] = distinct[i]
    PyMem_RawFree(distinct)
    _index_free(&ix)
    if failed == 2:
        raise ValueError("more than 2**31 - 2 distinct keys: too many for dense ids")
    if failed:
        raise MemoryError()
    return ids_arr, distinct_arr


# Faults of one request, in TRACE_FAULTS' order (the order a request is checked in).
cdef enum:
    TF_OFFSETS = 0
    TF_T_NOT_FINITE = 1
    TF_T_NEGATIVE = 2
    TF_T_DECREASING = 3
    TF_TENANT = 4
    TF_PROMPT_EMPTY = 5
    TF_PROMPT_LIMIT = 6
    TF_BLOCK_TOKENS = 7
    TF_OVERFULL = 8
    TF_RESERVED_KEY = 9
    TF_REPEATED_KEY = 10
    N_TRACE_FAULTS

if len(TRACE_FAULTS) != N_TRACE_FAULTS:
    raise ImportError("cachesim._core: its trace fault enum disagrees with _contract.TRACE_FAULTS")


cdef inline int64_t _pow2_table(int64_t slots, int64_t* shift) noexcept nogil:
    """The size of a multiplicatively hashed table of at least ``slots`` (and 16) slots, a power of two, and the
    shift that takes a 64-bit product to a slot."""
    cdef int64_t size = 16
    shift[0] = 60
    while size < slots:
        size *= 2
        shift[0] -= 1
    return size


cdef inline bint _any_outside(const uint32_t* tokens, int64_t start, int64_t end, uint32_t block_size) noexcept nogil:
    """Whether a block holds 0 or more than block_size tokens: a flat loop the compiler vectorizes."""
    cdef uint32_t bad = 0
    cdef int64_t j
    for j in range(start, end):
        bad |= <uint32_t> ((tokens[j] - 1) >= block_size)   # wraps to the maximum for 0
    return bad != 0


def first_trace_fault(const double[::1] t, const int32_t[::1] tenant, const int64_t[::1] prompt_tokens,
                      const int64_t[::1] block_offsets, const uint32_t[::1] block_tokens, const uint64_t[::1] keys,
                      int64_t block_size, int64_t n_tenants, int64_t max_prompt_tokens, Py_ssize_t first=0,
                      Py_ssize_t stop=-1):
    """``(request, fault)``: the first of requests ``[first, stop)`` (default: all) that breaks what the serve loops
    assume and the index of its first fault in ``TRACE_FAULTS``, or ``(stop, -1)``. The GIL is released, so
    threads can check parts of one trace at once. The caller has checked the columns' lengths and that the
    offsets start at 0 (cachesim.trace.validate). This runs before every replay of a trace that was not built by
    compile_trace, so it is written for speed: the block-wide checks are flat loops over the requests with sound
    offsets, and only a request that fails one of them is looked at again to find which.

    Repeated keys: one open-addressing table sized for the longest request at a load of at most 1/8, so a probe
    rarely meets an occupied slot; a slot belongs to the current request while its 32-bit stamp is the request's,
    so nothing is cleared between requests (but once every 2^32 - 1 requests)."""
    cdef Py_ssize_t n = t.shape[0], m = keys.shape[0]
    if tenant.shape[0] != n or prompt_tokens.shape[0] != n or block_offsets.shape[0] != n + 1 or \
            block_tokens.shape[0] != m or block_offsets[0] != 0 or not 0 < block_size <= 0xFFFFFFFF:
        raise ValueError("first_trace_fault: columns of different lengths, offsets not starting at 0 or a block "
                         "size out of range")
    if stop < 0:
        stop = n
    if not 0 <= first <= stop <= n:
        raise ValueError(f"first_trace_fault: requests {first}..{stop} are not a range of the {n} requests")
    cdef Py_ssize_t r, sound = stop, first_bad = stop
    cdef int64_t longest = 0, start, end, j, size = 16, shift = 60, h, in_blocks
    for r in range(first, stop):   # requests [first, sound) have offsets that rise within the blocks
        start, end = block_offsets[r], block_offsets[r + 1]
        if start < 0 or end < start or end > m:   # (start < 0 only where a range begins past a bad offset)
            sound = r
            break
        longest = max(longest, end - start)
    size = _pow2_table(8 * longest, &shift)
    cdef uint32_t* stamp_of = <uint32_t*> PyMem_RawMalloc(size * sizeof(uint32_t))
    cdef uint64_t* key_in = <uint64_t*> PyMem_RawMalloc(size * sizeof(uint64_t))
    if stamp_of == NULL or key_in == NULL:
        PyMem_RawFree(stamp_of)
        PyMem_RawFree(key_in)
        raise MemoryError()
    memset(stamp_of, 0, size * sizeof(uint32_t))
    cdef const uint32_t* tokens_of = &block_tokens[0] if m else NULL
    cdef const uint64_t* key_of = &keys[0] if m else NULL
    cdef int64_t first_block = block_offsets[first], sound_blocks = block_offsets[sound]
    cdef uint32_t stamp
    cdef int64_t stamp_period = 0xFFFFFFFF
    cdef uint64_t key, repeated, reserved
    cdef double tr
    cdef int fault = -1
    with nogil:
        # the block-wide checks over every sound block at once; a hit sends the search to its request below
        if first_block < sound_blocks and _any_outside(tokens_of, first_block, sound_blocks, <uint32_t> block_size):
            first_bad = first
        for r in range(first, stop):
            if r == sound:
                fault = TF_OFFSETS
                break
            tr = t[r]
            if isnan(tr) or tr == INFINITY or tr == -INFINITY:
                fault = TF_T_NOT_FINITE
            elif tr < 0:
                fault = TF_T_NEGATIVE
            elif r > 0 and tr < t[r - 1]:
                fault = TF_T_DECREASING
            elif tenant[r] < 0 or tenant[r] >= n_tenants:
                fault = TF_TENANT
            elif prompt_tokens[r] <= 0:
                fault = TF_PROMPT_EMPTY
            elif prompt_tokens[r] > max_prompt_tokens:
                fault = TF_PROMPT_LIMIT
            if fault >= 0:
                break
            start, end = block_offsets[r], block_offsets[r + 1]
            if first_bad < stop and _any_outside(tokens_of, start, end, <uint32_t> block_size):
                fault = TF_BLOCK_TOKENS
                break
            stamp = <uint32_t> (r % stamp_period + 1)
            if stamp == 1 and r > 0:   # the stamps wrapped: forget them all
                memset(stamp_of, 0, size * sizeof(uint32_t))
            # every block holds 1..block_size tokens now, so only a request whose last block would overfill it
            # with all others full needs its tokens added up
            if end > start and (end - start - 1) * block_size + tokens_of[end - 1] > prompt_tokens[r]:
                in_blocks = 0
                for j in range(start, end):
                    in_blocks += tokens_of[j]
                if in_blocks > prompt_tokens[r]:
                    fault = TF_OVERFULL
                    break
            repeated = reserved = 0
            for j in range(start, end):
                key = key_of[j]
                reserved |= <uint64_t> (key == 0xFFFFFFFFFFFFFFFFULL)
                h = <int64_t> ((key * FIB) >> shift)
                if stamp_of[h] == stamp:   # occupied by this request: probe (rarely taken at a load of 1/8)
                    while stamp_of[h] == stamp and key_in[h] != key:
                        h = (h + 1) & (size - 1)
                    repeated |= <uint64_t> (stamp_of[h] == stamp)
                stamp_of[h] = stamp
                key_in[h] = key
            if reserved:
                fault = TF_RESERVED_KEY
                break
            if repeated:
                fault = TF_REPEATED_KEY
                break
    PyMem_RawFree(stamp_of)
    PyMem_RawFree(key_in)
    if fault < 0:
        return stop, -1
    return r, fault


cdef struct _Seen:
    uint64_t key
    int64_t request_plus_one   # the latest request (of a backward pass) that used the key, plus one; 0: empty


cdef _Seen* _seen_grow(_Seen* table, int64_t size, int64_t new_size, int64_t new_shift) noexcept nogil:
    """The table rehashed into new_size zeroed slots (the old one freed), or NULL when out of memory."""
    cdef _Seen* fresh = <_Seen*> PyMem_RawCalloc(new_size, sizeof(_Seen))
    cdef int64_t i, h
    if fresh == NULL:
        return NULL
    for i in range(size):
        if table[i].request_plus_one:
            h = <int64_t> ((table[i].key * FIB) >> new_shift)
            while fresh[h].request_plus_one:
                h = (h + 1) & (new_size - 1)
            fresh[h] = table[i]
    PyMem_RawFree(table)
    return fresh


def next_uses(const uint64_t[::1] keys, const int64_t[::1] block_offsets):
    """For each block, the index of the next request that uses its key, or 2**63 - 1 (never): the future an offline
    policy (belady) evicts by, in one backward pass over the trace with an open-addressing table of the keys seen
    (16 bytes a slot, at most half full, grown with the distinct keys rather than sized for every block)."""
    cdef Py_ssize_t m = keys.shape[0], n = block_offsets.shape[0] - 1
    if n < 0 or block_offsets[0] != 0 or block_offsets[n] != m:
        raise ValueError("next_uses: block_offsets do not span the keys")
    out = np.empty(m, dtype=np.int64)
    cdef int64_t[::1] o = out
    cdef int64_t shift
    cdef int64_t size = _pow2_table(min(2 * m, 1 << 16), &shift), distinct = 0
    cdef _Seen* table = <_Seen*> PyMem_RawCalloc(size, sizeof(_Seen))
    if table == NULL:
        raise MemoryError()
    cdef Py_ssize_t r, j
    cdef int64_t h
    cdef uint64_t key
    cdef bint failed = False
    with nogil:
        for r in range(n - 1, -1, -1):
            for j in range(block_offsets[r], block_offsets[r + 1]):
                if 2 * distinct >= size:
                    table = _seen_grow(table, size, 2 * size, shift - 1)
                    if table == NULL:
                        failed = True
                        break
                    size *= 2
                    shift -= 1
                key = keys[j]
                h = <int64_t> ((key * FIB) >> shift)
                while table[h].request_plus_one and table[h].key != key:
                    h = (h + 1) & (size - 1)
                if table[h].request_plus_one:
                    o[j] = table[h].request_plus_one - 1
                else:
                    o[j] = NEVER
                    distinct += 1
                table[h].key = key
                table[h].request_plus_one = r + 1
            if failed:
                break
    PyMem_RawFree(table)
    if failed:
        raise MemoryError()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Ghost: a bounded FIFO set of keys that left the cache (S3-FIFO's ghost queue), any of which can leave early (a
# ghost hit): a doubly linked list over a fixed pool of nodes plus a KeyIndex, so it holds up to `capacity` live
# keys, as libCacheSim's ghost FIFO does. (Harm attribution keeps its ghosts in the cache's own pool and index
# instead: see _bury.)

cdef int _ghost_init(Ghost* g, int64_t capacity) noexcept nogil:
    g.capacity = capacity
    g.count = 0
    g.oldest = g.newest = NIL
    g.free = 0 if capacity > 0 else NIL
    _index_init(&g.index)
    g.keys = <uint64_t*> PyMem_RawMalloc(max(capacity, 1) * sizeof(uint64_t))
    g.newer = <int32_t*> PyMem_RawMalloc(max(capacity, 1) * sizeof(int32_t))
    g.older = <int32_t*> PyMem_RawMalloc(max(capacity, 1) * sizeof(int32_t))
    if g.keys == NULL or g.newer == NULL or g.older == NULL:
        return -1
    cdef int64_t i
    for i in range(capacity):
        g.newer[i] = <int32_t> (i + 1) if i + 1 < capacity else NIL
    return _index_resize(&g.index, <int64_t> (2 * capacity) + 16)


cdef void _ghost_free(Ghost* g) noexcept nogil:
    PyMem_RawFree(g.keys)
    PyMem_RawFree(g.newer)
    PyMem_RawFree(g.older)
    _index_free(&g.index)
    g.keys = NULL
    g.newer = NULL
    g.older = NULL


cdef inline void _ghost_unlink(Ghost* g, int32_t p) noexcept nogil:
    cdef int32_t newer = g.newer[p], older = g.older[p]
    if newer == NIL:
        g.newest = older
    else:
        g.older[newer] = older
    if older == NIL:
        g.oldest = newer
    else:
        g.newer[older] = newer
    _index_delete(&g.index, g.keys[p], p)
    g.newer[p] = g.free
    g.free = p
    g.count -= 1


cdef inline int64_t _ghost_bytes(Ghost* g) noexcept nogil:
    """What a ghost set holds: its nodes and its index."""
    return g.capacity * (sizeof(uint64_t) + 2 * sizeof(int32_t)) + g.index.size * sizeof(uint64_t) \
        if g.capacity else 0


cdef inline bint _ghost_take(Ghost* g, uint64_t key) noexcept nogil:
    """Whether key is remembered; if it is, forget it."""
    if g.count == 0:
        return False
    cdef int32_t p = _index_find(&g.index, key, g.keys)
    if p == NIL:
        return False
    _ghost_unlink(g, p)
    return True


cdef inline void _ghost_put(Ghost* g, uint64_t key) noexcept nogil:
    """Remember key as the newest, forgetting the oldest when full. The key must not be remembered already: only
    keys leaving the cache are put, and a key is taken out of the ghost when it is inserted."""
    if g.capacity == 0:
        return
    if g.count == g.capacity:
        _ghost_unlink(g, g.oldest)
        if g.oldest != NIL:   # the next one forgotten: its bucket, and the key of the one after it
            _prefetch(&g.index.slots[_key_bucket(g.keys[g.oldest], g.index.size)])
            if g.newer[g.oldest] != NIL:
                _prefetch(&g.keys[g.newer[g.oldest]])
    cdef int32_t p = g.free
    g.free = g.newer[p]
    g.keys[p] = key
    g.newer[p] = NIL
    g.older[p] = g.newest
    if g.newest != NIL:
        g.newer[g.newest] = p
    else:
        g.oldest = p
    g.newest = p
    _index_place(&g.index, (_hash32(key) << 32) | <uint32_t> p)
    g.count += 1


# ---------------------------------------------------------------------------------------------------------------
# The engine

cdef void _reverse(int32_t* a, int64_t lo, int64_t hi) noexcept nogil:
    """Reverse a[lo:hi] in place."""
    cdef int32_t x
    hi -= 1
    while lo < hi:
        x = a[lo]
        a[lo] = a[hi]
        a[hi] = x
        lo += 1
        hi -= 1


cdef void _gather(void* values, const int32_t* order, int64_t n, void* scratch, size_t width) noexcept nogil:
    """values[k] = values[order[k]] for k < n, for elements of width bytes (4 or 8), through scratch."""
    cdef int64_t k
    if width == 8:
        for k in range(n):
            if k + PREFETCH_SCAN < n:
                _prefetch(&(<uint64_t*> values)[order[k + PREFETCH_SCAN]])
            (<uint64_t*> scratch)[k] = (<uint64_t*> values)[order[k]]
    else:
        for k in range(n):
            if k + PREFETCH_SCAN < n:
                _prefetch(&(<uint32_t*> values)[order[k + PREFETCH_SCAN]])
            (<uint32_t*> scratch)[k] = (<uint32_t*> values)[order[k]]
    memcpy(values, scratch, n * width)


def _l2_cache_bytes():
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (ValueError, OSError):
        size = 0
    return size if size > 0 else 1 << 20


# Software prefetching pays off once the entries and index outgrow the caches: below about twice the L2 (1 MB a
# core here) it only costs instructions (measured on the one-block loop: Mooncake ids at capacity 10,000 ran 10%
# faster without, Zipf keys over 1 M objects 1.2x to 2.5x slower without).
cdef int64_t _prefetch_min_bytes = 2 * _l2_cache_bytes()


cdef inline bint _one_block_each(Batch* batch) noexcept nogil:
    """Whether every request of the batch is exactly one block."""
    cdef Py_ssize_t r
    if batch.block_offsets[batch.n_requests] != batch.n_requests:
        return False
    for r in range(1, batch.n_requests):
        if batch.block_offsets[r] != r:
            return False
    return True


# The use log (SEMANTICS §3.3 order; see "Recency" above): the engine's, or a serve loop's copy in a local. Inline
# only: a non-inlined call taking a local's address would pin it to memory.
cdef inline int64_t _ring_next(int64_t i, int64_t size) noexcept nogil:
    return i + 1 if i + 1 < size else 0


cdef inline int64_t _ring_ahead(int64_t i, int64_t n, int64_t size) noexcept nogil:
    """The ring index n records after i (n < size)."""
    return i + n if i + n < size else i + n - size


cdef inline void _prefetch_victims(const int32_t* pos, const int32_t* records, int64_t p, int64_t used,
                                   int64_t ring_size, const uint64_t* entry_key, const int32_t* owner,
                                   const int32_t* where, const uint64_t* slots, int64_t size,
                                   bint direct) noexcept nogil:
    """Victims are read from the log's oldest end, so they are known ahead: fetch the position and key (and owner,
    unless NULL: one tenant's statistics need not read it) of the record PREFETCH_SLOT on from p, and the slot (or
    id) of the key of the one PREFETCH_ENTRY on, whose key came before. Stale records are fetched too: telling
    them apart is the read being fetched."""
    cdef uint64_t key
    cdef int32_t e
    if entry_key == NULL:
        return
    if used > PREFETCH_SLOT:
        e = records[_ring_ahead(p, PREFETCH_SLOT, ring_size)]
        _prefetch(&pos[e])
        _prefetch(&entry_key[e])
        if owner != NULL:
            _prefetch(&owner[e])
    if used > PREFETCH_ENTRY:
        key = entry_key[records[_ring_ahead(p, PREFETCH_ENTRY, ring_size)]]
        if direct:
            _prefetch(&where[key])
        else:
            _prefetch(&slots[_key_bucket(key, size)])


cdef inline int32_t _log_victim(const int32_t* pos, UseLog* log, const uint64_t* entry_key, const int32_t* owner,
                                const int32_t* where, const uint64_t* slots, int64_t size,
                                bint direct) noexcept nogil:
    """The least recently used linked entry, or NIL; the log's start moves past the stale records before it.
    Given entry_key (an eviction, in a cache too large for the CPU's caches: see Engine._prefetch_pays), each
    record read fetches what the victims ahead will need (_prefetch_victims)."""
    cdef int64_t p = log.start, used = log.used, ring_size = log.size
    cdef const int32_t* records = log.records
    cdef int32_t e
    while used > 0:
        _prefetch_victims(pos, records, p, used, ring_size, entry_key, owner, where, slots, size, direct)
        e = records[p]
        if pos[e] == p:
            log.start, log.used = p, used
            return e
        p = _ring_next(p, ring_size)
        used -= 1
    log.start, log.used = p, 0
    return NIL


cdef inline int32_t _log_oldest(const int32_t* pos, UseLog* log) noexcept nogil:
    """_log_victim for a caller that reads only the entry's position (and expiry)."""
    return _log_victim(pos, log, NULL, NULL, NULL, NULL, 0, False)


cdef inline void _log_consume(UseLog* log) noexcept nogil:
    """Drop the record at the start (the victim _log_victim just found, whose record goes stale anyway)."""
    log.start = _ring_next(log.start, log.size)
    log.used -= 1


cdef inline bint _log_is_newest(const UseLog* log, int32_t position) noexcept nogil:
    """Whether the record at position is the most recent one."""
    return log.used > 0 and position == (log.end - 1 if log.end > 0 else log.size - 1)


cdef inline void _log_append(int32_t* pos, UseLog* log, int32_t e) noexcept nogil:
    """Make e the most recently used entry; the caller has made room (Engine._log_make_room)."""
    pos[e] = <int32_t> log.end
    log.records[log.end] = e
    log.end = _ring_next(log.end, log.size)
    log.used += 1


cdef inline void _compact_run(int32_t* records, int32_t* pos, int64_t a, int64_t b, int64_t* w, int64_t ring_size,
                              bint prefetch) noexcept nogil:
    """Engine._log_make_room over the records a..b-1 of the ring: copy the live ones to *w on (which trails a),
    moving their entries' positions with them."""
    cdef int64_t p, to = w[0]
    cdef int32_t e, at
    cdef bint is_live
    for p in range(a, b):
        if prefetch and p + PREFETCH_SCAN < b:
            _prefetch(&pos[records[p + PREFETCH_SCAN]])
        # branch-free: whether a record is live is a coin toss the predictor would lose half the time. Selecting
        # between two loaded values compiles to a conditional move (selecting against a re-read of pos[e] compiled
        # to a branch); the move took the agent workload at capacity 10,000 from ~125 to ~141 M blocks/s
        e = records[p]
        at = pos[e]
        is_live = at == p
        records[to] = e  # (a stale record's copy is overwritten by the next live one)
        pos[e] = <int32_t> to if is_live else at
        to += is_live
        if to == ring_size:
            to = 0
    w[0] = to


cdef inline bint _item_less(const HeapItem* a, const HeapItem* b) noexcept nogil:
    """Heap order: a is evicted before b."""
    return a.k1 < b.k1 or (a.k1 == b.k1 and a.k2 < b.k2)


cdef inline int _arrival_error(double t, int32_t tenant, double last_t, int64_t n_tenants) noexcept nogil:
    """The error code of a request arriving at t from tenant after a request at last_t, or 0 (SEMANTICS §3)."""
    if isnan(t):
        return ERR_TIME_NAN
    if t < last_t:
        return ERR_TIME_DECREASING
    if tenant < 0 or tenant >= n_tenants:
        return ERR_TENANT
    return 0


cdef inline void _count(int64_t* ts, int64_t requests, int64_t hit_requests, int64_t prompt_tokens,
                        int64_t hit_tokens, int64_t blocks, int64_t hit_blocks, int64_t inserted, int64_t evictions,
                        int64_t uncached) noexcept nogil:
    """Add served requests to one tenant's statistics (ts: its row)."""
    ts[F_REQUESTS] += requests
    ts[F_HIT_REQUESTS] += hit_requests
    ts[F_PROMPT_TOKENS] += prompt_tokens
    ts[F_HIT_TOKENS] += hit_tokens
    ts[F_BLOCKS] += blocks
    ts[F_HIT_BLOCKS] += hit_blocks
    ts[F_INSERTED] += inserted
    ts[F_EVICTIONS_CAUSED] += evictions
    ts[F_UNCACHED] += uncached


cdef inline int64_t _hit_tokens(const uint32_t* block_tokens, const int32_t* req, int64_t hit_blocks,
                                const int32_t* owner, int32_t tenant, int64_t n_tenants,
                                int64_t* hits_from) noexcept nogil:
    """Tokens of a request's first hit_blocks blocks (entries req), credited in hits_from (unless NULL: not
    counted) to the tenants that inserted them."""
    cdef int64_t i, hit_tokens = 0
    for i in range(hit_blocks):
        hit_tokens += block_tokens[i]
    if hits_from != NULL:
        if n_tenants == 1:  # every entry is the one tenant's: no need to read the owners
            hits_from[0] += hit_tokens
        else:
            for i in range(hit_blocks):
                hits_from[tenant * n_tenants + owner[req[i]]] += block_tokens[i]
    return hit_tokens


cdef inline void _write_outputs(Outputs* out, Py_ssize_t r, int64_t hit_tokens, int64_t hit_blocks, int64_t inserted,
                                int64_t evicted, int64_t expired, int64_t uncached) noexcept nogil:
    out.hit_tokens[r] = hit_tokens
    out.hit_blocks[r] = hit_blocks
    out.inserted_blocks[r] = inserted
    out.evicted_blocks[r] = evicted
    out.expired_blocks[r] = expired
    out.uncached_blocks[r] = uncached


@cython.final  # no subclass: every cdef method is a direct (inlinable) call, not a vtable jump
cdef class Engine:
    """Prefix cache with LRU eviction, uniform TTL refreshed on use, capacity in block slots (SEMANTICS §3).

    Push = append to the use log when a request is stamped; promote = unlink (pin) on use, append at stamping;
    evict = the least recent linked entry.
    """

    def __cinit__(self):
        self.entry_key = NULL
        self.pos = NULL
        self.owner = NULL
        _index_init(&self.index)
        self.where = NULL
        self.where_size = 0
        self.expires_at = NULL
        self.parent_entry = NULL
        self.n_children = NULL
        self.insert_serial = NULL
        self.last_use = NULL
        self.freq = NULL
        self.depth = NULL
        self.heap = NULL
        self.heap_pos = NULL
        self.next_use = NULL
        self.priority = NULL
        self.batch_next_use = NULL
        self.q_newer = NULL
        self.q_older = NULL
        self.visited = NULL
        self.queue_id = NULL
        self.listed = NULL
        self.s3_ghost.capacity = 0
        self.s3_ghost.count = 0
        self.s3_ghost.keys = NULL
        self.s3_ghost.newer = NULL
        self.s3_ghost.older = NULL
        _index_init(&self.s3_ghost.index)
        self.ghost2.capacity = 0
        self.ghost2.count = 0
        self.ghost2.keys = NULL
        self.ghost2.newer = NULL
        self.ghost2.older = NULL
        _index_init(&self.ghost2.index)
        self.ghost_ring = NULL
        self.ghost_pos = NULL
        self.ghost_capacity = 0
        self.request_entries = NULL

    def __init__(self, capacity_blocks=None, ttl_s=None, hit_cap=None, int64_t block_size=1,
                 int64_t warmup_requests=0, double warmup_s=0.0, int n_tenants=1, policy="lru",
                 victims="leaves", bint interference=False, ghost_blocks=None, bint direct_keys=False):
        check_engine_config(capacity_blocks=capacity_blocks, ttl_s=ttl_s, hit_cap=hit_cap, block_size=block_size,
                            warmup_requests=warmup_requests, warmup_s=warmup_s, policy=policy, victims=victims,
                            ghost_blocks=ghost_blocks)
        policy = resolve_policy(policy)   # a plugin spec: an instance of its class
        if isinstance(policy, str):
            name, params = parse_policy(policy)
            self.policy = POLICY_CODES[name]
        elif is_hook_policy(policy):
            params = {}
            self.policy = P_PYTHON
            self.py_policy = policy
            self.py_inserted, self.py_used, self.py_removed, self.py_gained_child, self.py_became_leaf = (
                _bound_hook(policy, hook) for hook in ("inserted", "used", "removed", "gained_child", "became_leaf"))
            self.py_candidate = _IsCandidate(self)
        else:
            raise ValueError(f"custom policy {policy!r} has no victim(is_candidate) method (cachesim.HookPolicy): a "
                             "choose(candidates) policy runs on the reference engine only (impl='reference')")
        self.victims_any = victims == "any"
        self.orphaned_blocks = 0
        self.heap_size = 0
        self.hand = NIL
        cdef int q
        for q in range(MAX_QUEUES):
            self.q_head[q] = self.q_tail[q] = NIL
            self.q_listed[q] = self.q_members[q] = self.q_size[q] = 0
        self.n_queues = 1
        self.clock = 0
        self.serial = 0
        self.capacity_blocks = -1 if capacity_blocks is None else capacity_blocks
        self.ttl_s = INFINITY if ttl_s is None else ttl_s
        self.hit_cap_prompt_minus_one = hit_cap == "prompt-1"
        self.block_size = block_size
        self.warmup_requests = warmup_requests
        self.warmup_s = warmup_s
        self.log.records = NULL
        self.log.start = self.log.end = self.log.used = 0
        self.free_head = NIL
        self.occupancy = 0
        self.pool_used = 0
        self.peak_occupancy = 0
        self.requests_seen = 0
        self.last_t = -INFINITY
        self.first_t = INFINITY
        self.tenant_stats = np.zeros((max(n_tenants, 1), N_TENANT_FIELDS), dtype=np.int64)
        self.hits_from = np.zeros((max(n_tenants, 1), max(n_tenants, 1)), dtype=np.int64)
        self.lost_to = np.zeros((max(n_tenants, 1), max(n_tenants, 1) + 1), dtype=np.int64)
        self.evictions_by = np.zeros((max(n_tenants, 1), max(n_tenants, 1)), dtype=np.int64)
        self.track_interference = interference
        self.ghost_next = 0
        self.ghost_count = 0
        if interference:
            # remember as many evicted keys as the cache holds (or a million for an unbounded one)
            default_ghost = self.capacity_blocks if self.capacity_blocks > 0 else 1 << 20
            self.ghost_capacity = default_ghost if ghost_blocks is None else ghost_blocks
            self.ghost_ring = <int32_t*> PyMem_RawMalloc(max(self.ghost_capacity, 1) * sizeof(int32_t))
            if self.ghost_ring == NULL:
                raise MemoryError()
            memset(self.ghost_ring, 0xFF, self.ghost_capacity * sizeof(int32_t))  # all NIL
            if _grow(<void**> &self.ghost_pos, self.pool_size, sizeof(int32_t)):
                raise MemoryError()
        self._configure_policy(params)
        # pool and index grow on demand (up to the capacity), so a large capacity costs nothing until used
        cdef int64_t initial = 1024 if self.capacity_blocks < 0 else min(self.capacity_blocks, 1024)
        self.max_load = MAX_LOAD_NO_TTL if ttl_s is None else MAX_LOAD_TTL
        # positions are int32; a bounded cache needs a record per cached entry at least, and more to compact seldom
        # (a small cache keeps at least a quarter of its capacity spare: a log barely longer than the cache would be
        # compacted every few uses)
        self.log.limit = 2**31 - 1 if self.capacity_blocks < 0 else max(
            <int64_t> (self.capacity_blocks * (LOG_RECORDS_NO_TTL if ttl_s is None else LOG_RECORDS_TTL))
            - LOG_RESERVE_RECORDS, self.capacity_blocks + self.capacity_blocks // 4 + 16)
        self.log.size = min(2 * initial, self.log.limit)
        self.defragment_period = DEFRAGMENT_TURNOVERS * self.capacity_blocks if self.capacity_blocks > 0 else 2**62
        self.evictions_to_defragment = self.defragment_period
        self.defragment_small = False
        if _grow(<void**> &self.log.records, self.log.size, sizeof(int32_t)):
            raise MemoryError()
        self.direct_keys = direct_keys
        # the other policies keep their own order: a log only their TTL expiry would read is not kept
        self.use_log = self.policy == P_LRU or ttl_s is not None
        self.prefetch_victims = self.policy != P_LRU and self.policy != P_PYTHON
        if self._grow_pool(initial) < 0 or (
                not direct_keys and _index_resize(&self.index, _table_size_for(initial, self.max_load)) < 0):
            raise MemoryError()
        self.request_entries_size = 0

    def __dealloc__(self):
        PyMem_RawFree(self.entry_key)
        PyMem_RawFree(self.pos)
        PyMem_RawFree(self.owner)
        PyMem_RawFree(self.log.records)
        PyMem_RawFree(self.expires_at)
        _index_free(&self.index)
        PyMem_RawFree(self.where)
        PyMem_RawFree(self.parent_entry)
        PyMem_RawFree(self.n_children)
        PyMem_RawFree(self.insert_serial)
        PyMem_RawFree(self.last_use)
        PyMem_RawFree(self.freq)
        PyMem_RawFree(self.depth)
        PyMem_RawFree(self.heap)
        PyMem_RawFree(self.heap_pos)
        PyMem_RawFree(self.next_use)
        PyMem_RawFree(self.priority)
        PyMem_RawFree(self.q_newer)
        PyMem_RawFree(self.q_older)
        PyMem_RawFree(self.visited)
        PyMem_RawFree(self.queue_id)
        PyMem_RawFree(self.listed)
        _ghost_free(&self.s3_ghost)
        _ghost_free(&self.ghost2)
        PyMem_RawFree(self.ghost_ring)
        PyMem_RawFree(self.ghost_pos)
        PyMem_RawFree(self.request_entries)

    # -- memory ---------------------------------------------------------------------------------------------

    cdef int _grow_pool(self, int64_t size) except -2 nogil:
        if (_grow(<void**> &self.entry_key, size, sizeof(uint64_t)) or _grow(<void**> &self.pos, size, sizeof(int32_t))
                or _grow(<void**> &self.owner, size, sizeof(int32_t))):
            return -1
        if self.ttl_s != INFINITY and _grow(<void**> &self.expires_at, size, sizeof(double)):
            return -1
        if self.ghost_pos != NULL and _grow(<void**> &self.ghost_pos, size, sizeof(int32_t)):
            return -1
        if self.policy != P_LRU:
            if (_grow(<void**> &self.parent_entry, size, sizeof(int32_t)) or
                    _grow(<void**> &self.n_children, size, sizeof(int32_t)) or
                    _grow(<void**> &self.insert_serial, size, sizeof(int64_t)) or
                    _grow(<void**> &self.last_use, size, sizeof(int64_t)) or
                    _grow(<void**> &self.freq, size, sizeof(int32_t)) or
                    _grow(<void**> &self.depth, size, sizeof(int32_t))):
                return -1
            if self._queued():
                if (_grow(<void**> &self.q_newer, size, sizeof(int32_t)) or
                        _grow(<void**> &self.q_older, size, sizeof(int32_t)) or
                        _grow(<void**> &self.visited, size, sizeof(unsigned char)) or
                        _grow(<void**> &self.queue_id, size, sizeof(unsigned char)) or
                        _grow(<void**> &self.listed, size, sizeof(unsigned char))):
                    return -1
            elif (_grow(<void**> &self.heap, size, sizeof(HeapItem)) or
                    _grow(<void**> &self.heap_pos, size, sizeof(int32_t))):
                return -1
            if self.policy == P_BELADY and _grow(<void**> &self.next_use, size, sizeof(int64_t)):
                return -1
            if self.policy == P_GDSF and _grow(<void**> &self.priority, size, sizeof(double)):
                return -1
        self.pool_size = size
        return 0

    cdef int _grow_index_if_full(self) except -2 nogil:
        """Keep the table at most max_load full; a bounded cache's table stops at the size its capacity needs."""
        cdef int64_t size
        cdef int64_t indexed = self.occupancy + self.ghost_count
        if self.direct_keys or indexed <= self.max_load * self.index.size:
            return 0
        size = 2 * self.index.size
        if self.capacity_blocks > 0 and size > _table_size_for(self.capacity_blocks + self.ghost_capacity,
                                                               self.max_load):
            size = _table_size_for(self.capacity_blocks + self.ghost_capacity, self.max_load)
        if size <= self.index.size:
            return 0
        return _index_resize(&self.index, size)

    def _defragment_every(self, int64_t evictions):
        """Renumber the pool every so many evictions, whatever its size (tests; see _defragment)."""
        self.defragment_period = self.evictions_to_defragment = evictions
        self.defragment_small = True

    def memory_bytes(self):
        """Bytes held by the engine's pool (with expiry times and the policy's own per-entry state), use log,
        index and the policy's ghost (excluding statistics)."""
        return int(self._state_bytes())

    cdef int64_t _state_bytes(self) noexcept nogil:
        cdef int64_t per_entry = ENTRY_BYTES + (sizeof(double) if self.expires_at != NULL else 0)
        cdef int64_t policy_bytes = 0
        if self.policy != P_LRU:   # parent key, children, serial, last use, uses, depth
            policy_bytes = 2 * sizeof(int32_t) + 2 * sizeof(int64_t) + 2 * sizeof(int32_t)
            if self._queued():      # links, marks, queue, linked flag
                policy_bytes += 2 * sizeof(int32_t) + 3
            else:                   # heap (scores inline) and heap position
                policy_bytes += sizeof(HeapItem) + sizeof(int32_t)
            policy_bytes += (sizeof(int64_t) if self.next_use != NULL else 0) + \
                (sizeof(double) if self.priority != NULL else 0)
        cdef int64_t ghost = _ghost_bytes(&self.s3_ghost) + _ghost_bytes(&self.ghost2)
        return (self.pool_size * (per_entry + policy_bytes) + self.log.size * sizeof(int32_t)
                + self.index.size * sizeof(uint64_t) + self.where_size * sizeof(int32_t) + ghost)

    cdef int _grow_where(self, int64_t size) except -2 nogil:
        """direct_keys: cover ids below size (new ids start uncached); -1 when out of memory."""
        cdef int64_t i
        if size <= self.where_size:
            return 0
        size = max(size, 2 * self.where_size)
        if _grow(<void**> &self.where, size, sizeof(int32_t)):
            return -1
        for i in range(self.where_size, size):
            self.where[i] = NIL
        self.where_size = size
        return 0

    # -- hash index (see KeyIndex) --------------------------------------------------------------------------

    cdef inline int32_t _find(self, uint64_t key) noexcept nogil:
        if self.direct_keys:
            return self.where[key]  # feed() grew where past every key of the batch
        return _index_find(&self.index, key, self.entry_key)

    cdef inline void _prefetch_slot(self, uint64_t key) noexcept nogil:
        if self.direct_keys:
            _prefetch(&self.where[key])
        else:
            _prefetch(&self.index.slots[_key_bucket(key, self.index.size)])

    cdef inline void _prefetch_entry(self, uint64_t key) noexcept nogil:
        """Prefetch the entry the key's home bucket points at (the bucket itself was prefetched earlier)."""
        cdef int32_t e
        if self.direct_keys:
            e = self.where[key]
        else:
            e = _slots_guess(self.index.slots, self.index.size, key)
        if e >= 0:
            if not self.direct_keys:
                _prefetch(&self.entry_key[e])
            _prefetch(&self.pos[e])

    cdef inline bint _prefetch_pays(self) noexcept nogil:
        """Software prefetch pays once the entries and the index outgrow twice the L2; below, it only costs."""
        if self.policy != P_LRU:   # with the policy's own state and ghosts (computed once a batch)
            return self._state_bytes() > _prefetch_min_bytes
        return (self.where_size * sizeof(int32_t) + self.index.size * sizeof(uint64_t)
                + self.pool_size * ENTRY_BYTES + self.log.size * sizeof(int32_t)) > _prefetch_min_bytes

    cdef inline int _grow_request_scratch(self, int64_t n_blocks) noexcept nogil:
        """Grow request_entries (one request's entries) to hold n_blocks; nonzero when out of memory."""
        cdef int64_t size = max(n_blocks, 2 * self.request_entries_size)
        if n_blocks > self.request_entries_size:
            if _grow(<void**> &self.request_entries, size, sizeof(int32_t)):
                return 1
            self.request_entries_size = size
        return 0

    cdef inline int64_t _capped_hits(self, int64_t prompt_tokens, int64_t hit_blocks) noexcept nogil:
        """hit_blocks after the hit cap: with "prompt-1", at least one prompt token is computed."""
        cdef int64_t cap
        if not self.hit_cap_prompt_minus_one:
            return hit_blocks
        cap = (prompt_tokens - 1) // self.block_size
        return hit_blocks if hit_blocks <= cap else (cap if cap > 0 else 0)

    cdef inline void _prefetch_ahead(self, const uint64_t* keys, int64_t b, int64_t end) noexcept nogil:
        """Two-stage software pipeline over the batch's keys: slots PREFETCH_SLOT ahead, entries PREFETCH_ENTRY;
        and the ghosts' buckets, which a missed key is looked up in before it is inserted."""
        if b + PREFETCH_SLOT < end:
            self._prefetch_slot(keys[b + PREFETCH_SLOT])
            if self.s3_ghost.capacity and self.prefetching:
                _prefetch(&self.s3_ghost.index.slots[_key_bucket(keys[b + PREFETCH_SLOT], self.s3_ghost.index.size)])
                if self.ghost2.capacity:
                    _prefetch(&self.ghost2.index.slots[_key_bucket(keys[b + PREFETCH_SLOT], self.ghost2.index.size)])
        if b + PREFETCH_ENTRY < end:
            self._prefetch_entry(keys[b + PREFETCH_ENTRY])

    cdef inline void _index_insert(self, int32_t e) noexcept nogil:
        if self.direct_keys:
            self.where[self.entry_key[e]] = e
        else:
            _index_place(&self.index, (_hash32(self.entry_key[e]) << 32) | <uint32_t> e)

    cdef inline void _index_remove(self, int32_t e) noexcept nogil:
        if self.direct_keys:
            self.where[self.entry_key[e]] = NIL
        else:
            _index_delete(&self.index, self.entry_key[e], e)

    # -- recency: the use log -------------------------------------------------------------------------------

    cdef inline void _unlink(self, int32_t e) noexcept nogil:
        """Take e out of the recency order (its record goes stale); the caller gives its pos a new meaning."""
        self.pos[e] = NIL

    cdef inline int _make_newest(self, int32_t e) except -2 nogil:
        """Make e the most recently used entry; -1 when out of memory."""
        if self.log.used == self.log.size and self._log_make_room() < 0:
            return -1
        _log_append(self.pos, &self.log, e)
        return 0

    cdef inline int32_t _oldest(self) noexcept nogil:
        """The least recently used linked entry (the LRU victim, the next to expire), or NIL."""
        return _log_oldest(self.pos, &self.log)

    cdef int _log_make_room(self) except -2 nogil:
        """Room for one more record; -1 when out of memory. A log that compaction could not halve (more cached
        entries than half its records) grows instead, up to its limit; otherwise, or when it cannot grow, its live
        records are compacted, in order, where the window of the ring starts."""
        cdef int64_t w = self.log.start, live, ring_size = self.log.size
        cdef int64_t first_end = min(self.log.start + self.log.used, ring_size)  # the window, as two runs
        cdef bint prefetch = self._prefetch_pays()
        if ring_size < self.log.limit and 2 * self.occupancy > ring_size and self._log_grow() == 0:
            return 0
        _compact_run(self.log.records, self.pos, self.log.start, first_end, &w, ring_size, prefetch)
        _compact_run(self.log.records, self.pos, 0, self.log.start + self.log.used - first_end, &w, ring_size,
                     prefetch)
        live = w - self.log.start if w >= self.log.start else w - self.log.start + ring_size
        if live == 0 and self.log.used > 0 and self.pos[self.log.records[self.log.start]] == self.log.start:
            live = ring_size  # (w came round to the start: every record was live)
        self.log.end = w
        self.log.used = live
        return -1 if self.log.used == self.log.size else 0

    cdef int _log_grow(self) except -2 nogil:
        """Double the log (up to its limit); -1 when out of memory (the log is kept). A window that does not wrap
        keeps its records where they are, so no entry's position changes: the cheap case while a cache fills.
        A wrapped one is laid out afresh from the start of a new array, its live records only."""
        cdef int64_t size = min(2 * self.log.size, self.log.limit), k = 0, p = self.log.start, _i
        cdef int32_t* fresh
        cdef int32_t e
        if self.log.start + self.log.used <= self.log.size:
            if _grow(<void**> &self.log.records, size, sizeof(int32_t)):
                return -1
            self.log.end = self.log.start + self.log.used
            self.log.size = size
            return 0
        fresh = <int32_t*> PyMem_RawMalloc(size * sizeof(int32_t))
        if fresh == NULL:
            return -1
        for _i in range(self.log.used):
            e = self.log.records[p]
            if self.pos[e] == p:
                fresh[k] = e
                self.pos[e] = <int32_t> k
                k += 1
            p = _ring_next(p, self.log.size)
        PyMem_RawFree(self.log.records)
        self.log.records, self.log.size = fresh, size
        self.log.start, self.log.end, self.log.used = 0, k, k
        return 0

    cdef void _defragment(self) noexcept nogil:
        """Renumber the cached entries in use order, least recent first: entry k becomes the one whose record is
        k-th in the log, and the log reads 0, 1, 2... Call it between requests (nothing pinned), under LRU without
        ghosts. Why: a fresh pool hands entries out in order, so a request's blocks sit side by side and share
        cache lines; once the cache evicts, each new block takes over its victim's entry, and as hits re-stamp
        parts of prefixes those neighbourhoods break up, until every block is a DRAM line of its own. At 1 M
        cached (prefix workload, keys) that took a replay from 44 to about 60 ns a block over 10^8 blocks, and
        renumbering every 10^7 held it at 45 (a probe in numpy). The order of uses, and so every result, is
        unchanged. Skipped when out of memory: it only saves time."""
        cdef int64_t n = self.occupancy, ring = self.log.size, start = self.log.start, used = self.log.used
        cdef int64_t q, w = 0, k, old_p
        cdef int32_t* records = self.log.records
        cdef int32_t* pos = self.pos
        cdef uint64_t* slots = self.index.slots
        cdef uint64_t slot
        cdef void* scratch
        self.evictions_to_defragment = self.defragment_period
        # (the entries alone must outgrow the L2: a small pool beside a large id array gains nothing, and at
        # capacity 1,000 on dense ids renumbering cost 13% of the instructions)
        if (n == 0 or self.policy != P_LRU or self.ghost_pos != NULL or self.ghost_count
                or not (self.defragment_small or self.pool_size * ENTRY_BYTES > _prefetch_min_bytes)):
            return
        scratch = PyMem_RawMalloc(n * sizeof(uint64_t))
        if scratch == NULL:
            return
        # 1. the live records to records[0..n), in order: rotate the ring to start at 0 (in place, by three
        # reversals), then compact; a record moved from ring position (q + start) % ring to q
        _reverse(records, 0, start)
        _reverse(records, start, ring)
        _reverse(records, 0, ring)
        for q in range(used):
            old_p = q + start if q + start < ring else q + start - ring
            if q + PREFETCH_SCAN < used:
                _prefetch(&pos[records[q + PREFETCH_SCAN]])
            if pos[records[q]] == old_p:
                records[w] = records[q]
                w += 1
        # 2. each live entry's pos follows its record to k, which is also its new index: pos maps an old index to
        # the new one, for the index to follow
        for k in range(w):
            if k + PREFETCH_SCAN < w:
                _prefetch(&pos[records[k + PREFETCH_SCAN]])
            pos[records[k]] = <int32_t> k
        self.log.start, self.log.used = 0, w
        self.log.end = w if w < ring else 0
        if w != n:  # entries left pinned (by a request that ran out of memory): keep the compacted log, renumber none
            PyMem_RawFree(scratch)
            return
        if self.direct_keys:
            for k in range(n):
                if k + PREFETCH_SCAN < n:
                    _prefetch(&self.entry_key[records[k + PREFETCH_SCAN]])
                self.where[self.entry_key[records[k]]] = <int32_t> k
        else:
            for q in range(self.index.size):
                slot = slots[q]
                if q + PREFETCH_SCAN < self.index.size and slots[q + PREFETCH_SCAN] != EMPTY_SLOT:
                    _prefetch(&pos[<uint32_t> slots[q + PREFETCH_SCAN]])
                if slot != EMPTY_SLOT:
                    slots[q] = (slot & 0xFFFFFFFF00000000ULL) | <uint32_t> pos[<uint32_t> slot]
        # 3. the entries' fields, gathered in the new order through the scratch array
        _gather(self.entry_key, records, n, scratch, sizeof(uint64_t))
        _gather(self.owner, records, n, scratch, sizeof(int32_t))
        if self.expires_at != NULL:
            _gather(self.expires_at, records, n, scratch, sizeof(double))
        PyMem_RawFree(scratch)
        # 4. the log reads 0..n-1; the entries after n, free, form the free list in order
        for k in range(n):
            pos[k] = records[k] = <int32_t> k
        self.free_head = NIL
        for k in range(self.pool_used - 1, n - 1, -1):
            self._push_free(<int32_t> k)

    cdef inline void _push_free(self, int32_t e) noexcept nogil:
        """Put an entry no longer indexed on the free list (linked through pos: FREE_LINK - next)."""
        self.pos[e] = FREE_LINK - self.free_head
        self.free_head = e

    cdef inline void _release(self, int32_t e) noexcept nogil:
        """Remove an unlinked entry from the index and return it to the free list."""
        self._index_remove(e)
        self._push_free(e)
        self.occupancy -= 1

    cdef inline int32_t _allocate(self) noexcept nogil:
        """A fresh entry index, growing an unbounded pool when needed; NIL when out of memory."""
        cdef int32_t e
        cdef int64_t limit
        if self.free_head != NIL:
            e = self.free_head
            self.free_head = FREE_LINK - self.pos[e]
            return e
        if self.pool_used == self.pool_size:
            limit = self.capacity_blocks + self.ghost_capacity if self.capacity_blocks > 0 else 2**31 - 2
            if self.pool_size >= limit or self._grow_pool(min(self.pool_size * 2, limit)) < 0:
                return NIL
        e = <int32_t> self.pool_used
        self.pool_used += 1
        return e

    # -- ghosts: evicted entries that remember their evictor (SEMANTICS §6) -----------------------------------
    # With interference tracking an evicted entry stays in the index as a ghost (out of the recency order, not
    # counted as cached), its owner field now naming its evictor. A ring of the last ghost_capacity evictions
    # bounds them: the ghost a ring position held is retired when the ring comes round (unless it was revived by
    # its key's re-insertion meanwhile). A lookup finds a ghost in the same probe that finds a cached entry.

    cdef inline bint _is_ghost(self, int32_t e) noexcept nogil:
        return e != NIL and self.pos[e] == GHOST

    cdef void _bury(self, int32_t e, int32_t evictor) noexcept nogil:
        """An unlinked entry leaves the cache as a ghost remembering its evictor (only when tracking)."""
        cdef int64_t p = self.ghost_next
        cdef int32_t old = self.ghost_ring[p]
        if old != NIL and self.pos[old] == GHOST and self.ghost_pos[old] == p:
            self._index_remove(old)  # the oldest remembered eviction is forgotten
            self._push_free(old)
            self.ghost_count -= 1
        self.ghost_ring[p] = e
        self.ghost_pos[e] = <int32_t> p
        self.ghost_next = p + 1 if p + 1 < self.ghost_capacity else 0
        self.pos[e] = GHOST
        self.owner[e] = evictor
        self.ghost_count += 1
        self.occupancy -= 1

    cdef inline void _revive(self, int32_t e) noexcept nogil:
        """A ghost's key is inserted again (the entry was claimed, and left the ghosts, before any eviction for
        it): the entry is cached once more, and its ring position goes stale."""
        self.occupancy += 1

    # -- policies other than LRU (SEMANTICS §4; the reference: cachesim._reference_policies) --------------------
    # A candidate is an entry the policy may evict: a leaf (no cached entry inserted under it), or any entry
    # with victims="any". Entries the current request uses are pinned: the heap keeps them, skipping (and
    # dropping) any at its top when it chooses a victim, and re-sifts each at its stamp (_heap_victim).
    # The queue policies keep only leaves linked (with leaf victims): an entry that gets a child is parked,
    # keeping its marks and its queue, and is linked again at its queue's eviction end when its last child goes.

    def _configure_policy(self, dict params):
        """The policy's parameters (parsed and checked by _contract.parse_policy) and its queues' shares."""
        cdef int64_t capacity = max(self.capacity_blocks, 0)
        cdef int64_t small, n_seg, q
        cdef double attention
        if self.policy == P_S3FIFO:
            self.n_queues = 2
            small = <int64_t> (capacity * params["small-size-ratio"])
            self.q_size[0] = small
            self.q_size[1] = capacity - small
            self.s3_threshold = params["move-to-main-threshold"]
            if _ghost_init(&self.s3_ghost, <int64_t> (capacity * params["ghost-size-ratio"])) < 0:
                raise MemoryError()
        elif self.policy == P_SLRU:
            n_seg = params["n-seg"]
            self.n_queues = n_seg
            for q in range(n_seg):
                self.q_size[q] = capacity // n_seg
            self.q_size[0] += capacity - n_seg * (capacity // n_seg)   # the remainder: the segments sum to it
        elif self.policy == P_ARC:
            self.n_queues = 2
            self.arc_p = 0.0
            self.arc_ghost_hit = 0
            self.arc_remember = True
            # B1 and B2 (in s3_ghost and ghost2): at most capacity keys each, which libCacheSim never exceeds
            if _ghost_init(&self.s3_ghost, capacity) < 0 or _ghost_init(&self.ghost2, capacity) < 0:
                raise MemoryError()
        elif self.policy == P_TWOQ:
            self.n_queues = 2
            small = <int64_t> (capacity * params["Ain-size-ratio"])
            self.q_size[0] = small
            self.q_size[1] = capacity - small
            if _ghost_init(&self.s3_ghost, <int64_t> (capacity * params["Aout-size-ratio"])) < 0:   # A1out
                raise MemoryError()
        elif self.policy == P_CLOCK:
            self.clock_max = (1 << params["n-bit-counter"]) - 1
            self.clock_init = min(params["init-freq"], self.clock_max)
        elif self.policy == P_GDSF:
            self.gdsf_inflation = 0.0
            attention = params["attention-tokens"]
            self.gdsf_per_depth = self.block_size / attention if attention > 0 else 0.0

    cdef inline void _heap_item(self, int32_t e, HeapItem* item) noexcept nogil:
        """e's score as its policy orders candidates (the smallest is evicted first): k1, then the last use."""
        cdef int policy = self.policy
        cdef double priority
        item.e = e
        item.k2 = self.last_use[e]
        if policy == P_LFU:
            item.k1 = self.freq[e]
        elif policy == P_TWO_CLASS:  # probation (used by one request) before protected, each by recency
            item.k1 = self.freq[e] >= 2
        elif policy == P_PRIORITY:  # rarely shared first, then deeper blocks, then older
            item.k1 = (<int64_t> self.freq[e] << 32) | (0x7FFFFFFF - self.depth[e])
        elif policy == P_BELADY:  # the farthest next use first
            item.k1 = -self.next_use[e]
        else:  # P_GDSF, the lowest priority first: a priority is >= 0, so its bits order as the number does
            priority = self.priority[e]
            memcpy(&item.k1, &priority, sizeof(double))

    cdef inline void _heap_place(self, int64_t i, HeapItem* item) noexcept nogil:
        self.heap[i] = item[0]
        self.heap_pos[item.e] = <int32_t> i

    # a 4-ary heap: half the levels of a binary one, and a node's children share a cache line or two
    cdef void _heap_up(self, int64_t i) noexcept nogil:
        cdef HeapItem x = self.heap[i]
        cdef int64_t parent
        while i > 0:
            parent = (i - 1) >> 2
            if not _item_less(&x, &self.heap[parent]):
                break
            self._heap_place(i, &self.heap[parent])
            i = parent
        self._heap_place(i, &x)

    cdef void _heap_down(self, int64_t i) noexcept nogil:
        cdef HeapItem x = self.heap[i]
        cdef int64_t child, first, last, k, n = self.heap_size
        while True:
            first = 4 * i + 1
            if first >= n:
                break
            child = first
            last = min(first + 4, n)
            for k in range(first + 1, last):
                if _item_less(&self.heap[k], &self.heap[child]):
                    child = k
            if not _item_less(&self.heap[child], &x):
                break
            self._heap_place(i, &self.heap[child])
            i = child
        self._heap_place(i, &x)

    cdef void _heap_push(self, int32_t e) noexcept nogil:
        if self.heap_pos[e] != NIL:
            return
        self._heap_item(e, &self.heap[self.heap_size])
        self.heap_pos[e] = <int32_t> self.heap_size
        self.heap_size += 1
        self._heap_up(self.heap_size - 1)

    cdef void _heap_remove(self, int32_t e) noexcept nogil:
        cdef int64_t i = self.heap_pos[e]
        cdef int32_t moved
        if i == NIL:
            return
        self.heap_size -= 1
        if i != self.heap_size:   # the last item fills the hole and sifts
            moved = self.heap[self.heap_size].e
            self._heap_place(i, &self.heap[self.heap_size])
            self._heap_up(i)
            self._heap_down(self.heap_pos[moved])
        self.heap_pos[e] = NIL

    cdef inline bint _eligible(self, int32_t e) noexcept nogil:
        return self.pos[e] != PINNED and (self.victims_any or self.n_children[e] == 0)

    # -- queues ---------------------------------------------------------------------------------------------

    cdef inline bint _queued(self) noexcept nogil:
        return (self.policy == P_SIEVE or self.policy == P_S3FIFO or self.policy == P_CLOCK or self.policy == P_SLRU
                or self.policy == P_ARC or self.policy == P_TWOQ or self.policy == P_FIFO)

    cdef inline bint _parks(self) noexcept nogil:
        """Whether interior entries leave their queue (every queue policy, with leaf victims)."""
        return not self.victims_any and self._queued()

    cdef inline void _q_link_head(self, int32_t e, int q) noexcept nogil:
        self.queue_id[e] = <unsigned char> q
        self.listed[e] = 1
        self.q_older[e] = self.q_head[q]
        self.q_newer[e] = NIL
        if self.q_head[q] != NIL:
            self.q_newer[self.q_head[q]] = e
        else:
            self.q_tail[q] = e
        self.q_head[q] = e
        self.q_listed[q] += 1

    cdef inline void _q_link_tail(self, int32_t e, int q) noexcept nogil:
        self.queue_id[e] = <unsigned char> q
        self.listed[e] = 1
        self.q_newer[e] = self.q_tail[q]
        self.q_older[e] = NIL
        if self.q_tail[q] != NIL:
            self.q_older[self.q_tail[q]] = e
        else:
            self.q_head[q] = e
        self.q_tail[q] = e
        self.q_listed[q] += 1

    cdef void _q_link_older_than(self, int32_t e, int32_t at) noexcept nogil:
        """Link e just towards the tail of the linked entry at (same queue)."""
        cdef int q = self.queue_id[at]
        cdef int32_t older = self.q_older[at]
        if older == NIL:
            self._q_link_tail(e, q)
            return
        self.queue_id[e] = <unsigned char> q
        self.listed[e] = 1
        self.q_newer[e] = at
        self.q_older[e] = older
        self.q_older[at] = e
        self.q_newer[older] = e
        self.q_listed[q] += 1

    cdef inline void _q_unlink(self, int32_t e) noexcept nogil:
        cdef int q = self.queue_id[e]
        cdef int32_t newer = self.q_newer[e], older = self.q_older[e]
        if self.hand == e:   # SIEVE: the hand moves on to the next newer entry
            self.hand = newer
        if newer == NIL:
            self.q_head[q] = older
        else:
            self.q_older[newer] = older
        if older == NIL:
            self.q_tail[q] = newer
        else:
            self.q_newer[older] = newer
        self.q_listed[q] -= 1
        self.listed[e] = 0

    cdef inline void _q_enter(self, int32_t e, int q) noexcept nogil:
        """e joins queue q at its head."""
        self.q_members[q] += 1
        self._q_link_head(e, q)

    cdef inline void _q_rotate(self, int32_t e) noexcept nogil:
        """The tail e goes to the head of its queue."""
        cdef int q = self.queue_id[e]
        self._q_unlink(e)
        self._q_link_head(e, q)

    cdef int32_t _s3fifo_victim(self) noexcept nogil:
        """libCacheSim's S3FIFO eviction (see cachesim._reference_policies.S3Fifo for the rules)."""
        cdef bint from_main = self.q_members[1] > self.q_size[1] or self.q_members[0] == 0
        cdef bint switched = False
        cdef int64_t skipped = 0
        cdef int32_t t
        while True:
            q = 1 if from_main else 0
            if self.q_listed[q] == 0 or skipped >= self.q_listed[q]:
                if switched:
                    return NIL
                from_main = not from_main
                switched = True
                skipped = 0
                continue
            t = self.q_tail[q]
            if not self._eligible(t):            # not evictable now: to the head of its queue
                self._q_rotate(t)
                skipped += 1
                continue
            if from_main and self.visited[t] >= 1:   # one more round, its count decremented
                self.visited[t] = min(self.visited[t], 3) - 1
                self._q_rotate(t)
                skipped = 0
                continue
            if not from_main and self.visited[t] >= self.s3_threshold:   # used enough while small: to main
                self._q_unlink(t)
                self.q_members[0] -= 1
                self.visited[t] = 0
                self._q_enter(t, 1)
                skipped = 0
                continue
            return t

    cdef int32_t _q_take(self, int q) noexcept nogil:
        """The first candidate from queue q's tail, else from the other one's (q is 0 or 1); a tail that is not a
        candidate goes to its queue's head."""
        cdef int _side
        cdef int64_t _steps, listed
        cdef int32_t t
        for _side in range(2):
            listed = self.q_listed[q]
            for _steps in range(listed):
                t = self.q_tail[q]
                if self._eligible(t):
                    return t
                self._q_rotate(t)
            q = 1 - q
        return NIL

    cdef int32_t _arc_victim(self) noexcept nogil:
        """libCacheSim's ARC: case IV's ghost trimming on a plain miss, then REPLACE (see
        cachesim._reference_policies.Arc for the rules)."""
        cdef int64_t t1 = self.q_members[0], t2 = self.q_members[1], c = self.capacity_blocks
        cdef bint from_t1
        self.arc_remember = True
        if self.arc_ghost_hit == 0:
            if t1 + self.s3_ghost.count + 1 > c:
                if self.s3_ghost.count == 0:   # T1 holds the whole cache: its LRU block goes, not remembered
                    self.arc_remember = False
                    return self._q_take(0)
                _ghost_unlink(&self.s3_ghost, self.s3_ghost.oldest)
            elif t1 + t2 + self.s3_ghost.count + self.ghost2.count >= 2 * c and self.ghost2.count > 0:
                _ghost_unlink(&self.ghost2, self.ghost2.oldest)
        from_t1 = (t1 > 0 and (t1 > self.arc_p or (t1 == self.arc_p and self.arc_ghost_hit == 2))) or t2 == 0
        return self._q_take(0 if from_t1 else 1)

    cdef int32_t _clock_victim(self) noexcept nogil:
        """libCacheSim's Clock: the tail's counter above 0 is decremented and the tail goes to the head; the first
        tail at 0 is the victim. A tail that is not a candidate goes to the head unchanged."""
        cdef int64_t skipped = 0
        cdef int32_t t
        while self.q_listed[0] > 0 and skipped < self.q_listed[0]:
            t = self.q_tail[0]
            if not self._eligible(t):
                self._q_rotate(t)
                skipped += 1
            elif self.visited[t] >= 1:
                self.visited[t] -= 1
                self._q_rotate(t)
                skipped = 0
            else:
                return t
        return NIL

    cdef int32_t _slru_victim(self) noexcept nogil:
        """SLRU: the least recently used candidate of the lowest segment that has one. A block this request uses,
        met on the way, goes to its segment's head (stamping moves it up a segment anyway), so a long hit prefix
        is walked past once, not at every eviction of the request."""
        cdef int q
        cdef int32_t e, newer
        cdef int64_t _steps, listed
        for q in range(self.n_queues):
            e = self.q_tail[q]
            listed = self.q_listed[q]
            for _steps in range(listed):   # each entry linked now, once
                newer = self.q_newer[e]
                if self.pos[e] == PINNED:
                    self._q_rotate(e)
                elif self.victims_any or self.n_children[e] == 0:
                    return e
                e = newer
        return NIL

    cdef int32_t _fifo_victim(self) noexcept nogil:
        """FIFO: the oldest insertion among the candidates. The queue holds leaves in insertion order (a parked
        entry comes back where its insertion puts it: _q_relink), so that is the first candidate from the tail;
        the blocks this request uses are walked past, not rotated, which would break the order."""
        cdef int32_t e = self.q_tail[0]
        while e != NIL and not self._eligible(e):
            e = self.q_newer[e]
        return e

    cdef int32_t _sieve_victim(self) noexcept nogil:
        """SIEVE: the hand walks from the oldest insertion towards the newest, clearing "visited" marks, and stops
        at the first unmarked candidate; entries that are not candidates are passed over unchanged."""
        cdef int32_t e
        cdef int64_t _steps
        if self.q_listed[0] == 0:
            return NIL
        e = self.hand if self.hand != NIL else self.q_tail[0]
        for _steps in range(2 * self.q_listed[0] + 1):
            if self._eligible(e):
                if self.visited[e]:
                    self.visited[e] = 0
                else:
                    self.hand = self.q_newer[e]
                    return e
            e = self.q_newer[e]
            if e == NIL:
                e = self.q_tail[0]
        return NIL

    cdef inline int32_t _choose_victim(self) noexcept nogil:
        """The entry the policy evicts next, or NIL when every candidate is in use by this request."""
        if self.policy == P_PYTHON:
            return self._py_victim()
        if self.policy == P_LRU:
            # pinned entries are out of the recency order; the oldest is always a leaf
            return _log_victim(self.pos, &self.log, self.entry_key if self._prefetch_pays() else NULL, self.owner,
                               self.where, self.index.slots, self.index.size, self.direct_keys)
        if self.policy == P_S3FIFO:
            return self._s3fifo_victim()
        if self.policy == P_SIEVE:
            return self._sieve_victim()
        if self.policy == P_CLOCK:
            return self._clock_victim()
        if self.policy == P_SLRU:
            return self._slru_victim()
        if self.policy == P_ARC:
            return self._arc_victim()
        if self.policy == P_TWOQ:   # A1in's oldest while A1in is over its share, else Am's LRU
            return self._q_take(0 if self.q_members[0] > self.q_size[0] else 1)
        if self.policy == P_FIFO:
            return self._fifo_victim()
        return self._heap_victim()

    cdef int32_t _heap_victim(self) noexcept nogil:
        """The heap's minimum not in use by this request. Used entries stay in the heap while they are pinned
        (their scores change only at the stamp, which re-sifts them): one met at the top leaves it here and is
        pushed back at its stamp, so a hit costs nothing unless it is in the way of an eviction."""
        cdef int32_t e
        while self.heap_size > 0:
            e = self.heap[0].e
            if self.pos[e] != PINNED:
                return e
            self._heap_remove(e)
        return NIL

    # -- a Python policy (P_PYTHON): its hooks are called with the GIL, which feed() then holds throughout -----

    cdef int32_t _candidate_entry(self, object key):
        """The entry of key if it may be evicted now (cached, not used by this request, a leaf unless
        victims="any"), else NIL."""
        cdef uint64_t k
        cdef int32_t e
        if not isinstance(key, int):
            return NIL
        try:
            k = key
        except OverflowError:   # negative, or past 64 bits
            return NIL
        if self.direct_keys and k >= <uint64_t> self.where_size:
            return NIL
        e = self._find(k)
        if e == NIL or self.pos[e] == GHOST or not self._eligible(e):
            return NIL
        return e

    cdef void _py_notify(self, object hook, int32_t e, int64_t arg, int arg_kind) noexcept nogil:
        """Call a notification hook with e's key, and arg as an int (arg_kind 1) or a bool (2); the exception it
        raises is kept and stops the batch."""
        with gil:
            if hook is None or self.policy_failed:
                return
            try:
                if arg_kind == 1:
                    hook(self.entry_key[e], arg)
                elif arg_kind == 2:
                    hook(self.entry_key[e], arg != 0)
                else:
                    hook(self.entry_key[e])
            except BaseException as exc:
                self.policy_error = exc
                self.policy_failed = True

    cdef int32_t _py_victim(self) noexcept nogil:
        cdef int32_t e = NIL
        with gil:
            if self.policy_failed:
                return NIL
            try:
                key = self.py_policy.victim(self.py_candidate)
                if key is not None:
                    e = self._candidate_entry(key)
                    if e == NIL:
                        raise PolicyError(f"policy {_policy_name(self.py_policy)!r} chose block {key!r}, which may "
                                          "not be evicted now (not cached, used by this request, or not a leaf)")
            except BaseException as exc:
                self.policy_error = exc
                self.policy_failed = True
                e = NIL
        return e

    # -- the hooks the serve step calls (SEMANTICS §3) ------------------------------------------------------

    cdef inline void _before_insert(self, uint64_t key, bint full) noexcept nogil:
        """key missed and is inserted next (after a victim is chosen, when full): S3-FIFO looks it up in its
        ghost now, before an eviction can push it out."""
        cdef int64_t b1, b2
        if self.policy == P_S3FIFO or self.policy == P_TWOQ:
            self.s3_ghost_hit = _ghost_take(&self.s3_ghost, key)
        elif self.policy == P_ARC:   # a ghost hit adapts p (by the ghosts' sizes before the key leaves)
            b1 = self.s3_ghost.count
            b2 = self.ghost2.count
            self.arc_ghost_hit = 0
            if _ghost_take(&self.s3_ghost, key):
                self.arc_p = min(self.arc_p + max(<double> b2 / <double> b1, 1.0), <double> self.capacity_blocks)
                self.arc_ghost_hit = 1
            elif _ghost_take(&self.ghost2, key):
                self.arc_p = max(self.arc_p - max(<double> b1 / <double> b2, 1.0), 0.0)
                self.arc_ghost_hit = 2

    cdef inline void _on_insert(self, int32_t e, int32_t parent, int64_t depth, bint full) noexcept nogil:
        self.serial += 1
        self.insert_serial[e] = self.serial
        self.last_use[e] = 0
        self.freq[e] = 0
        self.depth[e] = <int32_t> depth
        self.parent_entry[e] = parent
        self.n_children[e] = 0
        if parent != NIL:
            self.n_children[parent] += 1
        if self.policy == P_PYTHON:
            self._py_notify(self.py_inserted, e, depth, 1)
            if parent != NIL and self.n_children[parent] == 1 and not self.victims_any:
                self._py_notify(self.py_gained_child, parent, 0, 0)
            return
        if self.policy == P_BELADY:
            self.next_use[e] = NEVER
        if not self._queued():
            self.heap_pos[e] = NIL
            if parent != NIL and self.n_children[parent] == 1 and not self.victims_any:
                self._heap_remove(parent)   # not a leaf now
            return
        self._q_insert(e, full)
        if parent != NIL and self.n_children[parent] == 1 and self._parks() and self.listed[parent]:
            self._q_unlink(parent)   # parked while it has children (after e is queued: SIEVE's hand may go to e)

    cdef inline void _q_insert(self, int32_t e, bint full) noexcept nogil:
        """A new entry joins its policy's queue."""
        cdef int q
        self.visited[e] = 0
        if self.policy == P_S3FIFO:
            # a ghost hit goes to the main queue; so does a block while the cache fills and the small queue is full
            self._q_enter(e, 1 if self.s3_ghost_hit or (not full and self.q_members[0] >= self.q_size[0]) else 0)
            self.s3_ghost_hit = False
        elif self.policy == P_SLRU:
            q = 0
            while q < self.n_queues and self.q_members[q] >= self.q_size[q]:
                q += 1
            self._q_enter(e, q if q < self.n_queues else 0)   # the lowest segment with room
        elif self.policy == P_ARC:
            self._q_enter(e, 1 if self.arc_ghost_hit else 0)   # a ghost hit to T2, else T1
            self.arc_ghost_hit = 0
        elif self.policy == P_TWOQ:
            self._q_enter(e, 1 if self.s3_ghost_hit else 0)   # an A1out hit to Am, else A1in
            self.s3_ghost_hit = False
        else:
            if self.policy == P_CLOCK:
                self.visited[e] = <unsigned char> self.clock_init
            self._q_enter(e, 0)

    cdef void _slru_promote(self, int32_t e) noexcept nogil:
        """A used block moves to the head of the segment above (the top one: its head); a segment over its share
        moves its LRU block to the head of the one below, in cascade (segment 0 keeps any excess: evictions
        happen only while inserting). A parked block changes segment without being linked."""
        cdef int q = self.queue_id[e]
        cdef int32_t t
        cdef bint linked = self.listed[e]
        if q == self.n_queues - 1:
            if linked:
                self._q_rotate_to_head(e)
            return
        if linked:
            self._q_unlink(e)
        self.q_members[q] -= 1
        q += 1
        if linked:
            self._q_enter(e, q)
        else:
            self.q_members[q] += 1
            self.queue_id[e] = <unsigned char> q
        while q > 0 and self.q_members[q] > self.q_size[q] and self.q_listed[q] > 0:
            t = self.q_tail[q]
            self._q_unlink(t)
            self.q_members[q] -= 1
            q -= 1
            self._q_enter(t, q)

    cdef inline void _q_rotate_to_head(self, int32_t e) noexcept nogil:
        if self.q_head[self.queue_id[e]] != e:
            self._q_rotate(e)

    cdef inline void _on_use(self, int32_t e, bint inserted_now) noexcept nogil:
        """Stamping: rescore, and return candidates to the heap."""
        self.clock += 1
        self.last_use[e] = self.clock
        self.freq[e] += 1
        if self.policy == P_PYTHON:
            self._py_notify(self.py_used, e, inserted_now, 2)
        elif self.policy == P_SIEVE:
            if not inserted_now:
                self.visited[e] = 1
        elif self.policy == P_S3FIFO:
            if not inserted_now and self.visited[e] < 255:
                self.visited[e] += 1
        elif self.policy == P_CLOCK:
            if not inserted_now and self.visited[e] < self.clock_max:
                self.visited[e] += 1
        elif self.policy == P_SLRU:
            if not inserted_now:
                self._slru_promote(e)
            elif self.listed[e]:
                self._q_rotate_to_head(e)
        elif self.policy == P_ARC:
            if self.queue_id[e] == 0 and not inserted_now:   # seen again: to T2's head (a parked block stays parked)
                self.q_members[0] -= 1
                self.q_members[1] += 1
                if self.listed[e]:
                    self._q_unlink(e)
                    self._q_link_head(e, 1)
                else:
                    self.queue_id[e] = 1
            elif self.listed[e]:
                self._q_rotate_to_head(e)
        elif self.policy == P_TWOQ:
            if self.queue_id[e] == 1 and self.listed[e]:   # Am is an LRU; A1in a FIFO
                self._q_rotate_to_head(e)
        elif self.policy == P_FIFO:   # use changes nothing
            pass
        else:
            if self.policy == P_GDSF:   # L + uses x the block's recomputation cost (see _reference_policies.Gdsf)
                self.priority[e] = self.gdsf_inflation + self.freq[e] * (
                    1.0 + (self.depth[e] + 0.5) * self.gdsf_per_depth if self.gdsf_per_depth > 0 else 1.0)
            if self.heap_pos[e] != NIL:   # rescored in place
                self._heap_item(e, &self.heap[self.heap_pos[e]])
                self._heap_up(self.heap_pos[e])
                self._heap_down(self.heap_pos[e])
            elif self.victims_any or self.n_children[e] == 0:
                self._heap_push(e)

    cdef inline void _forget(self, int32_t e, bint evicted) noexcept nogil:
        """Policy bookkeeping for an entry about to leave the cache (a capacity eviction, or an expiry)."""
        cdef int32_t parent
        if self.policy == P_PYTHON:
            self._py_notify(self.py_removed, e, evicted, 2)
        elif self._queued():
            if self.policy == P_S3FIFO and evicted and self.queue_id[e] == 0:
                _ghost_put(&self.s3_ghost, self.entry_key[e])
            elif self.policy == P_TWOQ and evicted and self.queue_id[e] == 0:   # into A1out
                _ghost_put(&self.s3_ghost, self.entry_key[e])
            elif self.policy == P_ARC and evicted and self.arc_remember:   # into B1 or B2
                if self.queue_id[e] == 0:
                    _ghost_put(&self.s3_ghost, self.entry_key[e])
                else:
                    _ghost_put(&self.ghost2, self.entry_key[e])
            if self.listed[e]:
                self._q_unlink(e)
            self.q_members[self.queue_id[e]] -= 1
        else:
            self._heap_remove(e)
            if self.policy == P_GDSF and evicted:
                self.gdsf_inflation = self.priority[e]   # L: what is not used again ages by it
        if self.victims_any:
            self.orphaned_blocks += self.n_children[e]
        parent = self.parent_entry[e]
        # only the incarnation of the parent that was cached when e came counted it as a child: not one freed
        # since or remembered as a ghost (pos below GHOST, or GHOST), nor one handed out again (a later serial)
        if (parent != NIL and self.pos[parent] > GHOST
                and self.insert_serial[parent] < self.insert_serial[e]):
            self.n_children[parent] -= 1
            if self.n_children[parent] == 0 and not self.victims_any:   # it became a leaf
                if self.policy == P_PYTHON:
                    self._py_notify(self.py_became_leaf, parent, 0, 0)
                elif self._parks():
                    self._q_relink(parent)
                elif not self._queued() and self.pos[parent] != PINNED:
                    self._heap_push(parent)

    cdef inline void _prefetch_next_victims(self) noexcept nogil:
        """After an eviction, what the next one will read: the buckets (in the index, and in the ghost that
        remembers it) of the key at each queue's tail, and the keys of the entries after them. The queues evict
        mostly at their tails, so this is LRU's use-log prefetch for them."""
        cdef int q
        cdef int32_t t
        if not self._queued():   # a heap: its top goes next, unless an insertion or a rescoring displaces it
            if self.heap_size > 0 and not self.direct_keys:
                _prefetch(&self.index.slots[_key_bucket(self.entry_key[self.heap[0].e], self.index.size)])
            if self.heap_size > 2:
                _prefetch(&self.entry_key[self.heap[1].e])
                _prefetch(&self.entry_key[self.heap[2].e])
            return
        for q in range(min(self.n_queues, 2)):
            t = self.q_tail[q]
            if t == NIL:
                continue
            if not self.direct_keys:
                _prefetch(&self.index.slots[_key_bucket(self.entry_key[t], self.index.size)])
            if self.s3_ghost.capacity:
                _prefetch(&self.s3_ghost.index.slots[_key_bucket(self.entry_key[t], self.s3_ghost.index.size)])
            if self.q_newer[t] != NIL:
                _prefetch(&self.entry_key[self.q_newer[t]])

    cdef void _q_relink(self, int32_t e) noexcept nogil:
        """A parked entry that became a leaf is linked again where it is looked at next: its queue's tail (SIEVE:
        just where the hand is; FIFO: where its insertion puts it, which is at or near the tail)."""
        cdef int32_t at
        if self.listed[e]:
            return
        if self.policy == P_FIFO:
            # the queue is in insertion order: only entries older than e that could not go when its last child
            # did (in use by this request; or, after an expiry, any) are between it and the tail
            at = self.q_tail[0]
            while at != NIL and self.insert_serial[at] < self.insert_serial[e]:
                at = self.q_newer[at]
            if at == NIL:
                self._q_link_head(e, 0)
            else:
                self._q_link_older_than(e, at)
        elif self.policy == P_SIEVE and self.hand != NIL:
            self._q_link_older_than(e, self.hand)
            self.hand = e
        else:
            self._q_link_tail(e, self.queue_id[e])
            if self.policy == P_SIEVE:
                self.hand = NIL   # the search starts at the tail: at e

    # -- serving (SEMANTICS §3) ----------------------------------------------------------------------------

    cdef int64_t _expire(self, double t, bint counted, int64_t* tstats) noexcept nogil:
        """Drop the entries expired at time t; how many. The least recent entry holds the oldest expiry time
        (uniform TTL, refreshed on use)."""
        cdef int64_t expired = 0
        cdef int32_t victim
        while True:
            victim = self._oldest()
            if victim == NIL or self.expires_at[victim] > t:
                break
            self._unlink(victim)
            if counted:
                tstats[self.owner[victim] * N_TENANT_FIELDS + F_EXPIRED_OWNED] += 1
            if self.policy != P_LRU:
                self._forget(victim, False)
            if self.ghost_capacity:
                self._bury(victim, TTL_EVICTOR)
            else:
                self._release(victim)
            expired += 1
        return expired

    cdef int _serve_one_block_lru(self, Batch* batch, Outputs* out, int64_t* tstats, int64_t* hits_from,
                                  int64_t n_tenants, int64_t* error_request) except -2 nogil:
        """_serve for a batch of one-block requests under LRU without ghosts: the same semantics (for one block,
        lookup-pin-stamp is making the entry the newest, and a miss evicts the least recent entry and takes it
        over), minus the per-request machinery a multi-block request needs. Plain key streams (block-level traces,
        object caches) take it.

        The batch is checked first, in a pass of its own, and served up to its first bad request. The serving runs
        in _one_block_lru, compiled once per key kind (hashed or dense ids) and per bookkeeping: the lean variant
        serves a counted run of one tenant's requests without per-request outputs, TTL or hit cap, and keeps
        nothing but counts, which halves the instructions a request takes; the full variant serves the rest."""
        cdef Py_ssize_t r, n_ok = batch.n_requests, error_at = 0, lean_from
        cdef double previous_t = self.last_t, counted_from_t
        cdef int code = 0, served
        for r in range(batch.n_requests):
            code = _arrival_error(batch.t[r], batch.tenant[r], previous_t, n_tenants)
            if code:
                n_ok = error_at = r
                break
            previous_t = batch.t[r]
        if n_ok == 0:
            if code:
                error_request[0] = error_at
            return code
        if self.requests_seen == 0:
            self.first_t = batch.t[0]
        lean_from = n_ok
        if n_tenants == 1 and out.hit_tokens == NULL and self.expires_at == NULL and not self.hit_cap_prompt_minus_one:
            # counting is monotone within a stream (requests_seen grows, time does not fall): find where it starts
            counted_from_t = self.first_t + self.warmup_s
            lean_from = min(n_ok, max(0, self.warmup_requests - self.requests_seen))
            while lean_from < n_ok and batch.t[lean_from] < counted_from_t:
                lean_from += 1
            # the lean loop raises the peak only where occupancy grows, so the first counted request of the stream
            # goes to the full loop, which sets the peak from where the warm-up left it
            if lean_from < n_ok and not (lean_from == 0 and self.requests_seen > self.warmup_requests
                                         and self.last_t >= counted_from_t):
                lean_from += 1
        if self.direct_keys:
            served = _one_block_lru[_Yes, _No](self, batch, 0, lean_from, out, tstats, hits_from, n_tenants,
                                               NULL, NULL)
            if served == lean_from < n_ok:
                served = _one_block_lru[_Yes, _Yes](self, batch, lean_from, n_ok, out, tstats, hits_from, 1,
                                                    NULL, NULL)
        else:
            served = _one_block_lru[_No, _No](self, batch, 0, lean_from, out, tstats, hits_from, n_tenants,
                                              NULL, NULL)
            if served == lean_from < n_ok:
                served = _one_block_lru[_No, _Yes](self, batch, lean_from, n_ok, out, tstats, hits_from, 1,
                                                   NULL, NULL)
        if served < n_ok:  # out of memory there (the state up to it is kept)
            error_request[0] = served
            return ERR_NO_MEMORY
        if code:
            error_request[0] = error_at
        return code

    cdef inline int _arrive(self, double t, int32_t tenant, int64_t n_tenants, bint* counted) noexcept nogil:
        """A request arrives at t: its input error code, or 0 with the clock and the request count moved on and
        counted[0] set to whether it is past the warm-up."""
        cdef int code = _arrival_error(t, tenant, self.last_t, n_tenants)
        if code:
            return code
        if self.requests_seen == 0:
            self.first_t = t
        self.last_t = t
        counted[0] = self.requests_seen >= self.warmup_requests and t >= self.first_t + self.warmup_s
        self.requests_seen += 1
        return 0

    cdef inline void _served(self, Outputs* out, Py_ssize_t r, int64_t* ts, bint counted, int64_t prompt_tokens,
                             int64_t hit_tokens, int64_t blocks, int64_t hit_blocks, int64_t inserted, int64_t evicted,
                             int64_t expired, int64_t uncached) noexcept nogil:
        """A request served: its outputs (when kept), and, past the warm-up, its tenant's counts (ts: the row) and
        the peak occupancy."""
        if out.hit_tokens != NULL:
            _write_outputs(out, r, hit_tokens, hit_blocks, inserted, evicted, expired, uncached)
        if counted:
            _count(ts, 1, hit_blocks > 0, prompt_tokens, hit_tokens, blocks, hit_blocks, inserted, evicted, uncached)
            if self.occupancy > self.peak_occupancy:
                self.peak_occupancy = self.occupancy

    cdef int _serve_one_block_policy(self, Batch* batch, Outputs* out, int64_t* tstats, int64_t* hits_from,
                                     int64_t n_tenants, int64_t* error_request) except -2 nogil:
        """_serve for a batch of one-block requests under a policy other than LRU, without ghosts of harm or a
        TTL: the same steps (SEMANTICS §3) and hooks, minus what only a multi-block request needs. A one-block
        request pins nothing another could evict (a hit inserts nothing; a miss is not cached yet while its victim
        is chosen), and every entry is a root, so a leaf: the entry goes straight from lookup to its stamp."""
        cdef Py_ssize_t r, n = batch.n_requests
        cdef int64_t hit_blocks, hit_tokens, evicted, uncached, inserted
        cdef int32_t e, victim, tenant
        cdef uint64_t key
        cdef double t
        cdef bint counted, full
        cdef int code
        self.prefetching = self._prefetch_pays()
        for r in range(min(PREFETCH_SLOT, n)):   # prime the pipeline
            self._prefetch_slot(batch.keys[r])
        for r in range(n):
            t = batch.t[r]
            tenant = batch.tenant[r]
            code = self._arrive(t, tenant, n_tenants, &counted)
            if code:
                error_request[0] = r
                return code
            self._prefetch_ahead(batch.keys, r, n)
            key = batch.keys[r]
            e = self._find(key)
            hit_blocks = hit_tokens = evicted = uncached = inserted = 0
            if e != NIL:
                hit_blocks = self._capped_hits(batch.prompt_tokens[r], 1)
                hit_tokens = _hit_tokens(batch.block_tokens + r, &e, hit_blocks, self.owner, tenant, n_tenants,
                                         hits_from if counted else NULL)
            else:
                full = self.occupancy == self.capacity_blocks
                self._before_insert(key, full)
                if full:
                    victim = self._choose_victim()
                    if victim == NIL:   # a Python policy declined (or failed)
                        uncached = 1
                    else:
                        self._unlink(victim)
                        if counted:
                            tstats[self.owner[victim] * N_TENANT_FIELDS + F_EVICTED_OWNED] += 1
                        self._forget(victim, True)
                        self._release(victim)
                        if self.prefetch_victims and self.prefetching:
                            self._prefetch_next_victims()
                        evicted = 1
                if not uncached:
                    e = self._allocate()
                    if e == NIL:
                        error_request[0] = r
                        return ERR_NO_MEMORY
                    self.entry_key[e] = key
                    self.occupancy += 1
                    if self._grow_index_if_full() < 0:
                        error_request[0] = r
                        return ERR_NO_MEMORY
                    self._index_insert(e)
                    self.owner[e] = tenant
                    self._on_insert(e, NIL, 0, full)
                    inserted = 1
            if e != NIL:   # the stamp
                self.pos[e] = LINKED
                if self.next_use != NULL:
                    self.next_use[e] = self.batch_next_use[r]
                self._on_use(e, inserted)
            if self.policy_failed:
                error_request[0] = r
                return ERR_POLICY
            self._served(out, r, tstats + tenant * N_TENANT_FIELDS, counted, batch.prompt_tokens[r], hit_tokens, 1,
                         hit_blocks, inserted, evicted, 0, uncached)
        return 0

    cdef int _serve(self, Batch* batch, Outputs* out, int64_t* tstats, int64_t* hits_from, int64_t* lost_to,
                    int64_t* evictions_by, int64_t n_tenants, int64_t* error_request) except -2 nogil:
        cdef Py_ssize_t r
        cdef int64_t b0, b1, n, i, h, hit_blocks, hit_tokens, inserted, evicted, expired, uncached
        cdef int64_t serial_at_start
        cdef int32_t ghost
        cdef int64_t* ts
        cdef int32_t e, victim, tenant
        cdef double t
        cdef bint counted, full
        cdef int code
        cdef int32_t* req
        cdef int64_t total_blocks = batch.block_offsets[batch.n_requests]
        if (self.policy == P_LRU and not self.track_interference and self.ghost_capacity == 0
                and _one_block_each(batch)):  # a plain key stream
            return self._serve_one_block_lru(batch, out, tstats, hits_from, n_tenants, error_request)
        if (self.policy != P_LRU and not self.track_interference and self.ghost_capacity == 0 and not self.use_log
                and _one_block_each(batch)):   # a plain key stream, under another policy
            return self._serve_one_block_policy(batch, out, tstats, hits_from, n_tenants, error_request)
        if (self.policy == P_LRU and not self.track_interference and self.ghost_capacity == 0
                and self.expires_at == NULL and not self.victims_any):
            if self.direct_keys:
                return _prefix_lru[_Yes](self, batch, out, tstats, hits_from, n_tenants, error_request, NULL)
            return _prefix_lru[_No](self, batch, out, tstats, hits_from, n_tenants, error_request, NULL)
        self.prefetching = self._prefetch_pays()
        if total_blocks > 0:  # prime the pipeline
            for i in range(min(PREFETCH_SLOT, total_blocks)):
                self._prefetch_slot(batch.keys[i])
        for r in range(batch.n_requests):
            t = batch.t[r]
            tenant = batch.tenant[r]
            code = self._arrive(t, tenant, n_tenants, &counted)
            if code:
                error_request[0] = r
                return code
            b0 = batch.block_offsets[r]
            b1 = batch.block_offsets[r + 1]
            n = b1 - b0
            if self._grow_request_scratch(n):
                error_request[0] = r
                return ERR_NO_MEMORY
            req = self.request_entries

            # 1. expire
            expired = self._expire(t, counted, tstats) if self.expires_at != NULL else 0

            # 2. lookup: the longest cached prefix; pin what is used
            h = 0
            while h < n:
                self._prefetch_ahead(batch.keys, b0 + h, total_blocks)
                e = self._find(batch.keys[b0 + h])
                if e == NIL or self.pos[e] == GHOST:
                    break
                self.pos[e] = PINNED  # out of the recency order
                req[h] = e
                h += 1
            hit_blocks = self._capped_hits(batch.prompt_tokens[r], h)
            ts = tstats + tenant * N_TENANT_FIELDS
            hit_tokens = _hit_tokens(batch.block_tokens + b0, req, hit_blocks, self.owner, tenant, n_tenants,
                                     hits_from if counted else NULL)

            # 3. insert the rest, evicting the policy's victim among entries this request does not use
            serial_at_start = self.serial
            if self.track_interference and counted:
                # the run of blocks after the hit that an eviction or expiry took (SEMANTICS §6), read before
                # this request's own insertions change the cache and the ghost table
                for i in range(h, n):
                    e = self._find(batch.keys[b0 + i])
                    if e == NIL:
                        break
                    if self.pos[e] == GHOST:
                        lost_to[tenant * (n_tenants + 1) + 1 + self.owner[e]] += batch.block_tokens[b0 + i]
                    # else cached behind a gap (victims="any" only): the run goes on
            inserted = 0
            evicted = 0
            uncached = 0
            for i in range(h, n):
                self._prefetch_ahead(batch.keys, b0 + i, total_blocks)
                # Block h just missed. With leaf victims the cache is prefix-closed (a block is never cached
                # without its parent), so no later block can be cached either: only victims="any" can leave a
                # block cached behind a gap, and only then is it worth looking up again.
                # (with interference tracking the lookup also finds the ghost an insertion revives)
                e = self._find(batch.keys[b0 + i]) if (self.victims_any and i > h) or self.ghost_capacity else NIL
                ghost = NIL
                if e != NIL and self.pos[e] == GHOST:
                    # claimed now, so that an eviction below cannot retire it from the ring
                    ghost = e
                    e = NIL
                    self.pos[ghost] = PINNED
                    self.ghost_count -= 1
                if e != NIL:  # cached behind a gap: touched, not a hit
                    self.pos[e] = PINNED  # out of the recency order
                    req[i] = e
                    continue
                full = self.occupancy == self.capacity_blocks
                if self.policy != P_LRU:
                    self._before_insert(batch.keys[b0 + i], full)
                if full:
                    victim = self._choose_victim()
                    if victim == NIL:  # every candidate is this request's own
                        if ghost != NIL:  # not inserted after all: it stays a ghost
                            self.pos[ghost] = GHOST
                            self.ghost_count += 1
                        req[i] = NIL
                        uncached += 1
                        continue
                    self._unlink(victim)
                    if counted:
                        tstats[self.owner[victim] * N_TENANT_FIELDS + F_EVICTED_OWNED] += 1
                    if self.policy != P_LRU:
                        self._forget(victim, True)
                    if counted and self.track_interference:
                        evictions_by[tenant * n_tenants + self.owner[victim]] += 1
                    if self.ghost_capacity:
                        self._bury(victim, tenant)
                    else:
                        self._release(victim)  # the plain path, inlined
                    if self.prefetch_victims and self.prefetching:
                        self._prefetch_next_victims()
                    evicted += 1
                if ghost != NIL:  # a remembered key comes back: its ghost entry is cached again
                    e = ghost
                    self._revive(e)
                else:
                    e = self._allocate()
                    if e == NIL:
                        error_request[0] = r
                        return ERR_NO_MEMORY
                    self.entry_key[e] = batch.keys[b0 + i]
                    self.occupancy += 1
                    if self._grow_index_if_full() < 0:
                        error_request[0] = r
                        return ERR_NO_MEMORY
                    self._index_insert(e)
                self.pos[e] = PINNED
                self.owner[e] = tenant
                if self.policy != P_LRU:
                    if i > 0:
                        self._on_insert(e, req[i - 1], i, full)
                    else:
                        self._on_insert(e, NIL, 0, full)
                req[i] = e
                inserted += 1

            # 4. stamp, deepest block first, so block 0 ends most recent
            i = n - 1
            while i >= 0:
                e = req[i]
                if e != NIL and self.pos[e] == PINNED:
                    if not self.use_log:
                        self.pos[e] = LINKED
                    elif self._make_newest(e) < 0:
                        error_request[0] = r
                        return ERR_NO_MEMORY
                    if self.expires_at != NULL:
                        self.expires_at[e] = t + self.ttl_s
                    if self.next_use != NULL:
                        self.next_use[e] = self.batch_next_use[b0 + i]
                    if self.policy != P_LRU:
                        self._on_use(e, self.insert_serial[e] > serial_at_start)
                i -= 1

            if self.policy_failed:
                error_request[0] = r
                return ERR_POLICY
            self._served(out, r, ts, counted, batch.prompt_tokens[r], hit_tokens, n, hit_blocks, inserted, evicted,
                         expired, uncached)
        return 0

    def ensure_tenants(self, int n_tenants):
        """Grow the statistics to at least n_tenants tenants (between batches)."""
        grow_tenant_statistics(self, n_tenants)

    def feed(self, const double[::1] t, const int32_t[::1] tenant, const int64_t[::1] prompt_tokens,
             const int64_t[::1] block_offsets, const uint64_t[::1] keys, const uint32_t[::1] block_tokens,
             bint per_request=True, const int64_t[::1] next_use=None):
        """Serve a batch of requests in order; return the per-request outputs as a dict of int64 arrays, or
        None with ``per_request=False`` (the statistics alone: what a sweep keeps, and 48 bytes a request less).
        ``next_use`` (offline policies only, one per block): the batch index of the next request that uses the
        block's key, or any number past the batch (next_uses() gives it).

        On an error the state holds every request before the offending one, and the exception carries
        ``.request`` (index in the batch) and ``.partial`` (the outputs of the requests served, or None).
        """
        cdef Py_ssize_t n = t.shape[0]
        if tenant.shape[0] != n or prompt_tokens.shape[0] != n or block_offsets.shape[0] != n + 1:
            raise ValueError("batch columns disagree in length")
        if self.policy == P_BELADY:
            if next_use is None or next_use.shape[0] != keys.shape[0]:
                raise ValueError("an offline policy (belady) needs next_use, one per block: next_uses(keys, offsets)")
            self.batch_next_use = &next_use[0] if next_use.shape[0] else NULL
        if n and (block_offsets[0] != 0 or block_offsets[n] != keys.shape[0] or
                  keys.shape[0] != block_tokens.shape[0]):
            raise ValueError("block_offsets do not span keys/block_tokens")
        outputs = {name: np.empty(n if per_request else 1, dtype=np.int64) for name in OUTPUT_FIELDS}
        cdef int64_t[::1] o_hit_tokens = outputs["hit_tokens"], o_hit_blocks = outputs["hit_blocks"]
        cdef int64_t[::1] o_inserted = outputs["inserted_blocks"], o_evicted = outputs["evicted_blocks"]
        cdef int64_t[::1] o_expired = outputs["expired_blocks"], o_uncached = outputs["uncached_blocks"]
        if n == 0:
            return outputs if per_request else None
        cdef Batch batch
        batch.n_requests = n
        batch.t = &t[0]
        batch.tenant = &tenant[0]
        batch.prompt_tokens = &prompt_tokens[0]
        batch.block_offsets = &block_offsets[0]
        batch.keys = &keys[0] if keys.shape[0] else NULL
        batch.block_tokens = &block_tokens[0] if block_tokens.shape[0] else NULL
        cdef Outputs out
        out.hit_tokens = &o_hit_tokens[0] if per_request else NULL  # NULL: the serve loops write no outputs
        out.hit_blocks = &o_hit_blocks[0]
        out.inserted_blocks = &o_inserted[0]
        out.evicted_blocks = &o_evicted[0]
        out.expired_blocks = &o_expired[0]
        out.uncached_blocks = &o_uncached[0]
        cdef int64_t[:, ::1] tstats = self.tenant_stats
        cdef int64_t[:, ::1] hits = self.hits_from
        cdef int64_t[:, ::1] lost = self.lost_to
        cdef int64_t[:, ::1] evictions = self.evictions_by
        cdef int64_t n_tenants = tstats.shape[0]
        cdef int64_t error_request = -1
        if self.direct_keys and keys.shape[0]:
            top = int(np.max(keys))
            if top >= 2**31 - 2:
                raise ValueError(f"key {top} is not a dense id (direct_keys: ids must be below 2**31 - 2)")
            if self._grow_where(top + 1) < 0:
                raise MemoryError()
        cdef int code
        if self.broken:
            raise PolicyError("this engine stopped at a policy's error in an earlier batch (its state is "
                              "mid-request): start a new one")
        if self.policy == P_PYTHON:   # the hooks are Python calls: keep the GIL rather than take it for each
            code = self._serve(&batch, &out, &tstats[0, 0], &hits[0, 0], &lost[0, 0], &evictions[0, 0], n_tenants,
                               &error_request)
        else:
            with nogil:
                code = self._serve(&batch, &out, &tstats[0, 0], &hits[0, 0], &lost[0, 0], &evictions[0, 0],
                                   n_tenants, &error_request)
        self.batch_next_use = NULL
        if code == ERR_POLICY:
            self.broken = True
            failure, self.policy_error = self.policy_error, None
            exc = failure if isinstance(failure, PolicyError) else PolicyError(
                f"policy {_policy_name(self.py_policy)!r} raised {type(failure).__name__}: {failure}")
            exc.request = int(error_request)
            exc.partial = {name: arr[:error_request] for name, arr in outputs.items()} if per_request else None
            if exc is not failure:
                raise exc from failure
            raise exc
        if code:
            partial = {name: arr[:error_request] for name, arr in outputs.items()} if per_request else None
            message = {ERR_NO_MEMORY: "out of memory",
                       ERR_TIME_NAN: "arrival time is NaN",
                       ERR_TIME_DECREASING: f"arrival time {t[error_request]!r} is before the previous "
                                            f"request's {self.last_t!r}",
                       ERR_TENANT: f"tenant code {tenant[error_request]} outside 0..{n_tenants - 1}"}[code]
            exc = MemoryError(message) if code == ERR_NO_MEMORY else EngineInputError(message)
            exc.request = int(error_request)
            exc.partial = partial
            exc.field = {ERR_TIME_NAN: "t", ERR_TIME_DECREASING: "t", ERR_TENANT: "tenant"}.get(code)
            raise exc
        return outputs if per_request else None

    # -- inspection (tests, invariants) ---------------------------------------------------------------------

    def cached_keys(self):
        """Keys of the cached entries, most recently used first."""
        return np.asarray(<uint64_t[:self.pool_size]> self.entry_key)[self._cached_entries()]

    def cached_owners(self):
        """Owner tenant of each cached entry, in the order of cached_keys()."""
        return np.asarray(<int32_t[:self.pool_size]> self.owner)[self._cached_entries()]

    def _cached_entries(self):
        """The cached entries, most recently used first: the live records of the use log, newest first (without
        a log, the entries marked LINKED by their last use's stamp, which counts up in the same order)."""
        if not self.use_log:
            if self.pool_used == 0:
                return np.empty(0, dtype=np.int32)
            linked = np.flatnonzero(np.asarray(<int32_t[:self.pool_used]> self.pos) == LINKED).astype(np.int32)
            order = np.argsort(-np.asarray(<int64_t[:self.pool_used]> self.last_use)[linked], kind="stable")
            if linked.shape[0] != self.occupancy:
                raise AssertionError(f"{linked.shape[0]} entries are linked, occupancy says {self.occupancy}")
            return linked[order]
        out = np.empty(self.occupancy, dtype=np.int32)
        cdef int32_t[::1] view = out
        cdef int64_t _k, p = self.log.end
        cdef Py_ssize_t i = 0
        for _k in range(self.log.used):
            p = (p if p > 0 else self.log.size) - 1
            if self.pos[self.log.records[p]] == p:
                if i == self.occupancy:
                    i += 1
                    break
                view[i] = self.log.records[p]
                i += 1
        if i != self.occupancy:
            raise AssertionError(f"the use log holds {'more' if i > self.occupancy else i} live records, "
                                 f"occupancy says {self.occupancy}")
        return out


def _bound_hook(policy, hook):
    """policy's hook as a bound method, or None when it has none or keeps HookPolicy's no-op (not called)."""
    from cachesim.policies import HookPolicy

    method = getattr(policy, hook, None)
    if method is None or getattr(type(policy), hook, None) is getattr(HookPolicy, hook):
        return None
    return method


def _policy_name(policy):
    return getattr(policy, "name", type(policy).__name__)


@cython.final
cdef class _IsCandidate:
    """is_candidate(key): whether a Python policy's victim() may return key now (cachesim.HookPolicy)."""
    cdef Engine engine

    def __cinit__(self, Engine engine):
        self.engine = engine

    def __call__(self, key):
        return self.engine._candidate_entry(key) != NIL


cdef int _grow(void** array, int64_t n, size_t item_size) noexcept nogil:
    """Reallocate *array to n items; nonzero when out of memory (the old array is kept)."""
    cdef void* grown = PyMem_RawRealloc(array[0], n * item_size)
    if grown == NULL:
        return 1
    array[0] = grown
    return 0


cdef int64_t _table_size_for(int64_t entries, double max_load) noexcept nogil:
    """The smallest table that holds entries at most max_load full."""
    cdef int64_t size = <int64_t> (entries / max_load) + 1
    return size if size > 16 else 16


# Compile-time switches of _one_block_lru: Cython compiles one copy of the loop per combination and drops the
# branches of the others, so a switch costs nothing per request.
cdef struct _Yes:
    char unused

cdef struct _No:
    char unused

ctypedef fused _DirectIds:  # _Yes: keys are dense ids, found as where[id]; _No: hashed keys, found in the index
    _Yes
    _No

ctypedef fused _Lean:  # _Yes: one tenant, every request counted, no outputs, TTL or hit cap
    _Yes
    _No


cdef inline void _prefetch_ahead_of(const uint64_t* keys, int64_t b, int64_t end, const uint64_t* entry_key,
                                    const int32_t* pos, const int32_t* where,
                                    uint64_t* slots, int64_t size, _DirectIds* direct_ids) noexcept nogil:
    """Engine._prefetch_ahead for a serve loop holding the arrays in locals: a two-stage pipeline, the slot (or
    id) of the key PREFETCH_SLOT blocks on, the entry of the one PREFETCH_ENTRY blocks on, whose slot came before."""
    cdef int32_t e
    if _DirectIds is _Yes:
        if b + PREFETCH_SLOT < end:
            _prefetch(&where[keys[b + PREFETCH_SLOT]])
        if b + PREFETCH_ENTRY < end and where[keys[b + PREFETCH_ENTRY]] >= 0:
            _prefetch(&pos[where[keys[b + PREFETCH_ENTRY]]])
    else:
        if b + PREFETCH_SLOT < end:
            _prefetch(&slots[_key_bucket(keys[b + PREFETCH_SLOT], size)])
        if b + PREFETCH_ENTRY < end:
            e = _slots_guess(slots, size, keys[b + PREFETCH_ENTRY])
            if e != NIL:
                _prefetch(&entry_key[e])
                _prefetch(&pos[e])


cdef inline int32_t _find_prefetching(const uint64_t* keys, int64_t b, int64_t end, const uint64_t* entry_key,
                                      const int32_t* pos, const int32_t* where,
                                      uint64_t* slots, int64_t size, bint prefetch,
                                      _DirectIds* direct_ids) noexcept nogil:
    """The entry of keys[b] or NIL, for a serve loop holding the arrays in locals, prefetching ahead if asked."""
    if prefetch:
        _prefetch_ahead_of(keys, b, end, entry_key, pos, where, slots, size, direct_ids)
    if _DirectIds is _Yes:
        return where[keys[b]]
    return _slots_find(slots, size, keys[b], entry_key)


cdef inline void _take_over_victim(Engine self, UseLog* log, const uint64_t* entry_key, int32_t* owner,
                                   int32_t* where, int32_t victim, int32_t tenant, bint single, int64_t* tstats,
                                   _DirectIds* direct_ids) noexcept nogil:
    """The LRU victim _log_victim just found leaves the log and the index, and its entry becomes tenant's (for a
    serve loop holding the arrays in locals); its eviction is counted against its owner in tstats unless NULL.
    With one tenant every entry is its own, so the owner is neither read nor written."""
    _log_consume(log)
    if _DirectIds is _Yes:
        where[entry_key[victim]] = NIL
    else:
        _index_delete(&self.index, entry_key[victim], victim)
    if not single:
        if tstats != NULL:
            tstats[owner[victim] * N_TENANT_FIELDS + F_EVICTED_OWNED] += 1
        owner[victim] = tenant
    elif tstats != NULL:
        tstats[F_EVICTED_OWNED] += 1


cdef inline int32_t _allocate_filling(Engine self, const UseLog* log, int64_t occupancy) noexcept nogil:
    """A fresh entry while the cache fills, for a serve loop holding the log ends and occupancy in locals; NIL
    when out of memory. self then holds the state, occupancy included: the pool and the table may have grown, and
    moved, so the loop reloads them."""
    cdef int32_t e
    self.log, self.occupancy = log[0], occupancy
    e = self._allocate()
    if e == NIL:
        return NIL
    self.occupancy += 1
    if self._grow_index_if_full() < 0:
        return NIL
    return e


cdef inline int _log_reserve(Engine self, UseLog* log, int64_t occupancy) noexcept nogil:
    """Engine._log_make_room for a serve loop holding the log and occupancy in locals (call it when the log is
    full); -1 when out of memory, self then holding the state. Inline only, like _log_victim."""
    self.log, self.occupancy = log[0], occupancy
    if self._log_make_room() < 0:
        return -1
    log[0] = self.log
    return 0


cdef inline void _defragment_now(Engine self, UseLog* log, int64_t occupancy, int64_t* countdown) noexcept nogil:
    """Engine._defragment for a serve loop holding the log, occupancy and its eviction countdown in locals, at a
    request boundary (call it when the countdown has run out). Inline only, like _log_victim."""
    self.log, self.occupancy = log[0], occupancy
    self._defragment()
    log[0] = self.log
    countdown[0] = self.evictions_to_defragment


cdef Py_ssize_t _one_block_lru(Engine self, Batch* batch, Py_ssize_t r0, Py_ssize_t r1, Outputs* out,
                               int64_t* tstats, int64_t* hits_from, int64_t n_tenants,
                               _DirectIds* direct_ids, _Lean* lean) noexcept nogil:
    """Serve the checked one-block requests r0..r1-1 (see Engine._serve_one_block_lru). Returns r1, or the request
    at which memory ran out (self then holds the state before it).

    The hot state lives in locals for the whole run: every store through pool, slots or the outputs could alias a
    field of self, so the compiler would reload the fields after each one."""
    cdef const uint64_t* keys = batch.keys
    cdef uint64_t* entry_key = self.entry_key
    cdef int32_t* pos = self.pos
    cdef int32_t* owner = self.owner
    cdef uint64_t* slots = self.index.slots
    cdef int64_t size = self.index.size
    cdef int32_t* where = self.where
    cdef bint outputs = out.hit_tokens != NULL  # per-request outputs wanted (see feed's per_request)
    cdef bint prefetch = self._prefetch_pays()
    cdef UseLog log = self.log
    cdef int64_t occupancy = self.occupancy, capacity = self.capacity_blocks
    cdef int64_t seen = self.requests_seen, warmup_requests = self.warmup_requests
    cdef double last_t = self.last_t, counted_from_t = self.first_t + self.warmup_s
    cdef uint64_t key
    cdef int64_t expired = 0, evicted, hit, found, hit_tokens
    cdef int32_t e, victim, tenant = 0
    cdef double t
    cdef bint counted = True
    # one tenant (the usual key stream): its counts gather in registers and are added once, at the end
    cdef bint single = n_tenants == 1
    cdef int64_t c_requests = 0, c_hits = 0, c_prompt = 0, c_hit_tokens = 0, c_inserted = 0, c_evicted = 0
    cdef int64_t peak = self.peak_occupancy
    cdef int64_t defragment_countdown = self.evictions_to_defragment
    cdef Py_ssize_t r, stop = r1
    if prefetch:  # prime the pipeline
        for r in range(r0, min(r0 + PREFETCH_SLOT, r1)):
            self._prefetch_slot(keys[r])
    for r in range(r0, r1):
        if defragment_countdown <= 0:
            _defragment_now(self, &log, occupancy, &defragment_countdown)
        if _Lean is _No:
            t = batch.t[r]
            tenant = batch.tenant[r]
            last_t = t
            counted = seen >= warmup_requests and t >= counted_from_t
            seen += 1
            expired = 0
            if self.expires_at != NULL:
                e = _log_oldest(pos, &log)
                if e != NIL and self.expires_at[e] <= t:
                    self.log, self.occupancy = log, occupancy
                    expired = self._expire(t, counted, tstats)
                    log, occupancy = self.log, self.occupancy
        # every request appends one record (a hit on the most recent entry excepted)
        if log.used == log.size and _log_reserve(self, &log, occupancy) < 0:
            stop = r
            break
        key = keys[r]
        e = _find_prefetching(keys, r, r1, entry_key, pos, where, slots, size, prefetch, direct_ids)
        evicted = 0
        found = e != NIL
        if found:
            if not _log_is_newest(&log, pos[e]):  # its old record goes stale
                _log_append(pos, &log, e)
        else:
            if occupancy == capacity:
                # the least recent entry becomes the new block's (no free-list round trip); nothing is pinned here,
                # so there is one
                victim = _log_victim(pos, &log, entry_key if prefetch else NULL, NULL if single else owner, where,
                                     slots, size, _DirectIds is _Yes)
                # (one tenant's evictions are counted once, at the end)
                _take_over_victim(self, &log, entry_key, owner, where, victim, tenant, single,
                                  tstats if _Lean is _No and counted and not single else NULL, direct_ids)
                e = victim
                evicted = 1
                defragment_countdown -= 1
            else:
                e = _allocate_filling(self, &log, occupancy)
                if e == NIL:
                    stop = r
                    break
                occupancy = self.occupancy
                entry_key, pos, owner = self.entry_key, self.pos, self.owner
                slots, size = self.index.slots, self.index.size
                owner[e] = tenant
                if _Lean is _Yes:  # occupancy grows only here, and every request is counted
                    if occupancy > peak:
                        peak = occupancy
            entry_key[e] = key
            if _DirectIds is _Yes:
                where[key] = e
            else:
                _slots_place(slots, size, (_hash32(key) << 32) | <uint32_t> e)
            _log_append(pos, &log, e)
        if _Lean is _Yes:
            c_prompt += batch.prompt_tokens[r]
            c_evicted += evicted
            if found:
                c_hits += 1
                c_hit_tokens += batch.block_tokens[r]
        else:
            if self.expires_at != NULL:
                self.expires_at[e] = t + self.ttl_s
            hit = self._capped_hits(batch.prompt_tokens[r], found)
            hit_tokens = batch.block_tokens[r] if hit else 0
            if outputs:
                _write_outputs(out, r, hit_tokens, hit, 1 - found, evicted, expired, 0)
            if counted:
                if single:
                    c_requests += 1
                    c_hits += hit
                    c_prompt += batch.prompt_tokens[r]
                    c_hit_tokens += hit_tokens
                    c_inserted += 1 - found
                    c_evicted += evicted
                else:
                    _count(tstats + tenant * N_TENANT_FIELDS, 1, hit, batch.prompt_tokens[r], hit_tokens, 1, hit,
                           1 - found, evicted, 0)
                    hits_from[tenant * n_tenants + owner[e]] += hit_tokens
                if occupancy > peak:
                    peak = occupancy
    if _Lean is _Yes:
        c_requests = stop - r0
        c_inserted = c_requests - c_hits
        # as in the full loop, a request that ran out of memory was seen, but is not counted
        if stop < r1:
            seen += stop - r0 + 1
            last_t = batch.t[stop]
        else:
            seen += r1 - r0
            last_t = batch.t[r1 - 1]
    if single:
        _count(tstats, c_requests, c_hits, c_prompt, c_hit_tokens, c_requests, c_hits, c_inserted, c_evicted, 0)
        tstats[F_EVICTED_OWNED] += c_evicted  # with one tenant every eviction took one of its own entries
        hits_from[0] += c_hit_tokens
    self.peak_occupancy = peak
    self.evictions_to_defragment = defragment_countdown
    if stop == r1:  # after a failed allocation self holds the state already
        self.log, self.occupancy = log, occupancy
    self.requests_seen = seen
    self.last_t = last_t
    return stop


cdef int _prefix_lru(Engine self, Batch* batch, Outputs* out, int64_t* tstats, int64_t* hits_from,
                     int64_t n_tenants, int64_t* error_request, _DirectIds* direct_ids) noexcept nogil:
    """Engine._serve under LRU without TTL, victims="any" or interference tracking: the same three
    steps (lookup and pin, insert evicting the least recent entry, stamp deepest first), with the hot state in
    locals (see _one_block_lru) and the victim's entry taken over by the block that evicts it, as the free list
    would hand it back. Returns 0 or an error code, with error_request set and the state before that request
    kept."""
    cdef const uint64_t* keys = batch.keys
    cdef uint64_t* entry_key = self.entry_key
    cdef int32_t* pos = self.pos
    cdef int32_t* owner = self.owner
    cdef uint64_t* slots = self.index.slots
    cdef int64_t size = self.index.size
    cdef int32_t* where = self.where
    cdef int32_t* req
    cdef bint outputs = out.hit_tokens != NULL
    cdef bint prefetch = self._prefetch_pays()
    cdef UseLog log = self.log
    cdef int64_t occupancy = self.occupancy, capacity = self.capacity_blocks, peak = self.peak_occupancy
    cdef bint single = n_tenants == 1  # every entry is the one tenant's
    cdef int64_t total_blocks = batch.block_offsets[batch.n_requests]
    cdef int64_t b0, n, i, h, b, hit_blocks, hit_tokens, inserted, evicted, uncached
    cdef uint64_t key
    cdef int32_t e, victim, tenant
    cdef double t
    cdef bint counted
    cdef int code = 0
    cdef int64_t defragment_countdown = self.evictions_to_defragment
    cdef Py_ssize_t r
    if prefetch:  # prime the pipeline
        for b in range(min(PREFETCH_SLOT, total_blocks)):
            self._prefetch_slot(keys[b])
    for r in range(batch.n_requests):
        if defragment_countdown <= 0:
            _defragment_now(self, &log, occupancy, &defragment_countdown)
        t = batch.t[r]
        tenant = batch.tenant[r]
        code = _arrival_error(t, tenant, self.last_t, n_tenants)
        if code:
            break
        b0 = batch.block_offsets[r]
        n = batch.block_offsets[r + 1] - b0
        if self._grow_request_scratch(n):
            self.log, self.occupancy = log, occupancy
            code = ERR_NO_MEMORY
            break
        req = self.request_entries
        if self.requests_seen == 0:
            self.first_t = t
        self.last_t = t
        counted = self.requests_seen >= self.warmup_requests and t >= self.first_t + self.warmup_s
        self.requests_seen += 1

        # 1. lookup: the longest cached prefix; pin what is used (out of the recency order, so no eviction can
        # take it: its record goes stale)
        h = 0
        while h < n:
            b = b0 + h
            e = _find_prefetching(keys, b, total_blocks, entry_key, pos, where, slots, size, prefetch, direct_ids)
            if e == NIL:
                break
            pos[e] = PINNED  # (a key twice in one request is pinned twice, harmlessly)
            req[h] = e
            h += 1
        hit_blocks = self._capped_hits(batch.prompt_tokens[r], h)  # all h blocks stay used
        hit_tokens = _hit_tokens(batch.block_tokens + b0, req, hit_blocks, owner, tenant, n_tenants,
                                 hits_from if counted else NULL)

        # 2. insert the rest. The cache is prefix-closed, so none of the rest is cached: no lookups
        inserted = evicted = uncached = 0
        for i in range(h, n):
            b = b0 + i
            key = keys[b]
            if prefetch:  # (for the lookups of the requests to come)
                _prefetch_ahead_of(keys, b, total_blocks, entry_key, pos, where, slots, size, direct_ids)
            if occupancy == capacity:
                victim = _log_victim(pos, &log, entry_key if prefetch else NULL, NULL if single else owner, where,
                                     slots, size, _DirectIds is _Yes)
                if victim == NIL:  # every cached entry is this request's own
                    req[i] = NIL
                    uncached += 1
                    continue
                _take_over_victim(self, &log, entry_key, owner, where, victim, tenant, single,
                                  tstats if counted else NULL, direct_ids)
                e = victim
                evicted += 1
                defragment_countdown -= 1
            else:
                e = _allocate_filling(self, &log, occupancy)
                if e == NIL:
                    code = ERR_NO_MEMORY
                    break
                occupancy = self.occupancy
                entry_key, pos, owner = self.entry_key, self.pos, self.owner
                slots, size = self.index.slots, self.index.size
                owner[e] = tenant
            entry_key[e] = key
            if _DirectIds is _Yes:
                where[key] = e
            else:
                _slots_place(slots, size, (_hash32(key) << 32) | <uint32_t> e)
            pos[e] = PINNED
            req[i] = e
            inserted += 1
        if code:
            break

        # 3. stamp, deepest block first, so block 0 ends most recent
        i = n - 1
        while i >= 0:
            e = req[i]
            if e != NIL and pos[e] == PINNED:
                if log.used == log.size and _log_reserve(self, &log, occupancy) < 0:
                    code = ERR_NO_MEMORY  # the request's unstamped entries stay pinned (see the notes on OOM)
                    break
                _log_append(pos, &log, e)
            i -= 1
        if code:
            break

        if outputs:
            _write_outputs(out, r, hit_tokens, hit_blocks, inserted, evicted, 0, uncached)
        if counted:
            _count(tstats + tenant * N_TENANT_FIELDS, 1, hit_blocks > 0, batch.prompt_tokens[r], hit_tokens, n,
                   hit_blocks, inserted, evicted, uncached)
            if occupancy > peak:
                peak = occupancy
    self.peak_occupancy = peak
    self.evictions_to_defragment = defragment_countdown
    if code != ERR_NO_MEMORY:  # after a failed allocation self holds the state already
        self.log, self.occupancy = log, occupancy
    if code:
        error_request[0] = r
    return code
