"""Standardization statistics of the velocity network's inputs and outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from flowllm_kit.crystal import CrystalBatch
from flowllm_kit.geometry import torus
from flowllm_kit.geometry.lattice import LatticeRepresentation, LatticeStatistics

__all__ = ["FlowStatistics"]

_IDENTITY = LatticeStatistics(mean=(0.0,) * 6, std=(1.0,) * 6)


@dataclass(frozen=True)
class FlowStatistics:
    """What the network needs to z-score inputs and de-standardize outputs (docs/METHOD.md §7).

    Attributes:
        lattice: Mean/std of the unconstrained lattice of the training targets, used to z-score
            the lattice input.
        lattice_velocity: Mean/std of the lattice target velocity ``u_l = l_1 - l_0``; the
            lattice head's output is mapped back with it.
        coord_scale: Standard deviation of the (mean-removed) coordinate target velocity; the
            coordinate head's output is multiplied by it.
    """

    lattice: LatticeStatistics = _IDENTITY
    lattice_velocity: LatticeStatistics = _IDENTITY
    coord_scale: float = 1.0

    @classmethod
    def from_pairs(
        cls, x_0: CrystalBatch, x_1: CrystalBatch, representation: LatticeRepresentation = "logit"
    ) -> FlowStatistics:
        """Statistics of the targets of the path from ``x_0`` to ``x_1`` (aligned batches),
        with lattices in the flow space ``representation``."""
        lattice = LatticeStatistics.from_lattices(x_1.lengths, x_1.angles, representation)
        u_l = (x_1.lattice_in(representation) - x_0.lattice_in(representation)).double()
        velocity = LatticeStatistics(
            mean=tuple(u_l.mean(0).tolist()), std=tuple(u_l.std(0).clamp(min=1e-6).tolist())
        )
        u_f = torus.remove_mean(
            torus.logmap(x_0.frac_coords, x_1.frac_coords).double(),
            x_1.batch_index,
            x_1.num_crystals,
        )
        coord_scale = float(u_f.pow(2).mean().sqrt().clamp(min=1e-6))
        return cls(lattice=lattice, lattice_velocity=velocity, coord_scale=coord_scale)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lattice": self.lattice.to_dict(),
            "lattice_velocity": self.lattice_velocity.to_dict(),
            "coord_scale": self.coord_scale,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlowStatistics:
        return cls(
            lattice=LatticeStatistics.from_dict(d["lattice"]),
            lattice_velocity=LatticeStatistics.from_dict(d["lattice_velocity"]),
            coord_scale=float(d["coord_scale"]),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """The statistics as float64 tensors, keyed like the network's buffers."""
        return {
            "lattice_mean": torch.tensor(self.lattice.mean, dtype=torch.float64),
            "lattice_std": torch.tensor(self.lattice.std, dtype=torch.float64),
            "velocity_mean": torch.tensor(self.lattice_velocity.mean, dtype=torch.float64),
            "velocity_std": torch.tensor(self.lattice_velocity.std, dtype=torch.float64),
            "coord_scale": torch.tensor(self.coord_scale, dtype=torch.float64),
        }
