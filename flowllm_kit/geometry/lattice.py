"""Lattice parameters, lattice matrices and the unconstrained lattice space of the flow.

A lattice is six numbers ``l = (a, b, c, alpha, beta, gamma)``: lengths in Å and angles in
degrees. The flow moves lattices in an unconstrained 6-d space: lengths are used directly and
angles go through a logit bijection (docs/METHOD.md §5).

Angle interval. The paper writes ``logit((eta - 60) / 120)``, which maps [60, 120] onto only
(0, 0.5] of the logit's domain and puts 60° at minus infinity. The reference code uses the
interval (59.9, 120.1), i.e. ``logit((eta - 59.9) / 60.2)``. Niggli-reduced cells have every
angle in [60, 120], so the kit's default is the reference code's interval: every reduced cell
maps to a finite point, symmetric about 90°. Angles outside the open interval (an LLM can write
any number) are clamped just inside it first, so the transform never returns ±inf.

Two representations of the 6-d space (``representation=``):

- ``"logit"`` (the reference code's): lengths in Å, angles through the logit bijection above.
  The logit's slope grows without bound at the interval's ends, so the many Niggli-boundary
  angles of MP-20 (exactly 60° or 120°) sit at about ±6.4, far from the 90° angles at 0, and a
  2° change there is about 25 times larger than the same change at 90°.
- ``"log"`` (the kit's default for its presets, chosen on ``benchmarks/results/refinement.md``):
  log lengths and angles linear in degrees, ``(eta - 90) / 30``, so 60°, 90° and 120° are
  -1, 0, 1 and a change of angle is the same change everywhere. Multiplicative length errors
  become additive, and lengths stay positive. Angles move freely; they are clamped into
  ``[ANGLE_MIN_LINEAR, ANGLE_MAX_LINEAR]`` on the way back so a matrix always exists.

Matrix convention: rows are lattice vectors, the same convention as pymatgen's
``Lattice.from_parameters`` (c along z), so ``Crystal.to_structure()`` and this module agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ANGLE_HIGH",
    "ANGLE_LOW",
    "LATTICE_REPRESENTATIONS",
    "LatticeRepresentation",
    "LatticeStatistics",
    "angles_to_unconstrained",
    "check_representation",
    "lattice_to_unconstrained",
    "matrix_to_params",
    "params_to_matrix",
    "unconstrained_to_angles",
    "unconstrained_to_lattice",
    "volume",
]

ANGLE_LOW = 59.9
"""Lower end (degrees, excluded) of the angle interval of the bijection."""
ANGLE_HIGH = 120.1
"""Upper end (degrees, excluded) of the angle interval of the bijection."""
ANGLE_CLAMP_EPS = 1e-4
"""Angles are clamped to the fraction [eps, 1 - eps] of the interval before the logit."""
ANGLE_MIN_LINEAR = 10.0
"""Smallest angle (degrees) the ``"log"`` representation maps back to."""
ANGLE_MAX_LINEAR = 170.0
"""Largest angle (degrees) the ``"log"`` representation maps back to."""

LatticeRepresentation = Literal["logit", "log"]
"""How the flow's 6-d lattice space is built from lengths and angles (see the module doc)."""
LATTICE_REPRESENTATIONS: tuple[str, ...] = ("logit", "log")


def check_representation(representation: str) -> None:
    """Raise ``ValueError`` unless ``representation`` is one of :data:`LATTICE_REPRESENTATIONS`."""
    if representation not in LATTICE_REPRESENTATIONS:
        raise ValueError(
            f"unknown lattice representation {representation!r}; "
            f"choose one of {', '.join(LATTICE_REPRESENTATIONS)}"
        )


def params_to_matrix(lengths: Tensor, angles: Tensor) -> Tensor:
    """Lattice matrix from lattice parameters.

    Args:
        lengths: ``(..., 3)`` lengths a, b, c in Å.
        angles: ``(..., 3)`` angles alpha, beta, gamma in degrees.

    Returns:
        ``(..., 3, 3)`` matrix whose rows are the lattice vectors.
    """
    alpha, beta, gamma = torch.deg2rad(angles).unbind(-1)
    a, b, c = lengths.unbind(-1)
    cos_alpha, cos_beta, cos_gamma = torch.cos(alpha), torch.cos(beta), torch.cos(gamma)
    sin_alpha, sin_beta = torch.sin(alpha), torch.sin(beta)
    cos_gamma_star = ((cos_alpha * cos_beta - cos_gamma) / (sin_alpha * sin_beta)).clamp(-1, 1)
    sin_gamma_star = torch.sqrt(1.0 - cos_gamma_star**2)
    zero = torch.zeros_like(a)
    vector_a = torch.stack([a * sin_beta, zero, a * cos_beta], dim=-1)
    vector_b = torch.stack(
        [-b * sin_alpha * cos_gamma_star, b * sin_alpha * sin_gamma_star, b * cos_alpha], dim=-1
    )
    vector_c = torch.stack([zero, zero, c], dim=-1)
    return torch.stack([vector_a, vector_b, vector_c], dim=-2)  # (..., 3, 3)


