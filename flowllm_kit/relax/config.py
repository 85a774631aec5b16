"""How structures are relaxed: one config dataclass, defaults from REFERENCE §9."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["RelaxConfig"]

# Fields that change the relaxed result; the others only change how fast it is computed.
_RESULT_FIELDS = ("model_name", "optimizer", "fmax", "max_steps", "relax_cell")


@dataclass(frozen=True)
class RelaxConfig:
    """Settings of a CHGNet relaxation (batched and reference paths alike).

    Example::

        >>> RelaxConfig(max_steps=200).fmax
        0.1
    """

    # CHGNet pretrained weights; "0.3.0" ships inside the chgnet wheel (no download).
    model_name: Literal["0.3.0", "0.2.0"] = "0.3.0"
    # Optimizer. Only FIRE, in ASE's flavour, so batched and reference paths take the same steps.
    optimizer: Literal["FIRE"] = "FIRE"
    # Converged when every atom force (and cell force, through the filter) is below this, eV/Å.
    fmax: float = 0.1
    # Largest number of optimizer steps per structure; a structure that hits it is unconverged.
    max_steps: int = 1500
    # Relax the lattice too, through a Fréchet cell filter (ASE's FrechetCellFilter semantics).
    relax_cell: bool = True
    # Most structures relaxed together in one batched CHGNet call.
    max_structures_per_batch: int = 64
    # Most atoms in one batched call; a single larger structure still gets a batch of its own.
    max_atoms_per_batch: int = 1024
    # "auto": CUDA when available, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU worker processes, each relaxing its own batches with one torch thread; None: one per
    # available core. Several single-threaded workers beat one multi-threaded process on small
    # cells, and do not stall when the machine is shared (OpenMP threads spin at barriers).
    num_workers: int | None = None
    # Most structures handed to a worker at a time (fewer when that would leave a worker idle);
    # results reach the cache a chunk at a time.
    chunk_size: int = 32

    def __post_init__(self) -> None:
        if self.fmax <= 0:
            raise ValueError(f"fmax must be positive, got {self.fmax}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        if min(self.max_structures_per_batch, self.max_atoms_per_batch, self.chunk_size) < 1:
            raise ValueError("batch and chunk sizes must be >= 1")
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1 or None, got {self.num_workers}")

    def result_settings(self) -> dict[str, Any]:
        """The fields that determine the relaxed result (the cache key uses these)."""
        settings = asdict(self)
        return {name: settings[name] for name in _RESULT_FIELDS}
