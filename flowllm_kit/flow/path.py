"""The conditional probability path of Riemannian flow matching (docs/METHOD.md §5).

Coordinates follow torus geodesics, the unconstrained lattice follows straight lines::

    f_t = exp_{f_0}(t * log_{f_0}(f_1)),   df_t = log_{f_0}(f_1) - mean over the crystal
    l_t = l_0 + t * (l_1 - l_0),           dl_t = l_1 - l_0

Both velocities are constant along the path. A flow that generates atom types adds their
analog bits (:mod:`flowllm_kit.flow.types`) on straight lines from Gaussian noise::

    a_t = (1 - t) a_0 + t a_1,             da_t = a_1 - a_0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from flowllm_kit.crystal import CrystalBatch
from flowllm_kit.flow.types import encode_types
from flowllm_kit.geometry import lattice, torus

__all__ = ["PathSample", "check_aligned", "sample_path", "sample_times"]


@dataclass(frozen=True, eq=False)
class PathSample:
    """One draw from the conditional path for a batch of ``B`` crystals with ``N`` atoms.

    Attributes:
        x_0: Start crystals (base distribution).
        x_1: Target crystals (atom ``i`` of ``x_0`` flows to atom ``i`` of ``x_1``).
        t: ``(B,)`` times.
        f_t: ``(N, 3)`` coordinates at ``t``, wrapped into [0, 1).
        l_t: ``(B, 6)`` unconstrained lattice at ``t``.
        df_t: ``(N, 3)`` target coordinate velocity, zero mean per crystal.
        dl_t: ``(B, 6)`` target lattice velocity.
        representation: The lattice space ``l_t`` and ``dl_t`` live in.
        a_t: ``(N, bits)`` analog bits of the atom types at ``t`` (flows that generate types;
            None otherwise).
        da_t: ``(N, bits)`` their target velocity.
    """

    x_0: CrystalBatch
    x_1: CrystalBatch
    t: Tensor
    f_t: Tensor
    l_t: Tensor
    df_t: Tensor
    dl_t: Tensor
    representation: lattice.LatticeRepresentation = "logit"
    a_t: Tensor | None = None
    da_t: Tensor | None = None

    @property
    def x_t(self) -> CrystalBatch:
        """The crystals at time ``t`` (lattice mapped back to lengths and angles)."""
        lengths, angles = lattice.unconstrained_to_lattice(self.l_t, self.representation)
        return self.x_1.replace(frac_coords=self.f_t, lengths=lengths, angles=angles)

    def crystals(self, begin: int, end: int) -> PathSample:
        """The part of the sample that holds crystals ``begin:end`` (one process's share of a
        batch in data-parallel training)."""
        first, last = (int(v) for v in self.x_1.offsets[[begin, end]].tolist())
        atoms = slice(first, last)
        return dataclasses.replace(
            self, x_0=self.x_0[begin:end], x_1=self.x_1[begin:end], t=self.t[begin:end],
            f_t=self.f_t[atoms], l_t=self.l_t[begin:end], df_t=self.df_t[atoms],
            dl_t=self.dl_t[begin:end],
            a_t=None if self.a_t is None else self.a_t[atoms],
            da_t=None if self.da_t is None else self.da_t[atoms],
        )  # fmt: skip


def check_aligned(x_0: CrystalBatch, x_1: CrystalBatch, *, same_types: bool = True) -> None:
    """Raise ``ValueError`` unless the batches hold the same atoms in the same order (only as
    many atoms per crystal when not ``same_types``: a flow that generates the types)."""
    if not torch.equal(x_0.num_atoms.cpu(), x_1.num_atoms.cpu()):
        raise ValueError("x_0 and x_1 must have the same number of atoms per crystal")
    if same_types and not torch.equal(x_0.atomic_numbers.cpu(), x_1.atomic_numbers.cpu()):
        raise ValueError("x_0 and x_1 must have the same atom types in the same order")


def sample_times(num: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
    """``(num,)`` times drawn uniformly from [0, 1) (on the CPU generator, then moved)."""
    return torch.rand(num, generator=generator).to(device)


def sample_path(
    x_0: CrystalBatch,
    x_1: CrystalBatch,
    t: Tensor,
    *,
    representation: lattice.LatticeRepresentation = "logit",
    types_0: Tensor | None = None,
) -> PathSample:
    """Point and target velocity of the conditional path at time ``t``.

    Args:
        x_0: Start crystals.
        x_1: Target crystals, aligned with ``x_0`` (see :func:`check_aligned`).
        t: ``(B,)`` times in [0, 1].
        representation: The lattice space the straight line is drawn in.
        types_0: ``(N, bits)`` start of the type bits, for a flow that generates atom types
            (then ``x_0``'s atom types are ignored and ``x_1``'s are the targets).

    Returns:
        The path sample.
    """
    check_aligned(x_0, x_1, same_types=types_0 is None)
    index, num = x_1.batch_index, x_1.num_crystals
    u_f = torus.logmap(x_0.frac_coords, x_1.frac_coords)  # (N, 3)
    f_t = torus.expmap(x_0.frac_coords, t[index].unsqueeze(-1) * u_f)
    l_0, l_1 = x_0.lattice_in(representation), x_1.lattice_in(representation)  # (B, 6) each
    dl_t = l_1 - l_0
    l_t = l_0 + t.unsqueeze(-1) * dl_t
    df_t = torus.remove_mean(u_f, index, num)
    a_t = da_t = None
    if types_0 is not None:
        a_1 = encode_types(x_1.atomic_numbers, types_0.shape[-1], dtype=types_0.dtype)
        da_t = a_1 - types_0
        a_t = types_0 + t[index].unsqueeze(-1) * da_t
    return PathSample(
        x_0=x_0, x_1=x_1, t=t, f_t=f_t, l_t=l_t, df_t=df_t, dl_t=dl_t,
        representation=representation, a_t=a_t, da_t=da_t,
    )  # fmt: skip
