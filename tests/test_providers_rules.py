"""Hand-computed cases pinning each provider rule (PROVIDERS.md §8). Every expected figure is worked out in the
comment next to it from the rule's text and the price table (§7), not from the code under test.

Prompts are ``range(a, b)`` token runs, so two prompts share exactly the tokens they are built to share.
"""

from __future__ import annotations

import pytest

from cachesim.providers import ProviderInput, make_rules, simulate
from cachesim.providers.engine import CAUSES
from cachesim.requests import TraceError


def run(prompts, t, rules, impl="core", **kw):
    inp = ProviderInput.from_lists([list(p) for p in prompts], t=t, **kw)
    return simulate(inp, rules, impl=impl)


def causes(res):
    return [CAUSES[c] for c in res.cause]


@pytest.fixture(params=["core", "reference"])
def impl(request):
    return request.param


BASE = list(range(2000))


# ---------------------------------------------------------------------------------------------------------------
# Anthropic


def test_anthropic_boundary_exact_hit(impl):
    # req 0 writes an entry at its breakpoint 2000; req 1 extends it by one 100-token block: the lookup from its
    # automatic breakpoint (2100) finds the entry at 2000 one block back. read 2000, 5m write 2100-2000 = 100.
    rules = make_rules("anthropic", "claude-sonnet-4.6", ttft_s=0)
    res = run([BASE, BASE + list(range(5000, 5100))], [0, 10], rules, impl,
              breakpoints=[[2000], [2100]], boundaries=[[2000], [2000, 2100]])
    assert res.read.tolist() == [0, 2000]
    assert res.write_short.tolist() == [2000, 100]
    assert res.write_long.tolist() == [0, 0]
    assert res.uncached.tolist() == [0, 0]


def test_anthropic_shared_prefix_without_entry_at_the_boundary_earns_nothing(impl):
    # req 1 shares 1999 tokens with req 0 and has a block end at 1500 where nothing was written (req 0 wrote only
    # at 2000, which req 1 does not share): boundary-exact lookup finds nothing. read 0, writes its whole 2100.
    rules = make_rules("anthropic", "claude-sonnet-4.6", ttft_s=0)
    other = BASE[:1999] + [99999] + list(range(5000, 5100))
    res = run([BASE, other], [0, 10], rules, impl, breakpoints=[[2000], []],
              boundaries=[[1500, 2000], [1500, 2000, 2100]])
    assert res.read.tolist() == [0, 0]
    assert res.write_short.tolist() == [2000, 2100]
    assert causes(res)[1] == "cold"       # no session given: not a prefix change within a conversation


@pytest.mark.parametrize("blocks,expect_read", [(19, 2000), (20, 0)])
def test_anthropic_20_block_lookback_edge(impl, blocks, expect_read):
    # req 1 appends `blocks` blocks of 10 tokens after the entry at 2000. Its breakpoint is block index `blocks`
    # (2000 is index 0); the window holds indices blocks .. blocks-19, so 2000 is inside for 19 and just outside
    # for 20 (PROVIDERS.md §1.1: breakpoint at 35, write at 15 -> miss).
    rules = make_rules("anthropic", "claude-sonnet-4.6", ttft_s=0)
    tail = list(range(5000, 5000 + 10 * blocks))
    bounds = [2000 + 10 * k for k in range(blocks + 1)]
    res = run([BASE, BASE + tail], [0, 10], rules, impl, breakpoints=[[2000], []], boundaries=[[2000], bounds])
    assert res.read[1] == expect_read
    assert res.write_short[1] == 2000 + 10 * blocks - expect_read
    assert causes(res)[1] == ("none" if expect_read else "outside_lookback")


@pytest.mark.parametrize("model,minimum", [("claude-sonnet-4.6", 1024), ("claude-haiku-4.5", 4096),
                                           ("claude-opus-5", 512), ("claude-opus-4.7", 2048)])
