"""decode is total: on any string it returns a physical crystal or raises ParseError."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flowllm_kit.crystal import Crystal
from flowllm_kit.geometry.lattice import ANGLE_HIGH, ANGLE_LOW
from flowllm_kit.text import PARSE_ERROR_REASONS, ParseError, decode, element_symbols, encode
from flowllm_kit.text.codec import DEFAULT_MAX_ATOMS, MAX_LENGTH, MIN_VOLUME

PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Characters a broken LLM sample is made of, plus a few that must never confuse the parser.
CRYSTALISH = st.sampled_from(
    list("0123456789 .\n-+eEClNaOHx[]\t\r") + ["nan", "inf", "١", "\u2028"]
)


def assert_physical(crystal: Crystal) -> None:
    """The promise of decode, checked independently of its code."""
    assert 1 <= crystal.num_atoms <= DEFAULT_MAX_ATOMS
    assert np.all((crystal.atomic_numbers >= 1) & (crystal.atomic_numbers <= 118))
    assert np.all(np.isfinite(crystal.lengths)) and np.all(crystal.lengths > 0)
    assert np.all(crystal.lengths <= MAX_LENGTH)
    assert np.all((crystal.angles > ANGLE_LOW) & (crystal.angles < ANGLE_HIGH))
    assert np.all((crystal.frac_coords >= 0) & (crystal.frac_coords < 1))
    volume = crystal.volume
    assert math.isfinite(volume) and volume > MIN_VOLUME


def check(text: str) -> None:
    try:
        crystal = decode(text)
    except ParseError as error:
        assert error.reason in PARSE_ERROR_REASONS
        event(error.reason)  # shown by --hypothesis-show-statistics
    else:
        assert_physical(crystal)
        event("decoded")


@PROPERTY_SETTINGS
@given(st.text())
def test_decode_on_arbitrary_text(text: str) -> None:
    check(text)


@PROPERTY_SETTINGS
@given(st.lists(CRYSTALISH, max_size=80).map("".join))
def test_decode_on_crystal_like_characters(text: str) -> None:
    check(text)


number_text = st.one_of(
    st.floats(-1, 130).map(lambda x: f"{x:.2f}"),
    st.integers(-10, 200).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["1.", ".5", "-0", "+3", "0.5.5", "", "1e3", "٣", "1.00", "0.00"]),
)
values = st.one_of(
    st.lists(number_text, min_size=3, max_size=3), st.lists(number_text, min_size=2, max_size=4)
)
symbol = st.one_of(st.sampled_from(element_symbols()), st.text(max_size=3))


@PROPERTY_SETTINGS
@given(
    lengths=values,
    angles=values,
    atoms=st.lists(st.tuples(symbol, values), min_size=1, max_size=6),
    drop_last_line=st.booleans(),
)
def test_decode_on_well_shaped_texts_with_wild_values(
    lengths: list[str], angles: list[str], atoms: list[tuple[str, list[str]]], drop_last_line: bool
) -> None:
    lines = [" ".join(lengths), " ".join(angles)]
    for element, coords in atoms:
        lines += [element, " ".join(coords)]
    check("\n".join(lines[:-1] if drop_last_line else lines))


def triple(typical: tuple[float, float], wide: tuple[float, float], digits: int):
    """Three numbers, mostly in the typical range, sometimes anywhere in the wide one."""
    number = st.one_of(st.floats(*typical), st.floats(*typical), st.floats(*wide))
    return st.lists(number, min_size=3, max_size=3).map(
        lambda xs: " ".join(f"{x:.{digits}f}" for x in xs)
    )


@PROPERTY_SETTINGS
@given(
    lengths=triple((0.5, 30.0), (-1.0, 1.2 * MAX_LENGTH), 1),
    angles=triple((60.0, 120.0), (0.0, 180.0), 0),
    atoms=st.lists(
        st.tuples(st.sampled_from(element_symbols()), triple((0.0, 1.0), (-0.2, 1.2), 2)),
        min_size=1,
        max_size=4,
    ),
)
def test_decode_on_valid_syntax_with_random_values(
    lengths: str, angles: str, atoms: list[tuple[str, str]]
) -> None:
    check("\n".join([lengths, angles, *(line for atom in atoms for line in atom)]))


def mutate(text: str, data: st.DataObject) -> str:
    """Apply 1-4 random edits an LLM could make: drop, duplicate, swap lines, edit chars."""
    for _ in range(data.draw(st.integers(1, 4))):
        lines = text.split("\n")
        kind = data.draw(st.sampled_from(["delete", "duplicate", "swap", "char", "cut"]))
        i = data.draw(st.integers(0, len(lines) - 1))
        if kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "char" and lines[i]:
            k = data.draw(st.integers(0, len(lines[i]) - 1))
            new = data.draw(st.one_of(CRYSTALISH, st.characters(), st.just("")))
            lines[i] = lines[i][:k] + new + lines[i][k + 1 :]
        elif kind == "cut":
            cut = data.draw(st.integers(0, len(text)))
            return text[:cut]
        text = "\n".join(lines)
    return text


@PROPERTY_SETTINGS
@given(data=st.data())
def test_decode_on_mutated_real_texts(mp20_subset: list[Crystal], data: st.DataObject) -> None:
    crystal = data.draw(st.sampled_from(mp20_subset))
    check(mutate(encode(crystal, translate=True, rng=data.draw(st.integers(0, 99))), data))


@pytest.mark.parametrize("seed", range(3))
def test_real_texts_decode_to_physical_crystals(mp20_subset: list[Crystal], seed: int) -> None:
    for crystal in mp20_subset:
        assert_physical(decode(encode(crystal, translate=True, permute=True, rng=seed)))
