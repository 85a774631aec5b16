"""load_dataset on the real CSV layouts: MP-20 (with and without index column), Perov-5,
Carbon-24, and Niggli reduction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from flowllm_kit.crystal import Crystal
from flowllm_kit.data import load_dataset, load_dataset_report
from flowllm_kit.data.table import read_table

MP20_PROPERTIES = {"formation_energy_per_atom", "band_gap", "e_above_hull", "spacegroup", "formula"}


def assert_same_crystals(left: list[Crystal], right: list[Crystal]) -> None:
    """Exactly equal arrays, ids and properties, crystal by crystal."""
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.id == b.id
        assert dict(a.properties) == dict(b.properties)
        np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
        np.testing.assert_array_equal(a.lengths, b.lengths)
        np.testing.assert_array_equal(a.angles, b.angles)


def test_mp20_subset_train_loads_with_properties(data_root: Path) -> None:
    result = load_dataset_report("mp_20_subset", "train", root=data_root, progress=False)
    assert result.num_rows == 847
    assert len(result.crystals) == 847 - len(result.skipped)
    assert len(result.crystals) > 800
    for crystal in result.crystals:
        assert crystal.id is not None and crystal.id.startswith(("mp-", "mvc-"))
        assert set(crystal.properties) >= MP20_PROPERTIES
        assert "elements" not in crystal.properties  # a serialized list, not a scalar
        assert isinstance(crystal.properties["spacegroup"], int)
        assert 1 <= crystal.num_atoms <= 20
        # Niggli: a <= b <= c; pymatgen's reduction leaves near-ties (e.g. mp-1217084's a, b
        # differ by 2e-4 Å) in either order, so the order is checked to 0.1 %.
        assert np.all(crystal.lengths[:-1] <= crystal.lengths[1:] * 1.001)
    first = result.crystals[0]
    assert first.id == "mp-3507"
    assert first.properties["formula"] == "Lu(SiPd)2"
    assert first.properties["spacegroup"] == 139


def test_mp20_layout_without_index_column(mp20_head: pd.DataFrame, write_csv: Callable) -> None:
    plain = write_csv(mp20_head, "plain/mp_20/test.csv", index=False)
    indexed = write_csv(mp20_head, "indexed/mp_20/test.csv", index=True)
    assert not read_table(plain).has_index_column
    assert read_table(indexed).has_index_column

    from_plain = load_dataset("mp_20", "test", root=plain.parents[1], progress=False)
    from_indexed = load_dataset("mp_20", "test", root=indexed.parents[1], progress=False)

    assert [c.id for c in from_plain] == mp20_head["material_id"].tolist()
    assert_same_crystals(from_plain, from_indexed)
    first = from_plain[0]
    assert first.properties["formation_energy_per_atom"] == pytest.approx(
        mp20_head["formation_energy_per_atom"][0]
    )
    assert first.properties["spacegroup"] == mp20_head["spacegroup.number"][0]
    assert first.properties["formula"] == mp20_head["pretty_formula"][0]


def test_perov5_test_rows_load(data_root: Path, write_csv: Callable) -> None:
    head = pd.read_csv(data_root / "perov_5" / "test.csv", index_col=0, nrows=40)
    folder = write_csv(head, "perov_5/test.csv", index=True).parent
    crystals = load_dataset(str(folder), "test", progress=False, workers=1)
    assert len(crystals) == 40
    for crystal in crystals:
        assert crystal.num_atoms == 5
        assert set(crystal.properties) == {"formula", "heat_all", "heat_ref", "dir_gap", "ind_gap"}
    assert crystals[0].id == str(head["material_id"].iloc[0])  # numeric ids become text


def test_carbon24_rows_load_from_a_csv_path(data_root: Path, write_csv: Callable) -> None:
    head = pd.read_csv(data_root / "carbon_24" / "test.csv", index_col=0, nrows=20)
    path = write_csv(head, "anything/carbon.csv", index=True)
    crystals = load_dataset(path, "ignored", progress=False, workers=1)
    assert [c.id for c in crystals] == head["material_id"].tolist()
    assert all(set(c.properties) == {"energy_per_atom"} for c in crystals)
    assert all(set(c.atomic_numbers.tolist()) == {6} for c in crystals)


def test_one_worker_and_two_workers_agree(mp20_head: pd.DataFrame, write_csv: Callable) -> None:
    rows = pd.concat([mp20_head, mp20_head], ignore_index=True)  # 40 rows: 3 chunks
    folder = write_csv(rows, "mp/val.csv").parent
    serial = load_dataset(str(folder), "val", workers=1, progress=False, use_cache=False)
    parallel = load_dataset(str(folder), "val", workers=2, progress=False, use_cache=False)
    assert_same_crystals(serial, parallel)


def _cif_row(structure: Structure, material_id: str) -> dict[str, object]:
    return {"material_id": material_id, "cif": str(CifWriter(structure)), "energy": 1.0}


@pytest.mark.parametrize(
    "basis",
    [
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[1, 1, 0], [0, 1, 0], [0, 0, 1]],
        [[1, 2, 1], [0, 1, 3], [0, 0, 1]],
        [[2, 1, 0], [1, 1, 0], [1, 1, 1]],
    ],
    ids=["reduced", "sheared", "very-sheared", "skewed"],
)
def test_niggli_reduction_is_applied(basis: list[list[int]], write_csv: Callable) -> None:
    """Any basis of the same lattice (a unimodular change of basis) loads as the same cell."""
    assert round(abs(np.linalg.det(basis))) == 1
    reference = Structure(
        Lattice.from_parameters(3.1, 4.2, 5.3, 90, 95, 90), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]
    )
    skewed = Structure(
        Lattice(np.array(basis) @ reference.lattice.matrix),
        reference.species,
        reference.cart_coords,
        coords_are_cartesian=True,
    )
    folder = write_csv(pd.DataFrame([_cif_row(skewed, "x")]), "cells/val.csv").parent
    (crystal,) = load_dataset(str(folder), "val", progress=False, workers=1)

    niggli = reference.lattice.get_niggli_reduced_lattice()
    np.testing.assert_allclose(crystal.lengths, niggli.abc, atol=1e-5)
    np.testing.assert_allclose(crystal.angles, niggli.angles, atol=1e-4)
    assert crystal.volume == pytest.approx(reference.volume, rel=1e-6)
    assert np.all(np.diff(crystal.lengths) > -1e-4)