def test_anthropic_minimum_length(impl, model, minimum):
    # the same prompt twice: one token short of the minimum caches nothing (no error, both counters 0);
    # exactly the minimum is written, then read in full
    rules = make_rules("anthropic", model, ttft_s=0)
    short = list(range(minimum - 1))
    exact = list(range(minimum))
    res = run([short, short, exact, exact], [0, 1, 2, 3], rules, impl)
    assert res.read.tolist() == [0, 0, 0, minimum]
    assert res.write_short.tolist() == [0, 0, minimum, 0]
    assert res.uncached.tolist() == [minimum - 1, minimum - 1, 0, 0]
    assert causes(res)[:2] == ["below_minimum", "below_minimum"]


def test_anthropic_bedrock_minimum_table(impl):
    # Opus 4.7: 2,048 on Anthropic's table, 4,096 on Bedrock's (§1.2)
    prompt = list(range(3000))
    api = run([prompt, prompt], [0, 1], make_rules("anthropic", "claude-opus-4.7", ttft_s=0), impl)
    bedrock = run([prompt, prompt], [0, 1], make_rules("anthropic", "claude-opus-4.7", platform="bedrock",
                                                       ttft_s=0), impl)
    assert api.read.tolist() == [0, 3000]
    assert bedrock.read.tolist() == [0, 0]


@pytest.mark.parametrize("dt,expect", [(299.999, 2000), (300.0, 0)])
def test_anthropic_ttl_expires_exactly_at_5_minutes(impl, dt, expect):
    rules = make_rules("anthropic", "claude-sonnet-4.6", ttft_s=0)
    res = run([BASE, BASE], [0, dt], rules, impl)
    assert res.read[1] == expect
    assert causes(res)[1] == ("none" if expect else "ttl_expired")


def test_anthropic_hit_refreshes_the_ttl(impl):
    # written at 0 (expires 300), read at 200 (refreshed: expires 500), read at 450 (expires 750), then 750 is
    # exactly the refreshed expiry: miss
    rules = make_rules("anthropic", "claude-sonnet-4.6", ttft_s=0)
    res = run([BASE] * 4, [0, 200, 450, 750], rules, impl)
    assert res.read.tolist() == [0, 2000, 2000, 0]
    assert causes(res)[3] == "ttl_expired"


def test_anthropic_mixed_ttl_billing_positions(impl):
    # prompt 5000 with explicit breakpoints 2000 (1h), 3000 (1h), 4000 (5m) and the automatic one at 5000 (5m).
    # req 0: A = 0, B = 3000 (highest 1h), C = 5000 -> 1h writes 3000, 5m writes 2000.
    # req 1 at t=400 (5m entries expired, 1h live), 200 tokens longer: the automatic window (5200, 5000, 4000,
    # 3000, ...) finds the live 1h entry at 3000 first. A = 3000, no 1h breakpoint above A so B = A, C = 5200:
    # read 3000, 1h 0, 5m 2200. The expired entry at 5000 was above A: cause ttl_expired.
    rules = make_rules("anthropic", "claude-sonnet-4.6", ttft_s=0)
    p0 = list(range(5000))
    p1 = p0 + list(range(9000, 9200))
    res = run([p0, p1], [0, 400], rules, impl, breakpoints=[[2000, 3000, 4000], [2000, 3000, 4000]],
              long=[[1, 1, 0], [1, 1, 0]], boundaries=[[2000, 3000, 4000, 5000], [2000, 3000, 4000, 5000, 5200]])
    assert res.read.tolist() == [0, 3000]
    assert res.write_long.tolist() == [3000, 0]
    assert res.write_short.tolist() == [2000, 2200]
    assert res.uncached.tolist() == [0, 0]
    assert causes(res)[1] == "ttl_expired"
    # Sonnet 4.6: input 3, 5m write 3.75, 1h write 6, read 0.30, output 15 ($/M); 100 output tokens each
    # req 0: 3000*6 + 2000*3.75 = 25500; req 1: 3000*0.3 + 2200*3.75 = 9150; output 2*100*15 = 3000
    res = run([p0, p1], [0, 400], rules, impl, breakpoints=[[2000, 3000, 4000], [2000, 3000, 4000]],
              long=[[1, 1, 0], [1, 1, 0]], boundaries=[[2000, 3000, 4000, 5000], [2000, 3000, 4000, 5000, 5200]],
              output_tokens=[100, 100])
    assert res.cost.tolist() == pytest.approx([(25500 + 1500) / 1e6, (9150 + 1500) / 1e6])
    assert res.cost_uncached.tolist() == pytest.approx([(5000 * 3 + 1500) / 1e6, (5200 * 3 + 1500) / 1e6])


