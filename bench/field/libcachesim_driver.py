"""Drive libCacheSim's LRU through its fastest path: a binary oracleGeneral file read by its C reader and
replayed by ``process_trace`` in C (``c_process_trace``), so no Python runs per request.

Its Python-side paths (``SyntheticReader`` or a loop of ``cache.get(Request)``) cross into Python on every
request; benchmarking against those would be unfair to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from field.timing import clock

# libCacheSim's oracleGeneral record: packed little-endian {uint32 clock_time, uint64 obj_id, uint32 obj_size,
# int64 next_access_vtime}, 24 bytes
ORACLE_GENERAL = np.dtype([("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"),
                           ("next_access_vtime", "<i8")])
assert ORACLE_GENERAL.itemsize == 24


def write_oracle_general(keys: np.ndarray, path: str | Path) -> Path:
    """One request per key, every object 1 byte, so a cache of C bytes holds C objects, as the engine's C slots.

    next_access_vtime is -1 ("unknown"): LRU never reads it.
    """
    records = np.zeros(len(keys), dtype=ORACLE_GENERAL)
    records["clock_time"] = np.arange(len(keys), dtype=np.uint32)
    records["obj_id"] = keys
    records["obj_size"] = 1
    records["next_access_vtime"] = -1
    records.tofile(path)
    return Path(path)


def hashpower_for(capacity: int) -> int:
    """log2 of the hash table's buckets: the smallest power of two above the capacity (its default, 2^24,
    is much sparser than a 10^5-object cache needs, and measured slower here)."""
    return max(int(capacity).bit_length() + 1, 10)


def lru_replay(path: str | Path, capacity: int) -> tuple[float, float]:
    """(object miss ratio, CPU seconds) of libCacheSim's LRU over an oracleGeneral file (reader setup untimed)."""
    import libcachesim as lcs

    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE,
                             lcs.ReaderInitParam(ignore_obj_size=False))
    cache = lcs.LRU(cache_size=capacity, hashpower=hashpower_for(capacity))
    start = clock()
    miss_ratio, _byte_miss_ratio = cache.process_trace(reader)
    return miss_ratio, clock() - start
