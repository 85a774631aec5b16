"""How structures are relaxed: one config dataclass, defaults from docs/METHOD.md §9."""

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
    # Stop a structure early, as unconverged and "stalled", once its lowest energy has not
    # dropped by more than stall_tolerance (eV/atom) for stall_steps steps. None: run every
    # unconverged structure to max_steps (docs/METHOD.md §9). Not the paper's protocol: a budget for
    # generated crystals whose forces never fall below fmax. A budget, not a convergence test:
    # with 100 steps, two of five stalled crystals were on plateaus that FIRE later left
    # (benchmarks/results/evaluate.md).
    stall_steps: int | None = None
    stall_tolerance: float = 1e-3
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

    def __post_init__(self) -> None:
        if self.fmax <= 0:
            raise ValueError(f"fmax must be positive, got {self.fmax}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        if self.stall_steps is not None and self.stall_steps < 1:
            raise ValueError(f"stall_steps must be >= 1 or None, got {self.stall_steps}")
        if self.stall_tolerance < 0:
            raise ValueError(f"stall_tolerance must be >= 0, got {self.stall_tolerance}")
        if min(self.max_structures_per_batch, self.max_atoms_per_batch) < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1 or None, got {self.num_workers}")

    def result_settings(self) -> dict[str, Any]:
        """The fields that determine the relaxed result (the cache key uses these)."""
        settings = asdict(self)
        fields = _RESULT_FIELDS
        if self.stall_steps is not None:  # absent otherwise: earlier caches keep their keys
            fields += ("stall_steps", "stall_tolerance")
        return {name: settings[name] for name in fields}