def test_anthropic_rejects_5m_before_1h_and_more_than_4_breakpoints(impl):
    rules = make_rules("anthropic", "claude-sonnet-4.6", ttft_s=0)
    p = list(range(6000))
    res = run([p, p], [0, 1], rules, impl, breakpoints=[[2000, 3000], [1000, 2000, 3000, 4000]],
              long=[[0, 1], [0, 0, 0, 0]])
    # req 0: a 5m breakpoint before a 1h one; req 1: 4 explicit + the automatic one = 5 > 4
    assert res.error.tolist() == [2, 1]
    assert causes(res) == ["rejected", "rejected"]
    assert res.cost.tolist() == [0.0, 0.0]
    assert res.read.tolist() == [0, 0] and res.write_short.tolist() == [0, 0]


def test_anthropic_isolation_per_workspace(impl):
    # two tenants send the same prompt: one workspace shares the entry, one workspace per tenant does not
    shared = run([BASE, BASE], [0, 5], make_rules("anthropic", ttft_s=0), impl, tenant=[0, 1])
    isolated = run([BASE, BASE], [0, 5], make_rules("anthropic", ttft_s=0, isolation="tenant"), impl,
                   tenant=[0, 1])
    assert shared.read.tolist() == [0, 2000]
    assert isolated.read.tolist() == [0, 0]


def test_anthropic_entry_readable_only_after_the_first_token(impl):
    # ttft 1 s: a copy sent 0.5 s later finds the entry not yet available; 1 s later it hits
    rules = make_rules("anthropic", ttft_s=1.0)
    res = run([BASE, BASE, BASE], [0, 0.5, 1.0], rules, impl)
    assert res.read.tolist() == [0, 0, 2000]
    assert causes(res)[1] == "not_yet_available"


def test_anthropic_prefix_changed_within_a_session(impl):
    # the second request of a session edits token 10: nothing matches; it did not extend the first
    rules = make_rules("anthropic", ttft_s=0)
    edited = BASE[:10] + [77777] + BASE[11:]
    res = run([BASE, edited], [0, 5], rules, impl, session=[1, 1])
    assert res.read.tolist() == [0, 0]
    assert causes(res) == ["cold", "prefix_changed"]


# ---------------------------------------------------------------------------------------------------------------
# OpenAI before GPT-5.6


def test_openai_128_token_rounding(impl):
    # 1300 shared tokens -> 128 * floor(1300 / 128) = 1280 cached
    rules = make_rules("openai", "gpt-5.4", ttft_s=0)
    p0 = list(range(1500))
    p1 = list(range(1300)) + list(range(8000, 8200))
    res = run([p0, p1], [0, 10], rules, impl)
    assert res.read.tolist() == [0, 1280]
    # no write fee: gpt-5.4 input 2.5, cached 0.25 ($/M): req 1 = 220*2.5 + 1280*0.25 = 870
    assert res.cost[1] == pytest.approx(870 / 1e6)
    assert res.write_short.tolist() == [0, 0]


def test_openai_minimum_1024(impl):
    rules = make_rules("openai", "gpt-5.4", ttft_s=0)
    short = list(range(1023))
    res = run([short, short], [0, 1], rules, impl)
    assert res.read.tolist() == [0, 0]
    assert causes(res) == ["below_minimum", "below_minimum"]
    # 1100 shared of a longer prompt: 128*floor(1100/128) = 1024 >= 1024, cached; 1000 shared: 896 < 1024, none
    p = list(range(3000))
    res = run([p, p[:1100] + [1] * 500, p[:1000] + [2] * 500], [0, 1, 2], rules, impl)
    assert res.read.tolist() == [0, 1024, 0]
    exact = list(range(1024))
    assert run([exact, exact], [0, 1], rules, impl).read.tolist() == [0, 1024]


