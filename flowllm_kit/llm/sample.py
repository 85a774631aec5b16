"""Draw crystals from a fine-tuned language model until enough of them parse.

Prompts are generated in batches (left padding, KV cache, nucleus sampling, stop at the
end-of-sequence token); every sample is decoded with :func:`flowllm_kit.text.decode` and
either kept or counted as rejected under its :class:`~flowllm_kit.text.ParseError` reason
(``truncated`` when no end-of-sequence token came within ``max_new_tokens``, or a reason
returned by the caller's ``accept`` check). Every draw is appended to a JSON lines file as
soon as it is decoded, so an interrupted run resumes where it stopped. With
``LLMSamplingConfig(continuous=True)`` the rows of a batch are refilled as their texts end
(:mod:`flowllm_kit.llm.stream`) instead of waiting for the batch's longest text::

    result = sample_crystals(model, tokenizer, num_crystals=1000, path="run/samples.jsonl")
    result.crystals          # exactly 1000 crystals
    result.rejections        # e.g. {"bad_number": 3, "truncated": 1}
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from flowllm_kit import text
from flowllm_kit.crystal import Crystal
from flowllm_kit.crystal.io import append_jsonl
from flowllm_kit.distributed import under_launcher, world
from flowllm_kit.llm.config import LLMSamplingConfig
from flowllm_kit.llm.continuous import draw_continuously
from flowllm_kit.llm.draws import Accept, LLMDraw, LLMSamples, judge, read_draws
from flowllm_kit.llm.generate import generate_texts
from flowllm_kit.llm.sharded import sample_sharded
from flowllm_kit.llm.stream import supports_streaming
from flowllm_kit.progress import progress_bar as bar_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DRAWS_PER_CRYSTAL",
    "generate_texts",
    "sample_crystals",
]

DRAWS_PER_CRYSTAL = 20
"""Draws allowed per crystal wanted when no budget is given: a model that writes no valid crystal
(or no matching composition) stops after this many tries per crystal."""

Prompts = str | Sequence[str] | Callable[[int], str]
"""One prompt for every draw, a list cycled through, or draw index -> prompt."""


def _prompt_function(prompts: Prompts) -> Callable[[int], str]:
    if isinstance(prompts, str):
        return lambda draw: prompts
    if callable(prompts):
        return prompts
    if not prompts:
        raise ValueError("prompts must not be empty")
    return lambda draw: prompts[draw % len(prompts)]


def _check_finite(model: PreTrainedModel) -> None:
    """Raise if a floating-point weight of ``model`` holds NaN or infinity."""
    for name, parameter in model.named_parameters():
        if parameter.is_floating_point() and not bool(torch.isfinite(parameter).all()):
            raise ValueError(
                f"the model's weight {name!r} holds NaN or infinite values, so it cannot be "
                f"sampled: its training diverged (try a lower learning rate, or an earlier "
                f"checkpoint of the run)"
            )


def sample_crystals(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    num_crystals: int,
    prompts: Prompts | None = None,
    config: LLMSamplingConfig = LLMSamplingConfig(),  # noqa: B008 (frozen dataclass)
    path: str | Path | None = None,
    accept: Accept | None = None,
    max_draws: int | None = None,
    seed: int | None = 0,
    decode: Callable[[str], Crystal] | None = None,
    compositions: Callable[[int], Mapping[str, int]] | None = None,
    progress_bar: bool = True,
    desc: str = "LLM sampling",
    sharded: bool | None = None,
) -> LLMSamples:
    """Draw samples until ``num_crystals`` of them are valid crystals.

    Args:
        model: The fine-tuned causal LM.
        tokenizer: Its tokenizer.
        num_crystals: Crystals to return.
        prompts: One prompt, a list cycled through, or a function of the draw index
            (default: the unconditional prompt).
        config: Sampling settings.
        path: JSON lines file of all draws. If it exists, its draws are read back and
            sampling continues after the last one.
        accept: Extra check of each parsed crystal; returns a rejection reason or ``None``.
        max_draws: Stop after this many draws even if too few crystals were kept (default:
            :data:`DRAWS_PER_CRYSTAL` ``* num_crystals``, so a model that writes no valid crystal
            cannot loop forever).
        seed: Seed of the sampling, mixed with each batch's first draw index, so a run
            resumed after an interruption between batches draws what an uninterrupted one
            would have; ``None``: torch's current state.
        decode: Text -> crystal (default :func:`flowllm_kit.text.decode`).
        compositions: Draw index -> ``{element: count}`` its element lines are held to
            (composition-constrained decoding, :mod:`flowllm_kit.llm.constrain`); ``None``: the
            model writes elements freely.
        progress_bar: Show a tqdm bar of kept crystals.
        desc: The bar's label (also on the series runner's terminal).
        sharded: Split the draws over the launcher's processes in fixed blocks
            (:mod:`flowllm_kit.llm.sharded`; each rank writes ``<path>.rank-<r>.jsonl`` and
            rank 0 merges them into ``path``); None: whenever a launcher started this process.
            The crystals then do not depend on the number of processes.

    Returns:
        A :class:`LLMSamples` with the first ``num_crystals`` crystals in draw order.

    Raises:
        ValueError: If some weight of ``model`` is NaN or infinite (a diverged training run),
            which would otherwise surface as an obscure error deep inside the sampling.
    """

    _check_finite(model)
    start = time.perf_counter()
    max_draws = DRAWS_PER_CRYSTAL * num_crystals if max_draws is None else max_draws
    prompt_of = _prompt_function(prompts if prompts is not None else text.generation_prompt())
    decode = decode or text.decode
    if sharded if sharded is not None else (world().size > 1 or under_launcher()):
        if path is None or seed is None:
            raise ValueError("sharded sampling needs a samples file (path) and a seed")
        return sample_sharded(
            model, tokenizer, num_crystals=num_crystals, prompt_of=prompt_of, config=config,
            path=path, max_draws=max_draws, seed=seed, decode=decode, accept=accept,
            compositions=compositions, progress_bar=progress_bar, desc=desc,
        )  # fmt: skip
    records = read_draws(path) if path is not None else []
    result = LLMSamples(crystals=[], texts=[], draws=[], num_resumed=len(records))

    def take(record: LLMDraw) -> None:
        result.num_draws += 1
        if record.reason is not None:
            result.rejections[record.reason] += 1
        elif len(result.crystals) < num_crystals and record.crystal is not None:
            result.crystals.append(record.crystal)
            result.texts.append(record.text)
            result.draws.append(record.draw)

    if config.continuous and compositions is None and supports_streaming(model):
        records = draw_continuously(
            model, tokenizer, result, records, num_crystals=num_crystals, prompt_of=prompt_of,
            config=config, path=path, accept=accept, max_draws=max_draws, seed=seed,
            decode=decode, progress_bar=progress_bar, desc=desc,
        )  # fmt: skip
        for record in records:
            take(record)
        result.seconds = time.perf_counter() - start
        return result
    for record in records:
        take(record)
    bar = bar_of(
        total=num_crystals, initial=len(result.crystals), disable=not progress_bar, desc=desc,
        unit="crystals",
    )  # fmt: skip
    try:
        while len(result.crystals) < num_crystals and result.num_draws < max_draws:
            # Ask for what is still missing at the acceptance rate seen so far (+10%).
            missing = num_crystals - len(result.crystals)
            rate = max(result.acceptance_rate if result.num_draws else 1.0, 0.05)
            size = min(config.batch_size, math.ceil(1.1 * missing / rate))
            size = min(size, max_draws - result.num_draws)
            first = result.num_draws
            if seed is not None:
                torch.manual_seed(seed * 1_000_003 + first)
            tick = time.perf_counter()
            texts, num_tokens = generate_texts(
                model,
                tokenizer,
                [prompt_of(first + i) for i in range(size)],
                config=config,
                compositions=None
                if compositions is None
                else [compositions(first + i) for i in range(size)],
            )
            result.generate_seconds += time.perf_counter() - tick
            result.num_tokens += num_tokens
            kept = len(result.crystals)
            records = [
                judge(sample, first + i, decode=decode, accept=accept)
                for i, sample in enumerate(texts)
            ]
            if path is not None:
                append_jsonl([record.to_dict() for record in records], path)
            for record in records:
                take(record)
            bar.update(len(result.crystals) - kept)
            bar.set_postfix(rejected=sum(result.rejections.values()))
    finally:
        bar.close()
    result.seconds = time.perf_counter() - start
    return result
