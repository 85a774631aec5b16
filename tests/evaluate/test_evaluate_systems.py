"""The crystal sets of a run: generated systems, controls, the dataset hull, fingerprints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowllm_kit.crystal import Crystal, write_crystals
from flowllm_kit.crystal.io import crystal_to_dict
from flowllm_kit.evaluate import (
    ELEMENTAL_REFERENCE_FILE,
    Fingerprints,
    HullReference,
    control_systems,
    dataset_hull,
    elemental_reference_file,
    find_systems,
    reference_fingerprints,
)


def _crystals(n: int, prefix: str = "c") -> list[Crystal]:
    return [
        Crystal(
            atomic_numbers=[11, 17] + [11] * k,
            frac_coords=np.random.default_rng(k).uniform(0, 1, (2 + k, 3)),
            lengths=[4.0 + k, 4.5, 5.0],
            angles=[90, 90, 90],
            id=f"{prefix}{k}",
        )
        for k in range(n)
    ]


def test_find_systems_reads_samples_and_kept_llm_draws(tmp_path):
    write_crystals(_crystals(3, "flow"), tmp_path / "samples" / "flowllm.jsonl")
    kept = [crystal_to_dict(c.replace(id=None)) for c in _crystals(2, "llm")]  # draws: no id
    draws = [
        {"draw": 0, "text": "x", "reason": None, "crystal": kept[0]},
        {"draw": 1, "text": "junk", "reason": "unparsable"},  # rejected: no crystal
        {"draw": 2, "text": "y", "reason": None, "crystal": kept[1]},
    ]
    lines = "".join(json.dumps(d) + "\n" for d in draws)
    (tmp_path / "llm_samples.jsonl").write_text(lines)

    systems = find_systems(tmp_path)
    assert list(systems) == ["flowllm", "llm_only"]
    assert [c.id for c in systems["flowllm"]] == ["flow0", "flow1", "flow2"]
    assert [c.id for c in systems["llm_only"]] == ["llm_only-0", "llm_only-1"]  # rejected skipped
    assert systems["llm_only"][1].atomic_numbers.tolist() == kept[1]["atomic_numbers"]
    assert [len(v) for v in find_systems(tmp_path, n=2).values()] == [2, 2]


def test_find_systems_by_name_keeps_the_given_order_and_skips_absent_ones(tmp_path):
    for name in ["flowllm", "flowmm", "flowmm_csp"]:
        write_crystals(_crystals(2, name), tmp_path / "samples" / f"{name}.jsonl")
    systems = find_systems(tmp_path, names=["flowmm", "llm_only", "flowllm"])
    assert list(systems) == ["flowmm", "flowllm"]  # no LLM draws in this run: left out
    assert [c.id for c in systems["flowmm"]] == ["flowmm0", "flowmm1"]
    assert find_systems(tmp_path, names=[]) == {}


def test_find_systems_of_an_empty_run_is_empty(tmp_path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "empty.jsonl").write_text("")
    assert find_systems(tmp_path) == {}


def test_control_systems_keep_atoms_and_perturb():
    real = _crystals(4)
    controls = control_systems(real, perturbation=0.1, seed=3)
    assert list(controls) == ["real", "perturbed"] and controls["real"] == real
    for c, p in zip(real, controls["perturbed"], strict=True):
        assert p.id == f"{c.id}-perturbed"
        assert np.array_equal(p.atomic_numbers, c.atomic_numbers) and p.num_atoms == c.num_atoms
        assert np.allclose(p.angles, c.angles)
        step = (p.frac_coords - c.frac_coords + 0.5) % 1 - 0.5  # coordinates wrap
        assert 0 < np.abs(step).max() < 0.2
        assert np.all(np.abs(p.lengths / c.lengths - 1) <= 0.03) and not np.allclose(
            p.lengths, c.lengths
        )
    again = control_systems(real, perturbation=0.1, seed=3)["perturbed"]
    assert all(
        np.allclose(a.frac_coords, b.frac_coords)
        for a, b in zip(again, controls["perturbed"], strict=True)
    )


def test_dataset_hull_is_none_without_the_elemental_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWLLM_KIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("FLOWLLM_KIT_CACHE", str(tmp_path / "cache"))
    assert elemental_reference_file(tmp_path) is None
    assert dataset_hull("mp_20", root=tmp_path) is None


def test_dataset_hull_from_val_and_test(data_root):
    if not (data_root / ELEMENTAL_REFERENCE_FILE).is_file():
        pytest.skip("no elemental reference file")
    assert elemental_reference_file(data_root) == data_root / ELEMENTAL_REFERENCE_FILE
    hull = dataset_hull("mp_20_subset", root=data_root)
    assert isinstance(hull, HullReference)
    assert "val.csv" in hull.source and "test.csv" in hull.source


def test_reference_fingerprints_are_cached(tmp_path, monkeypatch):
    path = tmp_path / "reference.npz"
    first = reference_fingerprints(_crystals(2), path=path, processes=1)
    assert path.is_file() and len(first) == 2

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr("flowllm_kit.evaluate.systems.fingerprints", fail)
    again = reference_fingerprints(_crystals(2), path=path, processes=1)
    assert isinstance(again, Fingerprints) and len(again) == 2
