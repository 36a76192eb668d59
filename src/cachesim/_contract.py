"""Every name of the contract, once: policies, victims, hit caps, isolation, the engines' fields and errors.

Both twins (``_core.pyx`` and ``_reference.py``), :class:`cachesim.CacheConfig`, the CLI's choices and the docs
tables take their names from here; the core checks its enums against this module when it is imported, so a
policy added here and not there (or the reverse) fails at import, not in a replay. SEMANTICS.md (shared docs) is
the prose of the same contract: §3 the serve step, §4 policies and victims, §5 the statistics.
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

__all__ = [
    "DEFAULT_TOKEN_BLOCK_SIZE", "EngineInputError", "HIT_CAPS", "ISOLATIONS", "MAX_CAPACITY_BLOCKS",
    "MAX_TOKENS_PER_REQUEST",
    "OUTPUT_FIELDS", "POLICIES", "POLICY_NAMES", "PolicyError", "PolicyParam", "PolicySpec", "RATIO_DEFINITIONS",
    "TENANT_FIELDS", "TRACE_FAULTS", "VERSION", "VICTIMS", "check_engine_config", "check_policy", "is_hook_policy",
    "is_policy_plugin", "load_policy_plugin", "parse_policy", "policy_label", "ratio", "resolve_policy",
    "split_policies",
]


def _version() -> str:
    try:
        return metadata.version("cachesim")
    except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"


VERSION = _version()

# Tokens per block when token ids are cut into blocks and nothing else says (vLLM's default block size).
DEFAULT_TOKEN_BLOCK_SIZE = 16


@dataclass(frozen=True)
class PolicyParam:
    """A parameter of a built-in policy, named as libCacheSim names it where libCacheSim has the policy."""

    name: str          # as written after the policy's name: "s3fifo:move-to-main-threshold=1"
    kind: type         # int or float
    default: int | float
    low: int | float   # the smallest value allowed
    high: int | float  # the largest
    meaning: str

    def value(self, policy: str, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            wanted = "a whole number" if self.kind is int else "a number"
            raise ValueError(f"policy {policy}: {self.name}={text!r} is not {wanted}") from None
        if not (self.low <= value <= self.high):
            raise ValueError(f"policy {policy}: {self.name}={text} is outside {self.low}..{self.high} "
                             f"({self.meaning})")
        return value


@dataclass(frozen=True)
class PolicySpec:
    """A built-in eviction policy: its code in the compiled core, its victim rule, where it comes from, and its
    parameters with their defaults."""

    name: str
    code: int          # the core's P_* enum value (checked at import of _core)
    rule: str          # which entry is the victim (SEMANTICS §4)
    source: str        # the system or paper it follows
    params: tuple[PolicyParam, ...] = ()
    offline: bool = False   # needs the whole trace before it serves (it knows each block's next use)


POLICIES: dict[str, PolicySpec] = {p.name: p for p in (
    PolicySpec("lru", 0, "the least recently used block; a request's blocks are stamped deepest first",
               "vLLM v1 free-block queue (kv_cache_manager / block_pool)"),
    PolicySpec("fifo", 1, "the oldest insertion", "the classic queue; SGLang's fifo over radix-tree leaves"),
    PolicySpec("lfu", 2, "the block used by the fewest requests, then the least recently used",
               "SGLang evict_policy lfu (hit_count, last_access)"),
    PolicySpec("two-class", 3, "blocks used by one request (probation) before blocks used by several "
               "(protected), each LRU, with no bound on either class",
               "SGLang evict_policy slru (a two-class LRU: hit_count >= 2 is protected)"),
    PolicySpec("priority", 4, "the block used by the fewest requests, then the deepest, then the least recently "
               "used",
               "in the manner of Marconi's FLOP-aware eviction (Pan et al., MLSys 2025): deep, rarely shared "
               "blocks save the least recomputation per slot"),
    PolicySpec("sieve", 5, "a hand sweeping from the oldest insertion spares (and unmarks) blocks used since it "
               "passed", "Zhang et al., SIEVE is simpler than LRU, NSDI 2024"),
    PolicySpec("s3fifo", 6, "a small FIFO and a main FIFO with reinsertion; blocks evicted from the small queue "
               "are remembered in a ghost FIFO and re-enter the main one",
               "Yang et al., FIFO queues are all you need for cache eviction, SOSP 2023; parameters and rules as "
               "libCacheSim's S3FIFO", params=(
                   PolicyParam("small-size-ratio", float, 0.1, 0.0, 1.0, "the small queue's share of the capacity"),
                   PolicyParam("ghost-size-ratio", float, 0.9, 0.0, 16.0,
                               "the ghost's size in ids, as a share of the capacity"),
                   PolicyParam("move-to-main-threshold", int, 2, 1, 255,
                               "uses in the small queue that move a block to the main queue"))),
    PolicySpec("slru", 7, "N LRU segments: a block enters the lowest segment with room and moves up one on "
               "each use; a full segment's LRU block moves down one; the victim is the LRU block of the lowest "
               "non-empty segment",
               "Karedla, Love and Wherry, Caching strategies to improve disk system performance, IEEE Computer "
               "1994; libCacheSim's SLRU", params=(
                   PolicyParam("n-seg", int, 4, 1, 16, "the number of segments, each capacity / n-seg blocks"),)),
    PolicySpec("clock", 8, "a FIFO ring of n-bit use counters: the hand decrements and passes used blocks and "
               "evicts the first with count 0",
               "Corbato, A paging experiment with the Multics system, 1968 (the n-bit variant); libCacheSim's "
               "Clock", params=(
                   PolicyParam("n-bit-counter", int, 1, 1, 8, "bits of the use counter (1 = second chance)"),
                   PolicyParam("init-freq", int, 0, 0, 255, "the counter a block is inserted with"))),
    PolicySpec("belady", 9, "the block whose next use is farthest in the future (never used again first); "
               "with leaf victims, among the leaves",
               "Belady, A study of replacement algorithms for a virtual-storage computer, IBM Systems Journal "
               "1966 (MIN); the offline bound. Needs the whole trace: cachesim finds every block's next use "
               "in one backward pass", offline=True),
    PolicySpec("arc", 10, "two LRU lists, T1 (seen once) and T2 (seen again), with ghost lists of their evicted "
               "keys; a ghost hit adapts T1's target size p and enters T2; the victim is T1's LRU block while T1 "
               "is over p, else T2's",
               "Megiddo and Modha, ARC: a self-tuning, low overhead replacement cache, FAST 2003; libCacheSim's "
               "ARC"),
    PolicySpec("twoq", 11, "A1in, a FIFO of blocks seen once, and Am, an LRU of blocks seen again after leaving it; "
               "keys evicted from A1in are remembered in a ghost FIFO, A1out, and a missed key found there enters "
               "Am; the victim is A1in's oldest block while A1in is over its share, else Am's LRU block",
               "Johnson and Shasha, 2Q: a low overhead high performance buffer management replacement algorithm, "
               "VLDB 1994; parameters and rules as libCacheSim's TwoQ", params=(
                   PolicyParam("Ain-size-ratio", float, 0.25, 0.0, 1.0, "A1in's share of the capacity"),
                   PolicyParam("Aout-size-ratio", float, 0.5, 0.0, 16.0,
                               "A1out's size in ids, as a share of the capacity"))),
    PolicySpec("gdsf", 12, "the lowest priority, a block's priority being the inflation value L plus its uses "
               "times what recomputing it costs (set at each use; L becomes each victim's priority); "
               "deeper blocks cost more, as attention over a longer prefix does",
               "Cherkasova, Improving WWW proxies performance with Greedy-Dual-Size-Frequency caching policy, HP "
               "Labs 1998; libCacheSim's GDSF (attention-tokens=0). The position cost model: docs/policies.md",
               params=(PolicyParam("attention-tokens", float, 24576.0, 0.0, 1e9,
                                   "the context length at which a token's attention costs as much as the rest "
                                   "of its forward pass, about 6 x the hidden size; 0: every block costs the "
                                   "same"),)),
)}
POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)

# Which entries a policy may evict (SEMANTICS §4): leaves keep the cache prefix-closed; "any" counts orphans.
VICTIMS = ("leaves", "any")
# "prompt-1": at least one prompt token is computed (vLLM, SGLang; SEMANTICS §3 step 2).
HIT_CAPS = (None, "prompt-1")
# "tenant": the key seed is derived from the tenant, so tenants never share entries (SEMANTICS §2).
ISOLATIONS = (None, "tenant")

# The most tokens one request may carry (prompt or output) unless the environment variable says otherwise: the
# longest context windows of 2026 are 10^7 tokens, a larger count in a trace is damage, and refusing it at the
# reader keeps a 3 KB file from asking for gigabytes. Sums over 10^11 such requests still fit int64.
MAX_TOKENS_PER_REQUEST = int(os.environ.get("CACHESIM_MAX_TOKENS_PER_REQUEST", 10**7))

# The core numbers entries with int32 and keeps two sentinel values below zero.
MAX_CAPACITY_BLOCKS = 2**31 - 3

# Columns of an engine's tenant_stats, in order (the core's F_* enum; SEMANTICS §5 names the totals).
TENANT_FIELDS = ("requests", "hit_requests", "prompt_tokens", "hit_tokens", "blocks", "hit_blocks",
                 "inserted_blocks", "evictions_caused", "evicted_owned", "expired_owned", "uncached_blocks")
# Per-request outputs an engine writes (SEMANTICS §5), in order.
OUTPUT_FIELDS = ("hit_tokens", "hit_blocks", "inserted_blocks", "evicted_blocks", "expired_blocks",
                 "uncached_blocks")

# What a request of a Trace can break of the serve loops' assumptions, in the order a request is checked: both
# twins' ``first_trace_fault`` return an index into this tuple (cachesim.trace.validate words each one).
TRACE_FAULTS = ("block_offsets", "t_not_finite", "t_negative", "t_decreasing", "tenant", "prompt_empty",
                "prompt_limit", "block_tokens", "overfull", "reserved_key", "repeated_key")

# Every ratio is over the counted requests (all requests but the warm-up).
RATIO_DEFINITIONS = {
    "token_hit_ratio": "hit tokens / prompt tokens (= vLLM prefix_cache_hits / prefix_cache_queries)",
    "block_hit_ratio": "hit blocks / cacheable prompt blocks",
    "request_hit_ratio": "requests with at least one hit block / requests",
}


def parse_policy(policy: str) -> tuple[str, dict[str, int | float]]:
    """``"NAME[:key=value,...]"`` -> (name, every parameter of the policy with its value): the one syntax of the
    CLI and the API. Unknown names, unknown keys and values out of range are errors that name the policy and
    the key."""
    name, _, rest = policy.partition(":")
    name = name.strip()
    spec = POLICIES.get(name)
    if spec is None:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    known = {p.name: p for p in spec.params}
    values: dict[str, int | float] = {p.name: p.default for p in spec.params}
    for item in (part.strip() for part in rest.split(",")) if rest.strip() else ():
        key, equals, text = item.partition("=")
        key = key.strip()
        if not equals:
            raise ValueError(f"policy {name}: {item!r} is not key=value")
        if key not in known:
            allowed = ", ".join(known) if known else "none"
            raise ValueError(f"policy {name} has no parameter {key!r} (its parameters: {allowed})")
        values[key] = known[key].value(name, text.strip())
    return name, values


def is_policy_plugin(policy) -> bool:
    """Whether a policy is written as a file of your own: ``FILE.py:CLASS[:key=value,...]``."""
    return isinstance(policy, str) and ".py:" in policy


_PLUGIN_MODULES: dict[str, Any] = {}   # resolved path -> module, so a file is imported once a process


def load_policy_plugin(spec: str):
    """A new instance of the policy class a plugin spec names, ``FILE.py:CLASS[:key=value,...]``: the file is
    imported (once), the class called with the parameters as keyword arguments (ints and floats as numbers).
    Errors name the file and what is wrong with it."""
    import importlib.util
    import sys
    from pathlib import Path

    path_text, _, rest = spec.partition(".py:")
    path = Path(path_text + ".py").expanduser().resolve()
    class_name, _, param_text = rest.partition(":")
    if not path.is_file():
        raise ValueError(f"policy plugin {spec!r}: {path} is not a file")
    module = _PLUGIN_MODULES.get(str(path))
    if module is None:
        module_name = f"cachesim_policy_plugin_{len(_PLUGIN_MODULES)}_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module   # its classes pickle by this name within the process
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ValueError(f"policy plugin {path}: importing it raised {type(exc).__name__}: {exc}") from exc
        _PLUGIN_MODULES[str(path)] = module
    found = getattr(module, class_name, None) if class_name.isidentifier() else None
    if not isinstance(found, type):
        policies = sorted(n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module.__name__
                          and (callable(getattr(v, "victim", None)) or callable(getattr(v, "choose", None))))
        raise ValueError(f"policy plugin {path}: no class {class_name!r} in it"
                         + (f" (its policies: {', '.join(policies)})" if policies else ""))
    kwargs = {}
    for item in filter(None, param_text.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key.strip().isidentifier():
            raise ValueError(f"policy plugin {spec!r}: parameter {item!r} is not key=value")
        kwargs[key.strip()] = _plugin_value(value.strip())
    try:
        policy = found(**kwargs)
    except Exception as exc:
        raise ValueError(f"policy plugin {spec!r}: {class_name}({param_text}) raised {type(exc).__name__}: "
                         f"{exc}") from exc
    if not is_hook_policy(policy) and not callable(getattr(policy, "choose", None)):
        raise ValueError(f"policy plugin {spec!r}: {class_name} has neither victim(is_candidate) "
                         "(cachesim.HookPolicy) nor choose(candidates) (cachesim.Policy)")
    return policy


def _plugin_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def resolve_policy(policy):
    """What an engine runs for a policy as configured: a plugin spec becomes a new instance of its class."""
    return load_policy_plugin(policy) if is_policy_plugin(policy) else policy


def check_policy(policy) -> None:
    """A policy name with parameters, or a plugin spec, checked (ValueError saying what is wrong)."""
    if is_policy_plugin(policy):
        load_policy_plugin(policy)
    else:
        parse_policy(policy)


def policy_label(policy) -> str:
    """A policy's canonical text: its name, then the parameters that differ from the defaults (a plugin: its
    spec as written)."""
    if not isinstance(policy, str):
        return getattr(policy, "name", type(policy).__name__)
    if is_policy_plugin(policy):
        return policy
    name, values = parse_policy(policy)
    changed = [f"{p.name}={values[p.name]:g}" for p in POLICIES[name].params if values[p.name] != p.default]
    return f"{name}:{','.join(changed)}" if changed else name


def split_policies(text: str) -> list[str]:
    """A comma-separated list of policies, where a policy's own parameters are comma-separated too:
    ``"lru,s3fifo:small-size-ratio=0.2,move-to-main-threshold=1,sieve"`` is three policies (an item with ``=``
    and no ``:`` continues the policy before it)."""
    policies: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "=" in item and ":" not in item and policies:
            policies[-1] += "," + item
        else:
            policies.append(item)
    return policies


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, 0 for an empty denominator: every hit ratio of the project is one of these."""
    return numerator / denominator if denominator else 0.0


