"""Crystals as text: the CrystalLLM codec, prompt templates, a tokenizer, perplexity and IPT.

::

    from flowllm_kit import text

    crystal_text = text.encode(crystal, translate=True)
    crystal = text.decode(crystal_text)  # or raises text.ParseError with a .reason
    prompt = text.generation_prompt(formula="GaTe")
    tokenizer = text.build_tokenizer()  # for models trained from scratch

Importing this package does not import transformers; :func:`build_tokenizer` does.
"""

from __future__ import annotations

from flowllm_kit.text.codec import (
    PARSE_ERROR_REASONS,
    ParseError,
    ParseErrorReason,
    decode,
    element_symbols,
    encode,
)
from flowllm_kit.text.perplexity import increase_in_perplexity, perplexity
from flowllm_kit.text.prompts import (
    ATTRIBUTES,
    CONDITIONINGS,
    MASK,
    Attribute,
    Conditioning,
    crystal_attributes,
    formula_prompt,
    generation_prompt,
    infill_prompt,
    mask_element,
    sample_attributes,
    training_text,
)
from flowllm_kit.text.tokenizer import build_tokenizer

__all__ = [
    "ATTRIBUTES",
    "CONDITIONINGS",
    "MASK",
    "PARSE_ERROR_REASONS",
    "Attribute",
    "Conditioning",
    "ParseError",
    "ParseErrorReason",
    "build_tokenizer",
    "crystal_attributes",
    "decode",
    "element_symbols",
    "encode",
    "formula_prompt",
    "generation_prompt",
    "increase_in_perplexity",
    "infill_prompt",
    "mask_element",
    "perplexity",
    "sample_attributes",
    "training_text",
]
