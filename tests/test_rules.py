"""Hand-computed cases, one per rule of SEMANTICS §3-5, run against both implementations.

With block_size=1 every token is a block, so a prompt [1, 2, 3] has the keys of the prefixes 1, 12 and 123.
"""

import numpy as np
import pytest

import cachesim
from cachesim.requests import TokenRequests


def run(impl, prompts, t=None, tenant=None, block_size=1, **options):
    requests = TokenRequests.from_lists(prompts, t=t, tenant=tenant)
    return cachesim.replay(requests, block_size=block_size, impl=impl, **options)


def col(result, name):
    return result.per_request[name].tolist()


def test_longest_cached_prefix_hits_and_the_rest_is_inserted(impl):
    r = run(impl, [[1, 2, 3], [1, 2, 4], [9]])
    assert col(r, "hit_blocks") == [0, 2, 0]
    assert col(r, "hit_tokens") == [0, 2, 0]
    assert col(r, "inserted_blocks") == [3, 1, 1]
    s = r.summary()
    assert (s["hit_blocks"], s["blocks"], s["prompt_tokens"]) == (2, 7, 7)
    assert s["block_hit_ratio"] == pytest.approx(2 / 7)
    assert s["request_hit_ratio"] == pytest.approx(1 / 3)


def test_lru_evicts_deepest_block_first_and_never_the_requests_own(impl):
    # capacity 3. A=[1,2,3] stamps 123 oldest, then 12, then 1. B=[5] evicts 123.
    # C=[1,2,3] hits 1,12; inserting 123 must evict 5 (1 and 12 are C's own). D=[5] then evicts 123 (deepest of C).
    r = run(impl, [[1, 2, 3], [5], [1, 2, 3], [5], [1, 2]], capacity_blocks=3)
    assert col(r, "hit_blocks") == [0, 0, 2, 0, 2]
    assert col(r, "inserted_blocks") == [3, 1, 1, 1, 0]
    assert col(r, "evicted_blocks") == [0, 1, 1, 1, 0]
    assert r.summary()["evictions"] == {"capacity": 3, "ttl": 0}
    assert r.summary()["peak_occupancy_blocks"] == 3


def test_a_request_larger_than_the_cache_leaves_its_tail_uncached(impl):
    r = run(impl, [[1, 2, 3], [1, 2, 3]], capacity_blocks=2)
    assert col(r, "inserted_blocks") == [2, 0]
    assert col(r, "uncached_blocks") == [1, 1]
    assert col(r, "hit_blocks") == [0, 2]
    assert col(r, "evicted_blocks") == [0, 0]


def test_hit_cap_leaves_one_prompt_token_to_compute(impl):
    # blocks of 2: [1,2,3,4] fully cached still recomputes its last block; [1,2,3,4,5] may hit both blocks
    r = run(impl, [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4, 5]], block_size=2, hit_cap="prompt-1")
    assert col(r, "hit_blocks") == [0, 1, 2]
    assert col(r, "hit_tokens") == [0, 2, 4]
    # without the cap the repeat is a full hit
    assert col(run(impl, [[1, 2, 3, 4], [1, 2, 3, 4]], block_size=2), "hit_blocks") == [0, 2]


def test_partial_tail_is_not_a_block_by_default(impl):
    r = run(impl, [[1, 2, 3], [1, 2, 3]], block_size=2)
    assert col(r, "hit_tokens") == [0, 2]
    assert r.summary()["prompt_tokens"] == 6 and r.summary()["blocks"] == 2


def test_ttl_expires_exactly_at_t_plus_ttl_and_is_refreshed_on_use(impl):
    # stamped at 0 -> expires at 10; at t=10 it is gone. Re-stamped at 10 -> 20; at 19.9 it hits and is
    # refreshed to 29.9; at 29.9 it is gone again.
    r = run(impl, [[1, 2]] * 4, t=[0.0, 10.0, 19.9, 29.9], ttl_s=10)
    assert col(r, "hit_blocks") == [0, 0, 2, 0]
    assert col(r, "expired_blocks") == [0, 2, 0, 2]
    assert r.summary()["evictions"] == {"capacity": 0, "ttl": 4}


