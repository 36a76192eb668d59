"""Token streams for the engine conformance goldens, each rebuilt from a small recipe (a dict of plain values).

Used on both sides: ``record.py`` builds a stream and feeds it to a real engine, and
``tests/test_engine_conformance.py`` rebuilds the same stream from the recipe stored in the golden and replays it
through cachesim. A stream is ``(tokens, offsets)``: uint32 token ids and CSR offsets (int64, n+1), served in order.
``digest`` fingerprints it so a test notices when a generator (or the agent workload) changed under a golden.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

SHARED_TRACES = Path(os.environ.get("CACHESIM_SHARED_TRACES",
                                    Path(__file__).resolve().parents[2].parent / "shared" / "traces"))
MOONCAKE = SHARED_TRACES / "mooncake" / "conversation_trace.jsonl"
MOONCAKE_BLOCK = 512
VOCAB = 50_000


def _pack(prompts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(prompts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in prompts], out=offsets[1:])
    tokens = np.concatenate(prompts).astype(np.uint32) if prompts else np.zeros(0, np.uint32)
    return tokens, offsets


def ragged_prefixes(seed: int, n_requests: int, n_prefixes: int, max_prefix: int, max_suffix: int):
    """Requests that share one of a few random prefixes, cut at a random length, plus a fresh random suffix:
    hits end anywhere inside a block, and prompts end anywhere inside one."""
    rng = np.random.default_rng(seed)
    prefixes = [rng.integers(0, VOCAB, rng.integers(1, max_prefix + 1)) for _ in range(n_prefixes)]
    prompts = []
    for _ in range(n_requests):
        p = prefixes[int(rng.integers(n_prefixes))]
        cut = int(rng.integers(0, len(p) + 1))
        suffix = rng.integers(0, VOCAB, int(rng.integers(0 if cut else 1, max_suffix + 1)))
        prompts.append(np.concatenate([p[:cut], suffix]))
    return _pack(prompts)


def repeats(seed: int, n_requests: int, n_prompts: int, zipf_a: float):
    """Exact repeats of a pool of prompts drawn by a Zipf law; lengths include 1, 15, 16, 17, 32 and other block
    edges, so the hit cap (prompt - 1) and a full repeat's recomputed last block are exercised."""
    rng = np.random.default_rng(seed)
    edges = [1, 2, 15, 16, 17, 31, 32, 33, 48, 64, 256]
    lengths = edges + [int(x) for x in rng.integers(1, 800, max(0, n_prompts - len(edges)))]
    pool = [rng.integers(0, VOCAB, n) for n in lengths[:n_prompts]]
    weights = 1.0 / np.arange(1, n_prompts + 1) ** zipf_a
    picks = rng.choice(n_prompts, size=n_requests, p=weights / weights.sum())
    return _pack([pool[int(i)] for i in picks])


def branching(seed: int, n_requests: int, max_segment: int):
    """Conversations as a random tree: each request extends a random earlier request (or starts fresh), so the
    radix tree splits nodes at every branch and leaves are of all sizes."""
    rng = np.random.default_rng(seed)
    prompts: list[np.ndarray] = []
    for _ in range(n_requests):
        seg = rng.integers(0, VOCAB, int(rng.integers(1, max_segment + 1)))
        if prompts and rng.random() < 0.85:
            parent = prompts[int(rng.integers(len(prompts)))]
            cut = int(rng.integers(len(parent) // 2, len(parent) + 1))
            prompts.append(np.concatenate([parent[:cut], seg]))
        else:
            prompts.append(seg)
    return _pack(prompts)


def agent(style: str, n_users: int, queries_per_user: int, seed: int):
    """cachesim's built-in agent workload (cachesim.workloads.agent_workload), in its time order."""
    from cachesim.workloads import agent_workload

    r = agent_workload(style=style, n_users=n_users, queries_per_user=queries_per_user, seed=seed).requests
    order = np.argsort(r.t, kind="stable")
    prompts = [r.tokens[r.token_offsets[i]:r.token_offsets[i + 1]] for i in order]
    return _pack(prompts)


def mooncake_tokens(hash_id: int) -> np.ndarray:
    """The 512 token ids of a Mooncake block: a function of its hash id alone (the same id, the same tokens)."""
    return np.random.default_rng([0x6D6F6F6E, int(hash_id)]).integers(0, VOCAB, MOONCAKE_BLOCK)


def mooncake(n_requests: int, path: str | None = None):
    """The first n requests of the Mooncake conversation trace with content: each hash id becomes 512 token ids,
    and the prompt is the first input_length tokens of its blocks' concatenation (the last block is partial)."""
    path = Path(path) if path else MOONCAKE
    cache: dict[int, np.ndarray] = {}
    prompts = []
    with open(path) as f:
        for line in f:
            if len(prompts) == n_requests:
                break
            rec = json.loads(line)
            blocks = []
            for h in rec["hash_ids"]:
                if h not in cache:
                    cache[h] = mooncake_tokens(h)
                blocks.append(cache[h])
            prompts.append(np.concatenate(blocks)[:rec["input_length"]])
    return _pack(prompts)


GENERATORS = {"ragged_prefixes": ragged_prefixes, "repeats": repeats, "branching": branching, "agent": agent,
              "mooncake": mooncake}

# the streams of the goldens: name -> recipe (generator + its arguments)
STREAMS: dict[str, dict] = {
    "ragged_prefixes": {"generator": "ragged_prefixes", "seed": 1, "n_requests": 600, "n_prefixes": 12,
                        "max_prefix": 1500, "max_suffix": 120},
    "repeats": {"generator": "repeats", "seed": 2, "n_requests": 600, "n_prompts": 60, "zipf_a": 0.9},
    "branching": {"generator": "branching", "seed": 3, "n_requests": 500, "max_segment": 300},
    "agent_native": {"generator": "agent", "style": "native", "n_users": 4, "queries_per_user": 2, "seed": 0},
    "agent_chatty": {"generator": "agent", "style": "chatty", "n_users": 3, "queries_per_user": 2, "seed": 0},
    "mooncake": {"generator": "mooncake", "n_requests": 1000},
}


def build(recipe: dict) -> tuple[np.ndarray, np.ndarray]:
    args = {k: v for k, v in recipe.items() if k != "generator"}
    return GENERATORS[recipe["generator"]](**args)


def digest(tokens: np.ndarray, offsets: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(offsets, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(tokens, dtype="<u4").tobytes())
    return h.hexdigest()[:16]