def test_openai_gpt55_2048_token_units(impl):
    p = list(range(5000))
    res = run([p, p], [0, 1], make_rules("openai", "gpt-5.5", ttft_s=0), impl)
    assert res.read.tolist() == [0, 4096]     # 2048 * floor(5000 / 2048)


@pytest.mark.parametrize("retention,idle", [("in_memory", 450.0), ("24h", 1800.0)])
def test_openai_idle_ttl(impl, retention, idle):
    rules = make_rules("openai", "gpt-5.4", ttft_s=0, retention=retention)
    p = list(range(2048))
    # touched at idle - 0.001, so the entry lives until 2 * idle - 0.001 (exclusive)
    res = run([p, p, p], [0, idle - 0.001, 2 * idle - 0.002], rules, impl)
    assert res.read.tolist() == [0, 2048, 2048]      # each hit touches the entry
    res = run([p, p], [0, idle], rules, impl)
    assert res.read.tolist() == [0, 0]


def test_openai_routing_overflow(impl):
    # 17 copies of one prompt within a minute, no prompt_cache_key: requests 1..15 stay on one replica
    # (k = ceil(count/15) = 1). The 16th and 17th see k = 2 and alternate over the two replicas, so exactly one
    # of them lands on the empty replica and misses while the prompt is cached on the other: replica_overflow.
    rules = make_rules("openai", "gpt-5.4", ttft_s=0)
    p = list(range(2048))
    res = run([p] * 17, [float(i) for i in range(17)], rules, impl)
    assert res.read[:15].tolist() == [0] + [2048] * 14
    tail = res.read[15:].tolist()
    assert sorted(tail) == [0, 2048]
    assert causes(res)[15 + tail.index(0)] == "replica_overflow"
    # the same traffic spread over 5 s gaps (12 per minute) never spills over
    res = run([p] * 17, [5.0 * i for i in range(17)], rules, impl)
    assert res.read.tolist() == [0] + [2048] * 16


def test_openai_cache_key_separates_routing(impl):
    # per-tenant prompt_cache_key: the same prompt from two tenants goes to two machines
    p = list(range(2048))
    res = run([p, p], [0, 1], make_rules("openai", "gpt-5.4", ttft_s=0, cache_key="tenant"), impl, tenant=[0, 1])
    assert res.read.tolist() == [0, 0]
    res = run([p, p], [0, 1], make_rules("openai", "gpt-5.4", ttft_s=0), impl, tenant=[0, 1])
    assert res.read.tolist() == [0, 2048]


def test_openai_long_context_row():
    # gpt-5.5 above 272K input: the whole request at 10 in / 45 out ($/M), none cached (first request)
    p = list(range(272_001))
    res = run([p], [0], make_rules("openai", "gpt-5.5"), output_tokens=[1000])
    assert res.cost[0] == pytest.approx((272_001 * 10 + 1000 * 45) / 1e6)


# ---------------------------------------------------------------------------------------------------------------
# OpenAI GPT-5.6+


def test_openai56_breakpoints_and_30m_ttl(impl):
    # req 0 (3000 tokens) writes at its implicit breakpoint: write 3000. req 1 appends a 500-token message; its
    # lookup set includes the earlier message end 3000: cached 3000, write 500. req 2 repeats req 1 exactly 30
    # minutes after req 1: expired, writes all 3500 again.
    rules = make_rules("openai", "gpt-5.6-sol", ttft_s=0)
    p0 = list(range(3000))
    p1 = p0 + list(range(7000, 7500))
    res = run([p0, p1, p1], [0, 60, 1860], rules, impl, boundaries=[[3000], [3000, 3500], [3000, 3500]])
    assert res.read.tolist() == [0, 3000, 0]
    assert res.write_short.tolist() == [3000, 500, 3500]
    # gpt-5.6-sol: in 4, write 5, read 0.4 ($/M): req 1 = 3000*0.4 + 500*5 = 3700
    assert res.cost[1] == pytest.approx(3700 / 1e6)
    assert causes(res)[2] == "ttl_expired"