def matrix_to_params(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Lattice parameters from a lattice matrix (rows are vectors).

    Args:
        matrix: ``(..., 3, 3)``.

    Returns:
        ``(lengths, angles)``, each ``(..., 3)``; angles in degrees.
    """
    lengths = torch.linalg.norm(matrix, dim=-1)  # (..., 3)
    # alpha is the angle between b and c, beta between a and c, gamma between a and b.
    pairs = ((1, 2), (0, 2), (0, 1))
    cosines = [
        (matrix[..., i, :] * matrix[..., j, :]).sum(-1) / (lengths[..., i] * lengths[..., j])
        for i, j in pairs
    ]
    angles = torch.rad2deg(torch.arccos(torch.stack(cosines, dim=-1).clamp(-1.0, 1.0)))
    return lengths, angles


def volume(lengths: Tensor, angles: Tensor) -> Tensor:
    """Cell volume in Å^3 from parameters, shape ``(...)``."""
    return torch.linalg.det(params_to_matrix(lengths, angles)).abs()


def angles_to_unconstrained(
    angles: Tensor, *, low: float = ANGLE_LOW, high: float = ANGLE_HIGH
) -> Tensor:
    """The angle bijection ``logit((eta - low) / (high - low))``, after clamping.

    Args:
        angles: Angles in degrees, any shape. Values outside (low, high) are clamped to the
            fraction [ANGLE_CLAMP_EPS, 1 - ANGLE_CLAMP_EPS] of the interval.
        low: Lower end of the interval in degrees.
        high: Upper end of the interval in degrees.

    Returns:
        Unconstrained values, same shape, all finite.
    """
    fraction = ((angles - low) / (high - low)).clamp(ANGLE_CLAMP_EPS, 1.0 - ANGLE_CLAMP_EPS)
    return torch.logit(fraction)


def unconstrained_to_angles(
    u: Tensor, *, low: float = ANGLE_LOW, high: float = ANGLE_HIGH
) -> Tensor:
    """Inverse of :func:`angles_to_unconstrained`: ``low + (high - low) * sigmoid(u)``."""
    return low + (high - low) * torch.sigmoid(u)


def lattice_to_unconstrained(
    lengths: Tensor, angles: Tensor, representation: LatticeRepresentation = "logit"
) -> Tensor:
    """The flow's 6-d lattice space, ``(..., 6)``.

    ``"logit"``: lengths in Å, then the bijected angles. ``"log"``: log lengths, then
    ``(angle - 90) / 30``. Lengths must be positive for ``"log"``; they are floored at 1e-3 Å.
    """
    check_representation(representation)
    if representation == "log":
        return torch.cat([lengths.clamp(min=1e-3).log(), (angles - 90.0) / 30.0], dim=-1)
    return torch.cat([lengths, angles_to_unconstrained(angles)], dim=-1)


def unconstrained_to_lattice(
    l_unconstrained: Tensor, representation: LatticeRepresentation = "logit"
) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`lattice_to_unconstrained`.

    ``"logit"``: lengths are clamped to stay positive. ``"log"``: angles are clamped into
    [:data:`ANGLE_MIN_LINEAR`, :data:`ANGLE_MAX_LINEAR`].
    """
    check_representation(representation)
    if representation == "log":
        lengths = l_unconstrained[..., :3].exp()
        angles = (90.0 + 30.0 * l_unconstrained[..., 3:]).clamp(ANGLE_MIN_LINEAR, ANGLE_MAX_LINEAR)
        return lengths, angles
    lengths = l_unconstrained[..., :3].clamp(min=1e-3)
    return lengths, unconstrained_to_angles(l_unconstrained[..., 3:])


@dataclass(frozen=True)
class LatticeStatistics:
    """Mean and standard deviation of the 6-d unconstrained lattice over a dataset.

    Used to z-score lattice inputs of the velocity network and to de-standardize its outputs.

    Attributes:
        mean: Six means (lengths in Å, then bijected angles).
        std: Six standard deviations (floored at ``1e-6``).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_lattices(
        cls, lengths: Tensor, angles: Tensor, representation: LatticeRepresentation = "logit"
    ) -> LatticeStatistics:
        """Statistics of ``(B, 3)`` lengths and angles in the given representation."""
        if lengths.shape[0] < 2:
            raise ValueError(f"need at least 2 lattices for statistics, got {lengths.shape[0]}")
        values = lattice_to_unconstrained(lengths.double(), angles.double(), representation)
        mean = values.mean(0).tolist()
        std = values.std(0).clamp(min=1e-6).tolist()
        return cls(mean=tuple(mean), std=tuple(std))

    @classmethod
    def from_crystals(
        cls, crystals: Sequence, representation: LatticeRepresentation = "logit"
    ) -> LatticeStatistics:
        """Statistics of a sequence of :class:`~flowllm_kit.crystal.Crystal`."""
        lengths = torch.from_numpy(np.stack([c.lengths for c in crystals]))
        angles = torch.from_numpy(np.stack([c.angles for c in crystals]))
        return cls.from_lattices(lengths, angles, representation)

    def standardize(self, l_unconstrained: Tensor) -> Tensor:
        """z-score ``(..., 6)`` values."""
        mean = l_unconstrained.new_tensor(self.mean)
        std = l_unconstrained.new_tensor(self.std)
        return (l_unconstrained - mean) / std

    def destandardize(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`standardize`."""
        return z * z.new_tensor(self.std) + z.new_tensor(self.mean)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Sequence[float]]) -> LatticeStatistics:
        if len(d["mean"]) != 6 or len(d["std"]) != 6:
            raise ValueError(f"lattice statistics need 6 means and 6 stds, got {d}")
        if any(not math.isfinite(s) or s <= 0 for s in d["std"]):
            raise ValueError(f"lattice standard deviations must be positive, got {d['std']}")
        return cls(mean=tuple(map(float, d["mean"])), std=tuple(map(float, d["std"])))
