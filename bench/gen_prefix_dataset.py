"""Generate a trace shaped like the 2026 prefix-cache dataset of libCacheSim's prefix fork, at any size.

    python bench/gen_prefix_dataset.py OUT.parquet 600M [--seed 0]

The real traces (327,548 requests with 656 M accesses of 16-token blocks; 515,817 with 604 M) are agentic coding
sessions: about 2,000 blocks per request, conversations whose prompt grows turn by turn, a system prompt shared by
the conversations of one request type, and sub-conversations (a parent chat id) that start from their parent's
prefix. This generator draws that shape, not the data: conversations arrive as a Poisson process and run
``turns`` requests, most a few seconds apart (tool calls), one in four after a person's pause (log-normal, a
median of 90 s, a tail of hours), so that reuse distances spread over millions of blocks and the hit ratio
depends on the cache's size; each request re-sends its conversation's blocks and appends new ones; a
sub-conversation starts from part of its parent's prefix. Block ids are positional, as in the real files (an id
names its whole prefix): a shared system prefix ``type << 16 | position``, a conversation's own blocks
``(conversation + 1) << 24 | position``, then (by default) passed through a 64-bit bijection so that they look
like the real files' hashes. Deterministic for a seed.

Writes Parquet (kind ``ids``, via cachesim's own writer, streamed in row groups of about 16 M blocks), or with a
``.lcp`` / ``.lcp.zst`` name libCacheSim's prefix format (``cachesim.readers.lcp``), so that both readers can be
measured on the same requests.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

BLOCK_SIZE = 16
TYPES = ("coder", "chat", "agent", "batch")
SYSTEM_BLOCKS = (600, 120, 900, 60)       # each type's shared system prompt, in blocks
TYPE_SHARE = (0.55, 0.2, 0.2, 0.05)


def plan(target_blocks: int, seed: int, n_conv: int | None = None):
    """Per request: time, conversation, parent, turn, type, shared-prefix blocks, inherited and own blocks."""
    if n_conv is None:   # trial plans measure blocks per conversation (it depends on n_conv a little)
        n_conv = 2_000
        for _ in range(3):
            trial = plan(target_blocks, seed, n_conv)
            per_conv = float((trial["shared"] + trial["own"]).sum()) / n_conv
            n_conv = max(1, round(target_blocks / per_conv))
        return plan(target_blocks, seed, n_conv)
    rng = np.random.default_rng(seed)
    mean_turns = 12
    turns = rng.geometric(1 / mean_turns, n_conv).clip(1, 200)
    kind = rng.choice(len(TYPES), n_conv, p=TYPE_SHARE)
    start_s = np.sort(rng.uniform(0, n_conv * 2.0, n_conv))        # ~1 new conversation per 2 s
    first_blocks = rng.integers(200, 1_800, n_conv)                  # the first prompt beyond the system prompt
    grow_blocks = rng.integers(20, 300, n_conv)                      # new blocks per turn (tool results, edits)
    parent = np.where(rng.random(n_conv) < 0.15, np.arange(n_conv) - rng.integers(1, 50, n_conv), -1)
    parent[parent < 0] = -1
    for child in np.flatnonzero(parent >= 0).tolist():   # a sub-conversation runs on its parent's system prompt
        kind[child] = kind[parent[child]]
    n_req = int(turns.sum())
    conv = np.repeat(np.arange(n_conv), turns)
    turn = np.arange(n_req) - np.repeat(np.cumsum(turns) - turns, turns)
    gaps = np.where(rng.random(n_req) < 0.25, rng.lognormal(np.log(90.0), 1.5, n_req),   # a person's pause
                    rng.exponential(6.0, n_req))                     # a tool call's round trip
    gaps[turn == 0] = 0
    t = start_s[conv] + _segmented_cumsum(gaps, turns)
    own = first_blocks[conv] + turn * grow_blocks[conv]
    shared = np.asarray(SYSTEM_BLOCKS)[kind[conv]]
    # a sub-conversation's first blocks are its parent's: it inherits a prefix of the parent's first prompt
    inherit = np.where(parent[conv] >= 0, np.minimum(own // 2, first_blocks[np.maximum(parent[conv], 0)]), 0)
    order = np.argsort(t, kind="stable")
    # chat ids are request numbers in time order; a turn's parent is the turn before it, a sub-conversation's first
    # turn the first turn of its parent (which started earlier), as the dataset's parent_chat_id is
    number = np.empty(n_req, dtype=np.int64)
    number[order] = np.arange(n_req)
    previous = np.where(turn > 0, np.arange(n_req) - 1, -1)
    sub = (turn == 0) & (parent[conv] >= 0)
    previous[sub] = (np.cumsum(turns) - turns)[parent[conv][sub]]
    parent_chat = np.where(previous >= 0, number[np.maximum(previous, 0)], -1)
    return {"t": t[order], "conv": conv[order], "parent": parent_chat[order], "turn": turn[order],
            "type": kind[conv][order], "shared": shared[order], "inherit": inherit[order], "own": own[order]}


def _segmented_cumsum(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    total = np.cumsum(values)
    starts = np.cumsum(lengths) - lengths
    return total - np.repeat(total[starts] - values[starts], lengths)


def block_ids(p: dict, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, offsets) of requests [lo, hi): the type's system prefix, then the inherited and own blocks."""
    shared, own, inherit = p["shared"][lo:hi], p["own"][lo:hi], p["inherit"][lo:hi]
    conv, parent, kind = p["conv"][lo:hi], p["parent"][lo:hi], p["type"][lo:hi]
    lengths = shared + own
    offsets = np.zeros(hi - lo + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    position = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    row = np.repeat(np.arange(hi - lo), lengths)
    in_shared = position < shared[row]
    own_pos = position - shared[row]
    from_parent = ~in_shared & (own_pos < inherit[row])
    owner = np.where(from_parent, parent[row], conv[row])
    ids = np.where(in_shared, (kind[row].astype(np.int64) << 16) | position,
                   ((owner.astype(np.int64) + 1) << 24) | own_pos)
    return ids.astype(np.uint64), offsets


def hashed(ids: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of 64-bit ids, so positional ids stay positional but look like the real
    files' (hashes folded over the prefix), which neither zstd nor delta coding can shrink."""
    with np.errstate(over="ignore"):
        z = ids + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def write(path: str, target_blocks: int, seed: int = 0, batch_blocks: int = 8 << 20,
          ids: str = "hashed") -> tuple[int, int]:
    from cachesim.readers._base import ReadResult
    from cachesim.requests import BlockRequests

    p = plan(target_blocks, seed)
    n = len(p["t"])
    sizes = p["shared"] + p["own"]
    bounds = np.searchsorted(np.cumsum(sizes), np.arange(batch_blocks, int(sizes.sum()), batch_blocks))
    edges = [0, *sorted(set((bounds + 1).tolist()) - {0, n}), n]
    writer = _writer(path)
    rng = np.random.default_rng(seed + 1)
    blocks = 0
    started = time.monotonic()
    with writer:
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            block, offsets = block_ids(p, lo, hi)
            block = hashed(block) if ids == "hashed" else block
            m = hi - lo
            prompt = (sizes[lo:hi] - 1) * BLOCK_SIZE + rng.integers(1, BLOCK_SIZE + 1, m)
            requests = BlockRequests(t=p["t"][lo:hi], tenant=p["type"][lo:hi].astype(np.int32),
                                     tenant_names=list(TYPES), session=p["conv"][lo:hi].astype(np.int64),
                                     output_tokens=rng.integers(20, 2_000, m), block_ids=block, block_offsets=offsets,
                                     prompt_tokens=prompt.astype(np.int64), block_size=BLOCK_SIZE)
            extras = {"parent_chat_id": p["parent"][lo:hi].astype(np.int64), "turn": p["turn"][lo:hi].astype(np.int64)}
            if path.endswith(".parquet"):
                writer.write(ReadResult(requests, np.arange(lo + 1, hi + 1), path, extras))
            else:   # lcp: the chat id is the request's number, which parent_chat_id refers to
                writer.write(requests, chat_id=np.arange(lo, hi, dtype=np.uint64), **extras)
            blocks += len(block)
            print(f"\r{path}: {hi:,}/{n:,} requests, {blocks / 1e6:,.0f} M blocks, "
                  f"{time.monotonic() - started:,.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return n, blocks


def _writer(path: str):
    if path.endswith(".parquet"):
        from cachesim.readers.parquet import ParquetTraceWriter

        return ParquetTraceWriter(path, kind="ids", block_size=BLOCK_SIZE)
    if ".lcp" in path:
        from cachesim.readers.lcp import LcpWriter  # libCacheSim's prefix format (bench/bench_scale.py)

        # distinct ids are not counted (the header's n_unique_blocks stays 0): at 600 M blocks that set is GBs
        return LcpWriter(path, block_size=BLOCK_SIZE, type_names=list(TYPES), compress=path.endswith(".zst"),
                         count_unique=False)
    raise SystemExit(f"{path}: write .parquet, .lcp or .lcp.zst")


def main(argv=None) -> int:
    from cachesim.units import parse_count

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("blocks", type=parse_count, help="about this many block accesses (600M for the dataset's size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ids", choices=("hashed", "counters"), default="hashed",
                    help="hashed: 64-bit positional hashes like the real files' (default); counters: small "
                         "consecutive numbers, which compress to almost nothing")
    args = ap.parse_args(argv)
    n, blocks = write(args.output, args.blocks, args.seed, ids=args.ids)
    print(f"{args.output}: {n:,} requests, {blocks:,} blocks of {BLOCK_SIZE} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
