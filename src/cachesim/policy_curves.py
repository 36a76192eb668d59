"""Hit-ratio curves of any policy, beside the exact one-pass LRU curve (cachesim.mrc) and the optimal bound.

LRU is a stack algorithm, so one pass gives its whole curve. Other policies are not: their curve is a replay at
each capacity, or, for large traces, a **miniature simulation** (Waldspurger et al., Cache Modeling and
Optimization using Miniature Simulations, USENIX ATC 2017): replay a spatially sampled part of the trace in a
cache scaled down by the same rate. A prefix cache is sampled by *block key* (see :func:`sample_blocks`): every
request keeps its sampled blocks. (Sampling whole prefix trees by their root fails on agent traffic, where one
system prompt roots nearly every request.) Its error against full replays is measured in
tests/test_policy_curves.py and docs/mrc.md.

``belady`` beside a curve is the bound: no policy hits more at that capacity (for one-block streams; with leaf
victims, among the leaves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from cachesim._contract import policy_label
from cachesim.mrc import Curve
from cachesim.replay import replay
from cachesim.trace import Trace

__all__ = ["policy_curve", "sample_blocks"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)   # multiplicative hashing: dense ids and hashed keys alike spread out
_SAMPLE_BITS = 24


def sample_blocks(trace: Trace, rate: float) -> Trace:
    """Spatial sampling of a prefix trace: the blocks whose key hashes into a ``rate`` share of the key space,
    each request keeping its sampled blocks in order (and its prompt length, so hit caps stay where they were).
    A block is in or out of the sample wherever it appears, and its key still names its whole prefix, so a
    sampled request hits the run of its sampled blocks that is cached: what the full request hits, but for gaps
    between sampled blocks, where the full cache could miss a block the sample does not hold."""
    if not 0 < rate <= 1:
        raise ValueError(f"a sampling rate is in (0, 1], got {rate!r}")
    if rate == 1:
        return trace
    keys = trace.keyed().block_keys
    with np.errstate(over="ignore"):
        spread = (keys.astype(np.uint64) * _GOLDEN) >> np.uint64(64 - _SAMPLE_BITS)
    kept = spread < np.uint64(round(rate * (1 << _SAMPLE_BITS)))
    counts = np.add.reduceat(kept, trace.block_offsets[:-1]) if trace.n_blocks else np.zeros(trace.n_requests)
    counts[np.diff(trace.block_offsets) == 0] = 0   # reduceat reads the next request's first block for an empty one
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return replace(trace, block_offsets=offsets, block_keys=keys[kept], block_tokens=trace.block_tokens[kept],
                   distinct_keys=None)


def policy_curve(trace: Trace, policy: str, capacities: Sequence[int | None], *, sample_rate: float = 1.0,
                 on_point: Callable[[int], None] | None = None, **options) -> Curve:
    """Hit counts of ``policy`` at each capacity (block slots; None = unbounded): a replay at each, or with
    ``sample_rate < 1`` a miniature simulation (capacities scaled down by the rate, counts scaled up by what the
    trace holds over what the sample holds).
    ``options`` are those of :func:`cachesim.replay` (ttl_s, hit_cap, isolation, warmup, victims, impl)."""
    sample = sample_blocks(trace, sample_rate)
    # ratio estimators: hits in the sample over what it holds, scaled to what the trace holds (a heavy block in or
    # out of the sample moves both, where dividing by the nominal rate would not)
    block_scale = trace.n_blocks / max(sample.n_blocks, 1)
    token_scale = float(trace.block_tokens.sum()) / max(float(sample.block_tokens.sum()), 1.0)
    hit_blocks, hit_tokens = [], []
    blocks = prompt_tokens = 0
    for i, capacity in enumerate(capacities):
        scaled = None if capacity is None else max(1, round(capacity * sample_rate))
        summary = replay(sample, capacity_blocks=scaled, policy=policy, keep_per_request=False,
                         **options).summary()
        hit_blocks.append(summary["hit_blocks"] * block_scale)
        hit_tokens.append(summary["hit_tokens"] * token_scale)
        # the denominators are the whole trace's (its prompts are all kept; its blocks are scaled back)
        blocks, prompt_tokens = summary["blocks"] * block_scale, summary["prompt_tokens"]
        if on_point is not None:
            on_point(i)
    exact = sample_rate == 1
    return Curve(np.array([-1 if c is None else c for c in capacities], dtype=np.int64),
                 np.asarray(hit_blocks, dtype=np.int64 if exact else np.float64),
                 np.asarray(hit_tokens, dtype=np.int64 if exact else np.float64),
                 int(round(blocks)), int(round(prompt_tokens)), options.get("ttl_s"), sample_rate, trace.block_size,
                 policy=policy_label(policy), method="replays" if exact else "miniature")
