from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from flowllm_kit.crystal import Crystal
from flowllm_kit.evaluate import RelaxSettings, read_cache, relax, structure_key

SHORT = RelaxSettings(max_steps=30)
# the package exports a function `relax`, which hides the module of the same name
relax_module = importlib.import_module("flowllm_kit.evaluate.relax")


@pytest.fixture(scope="module")
def rattled(mp20_subset_test):
    """HfSeS (3 atoms) from the test split, atoms moved by 0.1 Å and the cell stretched 3%."""
    frame, structures = mp20_subset_test
    structure = structures[int(np.flatnonzero(frame["pretty_formula"] == "HfSeS")[0])]
    rng = np.random.default_rng(0)
    cart = structure.cart_coords + rng.normal(0, 0.1, (len(structure), 3))
    moved = Structure(structure.lattice, structure.species, cart, coords_are_cartesian=True)
    moved.apply_strain(0.03)
    return moved


def test_relaxation_lowers_the_energy_of_a_perturbed_crystal(rattled, tmp_path):
    crystal = Crystal.from_structure(rattled)
    (result,) = relax([crystal], settings=SHORT, cache=tmp_path / "c.jsonl")
    assert result.error is None
    assert result.final_energy < result.initial_energy - 0.005
    assert 0 < result.steps <= SHORT.max_steps
    assert result.converged == (result.steps < SHORT.max_steps)
    assert result.structure.composition == rattled.composition
    assert result.key == structure_key(crystal.to_structure())


def test_cache_resumes_without_relaxing_again(rattled, tmp_path, monkeypatch):
    cache = tmp_path / "relax.jsonl"
    calls = []

    def fake(job):
        calls.append(job[0])
        key, structure, settings = job
        return relax_module.RelaxResult(
            key=key, formula="x", num_atoms=len(structure), initial_energy=-1.0,
            final_energy=-2.0, steps=3, converged=True, seconds=0.0,
            final_structure=structure.as_dict(), error=None, settings=settings.__dict__.copy(),
        )  # fmt: skip

    monkeypatch.setattr(relax_module, "_worker_init", lambda model, threads: None)
    monkeypatch.setattr(relax_module, "_relax_one", fake)
    other = rattled.copy()
    other.apply_strain(0.01)
    first = relax([rattled], keys=["a"], settings=SHORT, cache=cache)
    both = relax([rattled, other], keys=["a", "b"], settings=SHORT, cache=cache)
    assert calls == ["a", "b"]  # "a" came from the cache the second time
    assert both[0].final_energy == first[0].final_energy
    assert both[0].structure == first[0].structure  # survived the JSON round trip
    # an interrupted write leaves a broken last line: it is skipped
    with open(cache, "a") as handle:
        handle.write('{"key": "c", "formu')
    assert set(read_cache(cache, SHORT)) == {"a", "b"}
    # other settings: not reused
    relax([rattled], keys=["a"], settings=RelaxSettings(max_steps=5), cache=cache)
    assert calls == ["a", "b", "a"]


def test_a_crash_is_recorded_not_raised(rattled):
    # CHGNet's element embedding stops at Z = 94: fermium (100) makes it raise
    exotic = Structure(Lattice.cubic(4.0), ["Fm", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    crashed, fine = relax([exotic, rattled], settings=RelaxSettings(max_steps=2))
    assert crashed.error is not None and not crashed.converged
    assert math.isnan(crashed.final_energy) and crashed.structure is None
    assert fine.error is None


def test_equal_keys_are_relaxed_once(rattled, monkeypatch):
    calls = []
    real = relax_module._relax_one
    monkeypatch.setattr(relax_module, "_relax_one", lambda job: calls.append(job[0]) or real(job))
    first, second = relax([rattled, rattled.copy()], settings=RelaxSettings(max_steps=1))
    assert len(calls) == 1 and first == second
    with pytest.raises(ValueError, match="keys for"):
        relax([rattled], keys=["a", "b"])


def test_agrees_with_chgnet_struct_optimizer(rattled):
    import contextlib
    import io

    import torch
    from chgnet.model import StructOptimizer
    from threadpoolctl import threadpool_limits

    (ours,) = relax([rattled], settings=SHORT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in `relax`; else this takes ~10x longer on a busy machine
    try:
        with contextlib.redirect_stdout(io.StringIO()), threadpool_limits(1, user_api="blas"):
            theirs = StructOptimizer(optimizer_class="FIRE", use_device="cpu").relax(
                rattled, fmax=SHORT.fmax, steps=SHORT.max_steps, relax_cell=True, verbose=False
            )
    finally:
        torch.set_num_threads(threads)
    final = theirs["trajectory"].energies[-1] / len(rattled)
    assert ours.final_energy == pytest.approx(final, abs=1e-3)  # within 1 meV/atom


@pytest.mark.slow
def test_worker_processes_give_the_same_results(mp20_subset_test, tmp_path):
    _, structures = mp20_subset_test
    few = structures[:4]
    settings = RelaxSettings(max_steps=3)
    cache = tmp_path / "workers.jsonl"
    parallel = relax(few, settings=settings, processes=2, cache=cache)
    serial = relax(few, settings=settings, processes=1)
    assert [r.key for r in parallel] == [r.key for r in serial]
    np.testing.assert_allclose(
        [r.final_energy for r in parallel], [r.final_energy for r in serial], atol=1e-5
    )
    assert len(read_cache(cache, settings)) == 4
