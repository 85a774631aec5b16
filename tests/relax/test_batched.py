"""The in-flight batched FIRE loop, checked with a cheap Lennard-Jones stand-in for CHGNet."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from ase.build import bulk
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from torch_sim.models.interface import ModelInterface
from torch_sim.models.lennard_jones import LennardJonesModel

from flowllm_kit.relax import RelaxConfig, RelaxResult, relax_in_batches, relax_structures

SIGMA, EPSILON = 3.405, 0.0104  # argon, Å and eV


class Counting(ModelInterface):
    """Lennard-Jones argon that counts calls; structures with a given atom count can come back
    as NaN (``fail_atoms``) or make the whole call raise (``raise_atoms``)."""

    def __init__(self, *, fail_atoms: int | None = None, raise_atoms: int | None = None) -> None:
        super().__init__()
        self.inner = LennardJonesModel(
            sigma=SIGMA,
            epsilon=EPSILON,
            cutoff=2.5 * SIGMA,
            dtype=torch.float64,
            device=torch.device("cpu"),
            compute_stress=True,
        )
        self._device, self._dtype = torch.device("cpu"), torch.float64
        self._compute_forces = self._compute_stress = True
        self.fail_atoms = fail_atoms
        self.raise_atoms = raise_atoms
        self.num_calls = 0
        self.errors: dict[int, str] = {}

    def forward(self, state: Any, **_: Any) -> dict[str, torch.Tensor]:
        self.num_calls += 1
        if (state.n_atoms_per_system == (self.raise_atoms or -1)).any():
            raise RuntimeError("stand-in crash")
        out = {k: v.clone() for k, v in self.inner(state).items()}
        counts = state.n_atoms_per_system
        self.errors = {}
        for b in torch.nonzero(counts == (self.fail_atoms or -1)).flatten().tolist():
            self.errors[b] = "stand-in failure"
            out["energy"][b] = torch.nan
            out["forces"][state.system_idx == b] = torch.nan
        return out


def argon(repeat: tuple[int, int, int], seed: int) -> Structure:
    """Perturbed fcc argon: atoms moved up to 0.15 Å, the cell strained by a few percent."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(repeat)
    atoms.positions += rng.uniform(-0.15, 0.15, size=atoms.positions.shape)
    atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.04, 0.04, size=(3, 1))), scale_atoms=True)
    return AseAtomsAdaptor.get_structure(atoms)


@pytest.fixture(scope="module")
def crystals() -> list[Structure]:
    return [argon(r, seed) for seed, r in enumerate([(1, 1, 1), (2, 1, 1), (1, 1, 1), (1, 2, 2)])]


@pytest.fixture(scope="module")
def relaxed_together(crystals) -> list[RelaxResult]:
    return run(crystals, Counting(), fmax=0.03)


def run(structures, model, **options) -> list[RelaxResult]:
    results: list[RelaxResult | None] = [None] * len(structures)

    def keep(i: int, result: RelaxResult) -> None:
        assert results[i] is None, "each structure is reported once"
        results[i] = result

    relax_in_batches(structures, model=model, config=RelaxConfig(**options), on_result=keep)
    return results


@pytest.mark.parametrize(
    "limits",
    [{"max_structures_per_batch": 1}, {"max_structures_per_batch": 2}, {"max_atoms_per_batch": 12}],
)
def test_batching_does_not_change_the_trajectory(crystals, relaxed_together, limits) -> None:
    """Structures joining a batch mid-flight must not disturb the ones already in it."""
    apart = run(crystals, Counting(), fmax=0.03, **limits)
    assert len({r.steps for r in apart}) > 1  # they finish at different steps: refills happen
    for a, b in zip(relaxed_together, apart, strict=True):
        assert a.steps == b.steps and a.converged and b.converged
        assert a.final_energy_per_atom == pytest.approx(b.final_energy_per_atom, abs=1e-9)
        np.testing.assert_allclose(
            a.final_structure.lattice.matrix, b.final_structure.lattice.matrix, atol=1e-7
        )


