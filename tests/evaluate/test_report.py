from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from flowllm_kit.crystal import Crystal
from flowllm_kit.evaluate import (
    HullReference,
    RelaxConfig,
    RelaxedHull,
    RelaxResult,
    Report,
    ReportSettings,
    load_elemental_references,
    report,
    wilson_interval,
)

stability_module = importlib.import_module("flowllm_kit.evaluate.stability")
ELEMENTAL = "hull/2023-02-07-mp-elemental-reference-entries.json.gz"


@pytest.fixture(scope="module")
def subset_hull(data_root):
    frame = pd.read_csv(data_root / "mp_20_subset" / "test.csv")
    refs = load_elemental_references(data_root / ELEMENTAL)
    return HullReference.from_formation_energies(
        frame["pretty_formula"], frame["formation_energy_per_atom"], refs, source="subset test"
    )


def _fake_relax(hull: HullReference, configs: list[RelaxConfig], labels: list[str] | None = None):
    """A relaxer that leaves structures alone and returns their DFT energy from the hull; it
    records each call's config and progress label."""
    labels = [] if labels is None else labels
    energy = {e.composition.reduced_formula: e.energy_per_atom for e in hull.entries}

    def fake(structures, *, config, cache_path, progress, desc):
        configs.append(config)
        labels.append(desc)
        return [
            RelaxResult(
                initial_energy_per_atom=energy[s.composition.reduced_formula] + 0.01,
                final_energy_per_atom=energy[s.composition.reduced_formula],
                final_structure=s,
                steps=4,
                converged=True,
            )
            for s in structures
        ]

    return fake


def test_report_numbers_and_files(mp20_subset_test, subset_hull, monkeypatch, tmp_path):
    configs: list[RelaxConfig] = []
    labels: list[str] = []
    fake = _fake_relax(subset_hull, configs, labels)
    monkeypatch.setattr(stability_module, "relax_structures", fake)
    frame, structures = mp20_subset_test
    crystals = structures[:6]
    squashed = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.02, 0, 0]])
    generated = [*crystals, crystals[0], squashed]  # a duplicate and an invalid crystal
    settings = ReportSettings(min_count=3, processes=1)
    result = report(
        generated,
        reference=structures[6:12],
        training=structures[3:20],
        hull=subset_hull,
        baseline=[*structures[:6], squashed],  # the fake relaxer fails on squashed NaCl
        settings=settings,
        label="demo",
    )
    assert labels == ["CHGNet relax (demo)", "CHGNet relax baseline (demo)"]  # progress labels
    metrics, table = result.metrics, result.per_structure
    # generated, then baseline; `processes` becomes the relaxation's worker count
    assert [c.num_workers for c in configs] == [1, 1]
    assert configs[0].max_steps == settings.relax.max_steps
    n = len(generated)
    assert metrics["structural validity %"] == pytest.approx(100 * 7 / n)
    assert metrics["unique %"] == pytest.approx(100 * 7 / n)
    assert metrics["novel %"] == pytest.approx(100 * 5 / n)  # crystals 0-2, the copy, squashed
    # E_hull of each valid crystal = its DFT value against this hull
    per_atom = {e.composition.reduced_formula: e.energy_per_atom for e in subset_hull.entries}
    e_hull = [
        subset_hull.e_above_hull(s.composition, per_atom[s.composition.reduced_formula] * len(s))
        for s in crystals
    ]
    stable = [e <= 1e-9 and len(s.composition) >= 2 for s, e in zip(crystals, e_hull, strict=True)]
    expected = np.array([*stable, stable[0], False])
    np.testing.assert_array_equal(table["stable"].to_numpy(), expected)
    assert 0 < expected.sum() < 7
    assert metrics["stable %"] == pytest.approx(100 * expected.sum() / n)
    assert np.all(table["e_hull"].to_numpy()[:7] >= -1e-8)
    assert math.isnan(table["e_hull"].iloc[-1])
    assert metrics["closeness dE eV/atom"] == pytest.approx(0.01)
    assert metrics["relaxation steps"] == 4
    assert (
        table["final_energy_per_atom"].iloc[0] == per_atom[crystals[0].composition.reduced_formula]
    )
    # The baseline goes through the same filter: squashed is not relaxed and counts unstable.
    assert metrics["baseline stable %"] == pytest.approx(100 * expected[:6].sum() / 7)
    sun = table["sun"].to_numpy()
    assert sun.sum() == (expected & table["unique"] & table["novel"]).sum()
    assert 0 <= metrics["coverage recall %"] <= 100
    folder = result.save(tmp_path / "report")
    assert json.loads((folder / "settings.json").read_text())["hull source"] == "subset test"
    assert (folder / "nary_histogram.png").exists() and (folder / "e_hull_histogram.png").exists()
    assert len(pd.read_csv(folder / "per_structure.csv")) == n


