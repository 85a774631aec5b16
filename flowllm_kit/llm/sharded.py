"""LLM sampling split over the processes a launcher started (or the tasks of a SLURM array),
with a result that does not depend on how many there were.

The draws ``0, 1, 2, ...`` are cut into blocks of ``block_size`` consecutive draws. Block ``b``
is drawn by rank ``b mod N`` and is seeded from ``seed`` and its first draw only: in one
``generate`` call seeded ``seed * 1_000_003 + first`` (the batch rule of
:func:`~flowllm_kit.llm.sample_crystals`), or with continuous batching from one generator per
draw (:mod:`flowllm_kit.llm.stream`). So every draw's text is fixed by the seed and its index.
The ranks draw round by round (``N`` blocks a round), sum what they kept, and stop together
once the blocks drawn hold ``num_crystals`` kept crystals or reach ``max_draws``. Rank 0 then
merges the ranks' files in draw order and keeps the draws up to the ``num_crystals``-th kept
one: the same crystals, texts and counts for any ``N``.

Each rank appends its draws to its own file (``<samples>.rank-<r>.jsonl``) as blocks end; an
interrupted run, resumed with any number of processes, reads every rank's file and draws only
the blocks missing. A SLURM array task has no peers to sum with: it draws a fixed budget of
blocks (:func:`draw_blocks`), and :func:`merge_draws` then reads what all the tasks wrote.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from flowllm_kit.crystal import Crystal
from flowllm_kit.crystal.io import append_jsonl
from flowllm_kit.distributed import World, all_sum, barrier, shard_path, shard_paths, world
from flowllm_kit.llm.config import LLMSamplingConfig
from flowllm_kit.llm.draws import Accept, LLMDraw, LLMSamples, judge, read_draws
from flowllm_kit.llm.generate import generate_texts
from flowllm_kit.llm.stream import stream_generate, supports_streaming
from flowllm_kit.progress import progress_bar as bar_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["block_size_of", "draw_blocks", "merge_draws", "sample_sharded"]

CONTINUOUS_BLOCK_BATCHES = 4
"""With continuous batching a block holds this many batches, so rows are refilled within it."""


def block_size_of(config: LLMSamplingConfig) -> int:
    """Draws per block: one batch, or :data:`CONTINUOUS_BLOCK_BATCHES` batches when decoding
    continuously."""
    return config.batch_size * (CONTINUOUS_BLOCK_BATCHES if config.continuous else 1)


def _draw_block(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    draws: list[int],
    *,
    first: int,
    prompt_of: Callable[[int], str],
    config: LLMSamplingConfig,
    seed: int,
    decode: Callable[[str], Crystal],
    accept: Accept | None,
    compositions: Callable[[int], Mapping[str, int]] | None,
) -> tuple[list[LLMDraw], int]:
    """Draw ``draws`` (the missing draws of the block starting at ``first``); returns their
    records in draw order and the tokens generated."""
    if config.continuous and compositions is None and supports_streaming(model):
        pending = iter(draws)

        def next_prompt() -> tuple[int, str] | None:
            draw = next(pending, None)
            return None if draw is None else (draw, prompt_of(draw))

        records, tokens = [], 0
        for finished in stream_generate(model, tokenizer, next_prompt, config=config, seed=seed):
            records.append(judge(finished.text, finished.draw, decode=decode, accept=accept))
            tokens += finished.num_tokens
        return sorted(records, key=lambda r: r.draw), tokens
    # One generate call per block: a block cut short by an interruption is drawn whole again.
    draws = list(range(first, draws[-1] + 1))
    torch.manual_seed(seed * 1_000_003 + first)
    texts, tokens = generate_texts(
        model, tokenizer, [prompt_of(d) for d in draws], config=config,
        compositions=None if compositions is None else [compositions(d) for d in draws],
    )  # fmt: skip
    return [
        judge(t, d, decode=decode, accept=accept) for t, d in zip(texts, draws, strict=True)
    ], tokens


def _read_all(path: Path, own: Path) -> dict[int, LLMDraw]:
    """Every draw in the shard files of ``path`` (only this rank's own file is repaired)."""
    done: dict[int, LLMDraw] = {}
    for shard in shard_paths(path):
        for record in read_draws(shard, repair=shard == own):
            done.setdefault(record.draw, record)
    return done


def sample_sharded(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    num_crystals: int,
    prompt_of: Callable[[int], str],
    config: LLMSamplingConfig,
    path: str | Path,
    max_draws: int,
    seed: int,
    decode: Callable[[str], Crystal],
    accept: Accept | None = None,
    compositions: Callable[[int], Mapping[str, int]] | None = None,
    progress_bar: bool = True,
    desc: str = "LLM sampling",
    on: World | None = None,
) -> LLMSamples:
    """:func:`~flowllm_kit.llm.sample_crystals` over every process of ``on`` (default: the
    launcher's world); the arguments are that function's, already resolved. Every process
    returns the merged result, which rank 0 also writes to ``path``."""
    on = on or world()
    start = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    own = shard_path(path, on.rank)
    done = _read_all(path, own)
    barrier()  # every rank has read (and repaired its own file) before anyone appends
    block = block_size_of(config)
    num_blocks = math.ceil(max_draws / block)
    kept_total, tokens, resumed, generating, drawn_until = 0, 0, len(done), 0.0, 0
    bar = bar_of(
        total=num_crystals, disable=not (progress_bar and on.is_main), desc=desc, unit="crystals"
    )
    # Resumed: the draws already done from 0 on, and how many crystals they hold; a block after
    # a done prefix that holds enough crystals is not drawn.
    prefix = 0
    while prefix in done:
        prefix += 1
    kept_prefix = sum(done[d].kept for d in range(prefix))
    for round_start in range(0, num_blocks, on.size):
        index = round_start + on.rank
        kept_here = 0
        if index < num_blocks:
            first = index * block
            draws = range(first, min(first + block, max_draws))
            missing = [d for d in draws if d not in done]
            if missing and not (first <= prefix and kept_prefix >= num_crystals):
                tick = time.perf_counter()
                records, used = _draw_block(
                    model, tokenizer, missing, first=first, prompt_of=prompt_of, config=config,
                    seed=seed, decode=decode, accept=accept, compositions=compositions,
                )  # fmt: skip
                generating += time.perf_counter() - tick
                append_jsonl([r.to_dict() for r in records if r.draw not in done], own)
                done.update({r.draw: r for r in records if r.draw not in done})
                tokens += used
            kept_here = sum(done[d].kept for d in draws if d in done)
        kept_round = int(all_sum([kept_here])[0])
        kept_total += kept_round
        drawn_until = min((round_start + on.size) * block, max_draws)
        bar.update(min(kept_round, max(num_crystals - bar.n, 0)))
        if kept_total >= num_crystals:
            break
    bar.close()
    barrier()
    if on.is_main:
        merge_draws(path, num_crystals=num_crystals, drawn_until=drawn_until)
    barrier()
    result = samples_from(read_draws(path, repair=False), num_crystals)
    result.num_resumed = resumed
    result.num_tokens = int(all_sum([tokens])[0])
    result.generate_seconds = generating  # this process's time in generate
    result.seconds = time.perf_counter() - start
    return result


def draw_blocks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    task: int,
    num_tasks: int,
    max_draws: int,
    prompt_of: Callable[[int], str],
    config: LLMSamplingConfig,
    path: str | Path,
    seed: int,
    decode: Callable[[str], Crystal],
    accept: Accept | None = None,
    compositions: Callable[[int], Mapping[str, int]] | None = None,
) -> int:
    """One SLURM array task's share: the blocks ``task, task + num_tasks, ...`` of the first
    ``max_draws`` draws, into ``<path>.rank-<task>.jsonl`` (resumable). Returns the draws
    written. No peers are waited for; :func:`merge_draws` reads what the tasks wrote."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    own = shard_path(path, task)
    done = _read_all(path, own)
    block, written = block_size_of(config), 0
    for index in range(task, math.ceil(max_draws / block), num_tasks):
        first = index * block
        missing = [d for d in range(first, min(first + block, max_draws)) if d not in done]
        if missing:
            records, _ = _draw_block(
                model, tokenizer, missing, first=first, prompt_of=prompt_of, config=config,
                seed=seed, decode=decode, accept=accept, compositions=compositions,
            )  # fmt: skip
            append_jsonl([r.to_dict() for r in records if r.draw not in done], own)
            written += len(records)
    return written


def merge_draws(
    path: str | Path, *, num_crystals: int, drawn_until: int | None = None
) -> LLMSamples:
    """Merge the shard files of ``path`` into ``path``: the draws in order, up to the
    ``num_crystals``-th kept one (all of them when fewer were kept).

    Args:
        drawn_until: Only draws below this index count (the blocks every rank finished); None:
            the longest run of consecutive draws from 0 that the shard files hold.

    Raises:
        FileNotFoundError: If no shard file of ``path`` exists (and draws were expected).
    """
    path = Path(path)
    if not shard_paths(path) and drawn_until != 0:
        raise FileNotFoundError(f"no shard files {path.stem}.rank-*{path.suffix} in {path.parent}")
    done = _read_all(path, own=Path(os.devnull))
    if drawn_until is None:
        drawn_until = 0
        while drawn_until in done:
            drawn_until += 1
    records, kept = [], 0
    for draw in range(drawn_until):
        if draw not in done:
            raise ValueError(f"draw {draw} is missing from the shard files of {path}")
        records.append(done[draw])
        kept += done[draw].kept
        if kept >= num_crystals:
            break
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    append_jsonl([r.to_dict() for r in records], partial)
    partial.replace(path)
    return samples_from(records, num_crystals)


def samples_from(records: list[LLMDraw], num_crystals: int) -> LLMSamples:
    """The :class:`LLMSamples` of ``records`` (in draw order): the first ``num_crystals``
    kept crystals and the counts of every draw."""
    result = LLMSamples(crystals=[], texts=[], draws=[])
    for record in records:
        result.num_draws += 1
        if record.reason is not None:
            result.rejections[record.reason] += 1
        elif len(result.crystals) < num_crystals and record.crystal is not None:
            result.crystals.append(record.crystal)
            result.texts.append(record.text or "")
            result.draws.append(record.draw)
    return result
