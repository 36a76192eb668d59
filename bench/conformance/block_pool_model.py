"""A small model of a paged block pool with vLLM's bookkeeping, written from its documented behaviour (not from
its code), to test which of the causes in docs/engines.md explain the vllm preset's gaps.

The pool has ``num_blocks`` slots; slot 0 is the null block and never holds KV. A request's hit is its leading full
blocks whose chained hashes are cached (capped at (L-1) // block_size); it then takes ceil(L / block_size) - hit
slots at once from the head of the free queue (a slot taken there loses the hash it held), its full blocks get their
hashes (a hash already cached gets a second slot: no deduplication), and on finish its slots are freed in reverse
order: the unhashed partial block to the head of the free queue, the hashed blocks to the tail. Each of the three
can be turned off to see what it accounts for.

    PYTHONPATH=src python bench/conformance/block_pool_model.py [--no-null] [--no-partial] [--dedup]
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import xxhash

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402


def block_hashes(prompt: np.ndarray, block_size: int) -> list[int]:
    out, parent = [], 0
    for i in range(len(prompt) // block_size):
        parent = xxhash.xxh3_64_intdigest(prompt[i * block_size:(i + 1) * block_size].astype("<u4").tobytes(),
                                          seed=parent)
        out.append(parent)
    return out


def replay(tokens, offsets, num_blocks: int | None, block_size: int = 16, null: bool = True,
           partial: bool = True, dedup: bool = False) -> list[int]:
    lengths = np.diff(offsets)
    if num_blocks is None:
        num_blocks = int((lengths // block_size + 1).sum()) + 2
    free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(1 if null else 0, num_blocks))
    slot_hash: dict[int, int] = {}
    cached: dict[int, list[int]] = {}   # hash -> slots holding it
    hits = []
    for i in range(len(lengths)):
        prompt = tokens[offsets[i]:offsets[i + 1]]
        n = len(prompt)
        hashes = block_hashes(prompt, block_size)
        hit = 0
        while hit < min(len(hashes), (n - 1) // block_size) and hashes[hit] in cached:
            hit += 1
        used = [cached[h][0] for h in hashes[:hit]]
        for b in used:
            free.pop(b, None)
        need = -(-n // block_size) - hit if partial else len(hashes) - hit
        if need > len(free):
            hits.append(-1)
            continue
        new = []
        for _ in range(need):
            b, _ = free.popitem(last=False)
            old = slot_hash.pop(b, None)
            if old is not None:
                cached[old].remove(b)
                if not cached[old]:
                    del cached[old]
            new.append(b)
        for j, b in enumerate(new):
            k = hit + j
            if k < len(hashes) and not (dedup and hashes[k] in cached):
                slot_hash[b] = hashes[k]
                cached.setdefault(hashes[k], []).append(b)
        hits.append(hit * block_size)
        for b in reversed(used + new):
            free[b] = None
            if b not in slot_hash:
                free.move_to_end(b, last=False)
    return hits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-null", action="store_true")
    ap.add_argument("--no-partial", action="store_true")
    ap.add_argument("--dedup", action="store_true")
    ap.add_argument("--streams", default=None)
    args = ap.parse_args(argv)
    for name, tokens, offsets, golden, run in compare.recorded_runs("vllm-", args.streams):
        compare.report_run(name, run, replay(tokens, offsets, run["capacity_used"], golden["block_size"],
                                                  not args.no_null, not args.no_partial, args.dedup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