def test_relaxed_hull_intervals_and_sun_variants(
    mp20_subset_test, subset_hull, data_root, monkeypatch, tmp_path
):
    """Against a relaxed hull of the training crystals whose "relaxation" returns their DFT
    energies, E_hull equals that of a DFT hull built independently from the same entries."""
    monkeypatch.setattr(stability_module, "relax_structures", _fake_relax(subset_hull, []))
    frame, structures = mp20_subset_test
    refs = load_elemental_references(data_root / ELEMENTAL)
    per_atom = {e.composition.reduced_formula: e.energy_per_atom for e in subset_hull.entries}
    training = structures[3:30]
    elements = sorted({el.symbol for s in training for el in s.composition.elements})
    terminals = [Structure(Lattice.cubic(3.0), [el], [[0, 0, 0]]) for el in elements]

    def energies(batch):
        return [
            refs[s.composition.elements[0].symbol].energy_per_atom * len(s)
            if len(s.composition.elements) == 1
            else per_atom[s.composition.reduced_formula] * len(s)
            for s in batch
        ]

    crystals = [Crystal.from_structure(s) for s in [*training, *terminals]]
    relaxed = RelaxedHull(crystals, energies=energies, source="relaxed subset")
    independent = HullReference.from_formation_energies(
        frame["pretty_formula"][3:30], frame["formation_energy_per_atom"][3:30], refs, source="x"
    )
    generated = structures[:12]
    settings = ReportSettings(min_count=3, processes=1)
    result = report(
        generated, training=training, hull=subset_hull, relaxed_hull=relaxed,
        baseline=structures[30:40], settings=settings, figures=False,
    )  # fmt: skip
    table = result.per_structure
    expected = [
        independent.e_above_hull(s.composition, per_atom[s.composition.reduced_formula] * len(s))
        for s in generated
    ]
    valid = table["structurally_valid"] & (table["composition_status"] == "valid")
    expected = np.where(valid, expected, np.nan)  # invalid crystals are not relaxed
    assert valid.sum() >= 10
    np.testing.assert_allclose(table["e_hull_chgnet"], expected, atol=1e-9)
    stable = table["stable_chgnet"].to_numpy(bool)
    assert 0 < stable.sum() < len(generated)
    unique, novel = table["unique"].to_numpy(bool), table["novel"].to_numpy(bool)
    est = result.estimates
    for name, flags in [
        ("stable (CHGNet hull) %", stable),
        ("S.U. (CHGNet hull) %", stable & unique),
        ("S.U.N. (CHGNet hull) %", stable & unique & novel),
        ("U.N. %", unique & novel),
    ]:
        assert (est[name].k, est[name].n) == (flags.sum(), len(generated)), name
        low, high = wilson_interval(int(flags.sum()), len(generated))
        assert (est[name].low, est[name].high) == pytest.approx((100 * low, 100 * high))
    meta = table["metastable_chgnet"].to_numpy(bool)
    assert est["metastable S.U.N. (CHGNet hull) %"].k == (meta & unique & novel).sum()
    assert est["metastable (CHGNet hull) %"].k == (expected <= 0.1 + 1e-8).sum()
    assert {"baseline stable %", "baseline stable (CHGNet hull) %"} <= set(est)
    assert result.settings["relaxed hull"]["reference crystals relaxed"] == relaxed.relaxed > 0
    folder = result.save(tmp_path / "report")
    saved = json.loads((folder / "metrics.json").read_text())["S.U.N. (CHGNet hull) %"]
    assert set(saved) >= {"value", "low", "high", "n"} and saved["n"] == len(generated)
    loaded = Report.load(folder)
    assert loaded.estimates["stable (CHGNet hull) %"] == est["stable (CHGNet hull) %"]


def test_distances_have_bootstrap_intervals_and_coverage_wilson_ones(mp20_subset_test):
    _, structures = mp20_subset_test
    result = report(
        structures[:20], reference=structures[20:60], settings=ReportSettings(processes=1),
        figures=False,
    )  # fmt: skip
    for name in ["wdist density", "wdist N_el"]:
        e = result.estimates[name]
        assert e.method == "bootstrap-normal" and 0 <= e.low <= e.value <= e.high, name
    recall, precision = (result.estimates[f"coverage {kind} %"] for kind in ("recall", "precision"))
    assert recall.method == precision.method == "wilson"
    assert recall.n == 40 and recall.value == pytest.approx(100 * recall.k / 40)  # the reference
    assert precision.n == 20 and precision.value == pytest.approx(100 * precision.k / 20)
    assert result.estimates["wdist density"].n == result.settings["counts"]["valid"]


def test_too_few_structures_are_not_computable(rock_salt):
    result = report([rock_salt(), rock_salt()], figures=False)
    assert math.isnan(result.metrics["structural validity %"])
    assert result.settings["counts"]["generated"] == 2
