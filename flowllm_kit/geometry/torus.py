"""The flat torus [0, 1)^3 of fractional coordinates, period 1.

All functions act elementwise on tensors of any shape (usually ``(N, 3)``), except the
per-crystal reductions, which take a flat batch of atoms and the index of the crystal each
atom belongs to (see :class:`flowllm_kit.crystal.CrystalBatch`).

Example::

    >>> f0 = torch.tensor([[0.95, 0.5, 0.0]])
    >>> f1 = torch.tensor([[0.05, 0.5, 0.0]])
    >>> logmap(f0, f1)          # the short way round, across the boundary
    tensor([[0.1000, 0.0000, 0.0000]])
    >>> expmap(f0, logmap(f0, f1))
    tensor([[0.0500, 0.5000, 0.0000]])
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "expmap",
    "geodesic",
    "logmap",
    "remove_mean",
    "scatter_mean",
    "scatter_sum",
    "wrap",
]


def wrap(f: Tensor) -> Tensor:
    """Map coordinates onto the fundamental domain [0, 1).

    Args:
        f: Coordinates of any shape.

    Returns:
        Same shape, every value in [0, 1). ``torch.remainder`` alone can return exactly 1.0
        for tiny negative inputs (rounding), which is folded back to 0.
    """
    wrapped = torch.remainder(f, 1.0)
    return torch.where(wrapped >= 1.0, torch.zeros_like(wrapped), wrapped)


def expmap(f: Tensor, u: Tensor) -> Tensor:
    """Exponential map: move from ``f`` along tangent vector ``u`` and wrap.

    Args:
        f: Base points, any shape.
        u: Tangent vectors, same shape as ``f``.

    Returns:
        ``(f + u) mod 1``, same shape.
    """
    return wrap(f + u)


def logmap(f0: Tensor, f1: Tensor) -> Tensor:
    """Logarithmic map: the shortest displacement from ``f0`` to ``f1`` on the torus.

    Args:
        f0: Base points, any shape.
        f1: Target points, same shape.

    Returns:
        Displacement ``u`` with every value in [-0.5, 0.5) and ``expmap(f0, u) == f1``
        (mod 1). Equivalent to ``atan2(sin w, cos w) / 2pi`` with ``w = 2pi (f1 - f0)``, but
        computed with ``floor`` so it is exact in floating point away from the cut at 0.5.
    """
    delta = f1 - f0
    return delta - torch.floor(delta + 0.5)


def geodesic(f0: Tensor, f1: Tensor, t: Tensor) -> Tensor:
    """Point at time ``t`` on the geodesic from ``f0`` (t=0) to ``f1`` (t=1).

    Args:
        f0: Start points, shape ``(N, 3)``.
        f1: End points, shape ``(N, 3)``.
        t: Times, broadcastable to ``(N, 3)`` (e.g. shape ``(N, 1)``).

    Returns:
        ``expmap(f0, t * logmap(f0, f1))``, shape ``(N, 3)``.
    """
    return expmap(f0, t * logmap(f0, f1))


def scatter_sum(values: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """Sum rows of ``values`` into groups.

    Args:
        values: Shape ``(N, D)``.
        index: Group of each row, shape ``(N,)``, values in ``[0, num_groups)``.
        num_groups: Number of groups ``B``.

    Returns:
        Shape ``(B, D)``; empty groups sum to zero.
    """
    out = values.new_zeros((num_groups, *values.shape[1:]))
    return out.index_add_(0, index, values)


def scatter_mean(values: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """Mean of rows of ``values`` per group (empty groups give zero). Shapes as
    :func:`scatter_sum`."""
    total = scatter_sum(values, index, num_groups)
    counts = torch.bincount(index, minlength=num_groups).clamp(min=1).to(values.dtype)
    return total / counts.view(-1, *([1] * (values.dim() - 1)))


def remove_mean(v: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """Subtract each crystal's mean from its atoms' vectors.

    Removing the mean makes coordinate velocities invariant to a global translation
    (docs/METHOD.md §5): after it, every crystal's vectors sum to zero.

    Args:
        v: Per-atom vectors, shape ``(N, 3)``.
        index: Crystal of each atom, shape ``(N,)``.
        num_groups: Number of crystals ``B``.

    Returns:
        Shape ``(N, 3)``.
    """
    return v - scatter_mean(v, index, num_groups).index_select(0, index)
