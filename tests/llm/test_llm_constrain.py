"""Composition-constrained decoding: which tokens the mask allows where, its invariants along
random decoding runs, and its use by generate_texts and build_pairs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from flowllm_kit import text
from flowllm_kit.llm import CompositionConstraint, PairConfig, build_pairs, generate_texts
from flowllm_kit.llm.constrain import element_token_ids


def _allowed(constraint: CompositionConstraint, tokenizer, prompt_ids: list[int], written: str):
    """Token strings the constraint leaves finite after ``written`` (one row)."""
    ids = prompt_ids + tokenizer.encode(written, add_special_tokens=False)
    scores = constraint(torch.tensor([ids]), torch.zeros(1, len(tokenizer)))
    return {
        tokenizer.convert_ids_to_tokens(i)
        for i in torch.isfinite(scores[0]).nonzero()[:, 0].tolist()
    }


@pytest.fixture
def nacl2(tokenizer):  # noqa: ANN201
    prompt = tokenizer.encode("formula NaCl2\n", add_special_tokens=False)
    constraint = CompositionConstraint(tokenizer, [{"Na": 1, "Cl": 2}], len(prompt))
    return constraint, prompt


def test_element_lines_take_only_elements_with_atoms_left(tokenizer, nacl2) -> None:
    constraint, prompt = nacl2
    lattice = "4.0 4.0 4.0\n90 90 90\n"
    assert _allowed(constraint, tokenizer, prompt, lattice) == {"Cl", "Na"}
    assert _allowed(constraint, tokenizer, prompt, lattice + "Cl") == {"\n"}
    assert _allowed(constraint, tokenizer, prompt, lattice + "Na\n0.0 0.0 0.0\n") == {"Cl"}
    two = lattice + "Cl\n0.5 0.5 0.5\nCl\n0.2 0.2 0.2\n"
    assert _allowed(constraint, tokenizer, prompt, two) == {"Na"}


def test_no_element_and_no_end_inside_lines_until_every_atom_is_written(tokenizer, nacl2) -> None:
    constraint, prompt = nacl2
    elements = set(element_token_ids(tokenizer))
    for written in ["", "4.0 4.", "4.0 4.0 4.0\n90 9", "4.0 4.0 4.0\n90 90 90\nNa\n0.5 0."]:
        allowed = _allowed(constraint, tokenizer, prompt, written)
        assert not allowed & elements and tokenizer.eos_token not in allowed
        assert {"\n", "0", " "} <= allowed


def test_the_last_coordinate_line_ends_the_text(tokenizer, nacl2) -> None:
    constraint, prompt = nacl2
    full = "4.0 4.0 4.0\n90 90 90\nNa\n0.0 0.0 0.0\nCl\n0.5 0.5 0.5\nCl\n0.2 0.2 0.2"
    allowed = _allowed(constraint, tokenizer, prompt, full)
    assert tokenizer.eos_token in allowed and "\n" not in allowed
    assert not allowed & set(element_token_ids(tokenizer))


@pytest.mark.parametrize("seed", range(3))
def test_random_decoding_writes_exactly_the_composition(tokenizer, seed: int) -> None:
    """Sample from random logits (newlines and the end favoured, so texts end) under the mask:
    every finished row has exactly its composition, each element at an element line's start."""
    generator = torch.Generator().manual_seed(seed)
    compositions = [{"Na": 1, "Cl": 1}, {"Mg": 1, "F": 2}, {"O": 3}, {"Fe": 2, "O": 3}]
    prompt = tokenizer.encode("x\n", add_special_tokens=False)
    constraint = CompositionConstraint(tokenizer, compositions, len(prompt))
    newline = tokenizer.convert_tokens_to_ids("\n")
    ids = torch.tensor([prompt] * len(compositions))
    finished = torch.zeros(len(compositions), dtype=torch.bool)
    for _ in range(400):
        logits = torch.randn(len(compositions), len(tokenizer), generator=generator)
        logits[:, [newline, tokenizer.eos_token_id]] += 3.0
        scores = constraint(ids, logits)
        assert torch.isfinite(scores).any(dim=1).all()
        choice = torch.multinomial(scores.softmax(dim=1), 1, generator=generator)[:, 0]
        choice[finished] = tokenizer.pad_token_id
        finished |= choice == tokenizer.eos_token_id
        ids = torch.cat([ids, choice[:, None]], dim=1)
        if finished.all():
            break
    assert finished.all()
    elements = element_token_ids(tokenizer)
    for row, composition in zip(ids[:, len(prompt) :].tolist(), compositions, strict=True):
        row = row[: row.index(tokenizer.eos_token_id)]
        lines = tokenizer.decode(row).split("\n")
        written = [line for line in lines[2::2]]
        assert Counter(written) == Counter(composition)
        symbols = {elements[s] for s in composition}
        assert sum(token in symbols for token in row) == sum(composition.values())
        assert len(lines) == 2 + 2 * sum(composition.values())


