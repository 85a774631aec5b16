"""The scratch-model tokenizer: single-token symbols and digits, exact round trip, save/load."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowllm_kit.crystal import Crystal
from flowllm_kit.text import build_tokenizer, element_symbols, encode, generation_prompt
from flowllm_kit.text.prompts import ATTRIBUTES, PROMPT_TEMPLATES, infill_prompt, training_text
from flowllm_kit.text.tokenizer import PUNCTUATION, prompt_words, vocabulary


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def round_trip(tokenizer, text: str) -> str:
    return tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)


def texts_of(crystals: list[Crystal]) -> list[str]:
    rng = np.random.default_rng(0)
    texts = []
    for crystal in crystals:
        crystal_text = encode(crystal, translate=True, rng=rng)
        everything = {name: crystal.properties[name] for name in ATTRIBUTES}
        texts.append(generation_prompt() + crystal_text)
        texts.append(generation_prompt(**everything) + crystal_text)
        texts.append(infill_prompt(crystal_text, crystal.elements[0]) + crystal.elements[0])
    return texts


def test_vocabulary_is_small_and_complete(tokenizer) -> None:
    vocab = tokenizer.get_vocab()
    assert len(vocab) == len(vocabulary()) < 256
    assert set(element_symbols()) <= set(vocab)
    assert set("0123456789") <= set(vocab)
    assert set(prompt_words()) <= set(vocab)
    assert {"[MASK]", " ", "\n", ".", "-", ":", '"'} <= set(vocab)
    special = [tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token]
    assert len(set(special)) == 4 and None not in special


def test_every_element_symbol_is_one_token_in_every_context(tokenizer) -> None:
    for symbol in element_symbols():
        assert tokenizer.tokenize(symbol) == [symbol]
        in_crystal_text = ["0", ".", "5", "\n", symbol, "\n", "0", ".", "1"]
        assert tokenizer.tokenize(f"0.5\n{symbol}\n0.1") == in_crystal_text
        assert tokenizer.tokenize(f"is {symbol}2O. ") == ["is", " ", symbol, "2", "O", ".", " "]


def test_digits_are_single_tokens(tokenizer) -> None:
    assert tokenizer.tokenize("0123456789") == list("0123456789")
    assert tokenizer.tokenize("-12.75") == ["-", "1", "2", ".", "7", "5"]


def test_formulas_split_into_symbols_and_digits(tokenizer, mp20_subset: list[Crystal]) -> None:
    assert tokenizer.tokenize("CoNaCl3") == ["Co", "Na", "Cl", "3"]
    assert tokenizer.tokenize("CsNO") == ["Cs", "N", "O"]  # not No (nobelium)
    for crystal in mp20_subset:
        formula = crystal.properties["formula"]
        assert tokenizer.tokenize(formula) == re.findall(r"[A-Z][a-z]?|[0-9()]", formula)


def test_prompt_words_are_whole_tokens(tokenizer) -> None:
    assert tokenizer.tokenize("Below") == ["Below"]  # not Be + ...
    assert tokenizer.tokenize("The") == ["The"]  # not Th + ...
    for template in PROMPT_TEMPLATES:
        text = template.replace("{}", "-0.25")  # the attribute sentences' placeholder
        assert tokenizer.unk_token not in tokenizer.tokenize(text)
        assert round_trip(tokenizer, text) == text


def test_round_trip_is_exact_on_prompts_and_crystals(tokenizer, mp20_subset: list[Crystal]) -> None:
    for text in texts_of(mp20_subset):
        assert tokenizer.unk_token not in tokenizer.tokenize(text)
        assert round_trip(tokenizer, text) == text


def test_training_text_ends_with_the_eos_token(tokenizer, mp20_subset: list[Crystal]) -> None:
    text = training_text(mp20_subset[0], eos_token=tokenizer.eos_token, rng=0)
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert ids.count(tokenizer.eos_token_id) == 1
    assert tokenizer.decode(ids) == tokenizer.bos_token + text


def test_unknown_text_becomes_unk(tokenizer) -> None:
    assert tokenizer.tokenize("Xx 1") == [tokenizer.unk_token, " ", "1"]


token_pieces = st.one_of(
    st.sampled_from(element_symbols()),
    st.sampled_from(list("0123456789") + list(PUNCTUATION) + ["[MASK]"]),
    st.sampled_from(prompt_words()).map(lambda word: (" ", word, " ")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(token_pieces, max_size=40))
def test_any_text_made_of_tokens_splits_back_into_them(tokenizer, pieces: list) -> None:
    tokens = [t for piece in pieces for t in (piece if isinstance(piece, tuple) else (piece,))]
    text = "".join(tokens)
    assert tokenizer.tokenize(text) == tokens
    assert round_trip(tokenizer, text) == text


def test_save_and_load_round_trip(tokenizer, tmp_path: Path, mp20_subset: list[Crystal]) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer.save_pretrained(tmp_path)
    for loader in (AutoTokenizer, PreTrainedTokenizerFast):
        loaded = loader.from_pretrained(tmp_path)
        assert loaded.get_vocab() == tokenizer.get_vocab()
        assert loaded.all_special_tokens == tokenizer.all_special_tokens
        assert loaded.model_max_length == tokenizer.model_max_length
        for text in texts_of(mp20_subset[:10]):
            ids = loaded(text)["input_ids"]
            assert ids == tokenizer(text)["input_ids"]
            assert loaded.decode(ids, skip_special_tokens=True) == text


def test_batches_pad_on_the_right(tokenizer) -> None:
    batch = tokenizer(["H\n0.10 0.20 0.30", "H"], padding=True)
    assert batch["input_ids"][1][-1] == tokenizer.pad_token_id
    assert batch["attention_mask"][1] == [1, 1] + [0] * (len(batch["input_ids"][0]) - 2)
