from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from flowllm_kit.crystal import Crystal
from flowllm_kit.evaluate import (
    densities,
    element_counts,
    nary_histogram,
    property_distances,
)

AVOGADRO = 6.02214076e23


def test_density_of_rock_salt_by_hand(rock_salt):
    # 4 formula units of NaCl (58.44 g/mol) in a (5.64 Å)^3 cell: about 2.17 g/cm^3
    expected = 4 * (22.98977 + 35.453) / AVOGADRO / (5.64e-8) ** 3
    assert densities([rock_salt(a=5.64)])[0] == pytest.approx(expected, rel=1e-4)


def _sorted_l1(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between two equal-size samples: mean gap between sorted values."""
    return float(np.mean(np.abs(np.sort(a) - np.sort(b))))


def test_wasserstein_matches_sorted_sample_formula(rock_salt):
    # rock salt at different lattice constants: densities scale as a^-3
    generated = [rock_salt(a=a) for a in (5.0, 5.5, 6.0)]
    reference = [rock_salt(a=a) for a in (5.2, 5.64, 7.0)]
    result = property_distances(generated, reference)
    expected = _sorted_l1(densities(generated), densities(reference))
    assert result.density == pytest.approx(expected)
    assert result.num_elements == 0.0
    assert (result.num_generated, result.num_reference) == (3, 3)


def test_element_count_distance_by_hand(rock_salt):
    unary = Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]])
    binary = rock_salt()
    ternary = Structure(
        Lattice.cubic(4.0), ["Sr", "Ti", "O", "O", "O"], np.random.default_rng(0).random((5, 3))
    )
    # generated {1, 1, 2} against reference {2, 3, 3}: sorted gaps 1, 2, 1 -> 4/3
    result = property_distances([unary, unary, binary], [binary, ternary, ternary])
    assert result.num_elements == pytest.approx(4 / 3)
    assert element_counts([unary, binary, ternary]).tolist() == [1, 2, 3]


def test_nary_histogram_and_crystal_input(rock_salt):
    structures = [rock_salt(), Crystal.from_structure(rock_salt()), rock_salt(cation="K")]
    histogram = nary_histogram(structures, max_arity=4)
    assert histogram == {1: 0, 2: 3, 3: 0, 4: 0}


def test_empty_side_is_not_computable(rock_salt):
    assert math.isnan(property_distances([], [rock_salt()]).density)


def test_mp20_subset_against_itself_is_zero_and_against_val_small(
    data_root, read_structures, mp20_subset_test
):
    _, test = mp20_subset_test
    _, val = read_structures(data_root / "mp_20_subset" / "val.csv")
    assert property_distances(test, test).density == 0.0
    between = property_distances(test, val)
    assert 0 < between.density < 1.0
    assert 0 <= between.num_elements < 0.5
