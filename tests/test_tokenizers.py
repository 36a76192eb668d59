"""Tokenizers: the built-in one is deterministic and close to BPE counts; real ones load from local files."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachesim.tokenizers import BuiltinTokenizer, get_tokenizer
from conftest import DATA

TEXTS = ["prose", "code", "heldout_prose", "heldout_code"]  # written for this test; held-out ones after tuning


@pytest.mark.parametrize("name", TEXTS)
@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_builtin_counts_within_15_percent_of_bpe(name, encoding):
    bpe_openai = pytest.importorskip("bpe_openai", reason="bpe-openai (in the test extra) embeds the BPE vocabularies")
    text = (DATA / "text" / f"{name}.txt").read_text()
    builtin = len(BuiltinTokenizer().encode(text))
    bpe = len(bpe_openai.get_encoding(encoding).encode(text))
    assert 0.85 <= builtin / bpe <= 1.15, (builtin, bpe)


def test_builtin_pieces_by_hand():
    pieces = BuiltinTokenizer().pieces("Hello, world! self.items = 1234\n    return")
    assert pieces == ["Hello", ",", " world", "!", " self", ".items", " =", " 123", "4", "\n", "   ", " return"]


def test_builtin_cuts_long_words_into_pieces():
    assert BuiltinTokenizer().pieces(" internationalization") == [" intern", "ationa", "lizati", "on"]


@given(st.text(max_size=200), st.text(max_size=200))
def test_builtin_is_deterministic_and_prefix_stable_at_line_breaks(a, b):
    tok = BuiltinTokenizer()
    assert np.array_equal(tok.encode(a), tok.encode(a))
    head = tok.encode(a + "\n\n")
    both = tok.encode(a + "\n\n" + "x" + b)
    # text after a blank line never changes the tokens before it: shared prefixes give shared token prefixes
    assert np.array_equal(both[:len(head) - 1], head[:-1])


def test_tiktoken_file_is_loaded_offline(tmp_path):
    pytest.importorskip("tiktoken", reason="tiktoken is optional")
    ranks = {bytes([i]): i for i in range(256)}
    ranks.update({b"he": 256, b"ll": 257, b"hell": 258, b" w": 259})
    path = tmp_path / "tiny.tiktoken"
    path.write_text("".join(f"{base64.b64encode(k).decode()} {v}\n" for k, v in ranks.items()))
    tok = get_tokenizer(f"tiktoken:cl100k_base={path}")
    # "hello" -> "hell" "o"; " world" -> " w" "o" "r" "l" "d" (byte ranks are the byte values)
    assert tok.encode("hello world").tolist() == [258, ord("o"), 259, ord("o"), ord("r"), ord("l"), ord("d")]


def test_huggingface_tokenizer_json_is_loaded(tmp_path):
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is optional")
    from tokenizers import models, pre_tokenizers, trainers

    hf = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.train_from_iterator([(DATA / "text" / "prose.txt").read_text()],
                           trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    tok = get_tokenizer(f"hf:{path}")
    text = "The keeper listened carefully."
    assert tok.encode(text).tolist() == hf.encode(text).ids
    assert get_tokenizer(str(path)).encode(text).tolist() == hf.encode(text).ids


@pytest.mark.parametrize("spec,message", [("nope", "unknown tokenizer 'nope'"),
                                          ("hf:/no/such/tokenizer.json", "does not exist"),
                                          ("tiktoken:/x.tiktoken", "tiktoken:ENCODING=PATH")])
def test_bad_tokenizer_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        get_tokenizer(spec)
