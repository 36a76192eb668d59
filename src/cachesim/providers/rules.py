"""Provider rule sets: one frozen dataclass per provider, each field a documented rule or an ambiguity's option.

Defaults are the ones chosen in the shared PROVIDERS.md (§8, "Rules for the emulator"); the section is cited next
to each field. Rates are not here: they come from the price registry (``prices.toml``); each field's type and
range is declared in :mod:`cachesim.providers.options`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachesim.providers.options import check_fields

__all__ = ["Anthropic", "OpenAI", "OpenAI56", "Gemini", "GeminiExplicit", "DeepSeek", "RuleSet", "make_rules",
           "PROVIDERS", "ANTHROPIC_MIN_TOKENS", "BEDROCK_MIN_TOKENS"]

# PROVIDERS.md §1.2: minimum cacheable prompt (tokens) per model, Anthropic's table and AWS Bedrock's
ANTHROPIC_MIN_TOKENS = {
    "claude-opus-5": 512, "claude-fable-5": 512, "claude-mythos-5": 512, "claude-mythos-preview": 2048,
    "claude-opus-4.8": 1024, "claude-opus-4.7": 2048, "claude-opus-4.6": 4096, "claude-opus-4.5": 4096,
    "claude-sonnet-5": 1024, "claude-sonnet-4.6": 1024, "claude-sonnet-4.5": 1024,
    "claude-opus-4.1": 1024, "claude-opus-4": 1024, "claude-sonnet-4": 1024,
    "claude-haiku-4.5": 4096, "claude-haiku-3.5": 2048,
}
BEDROCK_MIN_TOKENS = {
    "claude-opus-5": 512, "claude-fable-5": 512, "claude-mythos-preview": 4096, "claude-opus-4.8": 1024,
    "claude-opus-4.7": 4096, "claude-opus-4.6": 4096, "claude-opus-4.5": 4096, "claude-sonnet-5": 1024,
    "claude-sonnet-4.6": 1024, "claude-sonnet-4.5": 1024, "claude-haiku-4.5": 4096,
}
# PROVIDERS.md §2: models with extended (24h) retention
OPENAI_EXTENDED_RETENTION = {
    "gpt-5.5", "gpt-5.5-pro", "gpt-5.4", "gpt-5.2", "gpt-5.1-codex-max", "gpt-5.1", "gpt-5.1-codex",
    "gpt-5.1-codex-mini", "gpt-5.1-chat-latest", "gpt-5", "gpt-5-codex", "gpt-4.1",
}


def _gemini_minimum(model: str, override: int | None) -> int:
    """§4.1: 2,048 tokens for Gemini 2.5 models, 4,096 for 3.x."""
    if override is not None:
        return override
    return 2048 if model.startswith("gemini-2.5") else 4096


@dataclass(frozen=True)
class Anthropic:
    """Claude API prompt caching (PROVIDERS.md §1, §8.2)."""

    model: str = "claude-sonnet-4.6"
    platform: str = "api"                # "api" (Anthropic's minimum table) or "bedrock" (AWS's)
    isolation: str = "shared"            # "shared": the trace is one workspace; "tenant": one workspace per tenant
    automatic: bool = True               # the top-level automatic breakpoint at the end of the prompt
    automatic_ttl: str = "5m"
    lookback_blocks: int = 20            # §1.1: 20 block positions per breakpoint, itself included
    max_breakpoints: int = 4             # §1.1: more (automatic included) is an HTTP 400
    ttl_5m_s: float = 300.0
    ttl_1h_s: float = 3600.0
    ttft_s: float = 1.0                  # §8.9: a write is readable from t_start + TTFT (t_first unknown)
    refresh_whole_path: bool = False     # §8.9: a hit refreshes only the entries its lookups found
    miss_probability: float = 0.0        # §8.9: server-side misses, default none
    min_tokens: int | None = None        # override of the model's minimum (§1.2)
    per_segment_minimum: bool = False    # §8.9: cumulative by default; True: each breakpoint min past the last
    grace_s: float = 0.0                 # §8.9: entries die strictly at expiry; > 0 keeps them this much longer
    batch: bool = False                  # ×0.5 (§1.4)
    us_inference: bool = False           # ×1.1 on 4.6+ (§1.4)
    regional_endpoint: bool = False      # +10% on Bedrock / Vertex regional endpoints (§8.2)
    seed: int = 0                        # draws of the miss probability

    provider = "anthropic"
    write_fields = ("write_5m", "write_1h")

    def __post_init__(self) -> None:
        check_fields(self)  # types and ranges: providers/options.py
        if self.min_tokens is None:
            table = BEDROCK_MIN_TOKENS if self.platform == "bedrock" else ANTHROPIC_MIN_TOKENS
            if self.model not in table:
                raise ValueError(f"no minimum cacheable length known for {self.model!r} on {self.platform}; "
                                 f"pass min_tokens (known: {', '.join(table)})")

    @property
    def minimum(self) -> int:
        if self.min_tokens is not None:
            return self.min_tokens
        return (BEDROCK_MIN_TOKENS if self.platform == "bedrock" else ANTHROPIC_MIN_TOKENS)[self.model]

    @property
    def cost_multiplier(self) -> float:
        m = 0.5 if self.batch else 1.0
        if self.us_inference:
            m *= 1.1
        if self.regional_endpoint:
            m *= 1.1
        return m


@dataclass(frozen=True)
class OpenAI:
    """OpenAI automatic prompt caching, models before GPT-5.6 (PROVIDERS.md §2, §8.3)."""

    model: str = "gpt-5.4"
    retention: str | None = None         # "in_memory" or "24h"; None: 24h where supported unless zdr (§8.9)
    zdr: bool = False
    in_memory_idle_s: float = 450.0      # §8.9: 7.5 min (docs: 5-10 min, up to 1 h)
    extended_idle_s: float = 1800.0      # §8.9: "typically around 30 minutes"
    extended_max_age_s: float = 86400.0  # hard cap 24 h after creation
    min_tokens: int = 1024
    unit_tokens: int | None = None       # 128; 2,048 for gpt-5.5 / 5.5-pro (§8.3)
    hidden_tokens: int = 0               # §8.9: hidden system tokens, H = 0
    routing_prefix_tokens: int = 256     # §8.9: R = 256
    requests_per_minute: float = 15.0    # §8.9: overflow past ~15 requests/min per routing key
    cache_key: str = "none"              # prompt_cache_key: "none", one per "tenant" or per "session"
    isolation: str = "shared"            # "shared": one organization; "tenant": one per tenant
    capacity_tokens: int | None = None   # per replica, LRU; undocumented, so none by default (never `evicted`)
    ttft_s: float = 1.0
    miss_probability: float = 0.0
    seed: int = 0                        # start of each routing key's round robin

    provider = "openai"
    write_fields = ()

    def __post_init__(self) -> None:
        check_fields(self)  # types and ranges: providers/options.py
        if self.model.startswith("gpt-5.6") or self.model.startswith("gpt-6"):
            raise ValueError(f"{self.model} uses the GPT-5.6+ rules: provider 'openai-5.6'")

    @property
    def effective_retention(self) -> str:
        if self.retention is not None:
            return self.retention
        return "24h" if self.model in OPENAI_EXTENDED_RETENTION and not self.zdr else "in_memory"

    @property
    def unit(self) -> int:
        if self.unit_tokens is not None:
            return self.unit_tokens
        return 2048 if self.model in ("gpt-5.5", "gpt-5.5-pro") else 128


@dataclass(frozen=True)
class OpenAI56:
    """OpenAI prompt caching for GPT-5.6 and later (PROVIDERS.md §3, §8.4)."""

    model: str = "gpt-5.6-sol"
    implicit: bool = True                # implicit mode: a breakpoint at the end of the latest message
    max_writes: int = 4
    ttl_s: float = 1800.0                # 30 min after the latest write or reuse
    min_tokens: int = 1024
    routing_prefix_tokens: int = 256
    requests_per_minute: float = 15.0
    cache_key: str = "none"
    isolation: str = "shared"
    ttft_s: float = 1.0
    miss_probability: float = 0.0
    seed: int = 0

    provider = "openai"
    write_fields = ("write_30m",)

    def __post_init__(self) -> None:
        check_fields(self)  # types and ranges: providers/options.py


@dataclass(frozen=True)
class Gemini:
    """Gemini API implicit caching (PROVIDERS.md §4.1, §8.5)."""

    model: str = "gemini-3.8-flash"
    min_tokens: int | None = None        # 2,048 for 2.5, 4,096 for 3.x
    block_tokens: int = 1                # §8.9: token-exact; > 1 caches whole blocks only
    idle_ttl_s: float = 300.0            # §8.9: undocumented, 5 min
    isolation: str = "shared"            # the project
    capacity_tokens: int | None = None   # per project, LRU; undocumented, so none by default
    ttft_s: float = 1.0
    miss_probability: float = 0.0        # "no cost saving guarantee"
    seed: int = 0

    provider = "gemini"
    write_fields = ()

    def __post_init__(self) -> None:
        check_fields(self)  # types and ranges: providers/options.py

    @property
    def minimum(self) -> int:
        return _gemini_minimum(self.model, self.min_tokens)


@dataclass(frozen=True)
class GeminiExplicit:
    """Gemini explicit caching with ``cachedContents`` objects (PROVIDERS.md §4.3, §8.5 explicit).

    The application puts each request's stable prefix (its first cache marker) in a cached-content object of K
    tokens that lives ``ttl_s`` from its creation (no refresh on use) and creates a new one on demand when none is
    live. Every request with a live object reads K tokens at the cache rate; a creation costs K at the input rate
    (``bill_creation``, ambiguous on the Gemini API, documented for Vertex) plus storage K·ttl for the object's life.
    """

    model: str = "gemini-3.8-flash"
    ttl_s: float = 3600.0                # "TTL defaults to 1 h"
    bill_creation: bool = True           # §8.9: billed (K·input), behind a flag
    min_tokens: int | None = None        # the implicit minimum of the model unless given
    isolation: str = "shared"            # objects belong to the project; "tenant": one project per tenant
    ttft_s: float = 0.0                  # the object exists before the request that uses it
    miss_probability: float = 0.0
    seed: int = 0

    provider = "gemini"
    write_fields = ()

    def __post_init__(self) -> None:
        check_fields(self)  # types and ranges: providers/options.py

    @property
    def minimum(self) -> int:
        return _gemini_minimum(self.model, self.min_tokens)


@dataclass(frozen=True)
class DeepSeek:
    """DeepSeek disk cache (PROVIDERS.md §5, §8.6)."""

    model: str = "deepseek-flash"
    unit_tokens: int = 64                # storage unit; < 64 is not cached
    interval_tokens: int = 4096          # §8.9: fixed-interval units, undocumented, I = 4,096
    delay_s: float = 5.0                 # §8.9: a unit is usable 5 s after the response ends
    response_s: float = 1.0              # t_end - t_start when the trace has no t_end
    idle_ttl_s: float = 6 * 3600.0       # §8.9: "a few hours to a few days"
    isolation: str = "shared"            # `user_id` isolation: "tenant"
    start_utc: str = "2026-10-01T00:00:00Z"   # wall-clock time of the trace's t = 0, for peak / off-peak
    holidays: tuple[str, ...] = ()       # Chinese public holidays (YYYY-MM-DD): never peak
    ttft_s: float = 0.0
    miss_probability: float = 0.0
    seed: int = 0

    provider = "deepseek"
    write_fields = ()

    def __post_init__(self) -> None:
        check_fields(self)  # types and ranges: providers/options.py


RuleSet = Anthropic | OpenAI | OpenAI56 | Gemini | GeminiExplicit | DeepSeek

PROVIDERS: dict[str, type] = {
    "anthropic": Anthropic, "openai": OpenAI, "openai-5.6": OpenAI56, "gemini": Gemini,
    "gemini-explicit": GeminiExplicit, "deepseek": DeepSeek,
}


def make_rules(provider: str, model: str | None = None, **options) -> RuleSet:
    """A rule set by name; ``openai`` with a GPT-5.6+ model gives the 5.6 rules."""
    if provider == "openai" and model is not None and (model.startswith("gpt-5.6") or model.startswith("gpt-6")):
        provider = "openai-5.6"
    try:
        cls = PROVIDERS[provider]
    except KeyError:
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}") from None
    if model is not None:
        from cachesim.providers.prices import canonical_model, load_prices

        known = {name for row in load_prices().rows for name in row.names()}
        options["model"] = canonical_model(model, known | set(ANTHROPIC_MIN_TOKENS) | set(BEDROCK_MIN_TOKENS))
    import dataclasses

    known = [f.name for f in dataclasses.fields(cls)]
    for name in options:
        if name not in known:
            raise ValueError(f"{provider} has no option {name!r}; options: {', '.join(known)}")
    return cls(**options)
