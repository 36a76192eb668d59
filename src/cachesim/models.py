"""KV-cache bytes per token of a model, from its Hugging Face ``config.json`` or a built-in table of open models.

    >>> from cachesim.models import get_model
    >>> get_model("llama-3.1-8b").kv_bytes_per_token       # 32 layers x 2 (K, V) x 8 heads x 128 x 2 bytes
    131072
    >>> get_model("path/to/config.json")                   # any local config.json

What a token costs in a paged KV cache: every layer keeps a key and a value vector per KV head,
``layers x 2 x kv_heads x head_dim x dtype_bytes``. Multi-head latent attention (DeepSeek-V2/V3) keeps one
compressed latent per layer instead, ``kv_lora_rank + qk_rope_head_dim`` values, shared by K and V. Layers with
a sliding window are counted in full, as a prefix cache that keeps every cached token's KV in every layer holds
them; :attr:`ModelKV.sliding_layers` says how many there are, so a reader can tell where an engine that drops
out-of-window KV would need less. docs/size.md has the table with its sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DTYPE_BYTES", "MODELS", "ModelKV", "bytes_for", "get_model", "model_from_config"]

# bytes per element of the dtypes config.json files name (torch_dtype, or dtype in newer transformers)
DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float8_e4m3fn": 1,
               "float8_e5m2": 1, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class ModelKV:
    """The numbers of a model's configuration that decide its KV-cache size."""

    name: str
    layers: int
    kv_heads: int                  # 0 for MLA (one latent per layer, no heads)
    head_dim: int                  # 0 for MLA
    dtype: str
    dtype_bytes: int
    mla_latent_dim: int = 0        # kv_lora_rank + qk_rope_head_dim, for MLA models
    sliding_layers: int = 0        # layers with a sliding window (counted in full, see the module's docstring)
    sliding_window_tokens: int | None = None
    source: str = ""               # where the numbers come from

    @property
    def values_per_token_per_layer(self) -> int:
        return self.mla_latent_dim if self.mla_latent_dim else 2 * self.kv_heads * self.head_dim

    @property
    def kv_bytes_per_token(self) -> int:
        return self.layers * self.values_per_token_per_layer * self.dtype_bytes

    @property
    def arithmetic(self) -> str:
        """The product that gives :attr:`kv_bytes_per_token`, to print beside it."""
        per_layer = (f"{self.mla_latent_dim} latent values" if self.mla_latent_dim
                     else f"2 x {self.kv_heads} KV heads x {self.head_dim}")
        return (f"{self.layers} layers x {per_layer} x {self.dtype_bytes} bytes ({self.dtype}) = "
                f"{self.kv_bytes_per_token:,} bytes per token")

    @property
    def note(self) -> str | None:
        """What a reader of a size should know: sliding-window layers counted in full."""
        if not self.sliding_layers:
            return None
        window = f"{self.sliding_window_tokens:,}-token" if self.sliding_window_tokens else "sliding"
        full = (self.layers - self.sliding_layers) * self.values_per_token_per_layer * self.dtype_bytes
        return (f"{self.sliding_layers} of {self.layers} layers use a {window} window; they are counted for every "
                f"cached token (an engine that keeps only in-window KV for them needs {full:,} bytes per token)")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "layers": self.layers, "kv_heads": self.kv_heads, "head_dim": self.head_dim,
                "dtype": self.dtype, "dtype_bytes": self.dtype_bytes, "mla_latent_dim": self.mla_latent_dim or None,
                "sliding_layers": self.sliding_layers, "sliding_window_tokens": self.sliding_window_tokens,
                "kv_bytes_per_token": self.kv_bytes_per_token, "arithmetic": self.arithmetic, "note": self.note,
                "source": self.source}


_HF = "https://huggingface.co/{}/blob/main/config.json"

# Each row: the fields of the model's config.json on Hugging Face (the address in ``source``). The values were
# checked against copies of those files (docs/size.md names them); a model whose config could not be read is left
# out rather than guessed.
MODELS: dict[str, ModelKV] = {m.name: m for m in (
    # num_hidden_layers 32, num_key_value_heads 8, head_dim 128 (= 4096 / 32), torch_dtype bfloat16
    ModelKV("llama-3.1-8b", 32, 8, 128, "bfloat16", 2, source=_HF.format("meta-llama/Llama-3.1-8B")),
    # num_hidden_layers 80, num_key_value_heads 8, head_dim 128 (= 8192 / 64), torch_dtype bfloat16
    ModelKV("llama-3.1-70b", 80, 8, 128, "bfloat16", 2, source=_HF.format("meta-llama/Llama-3.1-70B")),
    # num_hidden_layers 28, num_key_value_heads 4, head_dim 128 (= 3584 / 28), torch_dtype bfloat16;
    # sliding_window is off (use_sliding_window false)
    ModelKV("qwen2.5-7b", 28, 4, 128, "bfloat16", 2, source=_HF.format("Qwen/Qwen2.5-7B-Instruct")),
    # num_hidden_layers 64, num_key_value_heads 8, head_dim 128 (given), torch_dtype bfloat16
    ModelKV("qwen3-32b", 64, 8, 128, "bfloat16", 2, source=_HF.format("Qwen/Qwen3-32B")),
    # num_hidden_layers 32, num_key_value_heads 8, head_dim 128 (= 4096 / 32), torch_dtype bfloat16,
    # sliding_window null (v0.1 had a 4096-token window; v0.3 has none)
    ModelKV("mistral-7b", 32, 8, 128, "bfloat16", 2, source=_HF.format("mistralai/Mistral-7B-Instruct-v0.3")),
    # MLA: num_hidden_layers 61, kv_lora_rank 512, qk_rope_head_dim 64, torch_dtype bfloat16 (the FP8 of its
    # quantization_config is the weights'); the multi-token-prediction layer (num_nextn_predict_layers) is a
    # draft model and not counted
    ModelKV("deepseek-v3", 61, 0, 0, "bfloat16", 2, mla_latent_dim=512 + 64,
            source=_HF.format("deepseek-ai/DeepSeek-V3")),
    # num_hidden_layers 36, num_key_value_heads 8, head_dim 64, sliding_window 128 on the 18 layers that
    # layer_types marks sliding_attention; attention in bfloat16 (MXFP4 quantizes only the MoE experts)
    ModelKV("gpt-oss-120b", 36, 8, 64, "bfloat16", 2, sliding_layers=18, sliding_window_tokens=128,
            source=_HF.format("openai/gpt-oss-120b")),
)}


