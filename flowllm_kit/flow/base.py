"""Base distributions ``p_0``: where the flow starts (docs/METHOD.md §1, §8).

All share one call: ``base.sample(x_1, x_0=..., generator=...)`` returns a start batch
aligned atom by atom with ``x_1`` (the targets during training, or a template fixing atom
types and counts at inference).

- :class:`PairedBase` (FlowLLM): the LLM's crystal ``x_0`` itself.
- :class:`UniformBase` (FlowMM): uniform coordinates, log-normal lengths, uniform angles;
  atom types from ``x_1``.
- :class:`TypesOnlyBase` (FlowLLM-Types): the LLM's atom types, uniform geometry.

Example::

    >>> base = UniformBase.fit(train_crystals)
    >>> x_0 = base.sample(x_1, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.geometry import torus

__all__ = ["BaseDistribution", "PairedBase", "TypesOnlyBase", "UniformBase"]


class BaseDistribution(ABC):
    """A distribution of start crystals aligned with given crystals."""

    @abstractmethod
    def sample(
        self,
        x_1: CrystalBatch,
        *,
        x_0: CrystalBatch | None = None,
        generator: torch.Generator | None = None,
    ) -> CrystalBatch:
        """Start crystals, one per crystal of ``x_1``, with the same atom counts.

        Args:
            x_1: Targets (training) or templates (inference).
            x_0: The LLM's crystals, for bases that use them.
            generator: CPU random generator (results are moved to ``x_1``'s device).

        Returns:
            A batch aligned atom by atom with ``x_1``.
        """


@dataclass(frozen=True)
class PairedBase(BaseDistribution):
    """FlowLLM: start at the LLM's crystal ``x_0``, optionally jittered.

    Attributes:
        noise_std: Standard deviation of Gaussian noise added to fractional coordinates (and,
            in Å, to lengths). The paper saw no effect for 0.01-0.04; the reference adds none.
    """

    noise_std: float = 0.0

    def sample(self, x_1, *, x_0=None, generator=None):
        if x_0 is None:
            raise ValueError("PairedBase needs the LLM's crystals: pass x_0")
        if not torch.equal(x_0.num_atoms.cpu(), x_1.num_atoms.cpu()):
            raise ValueError("x_0 and x_1 must have the same number of atoms per crystal")
        if self.noise_std == 0:
            return x_0
        noise_f = torch.randn(x_0.frac_coords.shape, generator=generator)
        noise_l = torch.randn(x_0.lengths.shape, generator=generator)
        return x_0.replace(
            frac_coords=torus.wrap(x_0.frac_coords + self.noise_std * noise_f.to(x_0.frac_coords)),
            lengths=(x_0.lengths + self.noise_std * noise_l.to(x_0.lengths)).clamp(min=0.5),
        )


@dataclass(frozen=True)
class UniformBase(BaseDistribution):
    """FlowMM: uniform coordinates, per-axis log-normal lengths, uniform angles.

    Attributes:
        log_length_mean: Mean of ``log(length)`` for a, b, c.
        log_length_std: Standard deviation of ``log(length)`` for a, b, c.
        angle_low: Smallest angle in degrees.
        angle_high: Largest angle in degrees.
    """

    log_length_mean: tuple[float, float, float] = (1.5, 1.5, 1.5)
    log_length_std: tuple[float, float, float] = (0.3, 0.3, 0.3)
    angle_low: float = 60.0
    angle_high: float = 120.0

    @classmethod
    def fit(cls, crystals: Sequence[Crystal], **options) -> UniformBase:
        """Fit the log-normal lengths to training crystals (maximum likelihood)."""
        logs = np.log(np.stack([c.lengths for c in crystals]))  # (B, 3)
        return cls(
            log_length_mean=tuple(logs.mean(0).tolist()),
            log_length_std=tuple(np.maximum(logs.std(0), 1e-3).tolist()),
            **options,
        )

    def _types_from(self, x_1: CrystalBatch, x_0: CrystalBatch | None) -> CrystalBatch:
        return x_1

    def sample(self, x_1, *, x_0=None, generator=None):
        template = self._types_from(x_1, x_0)
        dtype, device = template.frac_coords.dtype, template.device
        num_atoms, num = template.atomic_numbers.shape[0], template.num_crystals
        coords = torch.rand(num_atoms, 3, generator=generator, dtype=torch.float64)
        mean = torch.tensor(self.log_length_mean, dtype=torch.float64)
        std = torch.tensor(self.log_length_std, dtype=torch.float64)
        normal = torch.randn(num, 3, generator=generator, dtype=torch.float64)
        lengths = torch.exp(mean + std * normal)  # (B, 3)
        span = self.angle_high - self.angle_low
        uniform = torch.rand(num, 3, generator=generator, dtype=torch.float64)
        angles = self.angle_low + span * uniform  # (B, 3)
        return template.replace(
            frac_coords=torus.wrap(coords.to(device, dtype)),
            lengths=lengths.to(device, dtype),
            angles=angles.to(device, dtype),
        )


@dataclass(frozen=True)
class TypesOnlyBase(UniformBase):
    """FlowLLM-Types: atom types (and counts) from the LLM's crystal ``x_0``, geometry as
    :class:`UniformBase`. During training on aligned pairs this equals the uniform base."""

    def _types_from(self, x_1: CrystalBatch, x_0: CrystalBatch | None) -> CrystalBatch:
        if x_0 is None:
            raise ValueError("TypesOnlyBase needs the LLM's crystals: pass x_0")
        return x_0
