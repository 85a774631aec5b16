"""The continuous-batching loop of :func:`flowllm_kit.llm.sample_crystals`: draws end, and are
judged and written, as :func:`flowllm_kit.llm.stream.stream_generate` finishes them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from flowllm_kit.crystal.io import append_jsonl
from flowllm_kit.llm.config import LLMSamplingConfig
from flowllm_kit.llm.draws import Accept, LLMDraw, LLMSamples, judge
from flowllm_kit.llm.stream import stream_generate
from flowllm_kit.progress import progress_bar as bar_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["draw_continuously"]


def draw_continuously(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    result: LLMSamples,
    records: list[LLMDraw],
    *,
    num_crystals: int,
    prompt_of: Callable[[int], str],
    config: LLMSamplingConfig,
    path: str | Path | None,
    accept: Accept | None,
    max_draws: int,
    seed: int | None,
    decode: Callable,
    progress_bar: bool,
    desc: str,
) -> list[LLMDraw]:
    """The draws of :func:`sample_crystals` with continuous batching
    (:mod:`flowllm_kit.llm.stream`): the resumed ``records`` and the new ones, in draw order.

    Draws end, and are written, out of order; a run stops issuing draws once the crystals kept
    plus those expected from the draws in flight reach ``num_crystals``, and lets those finish,
    so the draws done always form a prefix ``0..D-1`` (draws lost to an interruption are redone
    first on resume). The first ``num_crystals`` kept draws in draw order are then the same for
    any such prefix, since each draw's text depends only on ``seed`` and its index. Adds the
    tokens and time of generation to ``result``.
    """

    done = {record.draw: record for record in records}
    redo = sorted(set(range(max(done, default=-1) + 1)) - set(done))
    upcoming = iter([*redo, *range(max(done, default=-1) + 1, max_draws)])
    kept = {draw for draw, record in done.items() if record.kept}
    in_flight = 0

    def acceptance() -> float:
        return max((len(kept) / len(done)) if done else 1.0, 0.05)

    def next_prompt() -> tuple[int, str] | None:
        nonlocal in_flight
        if len(kept) + in_flight * acceptance() >= num_crystals:
            return None
        draw = next(upcoming, None)
        if draw is None:
            return None
        in_flight += 1
        return draw, prompt_of(draw)

    # seed None: a base seed from torch's current state (so torch.manual_seed still rules).
    base_seed = int(torch.randint(2**31 - 1, ())) if seed is None else seed
    bar = bar_of(
        total=num_crystals, initial=min(len(kept), num_crystals), disable=not progress_bar,
        desc=desc, unit="crystals",
    )  # fmt: skip
    tick = time.perf_counter()
    try:
        for finished in stream_generate(
            model, tokenizer, next_prompt, config=config, seed=base_seed
        ):
            in_flight -= 1
            record = judge(finished.text, finished.draw, decode=decode, accept=accept)
            if path is not None:
                append_jsonl([record.to_dict()], path)
            done[finished.draw] = record
            result.num_tokens += finished.num_tokens
            if record.kept:
                kept.add(finished.draw)
                bar.update(1 if len(kept) <= num_crystals else 0)
            bar.set_postfix(rejected=len(done) - len(kept))
    finally:
        bar.close()
        result.generate_seconds += time.perf_counter() - tick
    return [done[draw] for draw in sorted(done)]
