"""Crystal and CrystalBatch: construction, immutability, conversions, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser

from flowllm_kit.crystal import Crystal, CrystalBatch, write_cif


def random_crystal(
    rng: np.random.Generator, *, max_atoms: int = 8, id: str | None = None
) -> Crystal:
    n = int(rng.integers(1, max_atoms + 1))
    return Crystal(
        atomic_numbers=rng.integers(1, 84, size=n),
        frac_coords=rng.random((n, 3)),
        lengths=rng.uniform(3.0, 9.0, size=3),
        angles=rng.uniform(70.0, 110.0, size=3),
        id=id,
    )


@pytest.fixture
def rock_salt() -> Crystal:
    return Crystal(
        atomic_numbers=[11, 17],
        frac_coords=[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
        lengths=[3.99, 3.99, 3.99],
        angles=[60.0, 60.0, 60.0],
        id="NaCl",
        properties={"band_gap": 5.0},
    )


def test_crystal_is_immutable_and_copies_inputs(rock_salt: Crystal) -> None:
    coords = np.array([[0.1, 0.2, 0.3]])
    crystal = Crystal(atomic_numbers=[8], frac_coords=coords, lengths=[3, 3, 3], angles=[90] * 3)
    coords[0, 0] = 0.9
    assert crystal.frac_coords[0, 0] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        crystal.frac_coords[0, 0] = 0.5
    with pytest.raises(AttributeError):
        crystal.id = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rock_salt.properties["band_gap"] = 1.0  # type: ignore[index]


def test_crystal_wraps_coordinates_and_replace_returns_new() -> None:
    crystal = Crystal(
        atomic_numbers=[8], frac_coords=[[1.25, -0.25, -1e-18]], lengths=[3] * 3, angles=[90] * 3
    )
    assert np.all((crystal.frac_coords >= 0) & (crystal.frac_coords < 1))
    np.testing.assert_allclose(crystal.frac_coords, [[0.25, 0.75, 0.0]])
    moved = crystal.replace(frac_coords=[[0.5, 0.5, 0.5]])
    assert moved is not crystal and crystal.frac_coords[0, 0] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"atomic_numbers": []}, "at least one atom"),
        ({"atomic_numbers": [0]}, "1..118"),
        ({"frac_coords": [[0.0, 0.0]]}, "frac_coords"),
        ({"lengths": [1.0, 2.0]}, "lengths"),
        ({"angles": [90.0, np.nan, 90.0]}, "finite"),
    ],
)
def test_crystal_rejects_bad_input_with_named_field(kwargs: dict, message: str) -> None:
    fields = {
        "atomic_numbers": [8],
        "frac_coords": [[0, 0, 0]],
        "lengths": [3] * 3,
        "angles": [90] * 3,
    }
    fields.update(kwargs)
    if kwargs.get("atomic_numbers") == []:
        fields["frac_coords"] = np.zeros((0, 3))
    with pytest.raises(ValueError, match=message):
        Crystal(**fields)


def test_derived_quantities(rock_salt: Crystal) -> None:
    assert rock_salt.formula == "NaCl"
    assert rock_salt.composition == {"Na": 1, "Cl": 1}
    # Rhombohedral cell with alpha=60: V = a^3 * sqrt(1 - 3cos^2 + 2cos^3) = a^3 / sqrt(2).
    assert rock_salt.volume == pytest.approx(3.99**3 / np.sqrt(2))
    np.testing.assert_allclose(
        rock_salt.cart_coords, rock_salt.frac_coords @ rock_salt.lattice_matrix
    )


def test_structure_round_trip_matches() -> None:
    rng = np.random.default_rng(1)
    matcher = StructureMatcher()
    for _ in range(10):
        crystal = random_crystal(rng)
        structure = crystal.to_structure()
        back = Crystal.from_structure(structure, id="x")
        np.testing.assert_allclose(back.lengths, crystal.lengths)
        np.testing.assert_allclose(back.angles, crystal.angles)
        np.testing.assert_allclose(back.frac_coords, crystal.frac_coords, atol=1e-12)
        assert matcher.fit(structure, back.to_structure())


def test_structure_with_rotated_lattice_round_trips_up_to_symmetry() -> None:
    # A structure whose lattice matrix is not in pymatgen's from_parameters orientation.
    lattice = Lattice([[0.0, 4.1, 0.0], [3.2, 0.0, 0.0], [0.5, 0.3, 5.0]])
    structure = Structure(lattice, ["Si", "O", "O"], [[0, 0, 0], [0.3, 0.2, 0.1], [0.7, 0.6, 0.5]])
    back = Crystal.from_structure(structure).to_structure()
    assert StructureMatcher().fit(structure, back)
    assert back.volume == pytest.approx(structure.volume)


def test_disordered_structure_is_rejected() -> None:
    structure = Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(ValueError, match="disordered"):
        Crystal.from_structure(structure)


def test_ase_round_trip(rock_salt: Crystal) -> None:
    atoms = rock_salt.to_ase()
    assert atoms.get_volume() == pytest.approx(rock_salt.volume)
    back = Crystal.from_ase(atoms)
    np.testing.assert_allclose(back.lengths, rock_salt.lengths)
    np.testing.assert_allclose(back.angles, rock_salt.angles)
    np.testing.assert_allclose(back.frac_coords, rock_salt.frac_coords, atol=1e-12)
    assert back.atomic_numbers.tolist() == [11, 17]


def test_write_cif_of_many_crystals(tmp_path, rock_salt: Crystal) -> None:
    rng = np.random.default_rng(2)
    crystals = [rock_salt, random_crystal(rng, id="random-1"), random_crystal(rng)]
    path = write_cif(crystals, tmp_path / "out" / "crystals.cif")
    text = path.read_text()
    assert "data_NaCl" in text and "data_random-1" in text and "data_crystal_2" in text
    structures = CifParser(path).parse_structures(primitive=False)
    assert len(structures) == 3
    matcher = StructureMatcher()
    for crystal, structure in zip(crystals, structures, strict=True):
        assert matcher.fit(crystal.to_structure(), structure)


def test_batch_round_trip_and_indexing() -> None:
    rng = np.random.default_rng(3)
    crystals = [random_crystal(rng, id=f"c{i}") for i in range(5)]
    batch = CrystalBatch.from_crystals(crystals, dtype=torch.float64)
    assert batch.num_crystals == 5 and len(batch) == 5
    assert batch.atomic_numbers.shape[0] == sum(c.num_atoms for c in crystals)
    assert batch.batch_index.tolist() == [
        i for i, c in enumerate(crystals) for _ in range(c.num_atoms)
    ]
    assert batch.offsets[-1] == batch.atomic_numbers.shape[0]
    for crystal, back in zip(crystals, batch.to_crystals(), strict=True):
        assert back.id == crystal.id
        np.testing.assert_array_equal(back.atomic_numbers, crystal.atomic_numbers)
        np.testing.assert_allclose(back.frac_coords, crystal.frac_coords)
        np.testing.assert_allclose(back.lengths, crystal.lengths)
    sub = batch[[3, 1]]
    assert sub.ids == ("c3", "c1")
    np.testing.assert_allclose(sub.to_crystals()[0].frac_coords, crystals[3].frac_coords)
    mask = torch.tensor([True, False, True, False, False])
    assert batch[mask].ids == ("c0", "c2")
    # The lattice matrix agrees with pymatgen's for every crystal.
    for matrix, crystal in zip(batch.lattice_matrix, crystals, strict=True):
        np.testing.assert_allclose(
            matrix.numpy(), crystal.to_structure().lattice.matrix, atol=1e-10
        )


def test_batch_replace_recomputes_and_validates() -> None:
    rng = np.random.default_rng(4)
    batch = CrystalBatch.from_crystals([random_crystal(rng) for _ in range(3)])
    moved = batch.replace(frac_coords=torch.zeros_like(batch.frac_coords))
    assert torch.all(moved.frac_coords == 0) and not torch.all(batch.frac_coords == 0)
    with pytest.raises(ValueError, match="frac_coords"):
        batch.replace(frac_coords=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="num_atoms"):
        batch.replace(num_atoms=batch.num_atoms + 1)
    with pytest.raises(ValueError, match="empty"):
        CrystalBatch.from_crystals([])
    assert batch.to("cpu", torch.float64).frac_coords.dtype == torch.float64