def test_relaxation_lowers_energy_and_converges(relaxed_together) -> None:
    for result in relaxed_together:
        assert result.converged and result.steps > 0 and result.error is None
        assert result.final_energy_per_atom < result.initial_energy_per_atom


def test_max_steps_stops_unconverged(crystals) -> None:
    for result in run(crystals, Counting(), fmax=1e-6, max_steps=3):
        assert (result.steps, result.converged) == (3, False)
        assert result.final_structure is not None


def test_a_stalled_relaxation_stops_early_on_the_same_trajectory(crystals) -> None:
    # fmax 1e-6 is never reached: without a stall test every structure runs to max_steps
    stalled = run(crystals, Counting(), fmax=1e-6, max_steps=400, stall_steps=10)
    for crystal, result in zip(crystals, stalled, strict=True):
        assert result.stalled and not result.converged and 10 <= result.steps < 400
        # the stall test only stops the run: the same number of plain steps lands on the same
        # structure and energy
        plain = run([crystal], Counting(), fmax=1e-6, max_steps=result.steps)[0]
        assert not plain.stalled and plain.steps == result.steps
        assert plain.final_energy_per_atom == pytest.approx(result.final_energy_per_atom, abs=1e-12)
        # and running on gains less than the tolerance per stall window, as the test promised
        longer = run([crystal], Counting(), fmax=1e-6, max_steps=result.steps + 10)[0]
        assert longer.final_energy_per_atom > result.final_energy_per_atom - 1e-3


def test_without_a_stall_test_nothing_stalls(crystals) -> None:
    for result in run(crystals, Counting(), fmax=1e-6, max_steps=40):
        assert (result.steps, result.stalled) == (40, False)


def test_without_cell_relaxation_the_cell_is_kept(crystals) -> None:
    for crystal, result in zip(crystals, run(crystals, Counting(), relax_cell=False), strict=True):
        np.testing.assert_allclose(
            result.final_structure.lattice.matrix, crystal.lattice.matrix, atol=1e-9
        )


@pytest.mark.parametrize("mode", ["nan", "raise"])
def test_a_crash_is_isolated_to_its_structure(crystals, relaxed_together, mode) -> None:
    model = Counting(fail_atoms=16) if mode == "nan" else Counting(raise_atoms=16)
    mixed = run(crystals, model, fmax=0.03)  # crystals[3] has 16 atoms
    expected = "stand-in failure" if mode == "nan" else "relaxer: RuntimeError: stand-in crash"
    assert mixed[3].error == expected and math.isnan(mixed[3].final_energy_per_atom)
    for i in (0, 1, 2):
        assert mixed[i].final_energy_per_atom == pytest.approx(
            relaxed_together[i].final_energy_per_atom, abs=1e-9
        )
        assert mixed[i].steps == relaxed_together[i].steps


def test_cache_resumes_without_model_calls(crystals, tmp_path) -> None:
    cache = tmp_path / "relax.jsonl"
    inputs = [*crystals, crystals[0]]  # a duplicate is relaxed once
    first_model = Counting()
    first = relax_structures(
        inputs, config=RelaxConfig(fmax=0.03), cache_path=cache, model=first_model, progress=False
    )
    assert first_model.num_calls > 0 and len(cache.read_text().splitlines()) == len(crystals)
    second_model = Counting()
    second = relax_structures(
        inputs, config=RelaxConfig(fmax=0.03), cache_path=cache, model=second_model, progress=False
    )
    assert second_model.num_calls == 0
    for a, b in zip(first, second, strict=True):
        assert (a.steps, a.converged) == (b.steps, b.converged)
        assert a.final_energy_per_atom == pytest.approx(b.final_energy_per_atom, abs=1e-12)
    changed = relax_structures(
        inputs, config=RelaxConfig(fmax=0.05), cache_path=cache, model=second_model, progress=False
    )
    assert second_model.num_calls > 0 and all(r.converged for r in changed)