def test_openai56_at_most_4_writes_keeping_the_latest(impl):
    # explicit breakpoints 1100, 1200, 1300, 1400, 1500 + implicit 1600: the implicit one and the 3 latest
    # explicit ones (1300, 1400, 1500) write. A later request reading at 1200 finds nothing; at 1300 it hits.
    rules = make_rules("openai", "gpt-5.6-sol", ttft_s=0)
    p = list(range(1600))
    res = run([p, p[:1200] + [5] * 100, p[:1300] + [5] * 100], [0, 1, 2], rules, impl,
              breakpoints=[[1100, 1200, 1300, 1400, 1500], [1200], [1300]])
    assert res.read.tolist() == [0, 0, 1300]
    assert res.write_short[0] == 1600


# ---------------------------------------------------------------------------------------------------------------
# Gemini implicit


def test_gemini_token_exact_minimum(impl):
    # gemini-3.8-flash minimum 4,096: 4500 shared tokens are cached token-exact; 4000 shared are not
    rules = make_rules("gemini", "gemini-3.8-flash", ttft_s=0)
    p = list(range(5000))
    res = run([p, p[:4500] + [3] * 300, p[:4000] + [4] * 900], [0, 1, 2], rules, impl)
    assert res.read.tolist() == [0, 4500, 0]
    # 2.5 Flash's minimum is 2,048
    rules = make_rules("gemini", "gemini-2.5-pro", ttft_s=0)
    res = run([p, p[:2100] + [3] * 100], [0, 1], rules, impl)
    assert res.read.tolist() == [0, 2100]


# ---------------------------------------------------------------------------------------------------------------
# input validation


def test_breakpoint_outside_the_prompt_is_a_located_error():
    with pytest.raises(TraceError, match=r"request 1: breakpoints: position 50"):
        run([[1] * 10, [2] * 20], [0, 1], make_rules("anthropic"), breakpoints=[[5], [50]])


def test_decreasing_times_are_an_error():
    with pytest.raises(TraceError, match="request 1: t:"):
        run([[1] * 10, [2] * 20], [5, 1], make_rules("anthropic"))


def test_unknown_model_names_known_ones():
    with pytest.raises(ValueError, match="claude-sonnet-4.6"):
        make_rules("anthropic", "claude-nonexistent")


# ---------------------------------------------------------------------------------------------------------------
# DeepSeek (64-token units; usable delay_s + response_s = 6 s after the request starts, by default)


def test_deepseek_common_prefix_unit(impl):
    # §5's example: A+B, then A+C misses, then A+D hits A. |A| = 1000, so the common-prefix unit written after
    # A+C sits at 64 * floor(1000 / 64) = 960.
    a = list(range(1000))
    res = run([a + [1] * 200, a + [2] * 200, a + [3] * 200], [0, 10, 20], make_rules("deepseek"), impl)
    assert res.read.tolist() == [0, 0, 960]


def test_deepseek_unit_at_the_input_end_and_its_delay(impl):
    p = list(range(1000))
    # written at the end of the input (1000 tokens, not a multiple of 64): a copy 10 s later reads all 1000; a
    # copy 3 s after the first is before the unit is built
    res = run([p, p, p], [0, 3, 10], make_rules("deepseek"), impl)
    assert res.read.tolist() == [0, 0, 1000]
    assert causes(res)[1] == "not_yet_available"


def test_deepseek_below_64_tokens_is_not_cached(impl):
    short, exact = list(range(63)), list(range(64))
    res = run([short, short, exact, exact], [0, 10, 20, 30], make_rules("deepseek"), impl)
    assert res.read.tolist() == [0, 0, 0, 64]
    assert causes(res)[:2] == ["below_minimum", "below_minimum"]


def test_deepseek_fixed_interval_units(impl):
    # a 10,000-token input leaves units at 4096, 8192 (interval 4,096) and 10,000 (its end); a request sharing
    # 9,000 tokens hits the unit at 8192
    p = list(range(10_000))
    res = run([p, p[:9000] + [7] * 500], [0, 10], make_rules("deepseek"), impl)
    assert res.read.tolist() == [0, 8192]


