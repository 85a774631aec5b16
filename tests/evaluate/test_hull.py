from __future__ import annotations

import gzip
import pickle

import numpy as np
import pandas as pd
import pytest
from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram

from flowllm_kit.evaluate import (
    HullReference,
    entries_from_formation_energies,
    load_elemental_references,
    stability_flags,
)

ELEMENTAL = "hull/2023-02-07-mp-elemental-reference-entries.json.gz"


@pytest.fixture(scope="module")
def elemental(data_root):
    return load_elemental_references(data_root / ELEMENTAL)


@pytest.fixture(scope="module")
def subset_hull(data_root, elemental):
    frame = pd.read_csv(data_root / "mp_20_subset" / "test.csv")
    hull = HullReference.from_formation_energies(
        frame["pretty_formula"],
        frame["formation_energy_per_atom"],
        elemental,
        ids=frame["material_id"],
        source="mp_20_subset test",
    )
    return frame, hull


def test_elemental_references_load(elemental):
    assert len(elemental) == 89
    assert elemental["O"].composition.reduced_formula == "O2"


def test_formation_energy_round_trip(elemental):
    # the entry's formation energy relative to the elemental references is what went in
    (entry,) = entries_from_formation_energies(["Fe2O3"], [-1.7], elemental)
    mu = {s: elemental[s].energy_per_atom for s in ("Fe", "O")}
    assert entry.energy_per_atom - (0.4 * mu["Fe"] + 0.6 * mu["O"]) == pytest.approx(-1.7)


def test_binary_hull_by_hand(elemental):
    # formation energies: AB at -1.0 eV/atom, A2B at -0.5; the hull at x_B = 1/3 runs from
    # A (0) to AB (-1.0), so it is at -2/3 and A2B sits 1/6 eV/atom above it
    na_cl = {s: elemental[s] for s in ("Na", "Cl")}
    hull = HullReference.from_formation_energies(
        ["NaCl", "Na2Cl"], [-1.0, -0.5], na_cl, source="hand-made"
    )
    mu_na, mu_cl = elemental["Na"].energy_per_atom, elemental["Cl"].energy_per_atom
    energy_na2cl = 3 * (-0.5 + (2 * mu_na + mu_cl) / 3)
    assert hull.e_above_hull("Na2Cl", energy_na2cl) == pytest.approx(1 / 6)
    assert hull.e_above_hull("NaCl", 2 * (-1.0 + (mu_na + mu_cl) / 2)) == pytest.approx(0.0)
    # below the hull: negative
    assert hull.e_above_hull("NaCl", 2 * (-1.2 + (mu_na + mu_cl) / 2)) == pytest.approx(-0.2)
    assert np.isnan(hull.e_above_hull("NaK", -3.0))  # no reference for K: not computable


def test_vertices_are_zero_and_nothing_is_below(subset_hull):
    frame, hull = subset_hull
    e_hull = hull.e_above_hull_many(
        [e.composition for e in hull.entries], [e.energy for e in hull.entries]
    )
    assert np.all(e_hull >= -1e-8)
    stable_seen = 0
    for chemsys in {frozenset(el.symbol for el in e.composition.elements) for e in hull.entries}:
        diagram = hull.phase_diagram(chemsys)
        for vertex in diagram.stable_entries:
            assert hull.e_above_hull(vertex.composition, vertex.energy) == pytest.approx(
                0, abs=1e-8
            )
            stable_seen += 1
    assert stable_seen > len(frame)  # every chemical system has its vertices checked


def test_dataset_hull_is_lenient(subset_hull):
    # against its own entries, E_hull never exceeds the DFT e_above_hull (the MP hull has
    # more competing phases); compared per MP-20 row
    frame, hull = subset_hull
    by_id = {e.entry_id: e for e in hull.entries}
    ours = np.array(
        [hull.e_above_hull(by_id[i].composition, by_id[i].energy) for i in frame["material_id"]]
    )
    assert np.all(ours <= frame["e_above_hull"].to_numpy() + 0.02)


def test_stability_flags():
    flags = stability_flags([-0.1, 0.0, 0.05, np.nan, -0.2], [2, 3, 2, 2, 1])
    assert flags.tolist() == [True, True, False, False, False]
    meta = stability_flags([0.05, 0.09], [2, 2], threshold=0.08)
    assert meta.tolist() == [True, False]
    # Rounding on a hull vertex still counts as on the hull; a real distance above does not.
    assert stability_flags([1e-14, 1e-6], [2, 2]).tolist() == [True, False]


