"""Named engine presets: configurations of the core, with the facts behind them in ENGINES.md."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnginePreset:
    name: str
    block_size: int          # tokens per block when cutting token ids
    hit_cap: str | None      # "prompt-1": at least one prompt token is always computed
    policy: str
    description: str


PRESETS: dict[str, EnginePreset] = {
    p.name: p
    for p in (
        EnginePreset("vllm", block_size=16, hit_cap="prompt-1", policy="lru",
                     description="vLLM v1: 16-token blocks, full blocks only, hit capped at num_tokens-1, "
                                 "LRU by release time with a request's blocks freed tail first"),
        EnginePreset("sglang", block_size=1, hit_cap="prompt-1", policy="lru",
                     description="SGLang RadixAttention: token-level radix tree (page size 1), hit capped at "
                                 "input_len-1, LRU over leaves"),
    )
}


def get_preset(name: str) -> EnginePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None