class EngineInputError(ValueError):
    """A batch an engine cannot serve (its .request and .field say where; .partial holds what was served)."""


class PolicyError(RuntimeError):
    """A custom policy failed at request .request of the batch: one of its hooks raised (the exception is the
    cause), or its victim() chose a block that may not be evicted now. .partial holds the outputs of the requests
    served before it. The engine refuses further batches: its state is mid-request."""


def is_hook_policy(policy) -> bool:
    """Whether a custom policy has the hook protocol (cachesim.HookPolicy: victim(is_candidate) and
    notifications), which both engines run, rather than choose(candidates), which only the reference runs."""
    return not isinstance(policy, str) and callable(getattr(policy, "victim", None))


def check_engine_config(*, capacity_blocks=None, ttl_s=None, hit_cap=None, block_size=1, warmup_requests=0,
                        warmup_s=0.0, policy="lru", victims="leaves", ghost_blocks=None, isolation=None) -> None:
    """The one validation of a cache configuration: CacheConfig and both engines call it.

    ``policy`` is a built-in name, an object with the hook protocol (cachesim.HookPolicy), or, for the reference
    engine only, an object with ``choose(candidates)`` (cachesim.Policy).
    """
    if capacity_blocks is not None:
        if isinstance(capacity_blocks, bool) or not _is_int(capacity_blocks):
            raise ValueError(f"capacity_blocks must be a whole number of blocks, got {capacity_blocks!r}")
        if capacity_blocks <= 0:
            raise ValueError(f"capacity_blocks must be positive (or None for unbounded), got {capacity_blocks}")
        if capacity_blocks > MAX_CAPACITY_BLOCKS:
            raise ValueError(f"capacity_blocks must be at most {MAX_CAPACITY_BLOCKS:,}, got {capacity_blocks:,}")
    if isinstance(policy, str):
        check_policy(policy)
    elif not is_hook_policy(policy) and not callable(getattr(policy, "choose", None)):
        raise ValueError(f"a policy is a name ({', '.join(POLICY_NAMES)}), an object with a victim(is_candidate) "
                         f"method (cachesim.HookPolicy) or one with choose(candidates) (cachesim.Policy), not "
                         f"{policy!r}")
    if ttl_s is not None and not (isinstance(ttl_s, (int, float)) and not isinstance(ttl_s, bool) and ttl_s > 0
                                  and math.isfinite(ttl_s)):
        raise ValueError(f"ttl_s must be a positive number of seconds (or None), got {ttl_s!r}")
    if hit_cap not in HIT_CAPS:
        raise ValueError(f"unknown hit_cap {hit_cap!r}; choose None or 'prompt-1'")
    if victims not in VICTIMS:
        raise ValueError(f"unknown victims {victims!r}; choose 'leaves' or 'any'")
    if isolation not in ISOLATIONS:
        raise ValueError(f"unknown isolation {isolation!r}; choose None or 'tenant'")
    if not _is_int(block_size) or block_size <= 0:
        raise ValueError(f"block_size must be a positive whole number of tokens, got {block_size!r}")
    if not _is_int(warmup_requests) or warmup_requests < 0 or not warmup_s >= 0:
        raise ValueError("warmup must not be negative")
    if ghost_blocks is not None and (not _is_int(ghost_blocks) or ghost_blocks < 0):
        raise ValueError(f"ghost_blocks must be a whole number, not negative, got {ghost_blocks!r}")


def _is_int(value) -> bool:
    """A whole number (Python or numpy integer), not a bool."""
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True
