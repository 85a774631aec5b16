"""The flow stage functions on a run folder: four models, FlowMM generating its atom types."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from flowllm_kit.flow import FlowSamplerConfig, network_preset, train_preset
from flowllm_kit.llm import PairSet
from flowllm_kit.run import RunFolder, RunFolderError
from flowllm_kit.stages import (
    FLOW_MODELS,
    flow_runs,
    flow_starts,
    load_flows,
    record_trajectory,
    sample_flows,
    train_flows,
)


@pytest.fixture
def trained_run(tmp_path, make_pairs):
    """A run folder with a pair set and the four flows trained for two steps."""
    pairs = make_pairs(6)
    run = RunFolder(tmp_path)
    PairSet([p[0] for p in pairs], [p[1] for p in pairs], list(range(6)), num_draws=6).save(
        run.pairs
    )
    config = dataclasses.replace(train_preset("smoke"), max_steps=2, batch_size=3, progress=False)
    train_flows(run, flow_runs(PairSet.load(run.pairs)), network=network_preset("smoke"),
                config=config)  # fmt: skip
    return run, pairs


def test_flowmm_generates_types_and_flowmm_csp_keeps_training_ones(trained_run):
    run, pairs = trained_run
    networks = load_flows(run, FLOW_MODELS)
    assert {name: net.type_bits for name, net in networks.items()} == {
        "flowllm": 0, "flowmm": 7, "flowmm_csp": 0, "flowllm_types": 0,
    }  # fmt: skip
    starts = flow_starts(run, ["flowmm", "flowmm_csp"], n=5, seed=0)
    sampler = FlowSamplerConfig(num_steps=3)
    generated = sample_flows(run, networks, starts, sampler=sampler, batch_size=4, seed=2)
    targets = {c.formula for _, c in pairs}
    assert {c.formula for c in generated["flowmm_csp"]} <= targets
    assert {c.num_atoms for c in generated["flowmm"]} <= {c.num_atoms for _, c in pairs}
    # The recorded solve ends at the written crystals, types included.
    recorded = dataclasses.replace(sampler, record_every=1)
    trajectory = record_trajectory(
        networks["flowmm"], starts["flowmm"], count=3, sampler=recorded, batch_size=4, seed=2
    )
    ends = trajectory.crystals_at(len(trajectory) - 1).to_crystals()
    for end, written in zip(ends, generated["flowmm"], strict=False):
        assert np.array_equal(end.atomic_numbers, written.atomic_numbers)
        assert np.allclose(end.lengths, written.lengths, atol=1e-4)


def test_a_fixed_type_network_under_the_name_flowmm_is_refused(trained_run):
    run, _ = trained_run
    csp = run.flow_checkpoint("flowmm_csp")
    old = run.flow_checkpoint("flowmm")
    for file in csp.iterdir():  # as a kit before de novo FlowMM left it
        (old / file.name).write_bytes(file.read_bytes())
    with pytest.raises(RunFolderError, match="FlowMM-CSP"):
        load_flows(run, ["flowmm"])


def test_training_does_not_resume_from_a_checkpoint_of_another_network(trained_run):
    run, _ = trained_run
    csp, old = run.flow_checkpoint("flowmm_csp"), run.flow_checkpoint("flowmm")
    for file in csp.iterdir():
        (old / file.name).write_bytes(file.read_bytes())
    config = dataclasses.replace(train_preset("smoke"), max_steps=2, batch_size=3, progress=False)
    runs = flow_runs(PairSet.load(run.pairs))
    with pytest.raises(RunFolderError, match="type_bits differs"):
        train_flows(run, runs, network=network_preset("smoke"), config=config, models=["flowmm"])
    trained = train_flows(
        run, runs, network=network_preset("smoke"), config=config, models=["flowmm"],
        resume=False,
    )  # fmt: skip
    assert trained["flowmm"].trainer.network.type_bits == 7
