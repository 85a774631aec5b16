"""The fully connected graph within each crystal, built without a loop over crystals.

Edges come in pairs: every unordered pair of atoms ``{a, b}`` (``a < b``) of a crystal gives
the edge ``a <- b`` (row ``p`` of the edge list) and ``b <- a`` (row ``P + p``). Keeping the
two directions apart lets the network compute pair features once: the displacement of the
reverse edge is minus that of the forward edge, so its sines and direction change sign and its
cosines stay the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from flowllm_kit.geometry import torus

__all__ = [
    "CrystalGraph",
    "displacement_features",
    "distance_features",
    "fully_connected_graph",
    "minimum_image_distance",
    "pair_displacement",
    "periodic_displacement",
    "smooth_direction",
    "unit_direction",
]

# The 27 lattice translations n in {-1, 0, 1}^3 searched for the minimum-image distance.
_IMAGES = torch.tensor(
    [[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=torch.float64
)


@dataclass(frozen=True, eq=False)
class CrystalGraph:
    """Unordered atom pairs of ``B`` crystals with ``N`` atoms, ``P`` pairs, ``E = 2P`` edges.

    Attributes:
        first: ``(P,)`` lower atom index of each pair.
        second: ``(P,)`` higher atom index of each pair.
        pair_crystal: ``(P,)`` crystal of each pair.
        num_atoms: ``(B,)`` atoms per crystal.
    """

    first: Tensor
    second: Tensor
    pair_crystal: Tensor
    num_atoms: Tensor

    @property
    def num_pairs(self) -> int:
        return self.first.shape[0]

    @cached_property
    def receivers(self) -> Tensor:
        """``(E,)`` atom that receives each edge's message."""
        return torch.cat([self.first, self.second])

    @cached_property
    def senders(self) -> Tensor:
        """``(E,)`` atom that sends each edge's message."""
        return torch.cat([self.second, self.first])

    @cached_property
    def edge_crystal(self) -> Tensor:
        """``(E,)`` crystal of each edge."""
        return torch.cat([self.pair_crystal, self.pair_crystal])

    @cached_property
    def atom_crystal(self) -> Tensor:
        """``(N,)`` crystal of each atom."""
        crystals = torch.arange(self.num_atoms.shape[0], device=self.num_atoms.device)
        return torch.repeat_interleave(crystals, self.num_atoms)

    @cached_property
    def edge_terms(self) -> tuple[Tensor, Tensor]:
        """Rows and signs that assemble each edge's first-layer pre-activation.

        With a table ``[receiver part (N), sender part (N), even pair part (P), odd pair part
        (P)]``, edge ``e`` is the sum of rows ``rows[e]`` weighted by ``signs[e]``: the odd
        part enters the reverse edges with a minus sign.

        Returns:
            ``(rows, signs)``, shapes ``(E, 4)`` long and ``(E, 4)`` float.
        """
        num_nodes, num_pairs = self.atom_crystal.shape[0], self.num_pairs
        pair = torch.arange(num_pairs, device=self.first.device).repeat(2)  # (E,)
        rows = torch.stack(
            [
                self.receivers,
                num_nodes + self.senders,
                2 * num_nodes + pair,
                2 * num_nodes + num_pairs + pair,
            ],
            dim=1,
        )  # (E, 4)
        signs = torch.ones(2 * num_pairs, 4, device=self.first.device)
        signs[num_pairs:, 3] = -1.0
        return rows, signs

    @cached_property
    def in_degree(self) -> Tensor:
        """``(N,)`` messages each atom receives (``n - 1`` in a crystal of ``n`` atoms)."""
        return (self.num_atoms - 1)[self.atom_crystal]


def fully_connected_graph(num_atoms: Tensor) -> CrystalGraph:
    """All pairs of distinct atoms within each crystal.

    Pairs of a crystal with ``n_max`` atoms are listed as ``(0,1), (0,2), (1,2), (0,3), ...``
    (by the higher index, then the lower), so the pairs of a crystal with ``n`` atoms are the
    first ``n(n-1)/2`` entries of that list; each crystal picks its prefix by index arithmetic.

    Args:
        num_atoms: ``(B,)`` long, atoms per crystal (consecutive blocks of a flat batch).

    Returns:
        The graph, on ``num_atoms``'s device.
    """
    device = num_atoms.device
    n_max = int(num_atoms.max())
    higher, lower = torch.tril_indices(n_max, n_max, offset=-1, device=device)  # (P_max,) each
    pairs_per_crystal = num_atoms * (num_atoms - 1) // 2  # (B,)
    total = int(pairs_per_crystal.sum())
    crystals = torch.arange(num_atoms.shape[0], device=device)
    pair_crystal = torch.repeat_interleave(crystals, pairs_per_crystal, output_size=total)
    pair_start = torch.cumsum(pairs_per_crystal, 0) - pairs_per_crystal  # (B,)
    atom_start = torch.cumsum(num_atoms, 0) - num_atoms  # (B,)
    local = torch.arange(total, device=device) - pair_start[pair_crystal]  # (P,)
    offset = atom_start[pair_crystal]
    return CrystalGraph(
        first=offset + lower[local],
        second=offset + higher[local],
        pair_crystal=pair_crystal,
        num_atoms=num_atoms,
    )


