"""KV bytes per token from model configurations, and the byte units sizes are read and written in.

Every expected value is worked out by hand in the test (the arithmetic is beside it), never taken from the code.
"""

from __future__ import annotations

import orjson
import pytest

from cachesim.models import MODELS, get_model, model_from_config
from cachesim.units import format_bytes, parse_bytes, parse_ratio

# -- the built-in table --------------------------------------------------------------------------------------

def test_llama_3_1_8b_by_hand():
    # 32 layers x 2 (K and V) x 8 KV heads x 128 head dim (4096 / 32) x 2 bytes (bfloat16)
    # = 32 x 2 x 8 x 128 x 2 = 131,072 bytes = 128 KiB per token
    assert get_model("llama-3.1-8b").kv_bytes_per_token == 131_072


def test_llama_3_1_70b_by_hand():
    # 80 layers x 2 x 8 KV heads x 128 (8192 / 64) x 2 bytes = 327,680 bytes = 320 KiB per token
    assert get_model("llama-3.1-70b").kv_bytes_per_token == 327_680


def test_deepseek_v3_mla_by_hand():
    # MLA keeps one latent per layer: kv_lora_rank 512 + qk_rope_head_dim 64 = 576 values, shared by K and V;
    # 61 layers x 576 x 2 bytes (bfloat16) = 70,272 bytes per token, against 61 x 2 x 128 heads x 128 x 2 =
    # 3,997,696 bytes had it cached full K and V for its 128 heads
    model = get_model("deepseek-v3")
    assert model.kv_bytes_per_token == 70_272
    assert model.arithmetic == "61 layers x 576 latent values x 2 bytes (bfloat16) = 70,272 bytes per token"


def test_gpt_oss_sliding_layers_are_counted_and_noted():
    # 36 layers x 2 x 8 KV heads x 64 head dim x 2 bytes = 73,728 bytes; the 18 full-attention layers alone
    # hold 18 x 2 x 8 x 64 x 2 = 36,864
    model = get_model("gpt-oss-120b")
    assert model.kv_bytes_per_token == 73_728
    assert "18 of 36 layers use a 128-token window" in model.note
    assert "36,864 bytes per token" in model.note


def test_every_built_in_row_names_its_hugging_face_config():
    for name, model in MODELS.items():
        assert model.name == name
        assert model.source.startswith("https://huggingface.co/") and model.source.endswith("/config.json")


# -- a local config.json -------------------------------------------------------------------------------------

QWEN25_7B = {  # the fields of Qwen/Qwen2.5-7B-Instruct's config.json that matter here
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_size": 3584,
    "torch_dtype": "bfloat16", "sliding_window": 131072, "use_sliding_window": False,
    "_name_or_path": "Qwen/Qwen2.5-7B-Instruct",
}


def test_qwen_config_by_hand(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(orjson.dumps(QWEN25_7B))
    model = get_model(str(path))
    # no head_dim: 3584 / 28 = 128; 28 layers x 2 x 4 KV heads x 128 x 2 bytes = 57,344 bytes per token
    assert (model.head_dim, model.kv_bytes_per_token) == (128, 57_344)
    assert model.name == "Qwen/Qwen2.5-7B-Instruct"
    assert model.sliding_layers == 0 and model.note is None   # the window is switched off
    assert get_model(str(tmp_path)).kv_bytes_per_token == 57_344   # the directory holding it


def test_head_dim_given_wins_over_hidden_size():
    # Qwen3-style: head_dim 128 although 5120 / 64 = 80; 2 layers x 2 x 8 x 128 x 4 bytes (float32) = 16,384
    model = model_from_config({"num_hidden_layers": 2, "num_attention_heads": 64, "num_key_value_heads": 8,
                               "hidden_size": 5120, "head_dim": 128, "dtype": "float32"})
    assert model.kv_bytes_per_token == 16_384


def test_no_kv_heads_means_one_per_attention_head():
    # 4 layers x 2 x 16 heads x 64 (1024 / 16) x 2 bytes (float16) = 16,384
    assert model_from_config({"num_hidden_layers": 4, "num_attention_heads": 16, "hidden_size": 1024,
                              "torch_dtype": "float16"}).kv_bytes_per_token == 16_384


def test_mla_config():
    # 3 layers x (256 + 32) x 1 byte (float8_e4m3fn) = 864
    config = {"num_hidden_layers": 3, "kv_lora_rank": 256, "qk_rope_head_dim": 32, "num_attention_heads": 16,
              "num_key_value_heads": 16, "hidden_size": 2048, "torch_dtype": "float8_e4m3fn"}
    assert model_from_config(config).kv_bytes_per_token == 864


def test_sliding_layers_from_layer_types_or_a_window_on_every_layer():
    typed = {"num_hidden_layers": 4, "num_attention_heads": 2, "hidden_size": 8, "torch_dtype": "bfloat16",
             "sliding_window": 128, "layer_types": ["sliding_attention", "full_attention"] * 2}
    assert (model_from_config(typed).sliding_layers, model_from_config(typed).sliding_window_tokens) == (2, 128)
    mistral_v01 = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                   "hidden_size": 4096, "torch_dtype": "bfloat16", "sliding_window": 4096}
    assert model_from_config(mistral_v01).sliding_layers == 32


