"""``python -m flowllm_kit evaluate --structures``: any generator's files, good and bad, through
the same report as a run folder's systems, at smoke size."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from flowllm_kit.crystal import write_crystals
from flowllm_kit.stages import evaluation_data

from .test_cli import run

N_REAL = 6  # real crystals of the baseline, and the ones written out as files
SMALL = ["--preset", "smoke", "-n", str(N_REAL), "--n-reference", "8", "--relax-steps", "20"]


def _write_generator_output(folder: Path) -> int:
    """The smoke preset's real crystals as a generator might write them, plus bad files.

    Returns how many structures are readable."""
    real = evaluation_data("smoke", n_evaluate=N_REAL, n_reference=8).real
    cifs = folder / "cifs"
    cifs.mkdir()
    for crystal in real[:4]:
        CifWriter(crystal.to_structure()).write_file(cifs / f"{crystal.id}.cif")
    real[4].to_structure().to(filename=str(folder / "POSCAR"), fmt="poscar")
    write_crystals(real[5:], folder / "samples.jsonl")
    (cifs / "garbage.cif").write_text("this is not a CIF file\n")
    (cifs / "empty.cif").write_text("")
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    CifWriter(disordered).write_file(cifs / "disordered.cif")
    (cifs / "notes.txt").write_text("not a structure format: skipped, and counted as skipped\n")
    return len(real)


@pytest.mark.slow
def test_structures_from_files_get_the_report_and_every_bad_file_is_listed(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readable = _write_generator_output(tmp_path)
    out = tmp_path / "report"
    paths = [str(tmp_path / "cifs"), str(tmp_path / "POSCAR"), str(tmp_path / "samples.jsonl")]
    code = run("evaluate", *SMALL, "--structures", *paths, "--out", str(out), "--name", "mine")
    printed = capsys.readouterr().out
    assert code == 0
    assert f"{readable} structures evaluated" in printed and "3 rejected" in printed

    rejected = pd.read_csv(out / "rejected.csv")
    pairs = zip(rejected.source, rejected.reason, strict=True)
    reasons = {Path(source).name: reason.split(":")[0] for source, reason in pairs}
    assert reasons == {
        "garbage.cif": "unreadable",
        "empty.cif": "empty",
        "disordered.cif": "disordered",
    }
    inputs = json.loads((out / "inputs.json").read_text())
    assert inputs["structures"] == readable and inputs["rejected"] == 3
    assert inputs["skipped files"] == 1

    metrics = json.loads((out / "metrics.json").read_text())
    for name, estimate in metrics.items():
        assert {"value", "low", "high", "n"} <= set(estimate), name
    assert metrics["structural validity %"]["value"] == 100.0
    assert metrics["structural validity %"]["n"] == readable
    # The files hold the baseline's own crystals: both meet the hulls alike.
    for hull in ("", " (CHGNet hull)"):
        for kind in ("stable", "metastable"):
            mine, baseline = metrics[f"{kind}{hull} %"], metrics[f"baseline {kind}{hull} %"]
            assert mine["k"] == baseline["k"] and mine["n"] == baseline["n"], kind + hull
    per_structure = pd.read_csv(out / "per_structure.csv")
    assert len(per_structure) == readable
    assert per_structure["id"].str.endswith(".cif").sum() == 4
    intervals = pd.read_csv(out / "metrics_intervals.csv")
    assert set(intervals["metric"]) == set(metrics) and (intervals["system"] == "mine").all()
    assert (out / "metrics.csv").is_file() and (out / "settings.json").is_file()


def test_structures_all_unreadable_is_an_error_that_lists_them(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.cif").write_text("data_x\n_cell_length_a oops\n")
    out = tmp_path / "report"
    code = run("evaluate", *SMALL, "--structures", str(tmp_path / "bad.cif"), "--out", str(out))
    assert code == 2
    assert "no structure could be read" in capsys.readouterr().err
    assert "bad.cif" in (out / "rejected.csv").read_text()


def test_structures_needs_out_and_existing_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("evaluate", "--structures", str(tmp_path)) == 2
    assert "--out" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    out = str(tmp_path / "o")
    assert run("evaluate", "--structures", str(missing), "--out", out) == 2
    assert str(missing) in capsys.readouterr().err
