"""The LLM stage: a language model that writes crystals as text, and the pair set it makes.

::

    from flowllm_kit import llm, text

    config = llm.llm_preset("smoke")
    model, tokenizer = llm.build_model(config, tokenizer=text.build_tokenizer())
    llm.finetune(model, tokenizer, train_crystals, run_dir="runs/smoke/llm", config=config)
    model, tokenizer = llm.load_model("runs/smoke/llm/model")
    result = llm.sample_crystals(model, tokenizer, num_crystals=100, path="runs/smoke/s.jsonl")
    pairs = llm.build_pairs(model, tokenizer, train_crystals, run_dir="runs/smoke/pairs")

Importing this package does not import transformers or peft; the functions do.
"""

from __future__ import annotations

from flowllm_kit.llm.agreement import CompositionAgreement, composition_agreement
from flowllm_kit.llm.config import (
    LLM_PRESETS,
    SCRATCH_PRESETS,
    FinetuneConfig,
    LLMConfig,
    LLMSamplingConfig,
    LoRAConfig,
    PairConfig,
    ScratchModelConfig,
    llm_preset,
)
from flowllm_kit.llm.constrain import CompositionConstraint
from flowllm_kit.llm.crystal_lists import (
    CRYSTAL_LISTS_FILE,
    CrystalLists,
    read_crystal_lists,
    write_crystal_lists,
)
from flowllm_kit.llm.draws import LLMDraw, LLMSamples, judge, llm_starts, read_draws
from flowllm_kit.llm.finetune import FinetuneResult, TextDataset, finetune, render_training_text
from flowllm_kit.llm.model import (
    build_model,
    count_parameters,
    load_model,
    merge_lora,
    pretrained_model,
    scratch_model,
)
from flowllm_kit.llm.pairs import PairSet, align_atoms, build_pairs
from flowllm_kit.llm.sample import (
    DRAWS_PER_CRYSTAL,
    generate_texts,
    sample_crystals,
)

__all__ = [
    "CRYSTAL_LISTS_FILE",
    "DRAWS_PER_CRYSTAL",
    "CompositionAgreement",
    "CompositionConstraint",
    "LLM_PRESETS",
    "SCRATCH_PRESETS",
    "FinetuneConfig",
    "FinetuneResult",
    "LLMConfig",
    "LLMDraw",
    "LoRAConfig",
    "PairConfig",
    "PairSet",
    "LLMSamples",
    "LLMSamplingConfig",
    "ScratchModelConfig",
    "TextDataset",
    "CrystalLists",
    "align_atoms",
    "build_model",
    "build_pairs",
    "composition_agreement",
    "count_parameters",
    "finetune",
    "generate_texts",
    "judge",
    "llm_starts",
    "llm_preset",
    "load_model",
    "merge_lora",
    "pretrained_model",
    "read_crystal_lists",
    "read_draws",
    "render_training_text",
    "sample_crystals",
    "scratch_model",
    "write_crystal_lists",
]
