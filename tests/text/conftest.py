"""Real crystals for the text tests, parsed from the mp_20 test CSV here (nothing cached).

The CSV holds raw CIFs; like the kit's loader, the crystals are Niggli-reduced, so every
angle lies in [60°, 120°] and survives the codec's angle check.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Structure

from flowllm_kit.crystal import Crystal

SUBSET_SIZE = 120


def read_mp20_test(data_root: Path, *, limit: int | None = None) -> list[Crystal]:
    """Niggli-reduced crystals of mp_20 test, with the properties the prompts use."""
    table = pd.read_csv(data_root / "mp_20" / "test.csv", nrows=limit)
    crystals = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's "rounded to ideal values" notes
        for row in table.to_dict("records"):
            structure = Structure.from_str(row["cif"], fmt="cif").get_reduced_structure()
            crystals.append(
                Crystal.from_structure(
                    structure,
                    id=row["material_id"],
                    formula=row["pretty_formula"],
                    spacegroup=int(row["spacegroup.number"]),
                    formation_energy_per_atom=row["formation_energy_per_atom"],
                    band_gap=row["band_gap"],
                    e_above_hull=row["e_above_hull"],
                )
            )
    return crystals


@pytest.fixture(scope="session")
def mp20_subset(data_root: Path) -> list[Crystal]:
    """The first crystals of mp_20 test (fast)."""
    return read_mp20_test(data_root, limit=SUBSET_SIZE)


@pytest.fixture(scope="session")
def mp20_test_all(data_root: Path) -> list[Crystal]:
    """All 9,046 crystals of mp_20 test (about half a minute to parse on 2 cores)."""
    return read_mp20_test(data_root)
