"""The Riemannian flow-matching loss (docs/METHOD.md §6).

Per crystal with ``n`` atoms::

    L = lambda_f / (3n) * ||v_f - u_f||^2 + lambda_l / 6 * ||v_l - u_l||^2

averaged over the crystals of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from flowllm_kit.crystal import CrystalBatch
from flowllm_kit.flow.config import LossConfig
from flowllm_kit.flow.path import PathSample
from flowllm_kit.geometry import torus

__all__ = ["FlowLoss", "VelocityField", "flow_matching_loss", "path_loss"]


class VelocityField(Protocol):
    """What the loss and the sampler need from a model (the network or a test stand-in)."""

    def velocity(
        self, batch: CrystalBatch, f_t: Tensor, l_t: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(v_f, v_l)``, shapes ``(N, 3)`` and ``(B, 6)``, at state ``(f_t, l_t)``, times
        ``(B,)``; ``batch`` supplies atom types and atoms per crystal."""
        ...


@dataclass(frozen=True)
class FlowLoss:
    """Scalar loss terms of a batch.

    Attributes:
        total: The weighted loss that is minimized.
        coords: Unweighted mean squared coordinate error (per component, per crystal).
        lattice: Unweighted mean squared lattice error.
        types: Unweighted mean squared error of the type bits' velocity (None for flows with
            fixed atom types).
    """

    total: Tensor
    coords: Tensor
    lattice: Tensor
    types: Tensor | None = None


def flow_matching_loss(
    v_f: Tensor,
    v_l: Tensor,
    sample: PathSample,
    *,
    config: LossConfig | None = None,
    lattice_scale: Tensor | None = None,
    coord_scale: Tensor | float | None = None,
    v_a: Tensor | None = None,
) -> FlowLoss:
    """Loss of predicted velocities against the path's targets.

    Args:
        v_f: ``(N, 3)`` predicted coordinate velocity.
        v_l: ``(B, 6)`` predicted lattice velocity.
        sample: The path sample the prediction was made at.
        config: Loss weights (default :class:`LossConfig`).
        lattice_scale: ``(6,)`` standard deviations of the lattice target velocity; the
            lattice error is divided by them when ``config.lattice_error`` is
            ``"standardized"`` (required then).
        coord_scale: RMS of the coordinate target velocity; the coordinate error is divided
            by it when ``config.coord_error`` is ``"standardized"`` (required then).
        v_a: ``(N, bits)`` predicted velocity of the type bits, for a path sample with types
            (required then; the term per crystal is the mean over its atoms and bits).

    Returns:
        The loss terms, each averaged over crystals.
    """
    config = config or LossConfig()
    with_types = sample.da_t is not None
    if with_types and v_a is None:
        raise ValueError("the path sample has atom types: pass their predicted velocity v_a")
    weight_f, weight_l, weight_a = (
        config.weights_with_types if with_types else (*config.weights, 0.0)
    )
    index, num = sample.x_1.batch_index, sample.x_1.num_crystals
    error_f = v_f - sample.df_t  # (N, 3)
    if config.coord_error == "standardized":
        if coord_scale is None:
            raise ValueError("a standardized coordinate error needs coord_scale")
        error_f = error_f / coord_scale
    squared = error_f.pow(2).sum(-1)  # (N,)
    coords = torus.scatter_sum(squared.unsqueeze(-1), index, num).squeeze(-1)  # (B,)
    coords = coords / (3 * sample.x_1.num_atoms.to(coords.dtype))
    error_l = v_l - sample.dl_t  # (B, 6)
    if config.lattice_error == "standardized":
        if lattice_scale is None:
            raise ValueError("a standardized lattice error needs lattice_scale")
        error_l = error_l / lattice_scale.to(error_l.dtype)
    lattice = error_l.pow(2).mean(-1)  # (B,)
    total = weight_f * coords + weight_l * lattice
    types = None
    if with_types:
        squared_a = (v_a - sample.da_t).pow(2).mean(-1, keepdim=True)  # (N, 1)
        types = torus.scatter_mean(squared_a, index, num).squeeze(-1)  # (B,)
        total = total + weight_a * types
        types = types.mean()
    return FlowLoss(total=total.mean(), coords=coords.mean(), lattice=lattice.mean(), types=types)


def path_loss(
    model: VelocityField, sample: PathSample, *, config: LossConfig | None = None
) -> FlowLoss:
    """Evaluate ``model`` on the path sample and return :func:`flow_matching_loss` (with the
    model's ``velocity_std`` and ``coord_scale`` as the scales, when it has them). A sample
    with atom types calls the model's ``velocity_with_types``."""
    v_a = None
    if sample.a_t is not None:
        v_f, v_l, v_a = model.velocity_with_types(  # type: ignore[attr-defined]
            sample.x_0, sample.f_t, sample.l_t, sample.a_t, sample.t
        )
    else:
        v_f, v_l = model.velocity(sample.x_0, sample.f_t, sample.l_t, sample.t)
    return flow_matching_loss(
        v_f,
        v_l,
        sample,
        config=config,
        lattice_scale=getattr(model, "velocity_std", None),
        coord_scale=getattr(model, "coord_scale", None),
        v_a=v_a,
    )
