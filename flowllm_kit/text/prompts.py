"""Prompt templates: unconditional, attribute-conditioned and infill (docs/METHOD.md §2).

The same templates build training texts (prompt + crystal text + end-of-sequence token, see
:func:`training_text`) and sampling prompts (:func:`generation_prompt`), so a model is always
prompted exactly as it was trained. A generation prompt reads::

    Below is a description of a bulk material. The chemical formula is GaTe. The band gap is
    0.898. Generate a description of the lengths and angles of the lattice vectors and then
    the element type and coordinates for each atom within the lattice:
    <crystal text>

(one line up to the colon; wrapped here). Attribute values are rounded to 4 decimals and
written as Python writes floats (``0.898``, ``-0.5751``), space groups as integers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np

from flowllm_kit.crystal import Crystal
from flowllm_kit.text.codec import encode

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_SENTENCES",
    "Attribute",
    "CONDITIONINGS",
    "Conditioning",
    "GENERATION_HEADER",
    "GENERATION_INSTRUCTION",
    "INFILL_HEADER",
    "INFILL_INSTRUCTION",
    "MASK",
    "PROMPT_TEMPLATES",
    "REFERENCE_INFILL_PROBABILITY",
    "crystal_attributes",
    "formula_prompt",
    "generation_prompt",
    "infill_prompt",
    "mask_element",
    "sample_attributes",
    "training_text",
]

Attribute = Literal[
    "formula", "formation_energy_per_atom", "band_gap", "e_above_hull", "spacegroup"
]
ATTRIBUTES: tuple[Attribute, ...] = get_args(Attribute)
"""Conditioning attributes in prompt order (the formula first); also ``Crystal.properties``
keys."""

MASK = "[MASK]"
GENERATION_HEADER = "Below is a description of a bulk material. "
GENERATION_INSTRUCTION = (
    "Generate a description of the lengths and angles of the lattice vectors and then the "
    "element type and coordinates for each atom within the lattice:\n"
)
INFILL_HEADER = (
    "Below is a partial description of a bulk material where one element has been replaced "
    f'with the string "{MASK}":\n'
)
INFILL_INSTRUCTION = f"Generate an element that could replace {MASK} in the bulk material:\n"
ATTRIBUTE_SENTENCES: Mapping[Attribute, str] = {
    "formula": "The chemical formula is {}. ",
    "formation_energy_per_atom": "The formation energy per atom is {}. ",
    "band_gap": "The band gap is {}. ",
    "e_above_hull": "The energy above the convex hull is {}. ",
    "spacegroup": "The spacegroup number is {}. ",
}
PROMPT_TEMPLATES: tuple[str, ...] = (
    GENERATION_HEADER,
    GENERATION_INSTRUCTION,
    INFILL_HEADER,
    INFILL_INSTRUCTION,
    *ATTRIBUTE_SENTENCES.values(),
)
"""Every fixed piece of prompt text (the tokenizer takes its words from here)."""

REFERENCE_INFILL_PROBABILITY = 0.34
"""How often the reference code trains on the infill task instead of generation."""


def _format_value(name: Attribute, value: Any) -> str:
    if name == "formula":
        return str(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"attribute {name} must be finite, got {value!r}")
    if name == "spacegroup":
        return str(int(number))
    rounded = round(number, 4)
    return str(rounded + 0.0)  # + 0.0 turns -0.0 into 0.0


def _generation_prompt(attributes: Sequence[tuple[Attribute, Any]]) -> str:
    sentences = "".join(
        ATTRIBUTE_SENTENCES[name].format(_format_value(name, value)) for name, value in attributes
    )
    return GENERATION_HEADER + sentences + GENERATION_INSTRUCTION


def generation_prompt(
    *,
    formula: str | None = None,
    formation_energy_per_atom: float | None = None,
    band_gap: float | None = None,
    e_above_hull: float | None = None,
    spacegroup: int | None = None,
) -> str:
    """The prompt that asks for a crystal, conditioned on the attributes given.

    With no attribute this is the unconditional prompt. Attributes appear in the order of
    :data:`ATTRIBUTES` (formula first), values rounded to 4 decimals.

    Args:
        formula: Reduced chemical formula, e.g. ``"GaTe"``.
        formation_energy_per_atom: eV/atom.
        band_gap: eV.
        e_above_hull: Energy above the convex hull, eV/atom.
        spacegroup: International space group number (1..230).

    Returns:
        The prompt, ending in ``":\\n"``; the crystal text follows it.
    """
    given = {
        "formula": formula,
        "formation_energy_per_atom": formation_energy_per_atom,
        "band_gap": band_gap,
        "e_above_hull": e_above_hull,
        "spacegroup": spacegroup,
    }
    return _generation_prompt(
        [(name, given[name]) for name in ATTRIBUTES if given[name] is not None]
    )


def crystal_attributes(crystal: Crystal) -> dict[Attribute, Any]:
    """The attributes of a crystal usable in prompts, from its ``properties``.

    The formula falls back to ``crystal.formula`` when ``properties`` has none; other
    attributes that are missing or not finite (``NaN`` in a CSV) are left out.
    """
    found: dict[Attribute, Any] = {"formula": crystal.properties.get("formula") or crystal.formula}
    for name in ATTRIBUTES[1:]:
        value = crystal.properties.get(name)
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            found[name] = value
    return found


def formula_prompt(crystal: Crystal) -> str:
    """The prompt asking for a crystal with ``crystal``'s formula and nothing else.

    This is the prompt of the pair set (docs/METHOD.md §4) and of formula-following checks. The
    formula is the one :func:`crystal_attributes` reads: ``properties["formula"]`` (MP-20's
    reduced formula) when the crystal has it, else ``crystal.formula``.
    """
    return generation_prompt(formula=crystal_attributes(crystal)["formula"])


def sample_attributes(
    crystal: Crystal, *, rng: np.random.Generator | int | None = None
) -> list[tuple[Attribute, Any]]:
    """The reference's random conditioning for training.

    Draw ``k`` uniformly from {0, ..., 4}; if ``k > 0``, condition on the formula and ``k`` of
    the four other attributes (fewer if the crystal lacks some). The reference writes the
    chosen attributes in random order; here they keep the order of :data:`ATTRIBUTES`, so each
    subset has exactly one prompt and :func:`generation_prompt` builds the very prompts a model
    was trained on.

    Returns:
        ``(name, value)`` pairs in prompt order; empty for an unconditional prompt.
    """
    generator = np.random.default_rng(rng)
    available = crystal_attributes(crystal)
    k = int(generator.integers(0, len(ATTRIBUTES)))  # 0..4
    if k == 0:
        return []
    others = [name for name in ATTRIBUTES[1:] if name in available]
    chosen = {others[i] for i in generator.permutation(len(others))[:k]}
    return [("formula", available["formula"])] + [
        (name, available[name]) for name in others if name in chosen
    ]


def mask_element(crystal_text: str, element: str) -> str:
    """Replace every atom of one element by :data:`MASK` in a crystal text.

    Only whole symbol lines are replaced, so masking ``C`` leaves ``Cl`` and ``Ca`` alone
    (the reference's plain string replace does not).
    """
    return "\n".join(MASK if line.strip() == element else line for line in crystal_text.split("\n"))


def infill_prompt(crystal_text: str, element: str) -> str:
    """The infill prompt: the crystal with ``element`` masked, then the question.

    Returns:
        The prompt, ending in ``":\\n"``; the answer (the element symbol) follows it.
    """
    return INFILL_HEADER + mask_element(crystal_text, element) + "\n" + INFILL_INSTRUCTION


Conditioning = Literal["none", "random", "all", "formula"]
"""Which prompts the training texts get (see :func:`training_text`)."""

CONDITIONINGS: tuple[Conditioning, ...] = get_args(Conditioning)


def training_text(
    crystal: Crystal,
    *,
    eos_token: str,
    conditioning: Conditioning = "random",
    formula_probability: float = 0.5,
    infill_probability: float = 0.0,
    translate: bool = True,
    permute: bool = False,
    rng: np.random.Generator | int | None = None,
) -> str:
    """One training example: prompt + crystal text (or infill answer) + end of sequence.

    Args:
        crystal: The crystal.
        eos_token: The tokenizer's end-of-sequence token, appended as text.
        conditioning: ``"none"``: unconditional prompt; ``"random"``: the reference's random
            attributes (:func:`sample_attributes`); ``"all"``: every available attribute;
            ``"formula"``: the formula alone (with ``formula_probability``) or nothing (the
            only two prompts FlowLLM samples with).
        formula_probability: Chance of the formula prompt under ``"formula"`` conditioning
            (the reference's random attributes include the formula in 4 of 5 texts).
        infill_probability: Chance of an infill example instead (reference: 0.34, see
            :data:`REFERENCE_INFILL_PROBABILITY`); the masked element is that of a random atom.
        translate: Random global translation of the coordinates (reference: on).
        permute: Random order of the atoms.
        rng: Random generator or seed; ``None`` draws fresh entropy.

    Returns:
        The text to tokenize; a fresh augmentation on every call.
    """
    generator = np.random.default_rng(rng)
    crystal_text = encode(crystal, translate=translate, permute=permute, rng=generator)
    if infill_probability > 0.0 and generator.random() < infill_probability:
        element = crystal.elements[int(generator.integers(crystal.num_atoms))]
        return infill_prompt(crystal_text, element) + element + eos_token
    if conditioning == "none":
        attributes: list[tuple[Attribute, Any]] = []
    elif conditioning == "random":
        attributes = sample_attributes(crystal, rng=generator)
    elif conditioning == "all":
        attributes = list(crystal_attributes(crystal).items())
    elif conditioning == "formula":
        formula = crystal_attributes(crystal)["formula"]
        attributes = [("formula", formula)] if generator.random() < formula_probability else []
    else:
        choices = ", ".join(map(repr, CONDITIONINGS))
        raise ValueError(f"conditioning must be one of {choices}, got {conditioning!r}")
    return _generation_prompt(attributes) + crystal_text + eos_token