def test_deepseek_idle_ttl(impl):
    # usable from 6 s, expires 6 h after that: hit at 21,605 s, miss at 21,606 s
    p = list(range(500))
    assert run([p, p], [0, 21_605], make_rules("deepseek"), impl).read.tolist() == [0, 500]
    assert run([p, p], [0, 21_606], make_rules("deepseek"), impl).read.tolist() == [0, 0]


def test_deepseek_peak_and_off_peak_prices():
    # trace t = 0 is Monday 2026-09-07 00:00 UTC. 1000 input (all misses: distinct prompts) + 100 output tokens.
    # 02:00 Mon peak: 1000*0.30 + 100*1.2 = 420; 05:00 Mon off-peak: 1000*0.15 + 100*0.6 = 210;
    # Sat 02:00 off-peak: 210; Mon 2026-09-14 02:00 listed as a holiday: 210
    rules = make_rules("deepseek", start_utc="2026-09-07T00:00:00Z", holidays=("2026-09-14",))
    hours = [2, 5, 5 * 24 + 2, 7 * 24 + 2]
    prompts = [list(range(k * 1000, (k + 1) * 1000)) for k in range(4)]
    res = run(prompts, [h * 3600.0 for h in hours], rules, output_tokens=[100] * 4)
    assert res.cost.tolist() == pytest.approx([420e-6, 210e-6, 210e-6, 210e-6])
    # before 2026-08-16 16:00 UTC the flat price: 1000*0.14 + 100*0.28 = 168
    early = make_rules("deepseek", start_utc="2026-08-10T00:00:00Z")
    res = run(prompts[:1], [2 * 3600.0], early, output_tokens=[100])
    assert res.cost[0] == pytest.approx(168e-6)
    # a hit: the same prompt again at 02:00:10 Monday (peak) reads 1000 at 0.006: 1000*0.006 + 100*1.2 = 126
    res = run([prompts[0], prompts[0]], [7200.0, 7210.0], rules, output_tokens=[100, 100])
    assert res.cost[1] == pytest.approx(126e-6)


# ---------------------------------------------------------------------------------------------------------------
# Gemini explicit (cachedContents)


def test_gemini_explicit_creation_storage_and_ttl():
    # the first marker (3000 of 5000 tokens) goes into a 1-hour object. gemini-2.5-pro: input 1.25, read 0.125,
    # storage 4.5 per 1M token-hours. A request reading it: 2000*1.25 + 3000*0.125 = 2875; a creation adds
    # 3000*1.25 + 3000*1h*4.5 = 17250. At exactly 3600 s the object is gone: a new one.
    rules = make_rules("gemini-explicit", "gemini-2.5-pro")
    p = list(range(5000))
    res = run([p, p, p], [0, 100, 3600], rules, breakpoints=[[3000]] * 3)
    assert res.read.tolist() == [3000, 3000, 3000]
    assert res.created.tolist() == [3000, 0, 3000]
    assert res.cost.tolist() == pytest.approx([20125e-6, 2875e-6, 20125e-6])
    assert causes(res)[2] == "ttl_expired"
    unbilled = run([p], [0], make_rules("gemini-explicit", "gemini-2.5-pro", bill_creation=False),
                   breakpoints=[[3000]])
    assert unbilled.cost[0] == pytest.approx((2875 + 13500) / 1e6)
    # below the model's minimum (2,048): no object
    short = run([p], [0], rules, breakpoints=[[2000]])
    assert short.read[0] == 0 and causes(short) == ["below_minimum"]


def test_openai_capacity_eviction_names_the_evicting_tenant(impl):
    # one replica of 2,048 tokens (16 units of 128). Tenant 0's prompt A fills it; tenant 1's prompt B shares the
    # first 256 tokens (same routing key, same replica) and needs 14 new units: the least recently touched are A's
    # deepest 14 (a request touches its units deepest first). A again: units 1-2 live (256 < 1,024, so nothing
    # cached), unit 3 evicted by tenant 1.
    rules = make_rules("openai", "gpt-5.4", ttft_s=0, capacity_tokens=2048)
    shared = list(range(256))
    a = shared + list(range(10_000, 11_792))
    b = shared + list(range(20_000, 21_792))
    res = run([a, b, a], [0, 5, 10], rules, impl, tenant=[0, 1, 0], tenant_names=["alice", "bob"])
    assert res.read.tolist() == [0, 0, 0]          # B shares 256 tokens: under the 1,024 minimum
    assert causes(res)[2] == "evicted"
    assert res.evicted_by.tolist() == [-1, -1, 1]
    from cachesim.providers.report import evictions

    assert evictions(res) == {"alice": {"bob": 1}}
    # without a capacity the same traffic hits in full
    res = run([a, b, a], [0, 5, 10], make_rules("openai", "gpt-5.4", ttft_s=0), impl, tenant=[0, 1, 0])
    assert res.read.tolist() == [0, 0, 2048]


