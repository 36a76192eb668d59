"""Drive SGLang's own RadixCache, unmodified, over its own CPU token allocators, one request at a time.

Runs in the engines' venv (see README.md): it imports sglang, torch and numpy. Each request goes through the
calls SGLang's scheduler makes for a request that finishes after its prefill:

1. ``match_prefix`` on the prompt cut to ``len - 1`` tokens (the scheduler's max prefix length): the matched
   prefix length is recorded;
2. ``lock`` (``inc_lock_ref``) on the matched node;
3. the KV slots of the rest of the prompt from SGLang's allocation helpers, which evict from the tree when the
   pool is short (``alloc_token_slots`` at page size 1, ``alloc_paged_token_slots_extend`` above it: both call
   ``evict_from_tree_cache``, so SGLang decides how much to evict and which leaves);
4. on finish, what ``release_kv_cache`` / ``checkpoint`` do: ``insert`` of the page-aligned prompt with its slots,
   freeing the duplicates the insert reports and the unaligned tail, then ``unlock``.

    python drive_sglang.py STREAM.npz --page-size 1 --pool-tokens 20000,50000,none  > out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from array import array
from importlib.metadata import version

import numpy as np
import torch
from sglang.srt.mem_cache.allocation import alloc_paged_token_slots_extend, alloc_token_slots
from sglang.srt.mem_cache.allocator.paged import PagedTokenToKVPoolAllocator
from sglang.srt.mem_cache.allocator.token import TokenToKVPoolAllocator
from sglang.srt.mem_cache.base_prefix_cache import InsertParams, MatchPrefixParams
from sglang.srt.mem_cache.cache_init_params import CacheInitParams
from sglang.srt.mem_cache.radix_cache import RadixCache, RadixKey


def make_cache(pool_tokens: int, page_size: int) -> RadixCache:
    if page_size == 1:
        allocator = TokenToKVPoolAllocator(pool_tokens, torch.float16, "cpu", None, False)
    else:
        allocator = PagedTokenToKVPoolAllocator(pool_tokens, page_size, torch.float16, "cpu", None, False)
    return RadixCache(CacheInitParams(disable=False, req_to_token_pool=None, token_to_kv_pool_allocator=allocator,
                                      page_size=page_size))


def serve(cache: RadixCache, prompt: array, page_size: int) -> int:
    allocator = cache.token_to_kv_pool_allocator
    n = len(prompt)
    match = cache.match_prefix(MatchPrefixParams(key=RadixKey(prompt[:n - 1])))
    cached = match.device_prefix_len
    node = match.last_device_node
    prefix = cache.path_device_indices(node)
    lock = cache.lock(node)
    if page_size == 1:
        new = alloc_token_slots(cache, n - cached)
    else:
        last_loc = torch.tensor([int(prefix[-1]) if cached else -1], dtype=torch.int64)
        prefix_lens = torch.tensor([cached], dtype=torch.int64)
        seq_lens = torch.tensor([n], dtype=torch.int64)
        new = alloc_paged_token_slots_extend(cache, prefix_lens, prefix_lens, seq_lens, seq_lens, last_loc, n - cached)
    kv = torch.cat([prefix.to(torch.int64), new.to(torch.int64)])
    aligned = n // page_size * page_size
    result = cache.insert(InsertParams(key=RadixKey(prompt).page_aligned(page_size), value=kv[:aligned].clone()))
    # the slots the insert found already in the tree (computed twice), then the unaligned tail
    if result.prefix_len > cached:
        allocator.free_segment(kv[cached:result.prefix_len], start_pos=cached)
    if aligned < n:
        allocator.free_segment(kv[aligned:n], start_pos=aligned)
    cache.unlock(lock)
    return cached


def run(tokens: np.ndarray, offsets: np.ndarray, pool_tokens: int, page_size: int) -> dict:
    cache = make_cache(pool_tokens, page_size)
    cached = []
    for i in range(len(offsets) - 1):
        prompt = array("q", tokens[offsets[i]:offsets[i + 1]].astype(np.int64).tobytes())
        cached.append(int(serve(cache, prompt, page_size)))
    return {"cached_tokens": cached}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stream", help="an .npz with tokens (uint32) and offsets (int64, n+1)")
    ap.add_argument("--page-size", type=int, default=1)
    ap.add_argument("--pool-tokens", required=True,
                    help="comma-separated KV pool sizes in tokens (SGLang's max_total_num_tokens); 'none' = enough "
                         "for the whole stream (nothing evicted)")
    args = ap.parse_args(argv)
    data = np.load(args.stream)
    tokens, offsets = data["tokens"], data["offsets"]
    ps = args.page_size
    unbounded = int(((np.diff(offsets) + ps) // ps * ps).sum()) + 2 * ps
    runs = []
    for value in args.pool_tokens.split(","):
        n = unbounded if value == "none" else int(value)
        t0 = time.perf_counter()
        out = run(tokens, offsets, n, ps)
        out.update(max_total_num_tokens=n if value != "none" else None, pool_tokens_used=n,
                   seconds=round(time.perf_counter() - t0, 2))
        print(f"sglang page_size={ps} pool={value}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        runs.append(out)
    json.dump({"engine": "sglang", "version": version("sglang"), "page_size": ps, "runs": runs}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