def test_warmup_leaves_early_requests_out_of_the_counts(impl):
    prompts = [[1, 2], [1, 2], [1, 2, 3]]
    by_count = run(impl, prompts, t=[0, 5, 10], warmup=1).summary()
    assert (by_count["requests"], by_count["hit_blocks"], by_count["blocks"]) == (2, 4, 5)
    assert by_count["warmup"]["excluded_requests"] == 1
    by_time = run(impl, prompts, t=[0, 5, 10], warmup="6s").summary()
    assert (by_time["requests"], by_time["hit_blocks"], by_time["blocks"]) == (1, 2, 3)


def test_hits_from_attributes_hit_tokens_to_the_inserting_tenant(impl):
    r = run(impl, [[1, 2], [1, 2, 3], [1, 2, 3]], tenant=["a", "b", "a"])
    names = r.tenant_names
    a, b = names.index("a"), names.index("b")
    assert r.hits_from[b, a] == 2
    assert r.hits_from[a, a] == 2 and r.hits_from[a, b] == 1
    tenants = r.per_tenant()
    assert tenants["a"]["hit_tokens"] == 3 and tenants["b"]["hit_tokens"] == 2


def test_tenant_isolation_shares_nothing_across_tenants(impl):
    r = run(impl, [[1, 2], [1, 2], [1, 2]], tenant=["a", "b", "b"], isolation="tenant")
    assert col(r, "hit_blocks") == [0, 0, 2]
    assert r.hits_from.tolist() == [[0, 0], [0, 2]]


def test_batches_carry_state_like_one_feed(impl):
    requests = TokenRequests.from_lists([[1, 2, 3], [1, 2], [4, 5], [1, 2, 3, 4], [4, 5]], t=[0, 1, 2, 3, 9])
    trace = cachesim.compile_trace(requests, 1)
    config = cachesim.CacheConfig(capacity_blocks=4, ttl_s=7)
    sim = cachesim.Simulator(config, impl=impl)
    for start in range(trace.n_requests):
        sim.feed(trace.slice(start, start + 1))
    streamed = sim.result()
    whole = cachesim.replay(trace, capacity_blocks=4, ttl_s=7, impl=impl)
    for name in ("hit_blocks", "inserted_blocks", "evicted_blocks", "expired_blocks"):
        assert col(streamed, name) == col(whole, name)
    assert streamed.summary() == whole.summary()


def test_id_blocks_count_partial_last_block_tokens(impl):
    requests = cachesim.BlockRequests.from_lists([[0, 1, 2], [0, 1, 3]], prompt_tokens=[10, 9], block_size=4)
    r = cachesim.replay(requests, impl=impl)
    assert col(r, "hit_tokens") == [0, 8]
    assert r.summary()["prompt_tokens"] == 19 and r.summary()["blocks"] == 6


def test_presets_configure_block_size_and_hit_cap(impl):
    prompt = list(range(32))
    r = cachesim.replay(TokenRequests.from_lists([prompt, prompt]), preset="vllm", impl=impl)
    assert r.block_size == 16 and r.config.hit_cap == "prompt-1"
    assert col(r, "hit_tokens") == [0, 16]          # 32 tokens: (32-1)//16 = 1 block may hit
    s = cachesim.replay(TokenRequests.from_lists([prompt, prompt]), preset="sglang", impl=impl)
    assert col(s, "hit_tokens") == [0, 31]          # token-level: all but the last token


def test_json_output_names_every_ratio_definition(impl):
    import orjson

    data = orjson.loads(run(impl, [[1, 2], [1, 2]]).to_json())
    assert set(data["summary"]["definitions"]) == {"token_hit_ratio", "block_hit_ratio", "request_hit_ratio"}
    assert data["summary"]["token_hit_ratio"] == 0.5
    assert data["hits_from"]["tokens"] == [[2]]


def test_reference_is_never_a_silent_fallback(monkeypatch):
    from cachesim import _impl

    monkeypatch.delenv("CACHESIM_PUREPYTHON", raising=False)
    assert _impl.default_impl() == "core"
    monkeypatch.setenv("CACHESIM_PUREPYTHON", "1")
    assert _impl.default_impl() == "reference"
    with pytest.raises(ValueError, match="unknown impl"):
        _impl.load("fast")


def test_missing_core_fails_loudly_with_build_instructions(monkeypatch):
    import builtins
    import sys

    from cachesim import _impl

    real_import = builtins.__import__

    def no_core(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "cachesim" and fromlist and "_core" in fromlist:
            raise ImportError("simulated: no compiled core")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_core)
    monkeypatch.delitem(sys.modules, "cachesim._core", raising=False)
    with pytest.raises(ImportError, match="build_ext --inplace"):
        _impl.load("core")
    assert np is not None