def displacement_features(displacement: Tensor, num_frequencies: int) -> tuple[Tensor, Tensor]:
    """Sinusoidal embedding of torus displacements, ``sin/cos(2 pi k x)`` for k = 1..K.

    ``k = 0`` is left out: its sine is always 0 and its cosine always 1. Because k is an
    integer, the features are periodic in ``x`` with period 1, so any representative of the
    displacement (wrapped or not) gives the same features.

    Args:
        displacement: ``(P, 3)`` fractional displacements.
        num_frequencies: ``K``.

    Returns:
        ``(sines, cosines)``, each ``(P, 3K)``, ordered dimension-major (``d * K + k - 1``).
    """
    k = torch.arange(1, num_frequencies + 1, device=displacement.device, dtype=displacement.dtype)
    phase = (2 * math.pi) * displacement.unsqueeze(-1) * k  # (P, 3, K)
    return phase.sin().flatten(1), phase.cos().flatten(1)  # (P, 3K) each


def pair_displacement(frac_coords: Tensor, graph: CrystalGraph) -> Tensor:
    """``(P, 3)`` shortest torus displacement from each pair's first to its second atom."""
    first, second = (
        frac_coords.index_select(0, graph.first),
        frac_coords.index_select(0, graph.second),
    )
    return torus.logmap(first, second)


def unit_direction(displacement: Tensor, matrix: Tensor) -> Tensor:
    """``(P, 3)`` unit Cartesian vectors of wrapped displacements (the reference's feature).

    Discontinuous: a displacement that crosses ±0.5 jumps from one side to the other, and at
    exactly ±0.5 (two atoms half a lattice vector apart) it depends on the atom order, so a
    network using it is not exactly permutation-equivariant there. Kept for comparisons with
    the reference; the kit's presets use :func:`smooth_direction`.

    Args:
        displacement: ``(P, 3)`` fractional displacements in [-0.5, 0.5).
        matrix: ``(P, 3, 3)`` each pair's lattice matrix (rows are vectors).
    """
    cartesian = torch.einsum("pi,pij->pj", displacement, matrix)
    return cartesian / cartesian.norm(dim=-1, keepdim=True).clamp(min=1e-8)


def periodic_displacement(displacement: Tensor) -> Tensor:
    """``sin(2 pi x) / (2 pi)``: the displacement ``x`` to first order, periodic with period 1,
    odd, and 0 at half-lattice offsets whichever representative the wrap picked."""
    return torch.sin((2 * math.pi) * displacement) / (2 * math.pi)


def smooth_direction(displacement: Tensor, matrix: Tensor, *, length: float = 1.0) -> Tensor:
    """``(P, 3)`` a direction feature that is periodic, odd and continuous in the coordinates.

    ``s = sin(2 pi x) / (2 pi)`` is the displacement ``x`` itself to first order, periodic with
    period 1 and odd; at half-lattice offsets (``x = ±0.5``) it is 0 whichever representative
    the wrap picked, so the feature does not depend on the atom order. Its Cartesian image
    ``c = s L`` is then squashed to ``c / sqrt(|c|^2 + length^2)``: about the unit vector for
    displacements well over ``length`` Å, going smoothly to 0 with ``c`` (no 0/0).

    Args:
        displacement: ``(P, 3)`` fractional displacements (any representative).
        matrix: ``(P, 3, 3)`` each pair's lattice matrix (rows are vectors).
        length: Å below which the feature shrinks with the displacement.
    """
    cartesian = torch.einsum("pi,pij->pj", periodic_displacement(displacement), matrix)
    return cartesian * torch.rsqrt(cartesian.pow(2).sum(-1, keepdim=True) + length**2)


def minimum_image_distance(displacement: Tensor, matrix: Tensor) -> Tensor:
    """``(P,)`` shortest Cartesian length (Å) of ``displacement + n`` over the 27 nearest
    lattice translations ``n``.

    A minimum of continuous functions, so continuous in the coordinates and the lattice, and
    the same for ``x`` and ``-x`` (and for either representative of a half-lattice offset) for
    any cell whose shortest images lie within one cell, as Niggli-reduced cells' do.

    Args:
        displacement: ``(P, 3)`` fractional displacements in [-0.5, 0.5].
        matrix: ``(P, 3, 3)`` each pair's lattice matrix (rows are vectors).
    """
    images = displacement.unsqueeze(1) + _IMAGES.to(displacement)  # (P, 27, 3)
    cartesian = torch.einsum("pki,pij->pkj", images, matrix)
    return cartesian.norm(dim=-1).amin(dim=1)


def distance_features(distance: Tensor, num_basis: int, cutoff: float) -> Tensor:
    """``(P, num_basis)`` Gaussian radial basis of distances in Å.

    Centres evenly spaced on [0, cutoff], each as wide as the spacing; smooth in the distance.
    """
    centres = torch.linspace(0.0, cutoff, num_basis, device=distance.device, dtype=distance.dtype)
    width = cutoff / max(num_basis - 1, 1)
    return torch.exp(-0.5 * ((distance.unsqueeze(-1) - centres) / width) ** 2)
