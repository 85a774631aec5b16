"""Which process this is among the processes a launcher started, and the few collectives the
sharded stages need.

A launcher (``accelerate launch``, ``torchrun``, or ``srun`` around either) starts ``N`` copies
of the same command and tells each its rank through the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``). :func:`init_world` joins them into one
``torch.distributed`` process group through accelerate's ``PartialState`` (NCCL on GPUs, gloo
on CPUs); without a launcher it does nothing and every function here acts for one process, so
the stages run unchanged in a notebook.

The sharded stages split their work by a rule that does not depend on ``N`` (draw blocks,
chunks of start crystals, structures by position), write one file per rank, and merge those
files on rank 0 in a fixed order, so the same seed gives the same result with 1 or ``N``
processes (:mod:`flowllm_kit.llm.sharded`, :mod:`flowllm_kit.relax.sharded`).

Example::

    >>> world = init_world()  # doctest: +SKIP
    >>> world.rank, world.size  # doctest: +SKIP
    (0, 1)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "World",
    "all_sum",
    "barrier",
    "broadcast",
    "init_world",
    "launched",
    "resolve_device",
    "under_launcher",
    "shard_path",
    "shard_paths",
    "world",
]


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` processes."""

    rank: int = 0
    size: int = 1

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ValueError(f"rank {self.rank} is not in a world of {self.size} processes")

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that merges and writes shared files."""
        return self.rank == 0

    def mine(self, items: Sequence[Any] | range) -> list[Any]:
        """The items at positions ``rank, rank + size, ...``: this rank's share."""
        return list(items[self.rank :: self.size])


def launched() -> bool:
    """Whether a launcher started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def under_launcher() -> bool:
    """Whether a launcher started this process, even as the only one (``WORLD_SIZE`` is set):
    sampling then draws in the blocks of a multi-process run, so one launched process gives
    the crystals N give."""
    return "WORLD_SIZE" in os.environ


def init_world(*, cpu: bool | None = None) -> World:
    """Join the launcher's process group (once) and return this process's :class:`World`.

    Args:
        cpu: Use the gloo backend even where CUDA is present (default: gloo without CUDA or
            when ``ACCELERATE_USE_CPU`` is set, else NCCL).
    """
    if launched() and not dist.is_initialized():
        from accelerate import PartialState

        if cpu is None:
            cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
        PartialState(cpu=bool(cpu) or not torch.cuda.is_available())
    return world()


def world() -> World:
    """This process's :class:`World`. Under a launcher the first call joins its process group
    (:func:`init_world`), so a stage called from any script shares its work out; without one,
    a world of one process."""
    if launched() and not dist.is_initialized():
        return init_world()
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device of ``device``: ``"auto"`` is CUDA when available, else the CPU; under a
    launcher, ``"auto"`` and ``"cuda"`` mean this process's own GPU (``cuda:<LOCAL_RANK>``)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and launched():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return torch.device(device)


def barrier() -> None:
    """Wait for every process (nothing to wait for in a world of one)."""
    if world().size > 1:
        dist.barrier()


def all_sum(values: Sequence[int | float]) -> list[float]:
    """``values`` summed over the processes, element by element (as float64)."""
    if world().size == 1:
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every process."""
    if world().size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard_path(path: str | Path, rank: int) -> Path:
    """The file rank ``rank`` writes its share of ``path`` to: ``<stem>.rank-<rank><suffix>``
    beside it. Shard files are named by rank only, so a run resumed with another number of
    processes still finds what every earlier rank wrote."""
    path = Path(path)
    return path.with_name(f"{path.stem}.rank-{rank}{path.suffix}")


def shard_paths(path: str | Path) -> list[Path]:
    """Every shard file of ``path`` that exists, by rank."""
    path = Path(path)
    found = path.parent.glob(f"{path.stem}.rank-*{path.suffix}")
    ranked = []
    for candidate in found:
        rank = candidate.name[
            len(path.stem) + len(".rank-") : len(candidate.name) - len(path.suffix)
        ]
        if rank.isdigit():
            ranked.append((int(rank), candidate))
    return [p for _, p in sorted(ranked)]
