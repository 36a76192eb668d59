"""Large synthetic traces for the benchmarks, built with numpy (no Python object per block)."""

from __future__ import annotations

import numpy as np

from cachesim.requests import BlockRequests, offsets_from_lengths


def multi_turn_ids(n_sessions: int, turns: int, new_blocks_per_turn: int, system_blocks: int = 64,
                   n_systems: int = 8, start_spread_s: float = 600.0, think_time_s: float = 20.0, seed: int = 0,
                   block_size: int = 16) -> BlockRequests:
    """Agent-like sessions: every turn re-sends a shared system prefix plus the whole session so far.

    Sessions start uniformly over ``start_spread_s`` and interleave (turns ``think_time_s`` apart on average), so
    the cache sees many conversations at once and the working set grows with the overlap; session
    ``s`` uses system prompt ``s % n_systems``. Block ids are unique per (session, position), so the number of
    distinct blocks is ``n_systems * system_blocks + n_sessions * turns * new_blocks_per_turn``.
    """
    rng = np.random.default_rng(seed)
    turn = np.tile(np.arange(turns), n_sessions)
    session = np.repeat(np.arange(n_sessions), turns)
    own_blocks = (turn + 1) * new_blocks_per_turn
    lengths = system_blocks + own_blocks
    offsets = offsets_from_lengths(lengths)
    # position of each block within its request
    pos = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    req_of_block = np.repeat(np.arange(len(lengths)), lengths)
    sess = session[req_of_block]
    system_base = 1 << 40
    ids = np.where(pos < system_blocks,
                   system_base + (sess % n_systems) * system_blocks + pos,
                   sess.astype(np.int64) * (turns * new_blocks_per_turn) + (pos - system_blocks))
    start = rng.uniform(0, start_spread_s, n_sessions)
    gaps = rng.exponential(think_time_s, (n_sessions, turns))
    gaps[:, 0] = 0.0
    t = start[session] + np.cumsum(gaps, axis=1).ravel()
    order = np.argsort(t, kind="stable")
    # reorder requests by time (blocks move with their request)
    lengths_sorted = lengths[order]
    new_offsets = offsets_from_lengths(lengths_sorted)
    gather = np.repeat(offsets[:-1][order] - new_offsets[:-1], lengths_sorted) + np.arange(new_offsets[-1])
    n = len(order)
    return BlockRequests(t=t[order], tenant=np.zeros(n, np.int32), tenant_names=["default"],
                         session=session[order].astype(np.int64), output_tokens=np.full(n, -1, np.int64),
                         block_ids=ids[gather].astype(np.uint64), block_offsets=new_offsets,
                         prompt_tokens=lengths_sorted * block_size, block_size=block_size)
