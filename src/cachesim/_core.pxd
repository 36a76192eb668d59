# cython: language_level=3
"""The compiled core's contract: structs and the engine class. One commented field a line."""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t


# XXH3_64 with a seed, as resolved from the xxhash extension at import (other compiled modules cimport it).
cdef uint64_t xxh3_64_seeded(const void* data, size_t length, uint64_t seed) noexcept nogil


# The use log: a ring of entry indices in order of use; a record is live while its entry's pos names it.
cdef struct UseLog:
    int32_t* records      # ring of entry indices, oldest use first from start
    int64_t size          # records allocated
    int64_t limit         # largest size (a bounded cache's log stops there)
    int64_t start         # ring index of the oldest record not known stale (the least recent entry is at or after it)
    int64_t end           # ring index the next record goes to (the most recent entry is just before it)
    int64_t used          # records from start to end, live or stale


# An open-addressing map from uint64 keys to int32 record indices (see KeyIndex in _core.pyx).
cdef struct KeyIndex:
    uint64_t* slots       # (32 hash bits << 32) | record index, or EMPTY_SLOT; buckets of 8 on cache lines
    int64_t size          # slots in the table (whole buckets, any number: homes are multiply-shifted)
    void* allocation      # what slots was carved from (aligned to a line), for freeing


# A heap policy's candidate with its score inline, so that sifting compares adjacent memory, not entries.
cdef struct HeapItem:
    int64_t k1            # the policy's score, compared first (see Engine._heap_item)
    int64_t k2            # then this: the last use's stamp (unique)
    int32_t e             # the entry


# A bounded FIFO set of keys, any of which can leave early (see Ghost in _core.pyx).
cdef struct Ghost:
    uint64_t* keys        # per node: the key it remembers
    int32_t* newer        # per node: the next newer node (NIL at the newest); free nodes: the next free one
    int32_t* older        # per node: the next older node (NIL at the oldest)
    int32_t oldest        # the node forgotten next (NIL when empty)
    int32_t newest        # the node put last
    int32_t free          # the first free node
    int64_t capacity      # nodes (0 = disabled)
    int64_t count         # keys remembered
    KeyIndex index        # key -> node


# Columns of one trace batch, as raw pointers, so the serve loop runs without the GIL.
cdef struct Batch:
    Py_ssize_t n_requests       # requests in the batch
    const double* t             # arrival time, seconds, non-decreasing
    const int32_t* tenant       # tenant code per request
    const int64_t* prompt_tokens  # prompt length in tokens per request
    const int64_t* block_offsets  # CSR: blocks of request r are [block_offsets[r], block_offsets[r+1])
    const uint64_t* keys        # chained block keys
    const uint32_t* block_tokens  # tokens per block (a partial tail block has fewer)


# Per-request outputs of one batch, written by the serve loop into caller-owned arrays.
cdef struct Outputs:
    int64_t* hit_tokens         # tokens served from the cache
    int64_t* hit_blocks         # leading blocks served from the cache (after the hit cap)
    int64_t* inserted_blocks    # blocks newly cached by this request
    int64_t* evicted_blocks     # capacity evictions this request's insertions caused
    int64_t* expired_blocks     # TTL expiries at this request's arrival
    int64_t* uncached_blocks    # blocks that found no room (the request alone filled the cache)


