"""Prompt templates, random attribute sampling, element masking and training texts."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from flowllm_kit.crystal import Crystal
from flowllm_kit.text import (
    ATTRIBUTES,
    MASK,
    crystal_attributes,
    decode,
    encode,
    formula_prompt,
    generation_prompt,
    infill_prompt,
    mask_element,
    sample_attributes,
    training_text,
)
from flowllm_kit.text.prompts import (
    GENERATION_HEADER,
    GENERATION_INSTRUCTION,
    INFILL_HEADER,
    INFILL_INSTRUCTION,
)

UNCONDITIONAL = (
    "Below is a description of a bulk material. Generate a description of the lengths and "
    "angles of the lattice vectors and then the element type and coordinates for each atom "
    "within the lattice:\n"
)


def chlorides() -> Crystal:
    """C, Cl, Ca and Co in one cell: masking C must leave the others alone."""
    return Crystal(
        atomic_numbers=[6, 17, 20, 27, 6],
        frac_coords=np.linspace(0.05, 0.85, 15).reshape(5, 3),
        lengths=[5.0, 5.0, 5.0],
        angles=[90.0, 90.0, 90.0],
        properties={"formula": "CaCoC2Cl", "band_gap": 1.234567, "spacegroup": 221},
    )


def test_unconditional_prompt_is_the_reference_text() -> None:
    assert generation_prompt() == UNCONDITIONAL


def test_conditional_prompt_puts_formula_first_and_rounds_values() -> None:
    prompt = generation_prompt(
        spacegroup=194,
        band_gap=0.8979999999999997,
        formula="GaTe",
        formation_energy_per_atom=-0.5750923537499997,
        e_above_hull=-0.00001,
    )
    assert (
        prompt
        == (
            GENERATION_HEADER + "The chemical formula is GaTe. "
            "The formation energy per atom is -0.5751. "
            "The band gap is 0.898. "
            "The energy above the convex hull is 0.0. "  # -0.0 is written as 0.0
            "The spacegroup number is 194. " + GENERATION_INSTRUCTION
        )
    )


def test_any_subset_of_attributes_gives_a_prompt_in_canonical_order() -> None:
    values = {
        "formula": "NaCl",
        "formation_energy_per_atom": -2.0,
        "band_gap": 5.0,
        "e_above_hull": 0.0,
        "spacegroup": 225,
    }
    phrases = ["chemical formula", "formation energy", "band gap", "convex hull", "spacegroup"]
    for mask in range(32):
        chosen = {name: values[name] for bit, name in enumerate(ATTRIBUTES) if mask >> bit & 1}
        prompt = generation_prompt(**chosen)
        found = [prompt.find(phrase) for phrase in phrases]
        present = [position for position in found if position >= 0]
        assert len(present) == len(chosen)
        assert present == sorted(present)
        assert prompt.startswith(GENERATION_HEADER) and prompt.endswith(GENERATION_INSTRUCTION)


def test_crystal_attributes_reads_properties_and_skips_missing_values() -> None:
    crystal = chlorides().replace(properties={"band_gap": float("nan"), "e_above_hull": 0.1})
    assert crystal_attributes(crystal) == {"formula": crystal.formula, "e_above_hull": 0.1}


def test_formula_prompt_states_the_formula_alone() -> None:
    crystal = chlorides()  # also has a band gap and a space group: neither goes in
    formula_sentence = "The chemical formula is {}. "
    expected = GENERATION_HEADER + formula_sentence.format("CaCoC2Cl") + GENERATION_INSTRUCTION
    assert formula_prompt(crystal) == expected
    bare = crystal.replace(properties={})
    assert formula_prompt(bare) == (
        GENERATION_HEADER + formula_sentence.format(bare.formula) + GENERATION_INSTRUCTION
    )


def test_random_attributes_follow_the_reference_scheme(mp20_subset: list[Crystal]) -> None:
    rng = np.random.default_rng(0)
    sizes = Counter()
    for i in range(1000):
        crystal = mp20_subset[i % len(mp20_subset)]
        attributes = sample_attributes(crystal, rng=rng)
        sizes[len(attributes)] += 1
        if attributes:
            names = [name for name, _ in attributes]
            assert names[0] == "formula" and "formula" not in names[1:]
            assert len(set(names)) == len(names)
            assert names == sorted(names, key=ATTRIBUTES.index)  # one prompt per subset
            assert attributes[0][1] == crystal.properties["formula"]
    # k uniform in 0..4, then the formula plus k others: sizes 0, 2, 3, 4, 5.
    assert set(sizes) == {0, 2, 3, 4, 5}
    assert all(150 < count < 250 for count in sizes.values())


def test_mask_replaces_whole_element_lines_only() -> None:
    text = encode(chlorides())
    masked = mask_element(text, "C")
    lines, masked_lines = text.split("\n"), masked.split("\n")
    assert masked_lines.count(MASK) == 2
    assert {"Cl", "Ca", "Co"} <= set(masked_lines)
    assert [line for line in masked_lines if line != MASK] == [
        line for line in lines if line != "C"
    ]


def test_masking_real_crystals_counts_and_restores(mp20_subset: list[Crystal]) -> None:
    for crystal in mp20_subset[:30]:
        text = encode(crystal)
        for element, count in crystal.composition.items():
            masked = mask_element(text, element)
            assert masked.split("\n").count(MASK) == count
            restored = "\n".join(element if line == MASK else line for line in masked.split("\n"))
            assert restored == text


def test_infill_prompt_layout() -> None:
    text = encode(chlorides())
    prompt = infill_prompt(text, "Cl")
    assert prompt == INFILL_HEADER + mask_element(text, "Cl") + "\n" + INFILL_INSTRUCTION
    assert prompt.count(MASK) == 3  # the header, one atom, the instruction


def split_generation_text(text: str, eos: str) -> tuple[str, str]:
    assert text.startswith(GENERATION_HEADER) and text.endswith(eos)
    prompt, crystal_text = text[: -len(eos)].split(GENERATION_INSTRUCTION)
    return prompt + GENERATION_INSTRUCTION, crystal_text


def test_training_text_is_a_sampling_prompt_plus_the_crystal(mp20_subset: list[Crystal]) -> None:
    rng = np.random.default_rng(3)
    unconditional = Counter()
    for crystal in mp20_subset[:50]:
        text = training_text(crystal, eos_token="</s>", rng=rng)
        prompt, crystal_text = split_generation_text(text, "</s>")
        assert decode(crystal_text).atomic_numbers.tolist() == crystal.atomic_numbers.tolist()
        # The prompt is the sampling prompt of the formula plus some subset of the others.
        others = [name for name in ATTRIBUTES[1:] if name in crystal.properties]
        sampling_prompts = {generation_prompt()} | {
            generation_prompt(
                formula=crystal.properties["formula"],
                **{
                    name: crystal.properties[name] for b, name in enumerate(others) if mask >> b & 1
                },
            )
            for mask in range(2 ** len(others))
        }
        assert prompt in sampling_prompts
        unconditional[prompt == generation_prompt()] += 1
    assert set(unconditional) == {True, False}  # some unconditional, some conditioned


def test_training_text_conditioning_modes(mp20_subset: list[Crystal]) -> None:
    crystal = mp20_subset[0]
    everything = {name: crystal.properties[name] for name in ATTRIBUTES}
    text = training_text(crystal, eos_token="</s>", conditioning="all", translate=False)
    assert text == generation_prompt(**everything) + encode(crystal) + "</s>"
    text = training_text(crystal, eos_token="</s>", conditioning="none", translate=False)
    assert text == generation_prompt() + encode(crystal) + "</s>"
    with pytest.raises(ValueError, match="conditioning"):
        training_text(crystal, eos_token="</s>", conditioning="some")  # type: ignore[arg-type]


def test_training_text_formula_conditioning_is_formula_or_nothing(
    mp20_subset: list[Crystal],
) -> None:
    crystal = mp20_subset[0]
    body = encode(crystal) + "</s>"
    conditioned = generation_prompt(formula=crystal.properties["formula"]) + body
    unconditional = generation_prompt() + body
    # The default gives the formula to half the texts (binomial(200, 0.5) within 4.2 sd),
    # formula_probability=0.8 to four in five (binomial(200, 0.8) within 3.7 sd).
    for options, low, high in (({}, 70, 130), ({"formula_probability": 0.8}, 139, 181)):
        texts = [
            training_text(
                crystal,
                eos_token="</s>",
                conditioning="formula",
                translate=False,
                rng=seed,
                **options,
            )
            for seed in range(200)
        ]
        assert set(texts) == {conditioned, unconditional}
        assert low <= texts.count(conditioned) <= high


def test_training_text_infill_asks_for_the_masked_element() -> None:
    crystal = chlorides()
    for seed in range(10):
        text = training_text(crystal, eos_token="</s>", infill_probability=1.0, rng=seed)
        assert text.startswith(INFILL_HEADER) and text.endswith("</s>")
        answer = text[: -len("</s>")].split(INFILL_INSTRUCTION)[1]
        assert answer in crystal.elements
        masked = text[len(INFILL_HEADER) :].split("\n" + INFILL_INSTRUCTION)[0]
        assert masked.split("\n").count(MASK) == crystal.composition[answer]


def test_infill_probability_mixes_tasks(mp20_subset: list[Crystal]) -> None:
    rng = np.random.default_rng(4)
    infill = sum(
        training_text(
            mp20_subset[0], eos_token="</s>", infill_probability=0.34, rng=rng
        ).startswith(INFILL_HEADER)
        for _ in range(500)
    )
    assert math.isclose(infill / 500, 0.34, abs_tol=0.07)
