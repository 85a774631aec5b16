"""Presets: every component's lookup names a misspelt preset and the choices the same way."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from flowllm_kit.flow import network_preset, train_preset
from flowllm_kit.llm import LLMConfig, llm_preset
from flowllm_kit.presets import PRESET_NAMES, configure_threads, get_preset


@pytest.mark.parametrize("lookup", [get_preset, llm_preset, network_preset, train_preset])
def test_unknown_preset_is_named_with_the_choices(lookup) -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'smokey'; choose one of smoke, demo"):
        lookup("smokey")
    assert lookup("smoke") is lookup("smoke")


def test_configure_threads_uses_argument_then_preset() -> None:
    assert configure_threads("smoke") == 1  # the smoke preset's single thread
    assert configure_threads("demo", 2) == 2
    before = torch.get_num_threads()
    assert configure_threads("demo") == before  # demo leaves torch's setting alone


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_a_run_preset_holds_each_components_preset_once(name: str) -> None:
    from flowllm_kit.evaluate import ReportSettings, report_preset
    from flowllm_kit.flow import flow_configs
    from flowllm_kit.presets import EvaluationConfig
    from flowllm_kit.stages import run_preset

    preset = run_preset(name)
    assert preset.data == get_preset(name).data and preset.llm == llm_preset(name)
    assert (preset.network, preset.training) == flow_configs(name)
    assert preset.report == report_preset(name)
    # The evaluation's sizes and its scoring are separate configs: no setting in both.
    sizes = {f.name for f in dataclasses.fields(EvaluationConfig)}
    scoring = {f.name for f in dataclasses.fields(ReportSettings)}
    assert sizes == {"n_evaluate", "n_reference", "systems", "controls"} and not sizes & scoring
    whole = json.loads(preset.to_json())
    assert list(whole) == [f.name for f in dataclasses.fields(preset)]
    assert LLMConfig.from_dict(whole["llm"]) == preset.llm
    assert whole["training"]["max_steps"] == preset.training.max_steps


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_the_systems_a_preset_evaluates_are_ones_a_run_can_hold(name: str) -> None:
    from flowllm_kit.run import LLM_ONLY
    from flowllm_kit.stages.flow import FLOW_MODELS

    evaluation = get_preset(name).evaluation
    assert set(evaluation.systems or ()) <= {*FLOW_MODELS, LLM_ONLY}  # a typo would drop one
    assert "real" in evaluation.controls  # the yardstick of every stability rate
    assert set(evaluation.controls) <= {"real", "perturbed"}


def test_relaxation_budget_of_each_preset() -> None:
    from flowllm_kit.evaluate import report_preset

    steps = {name: report_preset(name).relax.max_steps for name in PRESET_NAMES}
    assert steps == {"smoke": 100, "demo": 250, "kit": 250, "paper": 1500}  # docs/METHOD.md §9


def test_kit_preset_is_the_paper_method_at_kit_scale() -> None:
    """The kit-scale recipe: the paper's pair sampling and rejection (no constrained
    decoding), tens of thousands of pairs, flows stopped by their validation loss, 500 crystals
    evaluated per system."""
    kit = llm_preset("kit")
    pairs = kit.pairs
    assert (pairs.temperature, pairs.top_p, pairs.constrain_composition) == (0.9, 0.99, False)
    assert pairs.num_pairs >= 10_000 and pairs.max_draws >= 3 * pairs.num_pairs
    assert kit.finetune.max_steps > llm_preset("demo").finetune.max_steps
    training = train_preset("kit")
    assert training.patience and training.val_every and training.max_steps >= 10_000
    assert network_preset("kit") == network_preset(
        "demo"
    )  # the shipped demo's shape, trained on more
    assert get_preset("kit").evaluation.n_evaluate == 500 <= get_preset("kit").num_samples


def test_presets_command_prints_a_preset_whole(capsys) -> None:
    from flowllm_kit.cli import main

    assert main(["presets", "show", "smoke"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "smoke" and shown["report"]["relax"]["max_steps"] == 100
    assert main(["presets", "show", "--preset", "demo", "--flow-choices", "reference"]) == 0
    reference = json.loads(capsys.readouterr().out)
    assert reference["name"] == "demo"
    assert reference["network"]["lattice_representation"] == "logit"  # the reference's space
    assert main(["presets", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("demo: mp_20 (val -> test)")
