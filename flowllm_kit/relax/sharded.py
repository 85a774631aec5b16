"""CHGNet relaxation shared out over the processes a launcher started, or over the tasks of a
SLURM array, through the relaxation cache.

The structures not yet in the cache are listed once, in input order and without repeats; rank
``r`` of ``N`` relaxes those at positions ``r, r + N, ...`` into its own cache file
(``<cache>.rank-<r>.jsonl``), and rank 0 appends the ranks' results to the cache. Every rank
then reads its results from the cache, so each process returns what one process would. Each
structure's relaxation is its own (FIRE keeps a time step and mixing per structure); how a
batch is composed changes the arithmetic of the batched model by rounding at most, and with
``max_structures_per_batch=1`` not at all.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flowllm_kit.crystal.convert import as_structures
from flowllm_kit.distributed import World, barrier, shard_path, shard_paths, world
from flowllm_kit.relax.cache import RelaxCache, relax_key
from flowllm_kit.relax.config import RelaxConfig
from flowllm_kit.relax.local import relax_locally
from flowllm_kit.relax.result import RelaxResult

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from flowllm_kit.crystal import Crystal

__all__ = ["merge_relax_shards", "relax_share", "relax_sharded"]


def relax_share(
    structures: Sequence[Structure | Crystal],
    *,
    config: RelaxConfig,
    cache_path: str | Path,
    task: int,
    num_tasks: int,
    progress: bool = False,
    desc: str = "CHGNet relax",
) -> int:
    """Relax task ``task``'s share of the structures missing from the cache into its own cache
    file; returns how many it relaxed. Waits for no one (a SLURM array task calls this, then
    :func:`merge_relax_shards`)."""
    inputs = as_structures(structures)
    cache = RelaxCache(cache_path)
    missing: dict[str, Structure] = {}
    for structure in inputs:
        key = relax_key(structure, config)
        if key not in cache and key not in missing:
            missing[key] = structure
    mine = list(missing.values())[task::num_tasks]
    if mine:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        workers = max(1, (config.num_workers or os.cpu_count() or 1) // local)
        relax_locally(
            mine, config=dataclasses.replace(config, num_workers=workers),
            cache_path=shard_path(cache_path, task), progress=progress, desc=desc,
        )  # fmt: skip
    return len(mine)


def merge_relax_shards(cache_path: str | Path) -> int:
    """Append every shard file's results to the cache ``cache_path`` (those it lacks) and delete
    the shard files; returns the results added."""
    cache = RelaxCache(cache_path)
    added = 0
    for shard in shard_paths(cache_path):
        for key, result in RelaxCache(shard).items():
            if key not in cache:
                cache.put(key, result)
                added += 1
        shard.unlink()
    return added


def relax_sharded(
    structures: Sequence[Structure | Crystal],
    *,
    config: RelaxConfig,
    cache_path: str | Path | None,
    progress: bool = True,
    desc: str = "CHGNet relax",
    on: World | None = None,
) -> list[RelaxResult]:
    """:func:`~flowllm_kit.relax.relax_structures` over every process of ``on`` (default: the
    launcher's world), which must all call it with the same structures.

    Raises:
        ValueError: Without a cache file, through which the ranks share their results.
    """
    on = on or world()
    if cache_path is None:
        raise ValueError("relaxing over several processes needs a cache file (cache_path)")
    relax_share(
        structures, config=config, cache_path=cache_path, task=on.rank, num_tasks=on.size,
        progress=progress and on.is_main, desc=desc,
    )  # fmt: skip
    barrier()
    if on.is_main:
        merge_relax_shards(cache_path)
    barrier()
    return relax_locally(structures, config=config, cache_path=cache_path, progress=False)