@pytest.mark.parametrize("per_segment,expect", [(False, 2000), (True, 1500)])
def test_anthropic_minimum_cumulative_or_per_segment(impl, per_segment, expect):
    # markers at 1500 and 2000 of a 3000-token prompt (+ automatic 3000), minimum 1,024. Cumulative (the default):
    # all three are cacheable. Per segment: 2000 is only 500 past 1500, so it writes nothing. A second prompt that
    # shares the first 2000 tokens then reads the entry at 2000, or only the one at 1500.
    p0 = list(range(3000))
    p1 = p0[:2000] + list(range(9000, 9500))
    rules = make_rules("anthropic", "claude-sonnet-4.6", ttft_s=0, per_segment_minimum=per_segment)
    res = run([p0, p1], [0, 10], rules, impl, breakpoints=[[1500, 2000], [1500, 2000]],
              boundaries=[[1500, 2000, 3000], [1500, 2000, 2500]])
    assert res.read.tolist() == [0, expect]


def test_anthropic_grace_period(impl):
    # strictly at expiry by default; a 10 s grace keeps the entry readable at exactly 300 s
    strict = run([BASE, BASE], [0, 300], make_rules("anthropic", ttft_s=0), impl)
    grace = run([BASE, BASE], [0, 300], make_rules("anthropic", ttft_s=0, grace_s=10), impl)
    assert strict.read.tolist() == [0, 0] and grace.read.tolist() == [0, 2000]


def test_openai56_explicit_mode(impl):
    # explicit mode: no implicit breakpoint. The marker at 2000 of 3000 tokens writes 2000 (1,000 ordinary input);
    # the same prompt again reads 2000 and writes nothing. gpt-5.6-sol: in 4, write 5, read 0.4 ($/M).
    rules = make_rules("openai", "gpt-5.6-sol", ttft_s=0, implicit=False)
    p = list(range(3000))
    res = run([p, p], [0, 10], rules, impl, breakpoints=[[2000], [2000]], boundaries=[[2000, 3000]] * 2)
    assert res.read.tolist() == [0, 2000]
    assert res.write_short.tolist() == [2000, 0]
    assert res.uncached.tolist() == [1000, 1000]
    assert res.cost.tolist() == pytest.approx([(1000 * 4 + 2000 * 5) / 1e6, (1000 * 4 + 2000 * 0.4) / 1e6])


@pytest.mark.parametrize("provider,model", [("anthropic", "claude-sonnet-4.6"), ("openai", "gpt-5.4"),
                                            ("openai", "gpt-5.6-sol"), ("gemini", "gemini-2.5-pro"),
                                            ("deepseek", "deepseek-flash")])
def test_reads_from_another_tenants_write(impl, provider, model):
    # alice writes a 2048-token prompt; bob sends it 10 s later (one namespace) and reads it all from alice's entry;
    # alice again reads her own (bob's read refreshed, not re-created, the entry)
    p = list(range(2048))
    res = run([p, p, p], [0, 10, 20], make_rules(provider, model, ttft_s=0), impl, tenant=[0, 1, 0],
              tenant_names=["alice", "bob"])
    assert res.read.tolist() == [0, 2048, 2048]
    assert res.hit_from.tolist() == [-1, 0, 0]
    assert res.summary()["read_from_other_tenants_tokens"] == 2048
    from cachesim.providers.report import per_tenant

    tenants = per_tenant(res)
    assert tenants["bob"]["read_from_other_tenants"] == 2048 and tenants["alice"]["read_from_other_tenants"] == 0
