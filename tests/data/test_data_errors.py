"""Every loader error path: missing files name each place looked and the variable to set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from flowllm_kit.data import DatasetSpec, Source, load_dataset, locate_csv, registry
from flowllm_kit.data.parse import parse_cifs
from flowllm_kit.data.paths import DATA_ENV, candidate_paths
from flowllm_kit.data.table import read_table


def test_missing_dataset_names_every_place_and_the_variable(
    tmp_path: Path, isolated_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_a, env_b = tmp_path / "env_a", tmp_path / "env_b"
    monkeypatch.setenv(DATA_ENV, f"{env_a}:{env_b}")
    with pytest.raises(FileNotFoundError) as raised:
        load_dataset("no_such_set", "val", root=tmp_path / "explicit", progress=False)
    message = str(raised.value)
    for place in (tmp_path / "explicit", env_a, env_b, isolated_environment):
        assert str(place / "no_such_set" / "val.csv") in message
    assert DATA_ENV in message
    assert "not a registered dataset" in message


def test_lookup_order_root_then_environment_then_cache(
    tmp_path: Path, isolated_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert candidate_paths("mp_20", "val", tmp_path / "root") == [
        tmp_path / "root" / "mp_20" / "val.csv",
        tmp_path / "env" / "mp_20" / "val.csv",
        isolated_environment / "mp_20" / "val.csv",
    ]
    for folder in ("cache", "env", "root"):  # each later file shadows the earlier ones
        base = isolated_environment if folder == "cache" else tmp_path / folder
        (base / "mp_20").mkdir(parents=True)
        (base / "mp_20" / "val.csv").write_text("cif\n")
        assert locate_csv("mp_20", "val", tmp_path / "root") == base / "mp_20" / "val.csv"


def test_registered_dataset_that_cannot_be_downloaded(
    monkeypatch: pytest.MonkeyPatch, closed_port_url: str, isolated_environment: Path
) -> None:
    spec = DatasetSpec(name="offline_set", sources=(Source(f"{closed_port_url}/offline_set"),))
    monkeypatch.setitem(registry._registry, spec.name, spec)
    with pytest.raises(FileNotFoundError) as raised:
        load_dataset("offline_set", "test", progress=False)
    message = str(raised.value)
    assert str(isolated_environment / "offline_set" / "test.csv") in message
    assert "download failed" in message and closed_port_url in message
    assert DATA_ENV in message
    assert not (isolated_environment / "offline_set").exists() or not any(
        (isolated_environment / "offline_set").iterdir()
    )


def test_download_turned_off_and_unknown_split(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_dataset("mp_20", "val", download=False, progress=False)
    with pytest.raises(FileNotFoundError, match=r"has splits \['train', 'val', 'test'\]"):
        load_dataset("mp_20", "validation", progress=False)


def test_missing_path_is_not_searched_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        load_dataset(tmp_path / "nowhere", "val", progress=False)
    assert str(tmp_path / "nowhere" / "val.csv") in str(raised.value)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_dataset(str(tmp_path / "missing.csv"), "val", progress=False)


def test_csv_without_cif_column(write_csv: Callable) -> None:
    path = write_csv(pd.DataFrame({"material_id": ["a"], "energy": [1.0]}), "nocif/val.csv")
    with pytest.raises(ValueError, match="no 'cif' column"):
        read_table(path)
    with pytest.raises(ValueError, match="no 'cif' column"):
        load_dataset(path, "val", progress=False)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        parse_cifs(["x"], workers=0)
