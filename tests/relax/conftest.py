"""Fixtures for the relaxation tests: perturbed MP-20 test crystals and one shared CHGNet."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Structure

from flowllm_kit.relax import CHGNetModel, load_chgnet, perturb_structure


@pytest.fixture(scope="session")
def mp20_perturbed(data_root: Path) -> list[Structure]:
    """Three small MP-20 test crystals (2 to 8 atoms), perturbed."""
    frame = pd.read_csv(data_root / "mp_20" / "test.csv", nrows=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CIF rounding notices
        structures = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    small = [s for s in structures if len(s) <= 8][:3]
    return [perturb_structure(s, seed=i) for i, s in enumerate(small)]


@pytest.fixture
def chgnet() -> CHGNetModel:
    """CHGNet from the wheel's weights (loaded once), on CPU, in a fresh wrapper: counters at 0."""
    return CHGNetModel(load_chgnet("0.3.0", "cpu"), device="cpu")