def test_multimodal_text_config_is_read():
    config = {"architectures": ["X"], "text_config": {"num_hidden_layers": 2, "num_attention_heads": 2,
                                                      "hidden_size": 16, "torch_dtype": "bfloat16"}}
    # 2 layers x 2 x 2 heads x 8 x 2 bytes = 128
    assert model_from_config(config).kv_bytes_per_token == 128


@pytest.mark.parametrize(("change", "message"), [
    ({"num_hidden_layers": None}, "config field 'num_hidden_layers' is missing"),
    ({"num_hidden_layers": 0}, "config field 'num_hidden_layers' must be a positive whole number, got 0"),
    ({"num_hidden_layers": "32"}, "config field 'num_hidden_layers' must be a positive whole number, got '32'"),
    ({"torch_dtype": None}, "config field 'torch_dtype' is missing"),
    ({"torch_dtype": "int3"}, "config field 'torch_dtype' is 'int3'"),
    ({"num_key_value_heads": None, "num_attention_heads": None},
     "config fields 'num_key_value_heads' and 'num_attention_heads' are both missing"),
    ({"hidden_size": None}, "config field 'hidden_size' is missing"),
    ({"hidden_size": 3585}, "hidden_size 3585 is not a multiple of num_attention_heads 28"),
])
def test_a_config_without_what_is_needed_names_the_field(change, message):
    config = {k: v for k, v in {**QWEN25_7B, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        model_from_config(config)


def test_unknown_name_lists_the_built_in_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model 'gpt-5': neither a built-in name \(llama-3.1-8b, "):
        get_model("gpt-5")
    with pytest.raises(ValueError, match="unknown model"):
        get_model(str(tmp_path))   # a directory without a config.json


# -- units ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("131072", 131_072), ("128KiB", 128 * 1024), ("40GiB", 40 * 2**30), ("40 gib", 40 * 2**30),
    ("40GB", 40 * 10**9), ("1.5GiB", 3 * 2**29), ("2TiB", 2 * 2**40), ("1kB", 1000), ("512B", 512),
    ("1_000", 1000),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("40G", r"got '40G' \(say KiB/GiB for binary units or KB/GB for SI ones\)"),
    ("128k", "say KiB/GiB"), ("abc", "expected a size such as 128KiB"), ("0", "positive whole number of bytes"),
    ("0.1KiB", "positive whole number of bytes"), ("-1KiB", "expected a size"), ("", "expected a size"),
])
def test_parse_bytes_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        parse_bytes(text)


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (512, "512 B"), (1024, "1 KiB"), (131_072, "128 KiB"), (70_272, "68.6 KiB"),   # 70272 / 1024
    (int(3.2 * 2**30), "3.2 GiB"), (1000 * 2**20, "0.98 GiB"),   # 1000 / 1024 of a GiB, not "1,000 MiB"
    (21_183 * 512 * 131_072, "1.3 TiB"),   # 1,421,567,066,112 bytes / 2^40 = 1.29
    (150 * 2**30, "150 GiB"), (123.4 * 2**30, "123 GiB"),
])
def test_format_bytes_spells_binary_units(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize(("text", "expected"), [("30%", 0.3), ("0.3", 0.3), ("100%", 1.0), ("1", 1.0),
                                                ("12.5%", 0.125)])
def test_parse_ratio(text, expected):
    assert parse_ratio(text) == expected


@pytest.mark.parametrize("text", ["30", "130%", "0", "-5%", "abc", "nan", "%"])
def test_parse_ratio_refuses(text):
    with pytest.raises(ValueError, match="expected a ratio"):
        parse_ratio(text)
