"""The CrystalLLM codec: format, round trip on real crystals, augmentations, parse errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from flowllm_kit.crystal import Crystal
from flowllm_kit.text import PARSE_ERROR_REASONS, ParseError, decode, element_symbols, encode
from flowllm_kit.text.codec import MAX_LENGTH

# Format precision: half of the last written digit (plus float noise).
LENGTH_TOL, ANGLE_TOL, COORD_TOL = 0.05 + 1e-9, 0.5 + 1e-9, 0.005 + 1e-9


def torus_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed difference a - b on the unit circle, in [-0.5, 0.5)."""
    return np.mod(a - b + 0.5, 1.0) - 0.5


def assert_round_trip(original: Crystal, decoded: Crystal) -> None:
    assert decoded.atomic_numbers.tolist() == original.atomic_numbers.tolist()
    assert np.abs(decoded.lengths - original.lengths).max() <= LENGTH_TOL
    assert np.abs(decoded.angles - original.angles).max() <= ANGLE_TOL
    assert np.abs(torus_difference(decoded.frac_coords, original.frac_coords)).max() <= COORD_TOL


def rock_salt(**changes: object) -> Crystal:
    crystal = Crystal(
        atomic_numbers=[11, 17],
        frac_coords=[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
        lengths=[3.99, 3.99, 3.99],
        angles=[60.0, 60.0, 60.0],
    )
    return crystal.replace(**changes)


def test_format_is_the_crystal_llm_format() -> None:
    crystal = rock_salt(
        lengths=[4.04, 5.96, 18.4255], angles=[89.9999, 90.4, 119.99999121]
    ).replace(frac_coords=[[0.333333, 0.666667, 0.18295], [0.9961, 0.004, 0.5]])
    assert encode(crystal) == "4.0 6.0 18.4\n90 90 120\nNa\n0.33 0.67 0.18\nCl\n0.00 0.00 0.50"


def test_angles_are_rounded_not_truncated() -> None:
    # int() would give 59 and 119, outside the bijection interval (59.9, 120.1).
    text = encode(rock_salt(angles=[59.99, 119.99999, 90.7]))
    assert text.split("\n")[1] == "60 120 91"
    assert decode(text).angles.tolist() == [60.0, 120.0, 91.0]


def test_coordinates_near_one_are_written_as_zero_and_one_is_read_as_zero() -> None:
    text = encode(rock_salt(frac_coords=[[0.995, 0.9999, 0.994], [0.5, 0.5, 0.5]]))
    assert text.split("\n")[3] == "0.00 0.00 0.99"
    assert "1.00" not in text
    crystal = decode("4.0 4.0 4.0\n60 60 60\nNa\n1.00 1 0.5")
    assert crystal.frac_coords.tolist() == [[0.0, 0.0, 0.5]]


def test_round_trip_on_mp20_subset(mp20_subset: list[Crystal]) -> None:
    for crystal in mp20_subset:
        assert_round_trip(crystal, decode(encode(crystal)))


@pytest.mark.slow
def test_round_trip_on_all_of_mp20_test(mp20_test_all: list[Crystal]) -> None:
    assert len(mp20_test_all) == 9046
    for crystal in mp20_test_all:
        assert_round_trip(crystal, decode(encode(crystal)))


def test_decode_tolerates_blank_lines_and_extra_whitespace() -> None:
    text = "\n  4.0  4.0\t4.0 \r\n60 60 60\n\nNa\n0.1 0.2 0.3\n\n"
    crystal = decode(text)
    assert crystal.elements == ["Na"]
    assert crystal.frac_coords.tolist() == [[0.1, 0.2, 0.3]]


def test_translation_keeps_the_crystal_up_to_a_global_shift(mp20_subset: list[Crystal]) -> None:
    rng = np.random.default_rng(1)
    for crystal in mp20_subset[:40]:
        shifted = decode(encode(crystal, translate=True, rng=rng))
        assert shifted.atomic_numbers.tolist() == crystal.atomic_numbers.tolist()
        assert np.abs(shifted.lengths - crystal.lengths).max() <= LENGTH_TOL
        shift = torus_difference(shifted.frac_coords, crystal.frac_coords)  # (n, 3)
        # One shift for all atoms, up to the rounding of both texts' coordinates.
        assert np.abs(torus_difference(shift, shift[:1])).max() <= 2 * COORD_TOL
    texts = {encode(mp20_subset[0], translate=True, rng=rng) for _ in range(5)}
    assert len(texts) == 5  # a new shift on every call


def atom_lines(text: str) -> list[tuple[str, str]]:
    lines = text.split("\n")
    return list(zip(lines[2::2], lines[3::2], strict=True))


def test_permutation_reorders_atoms_only(mp20_subset: list[Crystal]) -> None:
    rng = np.random.default_rng(2)
    for crystal in mp20_subset[:40]:
        plain, permuted = encode(crystal), encode(crystal, permute=True, rng=rng)
        assert permuted.split("\n")[:2] == plain.split("\n")[:2]
        assert sorted(atom_lines(permuted)) == sorted(atom_lines(plain))
    big = max(mp20_subset, key=lambda c: c.num_atoms)
    assert encode(big, permute=True, rng=3) != encode(big)


def test_augmentations_are_reproducible_with_a_seed(mp20_subset: list[Crystal]) -> None:
    crystal = mp20_subset[5]
    first = encode(crystal, translate=True, permute=True, rng=7)
    assert encode(crystal, translate=True, permute=True, rng=7) == first


GOOD_LATTICE = "4.0 4.0 4.0\n90 90 90\n"
REASON_EXAMPLES = {
    "empty": [" \n\t\n"],
    "too_few_lines": ["4.0 4.0 4.0\n90 90 90"],
    "too_many_atoms": [GOOD_LATTICE + "H\n0.1 0.1 0.1\n" * 65],
    "wrong_number_of_values": [
        "4.0 4.0\n90 90 90\nH\n0.1 0.1 0.1",
        GOOD_LATTICE + "H\n0.1 0.1",
        GOOD_LATTICE + "H H\n0.1 0.1 0.1",
    ],
    "bad_number": [
        "4.0 4,0 4.0\n90 90 90\nH\n0.1 0.1 0.1",
        GOOD_LATTICE + "H\n0.1 nan 0.1",
        GOOD_LATTICE + "H\n0.1 1e-1 0.1",
        "4.0 4.0 " + "9" * 400 + "\n90 90 90\nH\n0.1 0.1 0.1",
    ],
    "unknown_element": [GOOD_LATTICE + "Xx\n0.1 0.1 0.1", GOOD_LATTICE + "[MASK]\n0.1 0.1 0.1"],
    "dangling_element_line": [GOOD_LATTICE + "H\n0.1 0.1 0.1\nO"],
    "non_positive_length": ["0.0 4.0 4.0\n90 90 90\nH\n0.1 0.1 0.1"],
    "length_too_large": [f"{MAX_LENGTH + 0.1} 4.0 4.0\n90 90 90\nH\n0.1 0.1 0.1"],
    "angle_out_of_range": [
        "4.0 4.0 4.0\n59 90 90\nH\n0.1 0.1 0.1",
        "4.0 4.0 4.0\n90 90 121\nH\n0.1 0.1 0.1",
    ],
    "coordinate_out_of_range": [GOOD_LATTICE + "H\n0.1 1.01 0.1", GOOD_LATTICE + "H\n-0.1 0 0"],
    "degenerate_cell": [
        "4.0 4.0 4.0\n60 60 120\nH\n0.1 0.1 0.1",  # alpha + beta = gamma: a flat cell
        "0.1 0.1 0.1\n90 90 90\nH\n0.1 0.1 0.1",  # 0.001 Å^3
    ],
}


def test_every_reason_has_an_example() -> None:
    assert set(REASON_EXAMPLES) == set(PARSE_ERROR_REASONS)


@pytest.mark.parametrize(
    ("reason", "text"),
    [(reason, text) for reason, texts in REASON_EXAMPLES.items() for text in texts],
)
def test_each_reason_is_raised(reason: str, text: str) -> None:
    with pytest.raises(ParseError) as caught:
        decode(text)
    assert caught.value.reason == reason


def test_parse_error_carries_line_and_pickles() -> None:
    with pytest.raises(ParseError) as caught:
        decode("\n" + GOOD_LATTICE + "H\n0.1 0.1 0.1\nQq\n0.1 0.1 0.1")
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.reason, error.line) == ("unknown_element", 6)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.line, str(copy)) == (error.reason, error.line, str(error))


def test_options_widen_what_decode_accepts() -> None:
    many = GOOD_LATTICE + "H\n0.1 0.1 0.1\n" * 65
    assert decode(many, max_atoms=None).num_atoms == 65
    wide = "4.0 4.0 4.0\n45 100 130\nH\n0.1 0.1 0.1"
    assert decode(wide, angle_range=(0.0, 180.0)).angles.tolist() == [45.0, 100.0, 130.0]


def test_decode_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        decode(b"4.0 4.0 4.0\n90 90 90\nH\n0.1 0.1 0.1")  # type: ignore[arg-type]


def test_every_element_survives_the_round_trip() -> None:
    symbols = element_symbols()
    assert len(set(symbols)) == 118
    for z, symbol in enumerate(symbols, start=1):
        crystal = rock_salt(atomic_numbers=[z, 1])
        assert encode(crystal).split("\n")[2] == symbol
        assert decode(encode(crystal)).atomic_numbers.tolist() == [z, 1]
