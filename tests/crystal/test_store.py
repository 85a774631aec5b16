"""The one on-disk format for batches of crystals: round trips, and refusals that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.crystal.store import (
    CrystalFileError,
    PackedCrystals,
    read_crystal_file,
    write_crystal_file,
)


def _crystals() -> list[Crystal]:
    rng = np.random.default_rng(0)
    return [
        Crystal(
            atomic_numbers=rng.integers(1, 90, n),
            frac_coords=rng.random((n, 3)),
            lengths=rng.uniform(3, 8, 3),
            angles=rng.uniform(70, 110, 3),
        )
        for n in (1, 4, 2)
    ]


def test_crystals_round_trip_through_a_file(tmp_path) -> None:
    crystals = _crystals()
    path = write_crystal_file(
        tmp_path / "set.npz",
        "test set",
        {"a": PackedCrystals.from_crystals(crystals), "empty": PackedCrystals.from_crystals([])},
        arrays={"weights": np.arange(3.0)},
        meta={"note": "hello", "counts": {"x": 1}},
    )
    stored = read_crystal_file(path, "test set")
    back = stored.batches["a"].to_crystals(ids=["p", "q", "r"])
    assert [c.id for c in back] == ["p", "q", "r"]
    for a, b in zip(crystals, back, strict=True):
        np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)  # exact: float64 stored
        np.testing.assert_array_equal(a.lengths, b.lengths)
        np.testing.assert_array_equal(a.angles, b.angles)
    assert len(stored.batches["empty"]) == 0 and stored.batches["empty"].to_crystals() == []
    np.testing.assert_array_equal(stored.arrays["weights"], np.arange(3.0))
    assert stored.meta == {"note": "hello", "counts": {"x": 1}}
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_a_batch_keeps_its_dtypes(tmp_path) -> None:
    batch = CrystalBatch.from_crystals(_crystals()).to(dtype=torch.float32)
    write_crystal_file(tmp_path / "b.npz", "batch", {"start": PackedCrystals.from_batch(batch)})
    back = read_crystal_file(tmp_path / "b.npz", "batch").batches["start"].to_batch()
    for name in ("atomic_numbers", "frac_coords", "lengths", "angles", "num_atoms"):
        assert torch.equal(getattr(back, name), getattr(batch, name)), name


def test_files_of_another_kind_or_an_older_kit_are_refused_by_name(tmp_path) -> None:
    packed = {"a": PackedCrystals.from_crystals(_crystals())}
    write_crystal_file(tmp_path / "pairs.npz", "pair set", packed)
    with pytest.raises(CrystalFileError, match=r"pairs\.npz: expected a trajectory file"):
        read_crystal_file(tmp_path / "pairs.npz", "trajectory")
    np.savez(tmp_path / "old.npz", num_atoms=np.array([1]), atomic_numbers=np.array([3]))
    with pytest.raises(CrystalFileError, match=r"old\.npz: a pair set file written by an earlier"):
        read_crystal_file(tmp_path / "old.npz", "pair set")
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    with pytest.raises(CrystalFileError, match=r"broken\.npz: not a readable pair set file"):
        read_crystal_file(tmp_path / "broken.npz", "pair set")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_crystal_file(tmp_path / "missing.npz", "pair set")


def test_inconsistent_arrays_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"frac_coords has shape \(2, 3\), expected \(3, 3\)"):
        PackedCrystals(
            atomic_numbers=np.array([1, 2, 3]),
            frac_coords=np.zeros((2, 3)),
            lengths=np.ones((1, 3)),
            angles=np.full((1, 3), 90.0),
            num_atoms=np.array([3]),
        )
