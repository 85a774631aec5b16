"""The hull of relaxed reference crystals: exact E_hull with known energies, only the chemical
systems asked for are relaxed, elements without a crystal get ASE's, and the cache resumes."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_sim.models.interface import ModelInterface
from torch_sim.models.lennard_jones import LennardJonesModel

from flowllm_kit.crystal import Crystal
from flowllm_kit.evaluate import RelaxConfig, RelaxedHull

# eV/atom of each reference crystal, by its elements, as the "relaxation" reports it
ENERGY = {"Na": -1.3, "Cl": -1.8, "ClNa": -3.6, "K": -1.1, "ClK": -3.4, "Al": -3.7}


def _system(structure: Structure) -> str:
    return "".join(sorted(el.symbol for el in structure.composition.elements))


def _crystal(species: list[str], name: str) -> Crystal:
    coords = [[0, 0, 0], [0.5, 0.5, 0.5]][: len(species)]
    return Crystal.from_structure(Structure(Lattice.cubic(4.0), species, coords), id=name)


@pytest.fixture
def references() -> list[Crystal]:
    return [
        _crystal(["Na"], "Na"),
        _crystal(["Cl"], "Cl"),
        _crystal(["Na", "Cl"], "NaCl"),
        _crystal(["K"], "K"),
        _crystal(["K", "Cl"], "KCl"),
    ]


class Energies:
    """Stand-in relaxation: the energy of ENERGY per formula (NaN for ``fail``), with a record
    of every batch it was asked for."""

    def __init__(self, fail: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail

    def __call__(self, structures: list[Structure]) -> list[float]:
        formulas = [_system(s) for s in structures]
        self.batches.append(formulas)
        return [
            math.nan if f == self.fail else ENERGY[f] * len(s)
            for f, s in zip(formulas, structures, strict=True)
        ]


def test_exact_e_hull_and_only_the_needed_systems(references) -> None:
    energies = Energies()
    hull = RelaxedHull(references, energies=energies, source="toy")
    hull.prepare(["NaCl"])
    assert len(energies.batches) == 1 and sorted(energies.batches[0]) == ["Cl", "ClNa", "Na"]
    assert hull.e_above_hull("NaCl", 2 * ENERGY["ClNa"]) == pytest.approx(0.0, abs=1e-9)
    assert hull.e_above_hull("NaCl", 2 * (ENERGY["ClNa"] + 0.07)) == pytest.approx(0.07)
    assert hull.e_above_hull("NaCl", 2 * (ENERGY["ClNa"] - 0.02)) == pytest.approx(-0.02)
    # Na2Cl lies between Na and NaCl: the hull there is 1/3 Na + 2/3 NaCl per atom
    expected = (ENERGY["Na"] + 2 * ENERGY["ClNa"]) / 3
    assert hull.e_above_hull("Na2Cl", 3 * (expected + 0.05)) == pytest.approx(0.05)
    assert len(energies.batches) == 1  # nothing new relaxed for the same system
    # a new system relaxes just its new crystals when first asked, without prepare
    assert hull.e_above_hull("KCl", 2 * ENERGY["ClK"]) == pytest.approx(0.0, abs=1e-9)
    assert sorted(energies.batches[1]) == ["ClK", "K"]
    assert hull.relaxed == 5 and hull.summary()["reference crystals relaxed"] == 5


def test_an_element_without_a_crystal_takes_ases_and_one_with_neither_has_no_hull(
    references,
) -> None:
    energies = Energies()
    hull = RelaxedHull(references, energies=energies, source="toy")
    hull.prepare(["AlCl3", "NaO2"])
    relaxed = sorted(f for batch in energies.batches for f in batch)
    assert relaxed == ["Al", "Cl", "Na"]  # Al from ase.build.bulk; O has no ASE crystal
    assert hull.e_above_hull("AlCl3", 4 * (0.25 * ENERGY["Al"] + 0.75 * ENERGY["Cl"])) == (
        pytest.approx(0.0, abs=1e-9)
    )
    assert math.isnan(hull.e_above_hull("NaO2", -10.0))
    assert hull.missing_elements == {"O"}


def test_failed_reference_relaxations_are_left_out_and_counted(references) -> None:
    hull = RelaxedHull(references, energies=Energies(fail="ClNa"), source="toy")
    assert hull.e_above_hull("NaCl", 2 * ENERGY["ClNa"]) < 0  # only the elements remain
    assert (hull.failed, hull.relaxed) == (1, 2)


class PairPotential(ModelInterface):
    """Lennard-Jones for every species; raises when ``forbidden`` (a resumed hull must not call
    it)."""

    def __init__(self, forbidden: bool = False) -> None:
        super().__init__()
        self.inner = LennardJonesModel(
            sigma=2.5, epsilon=0.01, cutoff=6.0, dtype=torch.float64,
            device=torch.device("cpu"), compute_stress=True,
        )  # fmt: skip
        self._device, self._dtype = torch.device("cpu"), torch.float64
        self._compute_forces = self._compute_stress = True
        self.forbidden = forbidden

    def forward(self, state: Any, **_: Any) -> dict[str, torch.Tensor]:
        if self.forbidden:
            raise AssertionError("the cache should have answered")
        return self.inner(state)


def test_relaxations_are_cached_and_a_second_hull_resumes(references, tmp_path) -> None:
    cache = tmp_path / "hull.jsonl"
    config = RelaxConfig(max_steps=5)
    first = RelaxedHull(
        references, relax=config, cache_path=cache, model=PairPotential(), source="lj"
    )
    first.prepare(["NaCl"])
    assert len(cache.read_text().splitlines()) == 3
    second = RelaxedHull(
        references, relax=config, cache_path=cache, model=PairPotential(forbidden=True), source="lj"
    )
    energy = -5.0
    assert second.e_above_hull("NaCl", energy) == pytest.approx(first.e_above_hull("NaCl", energy))
