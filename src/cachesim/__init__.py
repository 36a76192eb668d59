"""cachesim: replay LLM request traces through an emulated prompt (prefix) cache.

    >>> import cachesim
    >>> result = cachesim.replay(trace, capacity_blocks=100_000, ttl_s=300)
    >>> result.summary()["token_hit_ratio"]
"""

from cachesim import _impl

# Fail loudly, with the way to build it, when the compiled core is missing: the reference model is never a
# silent fallback (CACHESIM_PUREPYTHON=1 selects it on purpose).
if _impl.default_impl() == "core":
    _impl.load("core")

from cachesim import sweep  # noqa: E402  (a callable module: cachesim.sweep(trace, grid, executor=None))
from cachesim._contract import VERSION, PolicyError  # noqa: E402
from cachesim.policies import BUILTIN_POLICIES, HookPolicy, Policy  # noqa: E402
from cachesim.presets import PRESETS, EnginePreset, get_preset  # noqa: E402
from cachesim.readers import TraceStream, detect_format, read_trace  # noqa: E402
from cachesim.replay import (  # noqa: E402
    POLICIES,
    RATIO_DEFINITIONS,
    CacheConfig,
    Result,
    Simulator,
    replay,
)
from cachesim.requests import BlockRequests, TokenRequests, TraceError  # noqa: E402
from cachesim.trace import Trace, compile_trace  # noqa: E402

__version__ = VERSION

__all__ = [
    "BUILTIN_POLICIES", "BlockRequests", "CacheConfig", "EnginePreset", "HookPolicy", "POLICIES", "PRESETS", "Policy",
    "PolicyError",
    "RATIO_DEFINITIONS", "Result",
    "Simulator", "TokenRequests", "Trace", "TraceError", "compile_trace", "get_preset", "replay",
    "TraceStream", "detect_format", "read_trace",
    "sweep",
]

# tenants sharing a cache, and fleets of replicas (docs/interference.md)
from cachesim.fleet import LoadModel, RouterConfig, run_fleet  # noqa: E402
from cachesim.interference import compare_remedies, counterfactual, merge_traces  # noqa: E402

__all__ += ["LoadModel", "RouterConfig", "compare_remedies", "counterfactual", "merge_traces", "run_fleet"]

# hit-ratio curves in one pass (docs/mrc.md)
from cachesim.mrc import hit_ratio_curve, hit_ratio_table, stack_profile  # noqa: E402

__all__ += ["hit_ratio_curve", "hit_ratio_table", "stack_profile"]
