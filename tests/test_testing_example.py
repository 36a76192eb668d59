"""How to property-test a policy of your own with cachesim.testing (the example docs/policies.md shows).

A custom policy runs on the reference engine (the slow path); the same checkers run on the built-in policies,
and each checker is shown to catch a broken policy.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachesim
from cachesim.testing import (
    cache_configs,
    check_deterministic,
    check_invariants,
    check_matches_reference,
    check_monotone_in_capacity,
    token_request_streams,
)


class MostRecentlyUsed(cachesim.Policy):
    """Evict the most recently used candidate: a deliberately odd policy that still keeps every invariant."""

    name = "mru"

    def choose(self, candidates):
        return max(candidates, key=lambda block: block.stamp).key


class EvictsAnything(cachesim.Policy):
    """A broken policy: it ignores the candidate list and names the first block ever inserted."""

    name = "broken"

    def __init__(self):
        self.first = None

    def on_insert(self, block):
        self.first = self.first if self.first is not None else block.key

    def choose(self, candidates):
        return self.first


@given(requests=token_request_streams(max_requests=15), config=cache_configs(policy=MostRecentlyUsed()))
@settings(max_examples=40)
def test_a_custom_policy_keeps_the_invariants(requests, config):
    check_invariants(requests, config, impl="reference")
    check_deterministic(requests, config, impl="reference")


@given(requests=token_request_streams(max_requests=15), config=cache_configs())
def test_every_builtin_policy_keeps_the_invariants_and_matches_the_reference(requests, config):
    check_invariants(requests, config, impl="core")
    check_matches_reference(requests, config)


@given(requests=token_request_streams(max_requests=15), block_size=st.integers(1, 3))
def test_lru_is_monotone_in_capacity(requests, block_size):
    check_monotone_in_capacity(requests, [1, 2, 4, 8, 16, None], block_size=block_size, policy="lru")


def test_fifo_is_not_a_stack_algorithm_and_the_checker_says_so():
    # Belady's anomaly with one block per request: FIFO hits 3 at capacity 3 but 2 at capacity 4
    stream = cachesim.TokenRequests.from_lists([[k] for k in (1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5)])
    with pytest.raises(AssertionError, match="fewer hit tokens at capacity 4"):
        check_monotone_in_capacity(stream, [3, 4], policy="fifo", victims="any")


def test_the_checkers_catch_a_broken_policy():
    stream = cachesim.TokenRequests.from_lists([[1, 2], [3], [1, 2, 4], [5]])
    config = cachesim.CacheConfig(capacity_blocks=2, policy=EvictsAnything())
    with pytest.raises(ValueError, match="not one of the candidates"):
        check_invariants(stream, config, impl="reference")


@pytest.mark.core
def test_a_custom_policy_needs_the_reference_engine():
    with pytest.raises(ValueError, match="runs on the reference engine only"):
        cachesim.replay(cachesim.TokenRequests.from_lists([[1]]), block_size=1, policy=MostRecentlyUsed())
    result = cachesim.replay(cachesim.TokenRequests.from_lists([[1], [2], [1]]), block_size=1, capacity_blocks=1,
                             policy=MostRecentlyUsed(), impl="reference")
    assert result.per_request["evicted_blocks"].tolist() == [0, 1, 1]
    assert result.to_dict()["config"]["policy"] == "mru"
