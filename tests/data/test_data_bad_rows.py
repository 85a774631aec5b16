"""Rows that give no usable crystal are skipped, counted, reported, and warned about once."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from flowllm_kit.data import SkippedRowsWarning, load_dataset, load_dataset_report


def _cif(structure: Structure) -> str:
    return str(CifWriter(structure))


def _cubic(length: float, species: list, coords: list) -> Structure:
    return Structure(Lattice.cubic(length), species, coords)


@pytest.fixture
def bad_rows_csv(mp20_head: pd.DataFrame, write_csv: Callable) -> tuple:
    """Three good MP-20 rows followed by one row of each kind of damage."""
    good = mp20_head.iloc[:3]
    flat = re.sub(r"(_cell_angle_\w+)\s+\S+", r"\1   120.0", good["cif"].iloc[0])
    bad_cifs = {
        "bad-text": "this is not a CIF",
        "bad-empty": "",
        "bad-flat": flat,  # alpha = beta = gamma = 120 degrees: zero volume
        "bad-tiny": _cif(_cubic(0.7, ["H"], [[0, 0, 0]])),
        "bad-close": _cif(_cubic(4.0, ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])),
        "bad-image": _cif(Structure(Lattice.orthorhombic(0.4, 5, 5), ["C"], [[0, 0, 0]])),
        "bad-mixed": _cif(_cubic(4.0, [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3])),
    }
    bad = pd.DataFrame({"material_id": list(bad_cifs), "cif": list(bad_cifs.values())})
    frame = pd.concat([good, bad], ignore_index=True)
    return write_csv(frame, "damaged/val.csv"), list(good["material_id"]), bad_cifs


EXPECTED_REASONS = {
    "bad-text": "unparsable",
    "bad-empty": "unparsable",
    "bad-flat": "volume",
    "bad-tiny": "volume",
    "bad-close": "overlapping atoms",
    "bad-image": "periodic image",
    "bad-mixed": "disordered",
}


def test_bad_rows_are_skipped_counted_and_warned(bad_rows_csv: tuple) -> None:
    path, good_ids, bad_cifs = bad_rows_csv
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load_dataset_report(path.parent, "val", progress=False, workers=1)
    ours = [w for w in caught if issubclass(w.category, SkippedRowsWarning)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert "skipped 7 of 10 rows" in message
    assert "bad-text" in message and "bad-empty" in message  # a few ids, with reasons
    assert ours[0].filename == __file__  # points at the caller, not at the kit

    assert [c.id for c in result.crystals] == good_ids
    assert [entry.row for entry in result.skipped] == list(range(3, 10))
    for entry in result.skipped:
        assert EXPECTED_REASONS[entry.id] in entry.reason, entry


def test_cached_load_reports_the_same_skips(bad_rows_csv: tuple) -> None:
    path, good_ids, _ = bad_rows_csv
    with pytest.warns(SkippedRowsWarning):
        fresh = load_dataset_report(path, "val", progress=False, workers=1)
    with pytest.warns(SkippedRowsWarning, match="skipped 7 of 10"):
        cached = load_dataset_report(path, "val", progress=False)
    assert cached.from_cache
    assert cached.skipped == fresh.skipped
    assert [c.id for c in cached.crystals] == good_ids


def test_clean_file_gives_no_warning(mp20_head: pd.DataFrame, write_csv: Callable) -> None:
    path = write_csv(mp20_head.iloc[:5], "clean/val.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedRowsWarning)
        crystals = load_dataset(path, "val", progress=False, workers=1)
    assert len(crystals) == 5
    assert all(np.isfinite(c.volume) and c.volume > 1 for c in crystals)
