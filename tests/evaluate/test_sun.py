from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from flowllm_kit.crystal import Crystal
from flowllm_kit.evaluate import DEFAULT_MATCHER, MatcherSettings, novelty, sun, uniqueness


def _perturbed(structure: Structure, sigma: float = 0.05, seed: int = 0) -> Structure:
    """A copy with every atom moved by Gaussian noise of ``sigma`` Å and the cell strained 1%."""
    rng = np.random.default_rng(seed)
    cart = structure.cart_coords + rng.normal(0, sigma, (len(structure), 3))
    copy = Structure(structure.lattice, structure.species, cart, coords_are_cartesian=True)
    copy.apply_strain(0.01)
    return copy


def _cesium_chloride_type_nacl() -> Structure:
    return Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def test_crystals(mp20_subset_test):
    return mp20_subset_test[1][:12]


def test_perturbed_copy_matches_and_polymorph_does_not(test_crystals, rock_salt):
    crystal = test_crystals[3]
    assert novelty([_perturbed(crystal)], [crystal]) == [False]
    # same composition, different structure
    assert novelty([_cesium_chloride_type_nacl()], [rock_salt()]) == [True]
    assert novelty([rock_salt(a=5.0)], [rock_salt()]) == [False]  # volumes are rescaled


def test_mp20_polymorphs_of_one_formula_do_not_match(data_root, read_structures):
    frame, structures = read_structures(data_root / "mp_20" / "test.csv", n=200)
    pair = [structures[i] for i in frame.index[frame["pretty_formula"] == "Li2MnCoO4"]]
    assert len(pair) == 2
    assert uniqueness(pair) == [True, True]


def test_duplicates_are_counted_once(test_crystals):
    a, b = test_crystals[0], test_crystals[1]
    supercell = a.copy()
    supercell.make_supercell([2, 1, 1])
    structures = [a, _perturbed(a, seed=1), b, supercell, Crystal.from_structure(b)]
    assert uniqueness(structures) == [True, False, True, False, False]


def test_all_distinct_test_crystals_are_unique_and_not_novel_against_themselves(test_crystals):
    assert all(uniqueness(test_crystals))
    assert not any(novelty(test_crystals, test_crystals))
    shuffled = [_perturbed(s, sigma=0.02, seed=i) for i, s in enumerate(test_crystals)]
    assert novelty(shuffled, test_crystals[::-1]) == [False] * len(test_crystals)


def test_tolerances_are_parameters(rock_salt):
    # a perturbed primitive cell: a perturbed conventional cell no longer reduces to it
    primitive = rock_salt().get_primitive_structure()
    moved = _perturbed(primitive, sigma=0.1, seed=2)
    strict = MatcherSettings(stol=0.01, ltol=0.001, angle_tol=0.1)
    assert novelty([moved], [primitive], settings=strict) == [True]
    assert novelty([moved], [primitive], settings=DEFAULT_MATCHER) == [False]
    assert DEFAULT_MATCHER.as_dict()["stol"] == 0.3


def test_sun_combines_flags():
    assert sun([True, True, False], [True, False, True], [True, True, True]) == [
        True,
        False,
        False,
    ]
    with pytest.raises(ValueError, match="lengths"):
        sun([True], [], [])


def test_composition_novelty_compares_reduced_formulas_with_the_training_set():
    from pymatgen.core import Lattice, Structure

    from flowllm_kit.crystal import Crystal
    from flowllm_kit.evaluate.families import uniqueness_novelty_family
    from flowllm_kit.evaluate.settings import ReportSettings

    def rock_salt(a: str, b: str, size: float) -> Structure:
        return Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(size), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]]
        )

    training = [Crystal.from_structure(rock_salt("Na", "Cl", 5.6)), rock_salt("Mg", "O", 4.2)]
    generated = [
        rock_salt("Na", "Cl", 6.5),  # a known composition in another cell
        rock_salt("K", "Cl", 6.3),  # new
        rock_salt("Mg", "O", 4.2) * (1, 1, 2),  # Mg2O2 reduces to a known MgO
        Structure(Lattice.cubic(4.0), ["Mg", "Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5]]),
    ]
    family = uniqueness_novelty_family(generated, training, ReportSettings(min_count=1), 1)
    assert family.columns["novel_composition"].tolist() == [False, True, False, True]
    estimate = family.metrics["novel composition %"]
    assert (estimate.k, estimate.n) == (2, 4) and estimate.value == 50.0


def test_a_cell_that_is_not_a_cell_is_neither_unique_nor_novel_and_breaks_nothing(rock_salt):
    # Angles summing past 360° (a sample of the demo's FlowMM-CSP): pymatgen makes a flat,
    # zero-volume lattice, and its cell reduction raised LinAlgError inside the matcher.
    flat = Crystal(
        atomic_numbers=np.array([11, 17]),
        frac_coords=np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]),
        lengths=np.array([6.69, 6.47, 6.52]),
        angles=np.array([126.1, 135.8, 103.0]),
    )
    assert flat.to_structure().volume < 1e-6
    salt = rock_salt()
    assert uniqueness([flat, salt, flat]) == [False, True, False]
    assert novelty([flat, salt], [rock_salt(a=5.0)]) == [False, False]
    assert novelty([flat, _cesium_chloride_type_nacl()], [salt]) == [False, True]
