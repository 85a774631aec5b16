"""The outcome of relaxing one structure, and its JSON form (used by the cache)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowllm_kit.crystal.convert import structure_from_cell

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["RelaxResult"]


@dataclass(frozen=True)
class RelaxResult:
    """One relaxed structure.

    Attributes:
        initial_energy_per_atom: CHGNet energy of the input, eV/atom (NaN if never evaluated).
        final_energy_per_atom: CHGNet energy of ``final_structure``, eV/atom (NaN after an error).
        final_structure: The relaxed structure (None after an error).
        steps: Optimizer steps taken.
        converged: Whether the largest (filtered) force fell below ``fmax`` within ``max_steps``.
        error: None, or why the structure could not be relaxed.
        stalled: Stopped before ``max_steps`` because its energy stopped falling
            (``RelaxConfig.stall_steps``); never converged.
    """

    initial_energy_per_atom: float
    final_energy_per_atom: float
    final_structure: Structure | None
    steps: int
    converged: bool
    error: str | None = None
    stalled: bool = False

    @property
    def ok(self) -> bool:
        """Whether the relaxation ran without error (converged or not)."""
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None; the structure as lattice, numbers, coordinates)."""
        structure = None
        if self.final_structure is not None:
            structure = {
                "lattice": self.final_structure.lattice.matrix.tolist(),
                "numbers": [int(site.specie.Z) for site in self.final_structure],
                "frac_coords": self.final_structure.frac_coords.tolist(),
            }
        return {
            "initial_energy_per_atom": _float_or_none(self.initial_energy_per_atom),
            "final_energy_per_atom": _float_or_none(self.final_energy_per_atom),
            "final_structure": structure,
            "steps": self.steps,
            "converged": self.converged,
            "error": self.error,
            "stalled": self.stalled,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RelaxResult:
        """Inverse of :meth:`to_json`."""
        structure = None
        if data["final_structure"] is not None:
            raw = data["final_structure"]
            structure = structure_from_cell(raw["lattice"], raw["numbers"], raw["frac_coords"])
        return cls(
            initial_energy_per_atom=_nan_if_none(data["initial_energy_per_atom"]),
            final_energy_per_atom=_nan_if_none(data["final_energy_per_atom"]),
            final_structure=structure,
            steps=int(data["steps"]),
            converged=bool(data["converged"]),
            error=data["error"],
            stalled=bool(data.get("stalled", False)),  # absent in caches written before it
        )

    @classmethod
    def failure(
        cls, error: str, *, initial_energy_per_atom: float = math.nan, steps: int = 0
    ) -> RelaxResult:
        """The result recorded for a structure the relaxer could not handle."""
        return cls(initial_energy_per_atom, math.nan, None, steps, False, error)


def _float_or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)
