"""Hypothesis strategies for request streams with shared prefixes, several tenants and gaps in time."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from cachesim.requests import TokenRequests


@st.composite
def prompts(draw, pool: list[list[int]], max_tokens: int = 40) -> list[int]:
    """A prompt that often extends or branches off an earlier one (so prefixes are shared)."""
    if pool and draw(st.booleans()):
        base = draw(st.sampled_from(pool))
        keep = draw(st.integers(0, len(base)))
        prompt = base[:keep]
    else:
        prompt = []
    extra = draw(st.lists(st.integers(0, 6), min_size=0 if prompt else 1, max_size=max_tokens))
    prompt = (prompt + extra)[:max_tokens] or [0]
    pool.append(prompt)
    return prompt


@st.composite
def token_request_streams(draw, max_requests: int = 30, max_tenants: int = 3) -> TokenRequests:
    n = draw(st.integers(1, max_requests))
    pool: list[list[int]] = []
    texts = [draw(prompts(pool)) for _ in range(n)]
    gaps = draw(st.lists(st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 10.0]), min_size=n, max_size=n))
    t = np.cumsum(gaps)
    tenants = draw(st.lists(st.integers(0, max_tenants - 1), min_size=n, max_size=n))
    return TokenRequests.from_lists(texts, t=t, tenant=np.array(tenants, dtype=np.int32),
                                    tenant_names=[f"tenant-{i}" for i in range(max_tenants)])


def chain_keys(tokens: list[int], block_size: int, seed: int = 0, partial_tail: bool = False) -> list[int]:
    """SEMANTICS §2 written out independently of both implementations."""
    import xxhash

    keys, key = [], seed
    for start in range(0, len(tokens), block_size):
        block = tokens[start:start + block_size]
        if len(block) < block_size and not partial_tail:
            break
        key = xxhash.xxh3_64_intdigest(b"".join(t.to_bytes(4, "little") for t in block), seed=key)
        keys.append(key)
    return keys
