"""CHGNet through torch-sim: outputs, agreement with StructOptimizer, failures, cache, workers."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch_sim as ts
from pymatgen.core import Lattice, Structure
from torch_sim.models.interface import validate_model_outputs

from flowllm_kit.crystal import Crystal
from flowllm_kit.relax import (
    CHGNetModel,
    RelaxConfig,
    load_chgnet,
    perturb_structure,
    relax_structures,
    relax_structures_reference,
)

GPA = 160.21766208  # eV/Å³ in GPa

# Few steps keep the tests quick; batched and reference paths take identical steps, so they
# must agree after any number of them, converged or not.
FEW_STEPS = RelaxConfig(max_steps=12, num_workers=1)


def test_weights_load_without_network(monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("CHGNet tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    model = load_chgnet.__wrapped__("0.3.0", "cpu")  # bypass the in-process cache
    assert model.version == "0.3.0"


def test_model_passes_torch_sims_interface_checks(chgnet: CHGNetModel) -> None:
    validate_model_outputs(chgnet, chgnet.device, chgnet.dtype)  # raises on any violation


def test_model_matches_chgnet_predictions(chgnet: CHGNetModel, mp20_perturbed) -> None:
    state = ts.io.structures_to_state(mp20_perturbed, chgnet.device, chgnet.dtype)
    out = chgnet(state)
    assert out["energy"].shape == (3,) and out["stress"].shape == (3, 3, 3)
    start = 0
    for b, structure in enumerate(mp20_perturbed):
        expected = chgnet.chgnet.predict_structure(structure, task="efs")
        n = len(structure)
        assert float(out["energy"][b]) / n == pytest.approx(float(expected["e"]), abs=1e-5)
        forces = out["forces"][start : start + n].numpy()
        np.testing.assert_allclose(forces, expected["f"], atol=1e-4)
        np.testing.assert_allclose(out["stress"][b].numpy() * GPA, expected["s"], atol=1e-3)
        start += n


def test_batched_relaxation_matches_struct_optimizer(mp20_perturbed) -> None:
    batched = relax_structures(mp20_perturbed, config=FEW_STEPS, progress=False)
    reference = relax_structures_reference(mp20_perturbed, config=FEW_STEPS, progress=False)
    for ours, theirs in zip(batched, reference, strict=True):
        assert ours.error is None and theirs.error is None
        assert ours.steps == theirs.steps
        assert ours.converged == theirs.converged
        assert ours.initial_energy_per_atom == pytest.approx(
            theirs.initial_energy_per_atom, abs=1e-5
        )
        # a few meV/atom is the acceptance bar; identical algorithms agree far better
        assert ours.final_energy_per_atom == pytest.approx(theirs.final_energy_per_atom, abs=2e-3)


def test_relaxation_lowers_the_energy_of_a_perturbed_crystal(mp20_perturbed) -> None:
    result = relax_structures(
        mp20_perturbed[:1], config=RelaxConfig(num_workers=1), progress=False
    )[0]
    assert result.converged and result.steps > 0
    assert result.final_energy_per_atom < result.initial_energy_per_atom - 1e-3


def broken_structures() -> list[Structure]:
    return [
        Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]]),
        Structure(Lattice.cubic(30.0), ["Na"], [[0, 0, 0]]),  # nothing within the 6 Å cutoff
    ]


def test_broken_structures_are_recorded_and_the_cache_resumes(
    chgnet: CHGNetModel, mp20_perturbed, tmp_path
) -> None:
    inputs = [mp20_perturbed[0], *broken_structures(), mp20_perturbed[1]]
    cache = tmp_path / "relax.jsonl"
    first = relax_structures(
        inputs, config=FEW_STEPS, cache_path=cache, model=chgnet, progress=False
    )
    assert first[0].error is None and first[3].error is None
    for broken in first[1:3]:
        assert broken.error and broken.final_structure is None
        assert math.isnan(broken.final_energy_per_atom) and not broken.converged
    assert "isolated" in first[2].error
    assert chgnet.num_calls > 0

    fresh = CHGNetModel(chgnet.chgnet, device="cpu")
    second = relax_structures(
        inputs, config=FEW_STEPS, cache_path=cache, model=fresh, progress=False
    )
    assert fresh.num_calls == 0  # everything came from the cache, failures included
    for a, b in zip(first, second, strict=True):
        assert (a.steps, a.converged, a.error) == (b.steps, b.converged, b.error)
        if a.error is None:
            assert a.final_energy_per_atom == pytest.approx(b.final_energy_per_atom, abs=1e-9)


@pytest.mark.slow
def test_worker_processes_give_the_same_results(mp20_perturbed) -> None:
    inputs = mp20_perturbed * 3  # 9 structures: enough for two workers (identical ones would
    # be relaxed once, so each copy is moved a little)
    inputs = [perturb_structure(s, seed=i, displacement=0.01) for i, s in enumerate(inputs)]
    config = RelaxConfig(max_steps=5, num_workers=2)
    in_workers = relax_structures(inputs, config=config, progress=False)
    in_process = relax_structures(
        inputs, config=RelaxConfig(max_steps=5, num_workers=1), progress=False
    )
    for a, b in zip(in_workers, in_process, strict=True):
        assert a.steps == b.steps
        assert a.final_energy_per_atom == pytest.approx(b.final_energy_per_atom, abs=1e-5)


@pytest.mark.slow
def test_a_failing_worker_fails_its_structures_and_caches_none(mp20_perturbed, tmp_path) -> None:
    # Workers load CHGNet themselves: an unknown version makes both fail at start-up
    inputs = [
        perturb_structure(s, seed=i, displacement=0.01) for i, s in enumerate(mp20_perturbed * 3)
    ]
    config = RelaxConfig(model_name="9.9.9", max_steps=2, num_workers=2)  # type: ignore[arg-type]
    cache = tmp_path / "relax.jsonl"
    results = relax_structures(inputs, config=config, cache_path=cache, progress=False)
    assert len(results) == len(inputs)
    for result in results:
        assert result.error.startswith("worker process failed: ValueError")
        assert "9.9.9" in result.error and result.final_structure is None
    assert not cache.exists() or cache.read_text() == ""  # retried on the next run


def test_kit_crystals_in_and_an_element_chgnet_lacks_is_recorded(
    chgnet: CHGNetModel, mp20_perturbed
) -> None:
    # CHGNet's element embedding stops at Z = 94: fermium (100) makes its forward pass fail
    exotic = Structure(Lattice.cubic(4.0), ["Fm", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    crystal = Crystal.from_structure(mp20_perturbed[0])
    fine, crashed = relax_structures(
        [crystal, exotic], config=FEW_STEPS, model=chgnet, progress=False
    )
    assert fine.error is None and fine.steps > 0
    assert fine.final_structure.composition == mp20_perturbed[0].composition
    assert crashed.error and not crashed.converged and crashed.final_structure is None
    assert math.isnan(crashed.final_energy_per_atom)