def get_model(name_or_config: str | Path) -> ModelKV:
    """A built-in model by name, or the model a local Hugging Face ``config.json`` describes."""
    key = str(name_or_config).strip()
    if key.lower() in MODELS:
        return MODELS[key.lower()]
    path = Path(key)
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if not path.is_file():
        raise ValueError(f"unknown model {key!r}: neither a built-in name ({', '.join(MODELS)}) nor a "
                         "config.json file")
    return model_from_config(path)


def model_from_config(config: Path | str | Mapping[str, Any], name: str | None = None) -> ModelKV:
    """The KV-size numbers of a Hugging Face ``config.json`` (a path, or the parsed object).

    Needs ``num_hidden_layers`` and ``torch_dtype`` (or ``dtype``); then either MLA's ``kv_lora_rank`` and
    ``qk_rope_head_dim``, or ``num_key_value_heads`` (default: ``num_attention_heads``) and ``head_dim``
    (default: ``hidden_size / num_attention_heads``). A multimodal config's ``text_config`` is read when the
    top level has no layers. A missing or unusable field is a ValueError that names it.
    """
    source = ""
    if not isinstance(config, Mapping):
        import orjson

        source = str(config)
        try:
            data = orjson.loads(Path(config).read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{source} is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{source} holds a JSON {type(data).__name__}, not a config object")
        config = data
    where = f" in {source}" if source else ""
    if "num_hidden_layers" not in config and isinstance(config.get("text_config"), Mapping):
        config = config["text_config"]

    def whole(field: str, default: Any = None) -> int:
        value = config.get(field, default)
        if value is None:
            raise ValueError(f"config field {field!r} is missing{where}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value <= 0:
            raise ValueError(f"config field {field!r} must be a positive whole number{where}, got {value!r}")
        return int(value)

    layers = whole("num_hidden_layers")
    dtype = config.get("torch_dtype", config.get("dtype"))
    if dtype is None:
        raise ValueError(f"config field 'torch_dtype' is missing{where}")
    dtype = str(dtype).removeprefix("torch.")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"config field 'torch_dtype' is {dtype!r}{where}; known: {', '.join(DTYPE_BYTES)}")
    name = name or str(config.get("_name_or_path") or source or "config")
    common = {"name": name, "layers": layers, "dtype": dtype, "dtype_bytes": DTYPE_BYTES[dtype], "source": source}
    if config.get("kv_lora_rank") is not None:
        latent = whole("kv_lora_rank") + whole("qk_rope_head_dim")
        return ModelKV(kv_heads=0, head_dim=0, mla_latent_dim=latent, **common)
    if config.get("num_key_value_heads") is not None:
        kv_heads = whole("num_key_value_heads")
    elif config.get("num_attention_heads") is not None:
        kv_heads = whole("num_attention_heads")   # no grouping: one KV head per attention head
    else:
        raise ValueError(f"config fields 'num_key_value_heads' and 'num_attention_heads' are both missing{where}")
    if config.get("head_dim") is not None:
        head_dim = whole("head_dim")
    else:
        hidden, heads = whole("hidden_size"), whole("num_attention_heads")
        if hidden % heads:
            raise ValueError(f"config has no 'head_dim'{where}, and hidden_size {hidden} is not a multiple of "
                             f"num_attention_heads {heads}")
        head_dim = hidden // heads
    sliding, window = _sliding_layers(config, layers)
    return ModelKV(kv_heads=kv_heads, head_dim=head_dim, sliding_layers=sliding, sliding_window_tokens=window,
                   **common)


def _sliding_layers(config: Mapping[str, Any], layers: int) -> tuple[int, int | None]:
    """How many layers use a sliding window, and its width: ``layer_types`` when the config lists them, else
    every layer when a window is set and not switched off (``use_sliding_window``, as Qwen2 configs have it)."""
    window = config.get("sliding_window")
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return 0, None
    types = config.get("layer_types")
    if isinstance(types, list):
        return sum(1 for kind in types if kind == "sliding_attention"), window
    if config.get("use_sliding_window", True) is False:
        return 0, None
    return layers, window


def bytes_for(blocks: int, block_size: int, model: ModelKV) -> int:
    """Bytes of ``blocks`` block slots (a partial block fills a whole slot, as in a paged KV cache)."""
    return blocks * block_size * model.kv_bytes_per_token

