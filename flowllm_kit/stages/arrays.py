"""The embarrassingly parallel stages as tasks of a job array (SLURM through submitit, as FlowMM
relaxes its samples): each task draws or relaxes its share into its own file and waits for no
one; a merge then reads every task's file. The command line submits them
(``python -m flowllm_kit submit-array``, ``merge-array``).

- LLM sampling: task ``k`` of ``K`` draws the blocks ``k, k + K, ...`` of the first
  ``max_draws`` draws (:func:`flowllm_kit.llm.sharded.draw_blocks`); the merge keeps the first
  ``num_samples`` crystals in draw order, the crystals a launched run of any size draws.
- CHGNet relaxation for the evaluation: task ``k`` relaxes every ``K``-th crystal the
  evaluation would relax (each system's valid crystals and the real crystals of the
  baseline) into its own cache file; the merge appends them to ``evaluation/relax.jsonl``, so
  ``evaluate`` then finds them relaxed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flowllm_kit import text
from flowllm_kit.crystal import Crystal
from flowllm_kit.crystal.convert import as_structures
from flowllm_kit.distributed import shard_paths
from flowllm_kit.evaluate import ReportSettings
from flowllm_kit.evaluate.families import validity_flags
from flowllm_kit.evaluate.stability import relax_config
from flowllm_kit.llm import LLMSamples
from flowllm_kit.llm.sample import DRAWS_PER_CRYSTAL
from flowllm_kit.llm.sharded import draw_blocks, merge_draws
from flowllm_kit.relax import merge_relax_shards, relax_share
from flowllm_kit.run import RELAX_CACHE_JSONL, RunFolder
from flowllm_kit.stages.evaluation import EvaluationData
from flowllm_kit.stages.llm import load_llm, sampling_config

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "evaluation_relaxations",
    "llm_sample_task",
    "merge_llm_samples",
    "merge_relaxations",
    "relax_task",
]


def llm_sample_task(
    run_dir: str | Path,
    *,
    task: int,
    num_tasks: int,
    max_draws: int,
    seed: int = 0,
    temperature: float | None = None,
    top_p: float | None = None,
) -> int:
    """Array task ``task`` of ``num_tasks``: its blocks of the run's unconditional draws, into
    ``llm_samples.rank-<task>.jsonl`` (resumable). Returns the draws it wrote."""
    run = RunFolder(run_dir)
    model, tokenizer, config = load_llm(run)
    prompt = text.generation_prompt()
    return draw_blocks(
        model, tokenizer, task=task, num_tasks=num_tasks, max_draws=max_draws,
        prompt_of=lambda draw: prompt, path=run.llm_samples, seed=seed, decode=text.decode,
        config=sampling_config(config, temperature=temperature, top_p=top_p),
    )  # fmt: skip


def merge_llm_samples(run: RunFolder, *, num_samples: int) -> LLMSamples:
    """Merge the array tasks' draws into ``llm_samples.jsonl``: the draws in order up to the
    ``num_samples``-th kept crystal.

    Raises:
        FileNotFoundError: If no task wrote a file.
        ValueError: If the tasks drew fewer than ``num_samples`` crystals.
    """
    result = merge_draws(run.llm_samples, num_crystals=num_samples)
    if len(result.crystals) < num_samples:
        raise ValueError(
            f"the tasks' {result.num_draws} draws hold {len(result.crystals)} crystals, fewer "
            f"than {num_samples}: submit the array again with a larger --max-draws (default "
            f"{DRAWS_PER_CRYSTAL} per crystal); the draws done are kept"
        )
    return result


def evaluation_relaxations(
    systems: Mapping[str, Sequence[Crystal]], data: EvaluationData
) -> list[Structure]:
    """The crystals ``evaluate`` relaxes: each system's structurally and compositionally valid
    crystals, then the real crystals of the stability baseline (the relaxed hull's reference
    crystals are relaxed by ``evaluate`` itself, once per dataset)."""
    structures = []
    for crystals in [*systems.values(), data.real]:
        candidates = as_structures(list(crystals))
        struct_ok, _, comp_ok = validity_flags(candidates)
        structures += [s for s, ok in zip(candidates, struct_ok & comp_ok, strict=True) if ok]
    return structures


def relax_task(
    run_dir: str | Path,
    structures: Sequence[Structure],
    settings: ReportSettings,
    *,
    task: int,
    num_tasks: int,
) -> int:
    """Array task ``task`` of ``num_tasks``: relax its share of ``structures`` (those not yet in
    the run's evaluation cache) into ``evaluation/relax.rank-<task>.jsonl``. Returns how many
    it relaxed."""
    run = RunFolder(run_dir)
    run.evaluation.mkdir(parents=True, exist_ok=True)
    return relax_share(
        structures, config=relax_config(settings), cache_path=run.evaluation / RELAX_CACHE_JSONL,
        task=task, num_tasks=num_tasks,
    )  # fmt: skip


def merge_relaxations(run: RunFolder) -> int:
    """Append the array tasks' relaxations to ``evaluation/relax.jsonl``; returns how many.

    Raises:
        FileNotFoundError: If no task wrote a file.
    """
    cache = run.evaluation / RELAX_CACHE_JSONL
    if not shard_paths(cache):
        raise FileNotFoundError(f"no relax.rank-*.jsonl files in {run.evaluation}")
    return merge_relax_shards(cache)