def test_generate_texts_runs_the_constraint_in_a_real_model(tokenizer, make_tiny_llama) -> None:
    model = make_tiny_llama(tokenizer)
    torch.manual_seed(0)
    prompts = [text.generation_prompt(formula="NaCl")] * 2
    texts, tokens = generate_texts(model, tokenizer, prompts, compositions=[{"Na": 1, "Cl": 1}] * 2)
    assert tokens > 0 and len(texts) == 2
    for sample in texts:
        if sample is not None:  # an untrained model rarely finishes; when it does, it obeys
            assert Counter(sample.split("\n")[2::2]) == {"Na": 1, "Cl": 1}
    with pytest.raises(ValueError, match="1 compositions for 2 prompts"):
        generate_texts(model, tokenizer, prompts, compositions=[{"Na": 1}])


def test_unknown_elements_and_split_symbols_are_refused(tokenizer) -> None:
    with pytest.raises(ValueError, match="unknown elements"):
        CompositionConstraint(tokenizer, [{"Xx": 1}], 0)
    with pytest.raises(ValueError, match="at least one atom"):
        CompositionConstraint(tokenizer, [{}], 0)

    class SplitsSymbols:
        def encode(self, symbol: str, add_special_tokens: bool = False) -> list[int]:
            return list(range(len(symbol)))

    with pytest.raises(ValueError, match="one token per element symbol"):
        element_token_ids(SplitsSymbols())


def test_build_pairs_hands_each_prompt_its_targets_composition(
    scripted_model, tokenizer, small_crystals, tmp_path: Path
) -> None:
    by_formula = {c.formula: c for c in small_crystals}

    def formula_of(prompt: str) -> str:
        return prompt.split("The chemical formula is ")[1].split(". ")[0]

    model = scripted_model(lambda prompt: text.encode(by_formula[formula_of(prompt)]))
    answer = model.generate
    seen: list[tuple[str, dict[str, int]]] = []
    symbols = sorted(element_token_ids(tokenizer))

    def generate(input_ids, attention_mask, max_new_tokens, **options):  # noqa: ANN001, ANN202
        (constraint,) = options["logits_processor"][:1]
        assert isinstance(constraint, CompositionConstraint)
        prompts = tokenizer.batch_decode(input_ids, skip_special_tokens=True)
        for prompt, counts in zip(prompts, constraint.targets.tolist(), strict=True):
            seen.append((prompt, {s: n for s, n in zip(symbols, counts, strict=True) if n}))
        return answer(input_ids, attention_mask, max_new_tokens, **options)

    model.generate = generate
    pairs = build_pairs(
        model, tokenizer, small_crystals, run_dir=tmp_path,
        config=PairConfig(num_pairs=6, constrain_composition=True), batch_size=4,
        progress_bar=False,
    )  # fmt: skip
    assert len(pairs.c0) == 6 and len(seen) >= 6
    for prompt, composition in seen:
        assert composition == dict(Counter(by_formula[formula_of(prompt)].elements))
