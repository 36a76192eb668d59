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
    # the engine's own capacity, as its log reports it, and how it maps to cachesim's capacity_blocks
    native_capacity: str     # what the number is called in the engine
    native_unit: str         # "blocks" (minus reserved_blocks) or "tokens" (divided by the block size)
    reserved_blocks: int = 0  # blocks of the native number that never hold a cached prefix (docs/engines.md)

    def capacity_blocks(self, native: int, block_size: int | None = None) -> int:
        """cachesim's capacity_blocks for the engine's own capacity number (``native``): vLLM's num_gpu_blocks
        less the blocks it never caches in, SGLang's max_total_num_tokens in pages of ``block_size`` tokens
        (default: the preset's). docs/engines.md measures each mapping against the engines' own code."""
        if isinstance(native, bool) or not isinstance(native, int) or native <= self.reserved_blocks:
            raise ValueError(f"the engine capacity of preset {self.name!r} is its {self.native_capacity}, a whole "
                             f"number above {self.reserved_blocks}; got {native!r}")
        if self.native_unit == "blocks":
            return native - self.reserved_blocks
        pages = native // (block_size or self.block_size)
        if pages < 1:
            raise ValueError(f"{self.native_capacity}={native} holds no {block_size or self.block_size}-token page")
        return pages


PRESETS: dict[str, EnginePreset] = {
    p.name: p
    for p in (
        # vLLM: block 0 of the pool is the null block, and the running request's partial last block takes a
        # slot at admission: num_gpu_blocks - 2 agrees best with vLLM 0.33's BlockPool (docs/engines.md)
        EnginePreset("vllm", block_size=16, hit_cap="prompt-1", policy="lru",
                     description="vLLM v1: 16-token blocks, full blocks only, hit capped at num_tokens-1, "
                                 "LRU by release time with a request's blocks freed tail first",
                     native_capacity="num_gpu_blocks", native_unit="blocks", reserved_blocks=2),
        EnginePreset("sglang", block_size=1, hit_cap="prompt-1", policy="lru",
                     description="SGLang RadixAttention: token-level radix tree (page size 1), hit capped at "
                                 "input_len-1, LRU over leaves",
                     native_capacity="max_total_num_tokens", native_unit="tokens"),
    )
}


def get_preset(name: str) -> EnginePreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None
