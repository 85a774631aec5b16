"""LLM configuration: presets, validation, JSON round trip."""

from __future__ import annotations

import json

import pytest

from flowllm_kit.llm import (
    LLM_PRESETS,
    FinetuneConfig,
    LLMConfig,
    LoRAConfig,
    ScratchModelConfig,
    llm_preset,
)
from flowllm_kit.presets import PRESET_NAMES


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_round_trip_through_json(name: str) -> None:
    config = llm_preset(name)
    assert LLMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_paper_preset_follows_the_paper() -> None:
    paper = llm_preset("paper")
    assert paper.quantization == "4bit"
    assert (paper.lora.r, paper.lora.alpha, paper.lora.dropout) == (8, 32, 0.05)
    assert paper.finetune.learning_rate == 5e-4 and paper.finetune.batch_size == 16
    assert (paper.pairs.temperature, paper.pairs.top_p) == (0.9, 0.99)
    assert (paper.sampling.temperature, paper.sampling.top_p) == (0.7, 0.9)


def test_cpu_presets_train_from_scratch() -> None:
    assert LLM_PRESETS["smoke"].scratch is not None and LLM_PRESETS["demo"].scratch is not None


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        LLMConfig()
    with pytest.raises(ValueError, match="exactly one"):
        LLMConfig(scratch=ScratchModelConfig(), pretrained="x")
    with pytest.raises(ValueError, match="LoRA"):
        LLMConfig(pretrained="x", quantization="4bit")
    with pytest.raises(ValueError, match="divisible"):
        ScratchModelConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="unknown preset"):
        llm_preset("huge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pack_length"):
        FinetuneConfig(pack_length=0)
    with pytest.raises(ValueError, match="formula_probability"):
        FinetuneConfig(formula_probability=1.5)
    assert LLMConfig(pretrained="x", lora=LoRAConfig(), quantization="8bit").lora.r == 8
