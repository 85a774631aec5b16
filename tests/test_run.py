"""The run folder's layout, spelt once: paths of every stage, and the sample sets it holds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flowllm_kit.crystal import Crystal, write_crystals
from flowllm_kit.evaluate.systems import find_systems
from flowllm_kit.run import LLM_ONLY, RunFolder


def test_paths_of_every_stage_are_inside_the_folder(tmp_path: Path) -> None:
    run = RunFolder(str(tmp_path))
    assert run.root == tmp_path and os.fspath(run) == str(tmp_path) and str(run) == str(tmp_path)
    assert run.pairs == tmp_path / "pairs" / "pairs.npz"
    assert run.val_pairs == tmp_path / "pairs_val" / "pairs.npz"
    assert run.flow_checkpoint("flowmm") == tmp_path / "flow" / "flowmm" / "checkpoint"
    assert run.samples_file("flowllm") == tmp_path / "samples" / "flowllm.jsonl"
    assert run.trajectory("flowllm") == tmp_path / "samples" / "trajectory_flowllm.npz"
    assert run.per_structure("real") == tmp_path / "evaluation" / "real" / "per_structure.csv"
    paths = [
        run.figures, run.tokenizer, run.llm, run.llm_model, run.llm_config, run.llm_samples,
        run.sampler_settings, run.validity_vs_steps, run.metrics, run.comparison,
        run.report_settings("x"), run.notebooks, run.stages, run.logs,
    ]  # fmt: skip
    assert all(p.is_relative_to(tmp_path) for p in paths)
    assert len(set(paths)) == len(paths)
    assert not any(tmp_path.iterdir())  # naming a path creates nothing
    assert RunFolder(tmp_path) == run


def test_sample_sets_are_the_flow_samples_then_the_llm_draws(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    assert run.sample_sets() == {}
    run.samples.mkdir()
    crystals = [
        Crystal(
            atomic_numbers=np.array([11, 17]),
            frac_coords=np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]),
            lengths=np.full(3, 4.0),
            angles=np.full(3, 90.0),
            id=f"nacl-{i}",
        )
        for i in range(2)
    ]
    for name in ("flowmm", "flowllm"):
        write_crystals(crystals, run.samples_file(name))
    run.llm_samples.write_text("")
    assert list(run.sample_sets()) == ["flowllm", "flowmm", LLM_ONLY]
    assert run.sample_sets()[LLM_ONLY] == run.llm_samples
    # The evaluation reads the same sets (an empty file holds no system).
    assert list(find_systems(tmp_path)) == ["flowllm", "flowmm"]
