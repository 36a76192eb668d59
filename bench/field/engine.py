"""The compiled engine fed the way the public replay streams a trace: in batches of requests."""

from __future__ import annotations

from cachesim import _core
from field.streams import Batch
from field.timing import clock

# requests per Engine.feed call. With per-request outputs (48 bytes a request) small batches keep them in cache
# and off fresh pages: on 10 M one-block requests, 4 k-16 k requests per call ran at 14.5 M req/s, 64 k at 12.8 and
# one call for all 10 M at 4.5 (first touches of 480 MB of output pages).
FEED_REQUESTS = 1 << 14
# Without outputs (statistics only), a one-block stream is fed as cachesim.replay feeds it: in Trace.batches' default
# batches of 65,536 blocks. Per-call costs then weigh less: on the Mooncake ids at capacity 10,000 on dense ids,
# 16 k requests a call ran at 80 M req/s and 64 k at 87 (256 k and 1 M: 88).
REPLAY_BATCH_BLOCKS = 1 << 16


HIT_BLOCKS = _core.TENANT_FIELDS.index("hit_blocks")


def feed(engine, batch: Batch, r0: int, r1: int, per_request: bool = True) -> None:
    """One Engine.feed call with requests r0..r1-1 of the batch."""
    offsets = batch.block_offsets
    b0, b1 = offsets[r0], offsets[r1]
    engine.feed(batch.t[r0:r1], batch.tenant[r0:r1], batch.prompt_tokens[r0:r1], offsets[r0:r1 + 1] - b0,
                batch.keys[b0:b1], batch.block_tokens[b0:b1], per_request=per_request)


def replay(batch: Batch, capacity_blocks: int, feed_requests: int = FEED_REQUESTS, direct_keys: bool = False,
           per_request: bool = True, slice_blocks: int | None = None,
           slices: list | None = None) -> tuple[object, int, float]:
    """(engine, hit blocks, CPU seconds) of one replay of the batch by a fresh engine. ``direct_keys``: the batch's
    keys are dense ids, as Trace.dense() makes them; ``per_request=False``: statistics only, as a sweep replays.
    With ``slice_blocks``, ``slices`` receives (blocks, CPU seconds) of each slice of about that many blocks (cut
    at the first feed boundary past it), so one long replay shows whether its time per block drifts."""
    engine = _core.Engine(capacity_blocks=capacity_blocks, direct_keys=direct_keys)
    offsets = batch.block_offsets
    n = len(batch.t)
    start = slice_start = clock()
    slice_from = 0
    for r0 in range(0, n, feed_requests):
        r1 = min(r0 + feed_requests, n)
        feed(engine, batch, r0, r1, per_request)
        b1 = offsets[r1]
        if slice_blocks and (b1 - slice_from >= slice_blocks or r1 == n):
            now = clock()
            slices.append((int(b1 - slice_from), now - slice_start))
            slice_start, slice_from = now, b1
    seconds = clock() - start
    return engine, int(engine.tenant_stats[:, HIT_BLOCKS].sum()), seconds
