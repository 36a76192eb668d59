"""Core isolation as a property: under ``isolation="tenant"`` no tenant reads an entry another tenant wrote, and
where tenants share no capacity (an unbounded cache) each tenant gets exactly what it gets replayed alone.

Run at 10^4 examples with ``HYPOTHESIS_PROFILE=long`` (README, "For researchers"); the suite's profiles run fewer.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given

from cachesim import compile_trace, replay
from cachesim.testing import cache_configs, token_request_streams
from cachesim.trace import select_tenants

BLOCK_SIZE = 4


@given(requests=token_request_streams(max_tenants=3), config=cache_configs())
def test_no_tenant_reads_another_tenants_entries(impl, requests, config):
    trace = compile_trace(requests, BLOCK_SIZE)
    result = replay(trace, capacity_blocks=config.capacity_blocks, ttl_s=config.ttl_s, policy=config.policy,
                    hit_cap=config.hit_cap, victims=config.victims, isolation="tenant", impl=impl)
    across = result.hits_from - np.diag(np.diag(result.hits_from))
    assert not across.any(), result.hits_from
    # every hit is accounted to the reader's own entries
    assert np.array_equal(np.diag(result.hits_from), result.tenant_stats[:, result.tenant_fields.index("hit_tokens")])


@given(requests=token_request_streams(max_tenants=3), config=cache_configs(capacities=(None,)))
def test_alone_equals_shared_when_no_capacity_is_shared(impl, requests, config):
    """Alone, a tenant is code 0 of a one-tenant trace: its namespace follows its name, not its code."""
    trace = compile_trace(requests, BLOCK_SIZE)
    options = dict(ttl_s=config.ttl_s, policy=config.policy, hit_cap=config.hit_cap, victims=config.victims,
                   isolation="tenant", impl=impl)
    shared = replay(trace, **options)
    for tenant in np.unique(trace.tenant):
        name = trace.tenant_names[tenant]
        alone_trace, rows = select_tenants(trace, [name])
        alone = replay(alone_trace, **options)
        # (expired_blocks is not among them: it counts every entry that expired at an arrival, the cache's count)
        for field in ("hit_tokens", "hit_blocks", "inserted_blocks"):
            assert np.array_equal(shared.per_request[field][rows], alone.per_request[field]), (name, field)
