"""Block keys are chained XXH3 prefix paths, bit-identical with xxhash.xxh3_64_intdigest (SEMANTICS §2)."""

import numpy as np
import xxhash
from hypothesis import given
from hypothesis import strategies as st

import cachesim
from cachesim import _impl
from cachesim.requests import BlockRequests, TokenRequests
from strategies import chain_keys

token_lists = st.lists(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=70), min_size=1, max_size=6)


@given(prompts=token_lists, block_size=st.integers(1, 20), partial_tail=st.booleans())
def test_token_keys_equal_xxhash_chains(impl, prompts, block_size, partial_tail):
    trace = cachesim.compile_trace(TokenRequests.from_lists(prompts), block_size, partial_tail=partial_tail,
                                   impl=impl)
    for r, prompt in enumerate(prompts):
        expected = chain_keys(prompt, block_size, partial_tail=partial_tail)
        got = trace.block_keys[trace.block_offsets[r]:trace.block_offsets[r + 1]].tolist()
        assert got == expected
        sizes = trace.block_tokens[trace.block_offsets[r]:trace.block_offsets[r + 1]].tolist()
        assert sum(sizes) == (len(prompt) if partial_tail else len(prompt) // block_size * block_size)


@given(ids=st.lists(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=12), min_size=1, max_size=6))
def test_id_keys_equal_xxhash_chains_over_le_uint64(impl, ids):
    requests = BlockRequests.from_lists(ids, prompt_tokens=[len(b) * 4 - 1 for b in ids], block_size=4)
    trace = cachesim.compile_trace(requests, impl=impl)
    for r, blocks in enumerate(ids):
        key, expected = 0, []
        for block_id in blocks:
            key = xxhash.xxh3_64_intdigest(block_id.to_bytes(8, "little"), seed=key)
            expected.append(key)
        assert trace.block_keys[trace.block_offsets[r]:trace.block_offsets[r + 1]].tolist() == expected
        # the last block is partial: 4*n - 1 tokens in blocks of 4
        assert trace.block_tokens[trace.block_offsets[r + 1] - 1] == 3


def test_shared_prefix_gives_shared_keys_and_divergence_changes_all_later_keys():
    trace = cachesim.compile_trace(TokenRequests.from_lists([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 9, 6]]), 2)
    a, b = trace.block_keys[:3], trace.block_keys[3:]
    assert a[0] == b[0] and a[1] == b[1]
    assert a[2] != b[2]


def test_same_id_under_different_parents_gives_different_keys():
    trace = cachesim.compile_trace(BlockRequests.from_lists([[7, 5], [8, 5]], prompt_tokens=[2, 2], block_size=1))
    assert trace.block_keys[1] != trace.block_keys[3]


@given(data=st.binary(max_size=300), seed=st.integers(0, 2**64 - 1))
def test_core_calls_the_same_xxh3_as_the_xxhash_package(data, seed):
    core = _impl.load("core")
    assert core.xxh3_64(np.frombuffer(data, dtype=np.uint8), seed) == xxhash.xxh3_64_intdigest(data, seed=seed)


def test_tenant_relabel_separates_tenants_and_matches_reference():
    keys = np.array([11, 12, 11, 12], dtype=np.uint64)
    offsets = np.array([0, 2, 4], dtype=np.int64)
    tenant = np.array([0, 1], dtype=np.int32)
    seeds = np.array([5, 6], dtype=np.uint64)
    core = _impl.load("core").relabel_keys(keys, offsets, tenant, seeds)
    ref = _impl.load("reference").relabel_keys(keys, offsets, tenant, seeds)
    assert core.tolist() == ref.tolist()
    assert core[0] == xxhash.xxh3_64_intdigest((11).to_bytes(8, "little"), seed=5)
    assert core[0] != core[2]
