"""The parsed-dataset cache: a hit equals a fresh parse, and stale or broken entries miss."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowllm_kit.crystal import Crystal
from flowllm_kit.data import load_dataset, load_dataset_report
from flowllm_kit.data.cache import entry_path, file_sha256, pymatgen_version, read_parsed
from flowllm_kit.data.paths import parsed_cache_dir


def assert_same_crystals(left: list[Crystal], right: list[Crystal]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert (a.id, dict(a.properties)) == (b.id, dict(b.properties))
        for field in ("atomic_numbers", "frac_coords", "lengths", "angles"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_cache_hit_equals_fresh_parse(data_root: Path, isolated_environment: Path) -> None:
    first = load_dataset_report("mp_20_subset", "val", root=data_root, progress=False)
    second = load_dataset_report("mp_20_subset", "val", root=data_root, progress=False)
    uncached = load_dataset("mp_20_subset", "val", root=data_root, progress=False, use_cache=False)

    assert not first.from_cache and second.from_cache
    assert first.num_rows == second.num_rows == 123
    assert second.sha256 == "aa1908f49931664150ffa996b6a955f948f8622e482d4f61eec6f6e134fddda6"
    assert_same_crystals(first.crystals, second.crystals)
    assert_same_crystals(uncached, second.crystals)
    # The entry is a crystal file (plain arrays, readable without pickle).
    entry = entry_path(parsed_cache_dir(), second.sha256)
    assert entry.parent.parent == isolated_environment
    with np.load(entry, allow_pickle=False) as archive:
        assert archive["crystals.num_atoms"].sum() == archive["crystals.atomic_numbers"].shape[0]
        meta = json.loads(archive["meta"].tobytes())
    assert meta["kind"] == "parsed dataset" and meta["ids"] == [c.id for c in second.crystals]


def test_use_cache_false_writes_nothing(data_root: Path, isolated_environment: Path) -> None:
    load_dataset("mp_20_subset", "val", root=data_root, progress=False, use_cache=False)
    assert not (isolated_environment / "parsed").exists()


@pytest.mark.parametrize("damage", ["truncated", "not-a-zip", "other-settings", "other-pymatgen"])
def test_broken_entry_is_a_miss_and_is_rewritten(
    damage: str, data_root: Path, write_csv: Callable
) -> None:
    rows = pd.read_csv(data_root / "mp_20" / "test.csv", nrows=12)
    path = write_csv(rows, "small/test.csv")
    load_dataset(path, "test", progress=False)
    entry = entry_path(parsed_cache_dir(), file_sha256(path))
    good_bytes = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(good_bytes[: len(good_bytes) // 2])
    elif damage == "not-a-zip":
        entry.write_bytes(b"garbage")
    else:  # same arrays, metadata from another parser version or pymatgen
        with np.load(entry, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        meta = json.loads(arrays["meta"].tobytes())
        assert meta["pymatgen"] == pymatgen_version() != "unknown"
        if damage == "other-settings":
            meta["parser_version"] = -1
        else:
            meta["pymatgen"] = "pymatgen 2020.1.1"
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez(entry.with_suffix(".tmp.npz"), **arrays)
        entry.with_suffix(".tmp.npz").replace(entry)

    result = load_dataset_report(path, "test", progress=False)
    assert not result.from_cache
    assert len(result.crystals) == 12
    assert read_parsed(entry, csv_sha256=file_sha256(path)) is not None  # rewritten, whole


def test_edited_csv_gets_a_new_entry(data_root: Path, write_csv: Callable) -> None:
    rows = pd.read_csv(data_root / "mp_20" / "test.csv", nrows=6)
    path = write_csv(rows, "edit/test.csv")
    assert len(load_dataset(path, "test", progress=False)) == 6
    write_csv(rows.iloc[:4], "edit/test.csv")
    result = load_dataset_report(path, "test", progress=False)
    assert not result.from_cache
    assert len(result.crystals) == 4
    assert len(list(parsed_cache_dir().glob("*.npz"))) == 2
    assert not list(parsed_cache_dir().glob("*.part"))