def test_patched_phase_diagram_pickle(tmp_path, elemental):
    entries = [
        *entries_from_formation_energies(["NaCl", "Na2Cl"], [-1.0, -0.5], elemental),
        elemental["Na"],
        elemental["Cl"],
    ]
    path = tmp_path / "ppd.pkl.gz"
    with gzip.open(path, "wb") as handle:
        pickle.dump(PatchedPhaseDiagram(entries), handle)
    with pytest.warns(UserWarning, match="arbitrary code"):
        hull = HullReference.from_patched_phase_diagram(path)
    mu_na, mu_cl = elemental["Na"].energy_per_atom, elemental["Cl"].energy_per_atom
    energy = 3 * (-0.5 + (2 * mu_na + mu_cl) / 3)
    assert hull.e_above_hull("Na2Cl", energy) == pytest.approx(1 / 6)


def test_from_csv_matches_from_formation_energies(data_root, subset_hull):
    frame, hull = subset_hull
    from_csv = HullReference.from_csv(
        [data_root / "mp_20_subset" / "test.csv"], data_root / ELEMENTAL
    )
    assert from_csv.source == "mp_20_subset/test.csv"
    assert len(from_csv.entries) == len(hull.entries) == len(frame) + 89
    entry = hull.entries[5]
    assert from_csv.e_above_hull(entry.composition, entry.energy) == pytest.approx(
        hull.e_above_hull(entry.composition, entry.energy)
    )


def test_many_element_systems_use_a_linear_program_with_the_phase_diagrams_answer(elemental):
    """Beyond QHULL_MAX_ELEMENTS elements E_hull comes from a linear program; on a 5-element
    system small enough for pymatgen's PhaseDiagram both give the same E_hull, at hull
    vertices (0), above and below the hull, and NaN where an element has no reference."""
    from pymatgen.analysis.phase_diagram import PhaseDiagram
    from pymatgen.core import Composition
    from pymatgen.entries.computed_entries import ComputedEntry

    from flowllm_kit.evaluate.hull import QHULL_MAX_ELEMENTS

    symbols = ["Li", "Fe", "P", "O", "Mn"]
    assert len(symbols) > QHULL_MAX_ELEMENTS
    rng = np.random.default_rng(0)
    formulas = ["LiFePO4", "Li3PO4", "FePO4", "Fe2O3", "MnO2", "LiMnO2", "Li2O", "LiMnPO4"]
    formulas += ["LiFeMnPO8", "Li2FeMnP2O8", "MnP", "FeP2", "Li5FeMnP2O9"]
    formation = rng.uniform(-2.5, -0.2, len(formulas))
    hull = HullReference.from_formation_energies(
        formulas, formation, {s: elemental[s] for s in symbols}, source="toy"
    )
    diagram = PhaseDiagram(hull.entries)
    queries = ["LiFeMnPO8", "Li2FeMnP2O8", "Li5FeMnP2O9", "Li2Fe3Mn2P4O17", "LiFeMnP2O9"]
    for formula in queries:
        composition = Composition(formula)
        assert len(composition.elements) > QHULL_MAX_ELEMENTS
        floor = diagram.get_hull_energy_per_atom(composition)
        for shift in (-0.3, 0.0, 0.05, 0.4):  # below, on and above the hull
            energy = composition.num_atoms * (floor + shift)
            by_diagram = diagram.get_decomp_and_e_above_hull(
                ComputedEntry(composition, energy), allow_negative=True
            )[1]
            assert hull.e_above_hull(composition, energy) == pytest.approx(by_diagram, abs=1e-8)
            assert hull.e_above_hull(composition, energy) == pytest.approx(shift, abs=1e-8)
    # the program agrees with the diagram below the threshold too
    assert hull.hull_energy_per_atom(Composition("LiFePO4")) == pytest.approx(
        diagram.get_hull_energy_per_atom(Composition("LiFePO4")), abs=1e-8
    )
    assert np.isnan(hull.e_above_hull("LiFeMnPO4Na", -40.0))  # no reference for Na
