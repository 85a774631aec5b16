from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import smact
from pymatgen.core import Lattice, Structure

from flowllm_kit.crystal import Crystal
from flowllm_kit.evaluate import (
    composition_status,
    compositional_validity,
    smact_status,
    structural_validity,
)


def box(species: list[str], cart: list[list[float]], length: float = 10.0) -> Structure:
    """Atoms at Cartesian positions in a cubic box."""
    return Structure(Lattice.cubic(length), species, cart, coords_are_cartesian=True)


# --- structural ---------------------------------------------------------------------------
def test_two_atoms_too_close_are_invalid():
    assert structural_validity([box(["H", "H"], [[1, 1, 1], [1.3, 1, 1]])]) == [False]
    assert structural_validity([box(["H", "H"], [[1, 1, 1], [1.6, 1, 1]])]) == [True]


def test_close_pair_across_the_boundary_is_found():
    near_edge = Structure(Lattice.cubic(10.0), ["O", "O"], [[0.01, 0.5, 0.5], [0.99, 0.5, 0.5]])
    assert structural_validity([near_edge]) == [False]


def test_atom_too_close_to_its_own_image_is_invalid():
    thin = Structure(Lattice.orthorhombic(0.4, 10, 10), ["Fe"], [[0, 0, 0]])
    assert thin.volume > 0.1
    assert structural_validity([thin]) == [False]


def test_tiny_volume_is_invalid():
    tiny = Structure(Lattice.cubic(0.4), ["Fe"], [[0, 0, 0]])
    assert structural_validity([tiny], cutoff=0.1) == [False]
    assert structural_validity([tiny], cutoff=0.1, min_volume=0.01) == [True]


def test_accepts_kit_crystals(rock_salt):
    crystal = Crystal.from_structure(rock_salt())
    assert structural_validity([crystal, rock_salt(a=0.9)]) == [True, False]


def _brute_force_min_distance(structure: Structure, reach: int = 4) -> float:
    """Smallest distance over all atom pairs and images in a (2*reach+1)^3 block of cells."""
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)))
    frac = structure.frac_coords
    best = np.inf
    for i, j in itertools.product(range(len(frac)), repeat=2):
        vectors = (frac[j] - frac[i] + shifts) @ structure.lattice.matrix
        d = np.linalg.norm(vectors, axis=1)
        if i == j:
            d = d[np.any(shifts != 0, axis=1)]
        best = min(best, d.min())
    return best


def test_agrees_with_brute_force_on_random_skewed_cells():
    rng = np.random.default_rng(0)
    structures = []
    for _ in range(40):
        # a random, often strongly skewed, cell of a few Å with a few atoms
        matrix = np.diag(rng.uniform(1.0, 3.0, 3)) + np.triu(rng.uniform(-2, 2, (3, 3)), 1)
        n = int(rng.integers(1, 5))
        structures.append(Structure(Lattice(matrix), ["C"] * n, rng.random((n, 3))))
    cutoff = 1.0
    expected = [_brute_force_min_distance(s) >= cutoff for s in structures]
    assert 5 < sum(expected) < 35  # both outcomes are exercised
    assert structural_validity(structures, cutoff=cutoff, min_volume=0.0) == expected


def test_validity_is_invariant_to_the_choice_of_cell(rock_salt):
    skew = np.array([[1, 3, 0], [0, 1, 2], [0, 0, 1]])  # unimodular: same lattice
    for structure in (rock_salt(a=5.64), rock_salt(a=1.3)):
        same = structure.copy()
        same.make_supercell(skew)
        assert structural_validity([structure]) == structural_validity([same])


def test_mp20_test_crystals_are_structurally_valid(mp20_subset_test):
    _, structures = mp20_subset_test
    assert all(structural_validity(structures))


# --- compositional ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("composition", "status"),
    [
        ({"Na": 1, "Cl": 1}, "valid"),
        ({"Na": 4, "Cl": 4}, "valid"),
        ({"Na": 1, "Cl": 2}, "invalid"),
        ({"Fe": 1, "Ni": 1}, "valid"),  # all-metal alloy
        ({"Si": 8}, "valid"),  # single element
        ({"Fe": 2, "O": 3}, "valid"),
        ({"Ne": 1, "O": 1}, "invalid"),  # Ne has no oxidation states
        ({"O": 1, "F": 2}, "valid"),  # O(+2) F(-1): F is the more electronegative
        ({"Na": 2, "Cl": 1}, "invalid"),  # only neutral as Na(-1) Cl(+2): fails Pauling
    ],
)
def test_smact_status_of_hand_checked_compositions(composition, status):
    assert smact_status(composition) == status


def test_blow_up_guard_gives_undetermined(rock_salt):
    many = {"Li": 1, "Mn": 1, "Fe": 1, "Co": 1, "O": 4, "S": 1}
    assert smact_status(many, max_combinations=100) == "undetermined"
    assert smact_status(many) == "valid"
    salt = rock_salt()
    assert composition_status([salt], max_combinations=1) == ["undetermined"]
    assert compositional_validity([salt], max_combinations=1) == [False]
    assert compositional_validity([salt], max_combinations=1, undetermined_as=True) == [True]


def _cdvae_loop(symbols: list[str], counts: list[int]) -> bool:
    """Plain-loop reading of CDVAE's smact_validity with SMACT 2 semantics."""
    elements = [smact.Element(s) for s in symbols]
    if len(symbols) == 1 or all(s in smact.metals for s in symbols):
        return True
    enegs = [e.pauling_eneg for e in elements]
    for ox in itertools.product(*[e.oxidation_states_smact14 for e in elements]):
        if sum(o * c for o, c in zip(ox, counts, strict=True)) != 0:
            continue
        ok = True
        for (o1, e1), (o2, e2) in itertools.combinations(zip(ox, enegs, strict=True), 2):
            if o1 * o2 < 0 and (e1 is None or e2 is None):
                break  # SMACT 2 raised TypeError here and CDVAE accepted
            if (o1 > 0 > o2 and e1 >= e2) or (o1 < 0 < o2 and e1 <= e2):
                ok = False
                break
        if ok:
            return True
    return False


def test_matches_a_plain_loop_on_mp20_compositions(mp20_subset_test):
    _, structures = mp20_subset_test
    statuses = composition_status(structures)
    expected = []
    for s in structures:
        comp = s.composition.reduced_composition
        items = sorted(comp.items(), key=lambda kv: kv[0].Z)
        expected.append(_cdvae_loop([e.symbol for e, _ in items], [int(n) for _, n in items]))
    assert [s == "valid" for s in statuses] == expected
    assert "undetermined" not in statuses
    assert 0.8 < np.mean(expected) < 0.97, Counter(statuses)
