"""Crystals as JSON lines: round trip, append, and recovery from a cut-off last line."""

from __future__ import annotations

import numpy as np
import pytest

from flowllm_kit.crystal import Crystal, read_crystals, write_crystals
from flowllm_kit.crystal.io import append_jsonl, read_jsonl


def _crystals(count: int) -> list[Crystal]:
    rng = np.random.default_rng(0)
    return [
        Crystal(
            atomic_numbers=rng.integers(1, 90, size=i + 1),
            frac_coords=rng.random((i + 1, 3)),
            lengths=rng.uniform(3, 8, 3),
            angles=rng.uniform(70, 110, 3),
            id=f"c{i}" if i % 2 else None,
            properties={"band_gap": float(i)} if i % 2 else {},
        )
        for i in range(count)
    ]


def test_round_trip_is_exact(tmp_path) -> None:
    crystals = _crystals(4)
    back = read_crystals(write_crystals(crystals, tmp_path / "a" / "c.jsonl"))
    assert len(back) == 4
    for original, copy in zip(crystals, back, strict=True):
        assert copy.id == original.id and dict(copy.properties) == dict(original.properties)
        np.testing.assert_array_equal(copy.frac_coords, original.frac_coords)
        np.testing.assert_array_equal(copy.lengths, original.lengths)
        np.testing.assert_array_equal(copy.atomic_numbers, original.atomic_numbers)


def test_append_and_overwrite(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    crystals = _crystals(3)
    write_crystals(crystals[:2], path)
    write_crystals(crystals[2:], path)
    assert len(read_crystals(path)) == 3
    write_crystals(crystals[:1], path, append=False)
    assert len(read_crystals(path)) == 1


def test_cut_off_last_line_is_dropped_and_repaired(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    write_crystals(_crystals(2), path)
    with path.open("a") as out:
        out.write('{"atomic_numbers": [1], "frac')  # interrupted mid-record
    assert len(read_crystals(path)) == 2
    assert path.read_text().endswith("\n")
    append_jsonl([{"note": "resumed"}], path)
    assert read_jsonl(path)[-1] == {"note": "resumed"}
    assert len(read_crystals(path)) == 2


def test_corrupt_complete_line_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"c\.jsonl:2"):
        read_jsonl(path)
