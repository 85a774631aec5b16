"""Fixtures shared by the evaluation tests: small hand-made structures and MP-20 readers."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure


def _rock_salt(a: float = 5.64, cation: str = "Na", anion: str = "Cl") -> Structure:
    sites = [[0, 0, 0], [0.5, 0.5, 0.5]]
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], sites)


def _read_structures(csv: Path, n: int | None = None) -> tuple[pd.DataFrame, list[Structure]]:
    frame = pd.read_csv(csv, nrows=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    return frame, structures


@pytest.fixture(scope="session")
def rock_salt() -> Callable[..., Structure]:
    """``rock_salt(a=5.64, cation="Na", anion="Cl")``: a conventional rock-salt cell (8 atoms)."""
    return _rock_salt


@pytest.fixture(scope="session")
def read_structures() -> Callable[..., tuple[pd.DataFrame, list[Structure]]]:
    """``read_structures(csv, n=None)``: the first n rows of an MP-20 CSV and their structures."""
    return _read_structures


@pytest.fixture(scope="session")
def mp20_subset_test(data_root) -> tuple[pd.DataFrame, list[Structure]]:
    """All 142 rows of ``mp_20_subset/test.csv`` and their structures, parsed once."""
    return _read_structures(data_root / "mp_20_subset" / "test.csv")
