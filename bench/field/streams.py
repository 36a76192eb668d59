"""Key streams for the field benchmarks, built with numpy in bounded memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the real traces live beside the checkout (../shared/traces), as tests/conftest.py expects; a worktree elsewhere
# points at them with CACHESIM_SHARED_TRACES
SHARED_TRACES = Path(os.environ.get("CACHESIM_SHARED_TRACES",
                                    Path(__file__).resolve().parents[2].parent / "shared" / "traces"))
MOONCAKE = SHARED_TRACES / "mooncake" / "conversation_trace.jsonl"

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijection on uint64, so distinct ids stay distinct keys (and look random)."""
    x = np.asarray(x, dtype=np.uint64).copy()
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def zipf_ids(n_requests: int, n_objects: int, alpha: float, seed: int = 0) -> np.ndarray:
    """Object ranks 0..n_objects-1 drawn with P(rank k) proportional to (k+1)^-alpha, by inverting the CDF."""
    cdf = np.cumsum(np.arange(1, n_objects + 1, dtype=np.float64) ** -alpha)
    cdf /= cdf[-1]
    rng = np.random.default_rng(seed)
    ids = np.empty(n_requests, dtype=np.uint64)
    chunk = 1 << 22
    for start in range(0, n_requests, chunk):
        u = rng.random(min(chunk, n_requests - start))
        # min() guards the last float bin (u < 1 but rounding could land past the end)
        ids[start:start + len(u)] = np.minimum(np.searchsorted(cdf, u, side="right"), n_objects - 1)
    return ids


def mooncake_block_ids(path: Path = MOONCAKE) -> np.ndarray | None:
    """A Mooncake trace's hash_ids, flattened in trace order; None when the file is absent."""
    if not Path(path).exists():
        return None
    from cachesim.readers import read_requests

    requests = read_requests(path, format="mooncake").requests
    order = np.argsort(requests.t, kind="stable")  # trace order = time order (the file is already sorted)
    lengths = np.diff(requests.block_offsets)[order]
    starts = requests.block_offsets[:-1][order]
    gather = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    return np.ascontiguousarray(requests.block_ids[gather])


@dataclass
class Batch:
    """The columns Engine.feed takes."""

    t: np.ndarray
    tenant: np.ndarray
    prompt_tokens: np.ndarray
    block_offsets: np.ndarray
    keys: np.ndarray
    block_tokens: np.ndarray
    dense: bool = False  # keys are dense ids (Trace.dense()), for an engine with direct_keys

    @property
    def n_blocks(self) -> int:
        return len(self.keys)

    def columns(self) -> tuple[np.ndarray, ...]:
        return self.t, self.tenant, self.prompt_tokens, self.block_offsets, self.keys, self.block_tokens


def one_block_requests(keys: np.ndarray) -> Batch:
    """A plain key stream as the prefix engine sees it: every key its own one-block request.

    A request's hit_blocks (0 or 1) is then a hit or a miss of an LRU cache of block slots (SEMANTICS §3).
    """
    n = len(keys)
    return Batch(t=np.zeros(n), tenant=np.zeros(n, np.int32), prompt_tokens=np.ones(n, np.int64),
                 block_offsets=np.arange(n + 1, dtype=np.int64), keys=np.ascontiguousarray(keys, np.uint64),
                 block_tokens=np.ones(n, np.uint32))


def prefix_requests(n_blocks: int, n_conversations: int = 1_000_000, max_blocks: int = 64, alpha: float = 0.9,
                    seed: int = 0) -> Batch:
    """A stationary prefix workload of about n_blocks blocks.

    Conversation c (popularity Zipf(alpha) over n_conversations) has 1..max_blocks blocks; a request re-sends
    a prefix of uniform length of one conversation, so requests hit partly, share prefixes and the statistics do
    not drift with the stream's length: time per block should not either. Block (c, i) has key mix64(c << 16 | i).
    Built in chunks so temporaries stay small beside the output.
    """
    conv_blocks = (mix64(np.arange(n_conversations, dtype=np.uint64)) % np.uint64(max_blocks)).astype(np.int64) + 1
    mean_len = float(np.mean(conv_blocks + 1) / 2)  # a uniform prefix of L blocks has (L+1)/2 on average
    n_requests = max(1, int(n_blocks / mean_len))
    convs = zipf_ids(n_requests, n_conversations, alpha, seed).astype(np.int64)
    rng = np.random.default_rng(seed + 1)
    lengths = (rng.random(n_requests) * conv_blocks[convs]).astype(np.int64) + 1
    offsets = np.zeros(n_requests + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    keys = np.empty(offsets[-1], dtype=np.uint64)
    chunk = 1 << 18  # requests per chunk
    for r0 in range(0, n_requests, chunk):
        r1 = min(r0 + chunk, n_requests)
        b0, b1 = offsets[r0], offsets[r1]
        span = lengths[r0:r1]
        pos = np.arange(b1 - b0, dtype=np.int64) - np.repeat(offsets[r0:r1] - b0, span)
        keys[b0:b1] = mix64((np.repeat(convs[r0:r1], span).astype(np.uint64) << np.uint64(16)) | pos.astype(np.uint64))
    return Batch(t=np.zeros(n_requests), tenant=np.zeros(n_requests, np.int32), prompt_tokens=lengths * 16,
                 block_offsets=offsets, keys=keys, block_tokens=np.full(len(keys), 16, np.uint32))
