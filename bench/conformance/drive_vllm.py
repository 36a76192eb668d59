"""Drive vLLM's own v1 prefix cache (KVCacheManager over BlockPool), unmodified, on CPU, one request at a time.

Runs in the engines' venv (see README.md), never in the project's: it imports vllm and numpy only. The manager is
built as vLLM's tests/v1/core/test_prefix_caching.py builds it (one full-attention KV cache group, a KVCacheConfig
of ``num_blocks`` blocks, caching on); each request is looked up (``get_computed_blocks``: the cached tokens
recorded), given its slots (``allocate_slots`` for the tokens it computes) and freed, as the scheduler does for a
request that finishes after its prefill.

    python drive_vllm.py STREAM.npz --block-size 16 --num-blocks 200,400,none  > out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import version

import numpy as np
import torch
from vllm.sampling_params import SamplingParams
from vllm.utils.hashing import sha256
from vllm.v1.core.kv_cache_manager import KVCacheManager
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
from vllm.v1.request import Request


def make_manager(num_blocks: int, block_size: int, max_model_len: int) -> KVCacheManager:
    spec = FullAttentionSpec(block_size=block_size, num_kv_heads=1, head_size=1, dtype=torch.float32)
    config = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                           kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
    return KVCacheManager(config, max_model_len=max_model_len, scheduler_block_size=block_size,
                          hash_block_size=block_size, enable_caching=True)


def make_request(i: int, prompt: list[int], block_size: int) -> Request:
    params = SamplingParams(max_tokens=1)
    params.update_from_generation_config({}, eos_token_id=None)
    return Request(request_id=str(i), prompt_token_ids=prompt, sampling_params=params, pooling_params=None,
                   block_hasher=get_request_block_hasher(block_size, sha256))


def run(tokens: np.ndarray, offsets: np.ndarray, num_blocks: int, block_size: int) -> dict:
    lengths = np.diff(offsets)
    manager = make_manager(num_blocks, block_size, int(lengths.max()) + block_size)
    cached: list[int] = []
    unscheduled = 0
    for i in range(len(lengths)):
        prompt = tokens[offsets[i]:offsets[i + 1]].tolist()
        request = make_request(i, prompt, block_size)
        blocks, num_computed, _ = manager.get_computed_blocks(request)
        new = manager.allocate_slots(request, len(prompt) - num_computed, num_computed, blocks)
        if new is None:     # does not fit even with every free block evicted: the scheduler would keep it waiting
            unscheduled += 1
            cached.append(-1)
            continue
        cached.append(int(num_computed))
        manager.free(request)
    return {"cached_tokens": cached, "unscheduled": unscheduled}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stream", help="an .npz with tokens (uint32) and offsets (int64, n+1)")
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--num-blocks", required=True,
                    help="comma-separated KVCacheConfig.num_blocks values (vLLM's num_gpu_blocks); 'none' = "
                         "enough for the whole stream (nothing evicted)")
    args = ap.parse_args(argv)
    data = np.load(args.stream)
    tokens, offsets = data["tokens"], data["offsets"]
    init_none_hash(sha256)
    unbounded = int((np.diff(offsets) // args.block_size + 1).sum()) + 2
    runs = []
    for value in args.num_blocks.split(","):
        n = unbounded if value == "none" else int(value)
        t0 = time.perf_counter()
        out = run(tokens, offsets, n, args.block_size)
        out.update(num_gpu_blocks=n if value != "none" else None, num_blocks_used=n,
                   seconds=round(time.perf_counter() - t0, 2))
        print(f"vllm num_blocks={value}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        runs.append(out)
    json.dump({"engine": "vllm", "version": version("vllm"), "block_size": args.block_size,
               "hash_fn": "sha256", "runs": runs}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