@cython.final
cdef class Engine:
    # configuration
    cdef readonly int64_t capacity_blocks   # block slots; -1 = unbounded
    cdef readonly double ttl_s              # +inf = no expiry
    cdef readonly bint hit_cap_prompt_minus_one  # cap hits so at least one prompt token is computed
    cdef readonly int64_t block_size        # tokens per block, for the hit cap
    cdef readonly int64_t warmup_requests   # requests left out of the counts at the start
    cdef readonly double warmup_s           # seconds left out of the counts at the start

    cdef readonly int policy                # P_LRU, P_FIFO, ... (see POLICY_CODES)
    cdef readonly bint victims_any          # False: victims are leaves only, so the cache stays prefix-closed
    cdef readonly int64_t orphaned_blocks   # entries left without their parent by victims="any" evictions

    # entry pool: parallel arrays (16 bytes an entry) addressed by int32 index, never by pointer
    cdef uint64_t* entry_key                # chained block key (SEMANTICS §2): names the whole prefix up to the block
    # pos, recency: position of the entry's live record in the use log; PINNED while in use; GHOST;
    # free: FREE_LINK - (next free entry)
    cdef int32_t* pos
    cdef int32_t* owner                     # tenant that inserted it (a ghost: its evictor, or TTL_EVICTOR)
    cdef double* expires_at                 # time of last use + ttl_s per entry; NULL without a TTL
    cdef double max_load                    # hash-table fill limit (sparser when the memory budget allows)
    cdef int64_t pool_size                  # allocated entries
    cdef int64_t pool_used                  # entries ever handed out (high-water mark)
    cdef int32_t free_head                  # free list of released entries, linked through pos
    cdef readonly int64_t occupancy         # cached entries now
    cdef readonly int64_t peak_occupancy    # largest occupancy after any counted request

    cdef KeyIndex index                     # key -> entry index (hashed keys)
    cdef readonly bint direct_keys          # keys are dense ids: where[key] replaces the hashed index
    cdef object py_policy                   # P_PYTHON: the policy object, and its bound hooks (None: absent)
    cdef object py_inserted, py_used, py_removed, py_gained_child, py_became_leaf
    cdef object py_candidate                # P_PYTHON: the is_candidate callable its victim() is given
    cdef object policy_error                # P_PYTHON: the first exception a hook raised (the batch stops)
    cdef bint policy_failed                 # policy_error is set (readable without the GIL)
    cdef bint broken                        # a policy failed mid-request: no more batches
    cdef bint prefetching                   # this batch: the cache outgrows the L2, so prefetching pays
    cdef bint prefetch_victims              # queue policies: evictions prefetch the next ones' keys and buckets
    cdef bint use_log                       # log uses (LRU, or TTL expiry order); else pos is LINKED, last_use orders
    cdef int32_t* where                     # direct_keys: entry of each id, or NIL (ghosts included, as in index)
    cdef int64_t where_size                 # direct_keys: ids the where array covers

    cdef UseLog log                         # recency: a log of uses (see "Recency" in _core.pyx)
    cdef int64_t defragment_period          # evictions between two renumberings of the pool (see _defragment)
    cdef int64_t evictions_to_defragment    # evictions left until the next one
    cdef bint defragment_small              # renumber even a pool the CPU's caches hold (tests)

    # bookkeeping of the policies other than LRU (NULL under LRU), one value per entry
    cdef int32_t* parent_entry              # the entry of the block before it when it came (NIL: none cached)
    cdef int32_t* n_children                # cached entries inserted under it while it was cached
    cdef int64_t* insert_serial             # order of insertion (FIFO; guards child counts)
    cdef int64_t* last_use                  # stamp of the last use (stamps count up, deepest block first)
    cdef int32_t* freq                      # requests that used it
    cdef int32_t* depth                     # position of its block in the prompt (0 = first block)
    cdef HeapItem* heap                     # heap policies: candidates and their scores in heap order
    cdef int32_t* heap_pos                  # heap policies: position in heap, or NIL when not a candidate
    cdef int64_t heap_size
    cdef int64_t* next_use                  # belady: the request (batch index) that uses it next
    cdef double* priority                   # gdsf: L + uses x cost, set at each use
    cdef double gdsf_inflation              # gdsf: L, the priority of the last victim
    cdef double gdsf_per_depth              # gdsf: the cost a block adds per block of depth
    cdef const int64_t* batch_next_use         # belady: the batch's next use of each block (feed's next_use)
    # queue policies: doubly linked queues, head = newest; an entry's queue (S3-FIFO 0 small, 1 main; SLRU its
    # segment) and whether it is linked (SIEVE, S3-FIFO and CLOCK park an entry while it has children)
    cdef int32_t* q_newer                   # towards the head
    cdef int32_t* q_older                   # towards the tail
    cdef unsigned char* visited             # SIEVE: used since the hand passed; S3-FIFO: uses; CLOCK: counter
    cdef unsigned char* queue_id            # the queue it belongs to
    cdef unsigned char* listed              # linked in its queue (1) or parked (0)
    cdef int n_queues                       # queues in use
    cdef int32_t q_head[16]                 # per queue: newest
    cdef int32_t q_tail[16]                 # per queue: oldest (the eviction end)
    cdef int64_t q_listed[16]               # per queue: entries linked
    cdef int64_t q_members[16]              # per queue: entries that belong to it, linked or parked
    cdef int64_t q_size[16]                 # per queue: its share of the capacity (S3-FIFO, SLRU, 2Q)
    cdef Ghost s3_ghost                     # S3-FIFO: keys recently evicted from the small queue; ARC: B1; 2Q: A1out
    cdef Ghost ghost2                       # ARC: B2 (keys evicted from T2)
    cdef double arc_p                       # ARC: T1's target size
    cdef int arc_ghost_hit                  # ARC: the key being inserted was in B1 (1) or B2 (2), else 0
    cdef bint arc_remember                  # ARC: the victim chosen last goes into its ghost list
    cdef bint s3_ghost_hit                  # S3-FIFO, 2Q: the key being inserted was in the ghost (A1out)
    cdef int s3_threshold                   # S3-FIFO: move-to-main-threshold
    cdef int clock_max                      # CLOCK: the counter's largest value
    cdef int clock_init                     # CLOCK: the counter a block is inserted with
    cdef int32_t hand                       # SIEVE: where the next victim search starts (NIL = the tail)
    cdef int64_t clock                      # last stamp handed out
    cdef int64_t serial                     # last insertion serial handed out

    # scratch: pool index of each block of the request being served
    cdef int32_t* request_entries
    cdef int64_t request_entries_size

    # clock and counting
    cdef readonly int64_t requests_seen     # requests served so far (all batches)
    cdef readonly double last_t             # arrival time of the last request served
    cdef readonly double first_t            # arrival time of the first request served

    # statistics (numpy arrays owned here; grown between batches when new tenants appear)
    cdef public object tenant_stats         # int64 [n_tenants, N_TENANT_FIELDS]
    cdef public object hits_from            # int64 [n_tenants, n_tenants]: tokens R hit in entries O inserted
    cdef public object lost_to              # int64 [n_tenants, 1 + n_tenants]: tokens R lost to TTL (col 0), E (1+E)
    cdef public object evictions_by         # int64 [n_tenants, n_tenants]: capacity evictions by evictor E of O's
    cdef readonly bint track_interference   # keep the evictors ghost table and lost_to / evictions_by
    cdef int32_t* ghost_ring                # the entries of the last ghost_capacity evictions (NIL = none yet)
    cdef int32_t* ghost_pos                 # per entry: its position in ghost_ring while a ghost
    cdef int64_t ghost_capacity             # evictions remembered (0 = not tracking)
    cdef int64_t ghost_next                 # ring position written next
    cdef int64_t ghost_count                # entries that are ghosts now

    cdef int _grow_pool(self, int64_t size) except -2 nogil
    cdef int _grow_index_if_full(self) except -2 nogil
    cdef int _grow_where(self, int64_t size) except -2 nogil
    cdef inline int32_t _find(self, uint64_t key) noexcept nogil
    cdef inline void _prefetch_slot(self, uint64_t key) noexcept nogil
    cdef inline void _prefetch_entry(self, uint64_t key) noexcept nogil
    cdef inline bint _prefetch_pays(self) noexcept nogil
    cdef int64_t _state_bytes(self) noexcept nogil
    cdef inline int _grow_request_scratch(self, int64_t n_blocks) noexcept nogil
    cdef inline int64_t _capped_hits(self, int64_t prompt_tokens, int64_t hit_blocks) noexcept nogil
    cdef inline void _prefetch_ahead(self, const uint64_t* keys, int64_t b, int64_t end) noexcept nogil
    cdef inline void _index_insert(self, int32_t e) noexcept nogil
    cdef inline void _index_remove(self, int32_t e) noexcept nogil
    cdef inline void _unlink(self, int32_t e) noexcept nogil
    cdef inline int _make_newest(self, int32_t e) except -2 nogil
    cdef inline int32_t _oldest(self) noexcept nogil
    cdef int _log_make_room(self) except -2 nogil
    cdef int _log_grow(self) except -2 nogil
    cdef void _defragment(self) noexcept nogil
    cdef inline void _push_free(self, int32_t e) noexcept nogil
    cdef inline void _release(self, int32_t e) noexcept nogil
    cdef inline int32_t _allocate(self) noexcept nogil
    cdef inline bint _is_ghost(self, int32_t e) noexcept nogil
    cdef void _bury(self, int32_t e, int32_t evictor) noexcept nogil
    cdef inline void _revive(self, int32_t e) noexcept nogil
    cdef inline void _heap_item(self, int32_t e, HeapItem* item) noexcept nogil
    cdef inline void _heap_place(self, int64_t i, HeapItem* item) noexcept nogil
    cdef void _heap_up(self, int64_t i) noexcept nogil
    cdef void _heap_down(self, int64_t i) noexcept nogil
    cdef void _heap_push(self, int32_t e) noexcept nogil
    cdef void _heap_remove(self, int32_t e) noexcept nogil
    cdef int32_t _heap_victim(self) noexcept nogil
    cdef inline bint _queued(self) noexcept nogil
    cdef inline bint _parks(self) noexcept nogil
    cdef inline void _q_link_head(self, int32_t e, int q) noexcept nogil
    cdef inline void _q_link_tail(self, int32_t e, int q) noexcept nogil
    cdef void _q_link_older_than(self, int32_t e, int32_t at) noexcept nogil
    cdef inline void _q_unlink(self, int32_t e) noexcept nogil
    cdef inline void _q_enter(self, int32_t e, int q) noexcept nogil
    cdef inline void _q_rotate(self, int32_t e) noexcept nogil
    cdef inline void _q_rotate_to_head(self, int32_t e) noexcept nogil
    cdef inline void _prefetch_next_victims(self) noexcept nogil
    cdef void _q_relink(self, int32_t e) noexcept nogil
    cdef int32_t _s3fifo_victim(self) noexcept nogil
    cdef int32_t _clock_victim(self) noexcept nogil
    cdef int32_t _q_take(self, int q) noexcept nogil
    cdef int32_t _arc_victim(self) noexcept nogil
    cdef int32_t _slru_victim(self) noexcept nogil
    cdef int32_t _fifo_victim(self) noexcept nogil
    cdef int32_t _sieve_victim(self) noexcept nogil
    cdef void _slru_promote(self, int32_t e) noexcept nogil
    cdef inline int32_t _choose_victim(self) noexcept nogil
    cdef int32_t _candidate_entry(self, object key)
    cdef void _py_notify(self, object hook, int32_t e, int64_t arg, int arg_kind) noexcept nogil
    cdef int32_t _py_victim(self) noexcept nogil
    cdef inline bint _eligible(self, int32_t e) noexcept nogil
    cdef inline void _before_insert(self, uint64_t key, bint full) noexcept nogil
    cdef inline void _on_insert(self, int32_t e, int32_t parent, int64_t depth, bint full) noexcept nogil
    cdef inline void _q_insert(self, int32_t e, bint full) noexcept nogil
    cdef inline void _on_use(self, int32_t e, bint inserted_now) noexcept nogil
    cdef inline void _forget(self, int32_t e, bint evicted) noexcept nogil
    cdef int64_t _expire(self, double t, bint counted, int64_t* tstats) noexcept nogil
    cdef inline int _arrive(self, double t, int32_t tenant, int64_t n_tenants, bint* counted) noexcept nogil
    cdef inline void _served(self, Outputs* out, Py_ssize_t r, int64_t* ts, bint counted, int64_t prompt_tokens,
                             int64_t hit_tokens, int64_t blocks, int64_t hit_blocks, int64_t inserted, int64_t evicted,
                             int64_t expired, int64_t uncached) noexcept nogil
    cdef int _serve_one_block_policy(self, Batch* batch, Outputs* out, int64_t* tstats, int64_t* hits_from,
                                     int64_t n_tenants, int64_t* error_request) except -2 nogil
    cdef int _serve_one_block_lru(self, Batch* batch, Outputs* out, int64_t* tstats, int64_t* hits_from,
                                  int64_t n_tenants, int64_t* error_request) except -2 nogil
    cdef int _serve(self, Batch* batch, Outputs* out, int64_t* tstats, int64_t* hits_from, int64_t* lost_to,
                    int64_t* evictions_by, int64_t n_tenants, int64_t* error_request) except -2 nogil
