"""Building blocks of the velocity network: time embedding, factorized edge layer, message
layer. Read top to bottom; :mod:`flowllm_kit.flow.network` assembles them.

The cost of a CSPNet-style network sits in the first layer of the edge MLP, a linear map of
the concatenation ``x_ij = [h_i, h_j, l, n, sin_ij, cos_ij, dir_ij]`` on every edge. A linear
map of a concatenation is a sum of linear maps of its parts,

    W x_ij = W_r h_i + W_s h_j + (W_l l + W_n n)_crystal + W_sin sin_ij + W_cos cos_ij + W_d dir_ij,

so :class:`EdgeInputLayer` applies ``W_r, W_s`` once per atom, ``W_l, W_n`` once per crystal,
and the per-edge parts once per *unordered* pair: the reverse edge's sines and direction are
minus the forward edge's, its cosines the same. Each edge is then the signed sum of four
precomputed rows, gathered in a single ``embedding_bag`` pass. Same function as the dense
layer (:meth:`EdgeInputLayer.dense_weight` rebuilds it); for the paper preset on MP-20-sized
crystals it costs 0.81 instead of 2.12 GFLOP per crystal and step (whole network), and the
sinusoids are computed once per forward pass instead of once per layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowllm_kit.flow.graph import CrystalGraph, periodic_displacement

__all__ = [
    "EdgeCoordinateHead",
    "EdgeInputLayer",
    "EdgeLatticeHead",
    "MessageLayer",
    "PairFeatures",
    "bond_projection",
    "time_embedding",
]


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of times in [0, 1] (transformer style).

    Args:
        t: ``(B,)`` times.
        dim: Even output width.

    Returns:
        ``(B, dim)``: ``dim / 2`` sines then ``dim / 2`` cosines of geometrically spaced
        frequencies from 1 to 1e-4 (times 1000 t, so t in [0, 1] spans many periods).
    """
    half = dim // 2
    scale = math.log(10_000) / max(half - 1, 1)
    frequencies = torch.exp(-scale * torch.arange(half, device=t.device, dtype=t.dtype))
    phase = 1000.0 * t.unsqueeze(-1) * frequencies  # (B, half)
    return torch.cat([phase.sin(), phase.cos()], dim=-1)


class PairFeatures:
    """Per-pair edge inputs of one forward pass, shared by all layers.

    Attributes:
        sines: ``(P, 3K)`` sines of the forward edges (reverse edges: minus these).
        cosines: ``(P, 3K)`` cosines (equal for both directions).
        direction: ``(P, 3)`` Cartesian direction feature of the forward edges, or ``None``.
        odd: ``(P, 3K [+ 3])`` the parts that change sign with the edge: sines, direction.
        crystal: ``(B, C)`` per-crystal inputs: z-scored lattice, then the atom-count
            embedding when the network uses it.
        distances: ``(P, D)`` radial basis of the interatomic distance (same for both
            directions), or ``None``.
        even: ``(P, 3K [+ D])`` the parts that do not change sign: cosines, distances.
    """

    def __init__(
        self,
        sines: Tensor,
        cosines: Tensor,
        direction: Tensor | None,
        crystal: Tensor,
        distances: Tensor | None = None,
    ):
        self.sines, self.cosines, self.direction, self.crystal = sines, cosines, direction, crystal
        self.distances = distances
        self.odd = sines if direction is None else torch.cat([sines, direction], dim=-1)
        self.even = cosines if distances is None else torch.cat([cosines, distances], dim=-1)


class EdgeInputLayer(nn.Module):
    """The edge MLP's first linear layer, factorized over atoms, crystals and pairs."""

    def __init__(
        self,
        hidden_dim: int,
        crystal_dim: int,
        sinusoid_dim: int,
        direction: bool,
        distance_dim: int = 0,
    ):
        super().__init__()
        self.receiver = nn.Linear(hidden_dim, hidden_dim)  # holds the layer's bias
        self.sender = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.crystal = nn.Linear(crystal_dim, hidden_dim, bias=False)
        self.sines = nn.Linear(sinusoid_dim, hidden_dim, bias=False)
        self.cosines = nn.Linear(sinusoid_dim, hidden_dim, bias=False)
        self.direction = nn.Linear(3, hidden_dim, bias=False) if direction else None
        self.distances = nn.Linear(distance_dim, hidden_dim, bias=False) if distance_dim else None

    def forward(self, h: Tensor, pairs: PairFeatures, graph: CrystalGraph) -> Tensor:
        """Pre-activation of every edge.

        Args:
            h: ``(N, H)`` atom features.
            pairs: Pair and crystal inputs of this forward pass.
            graph: The graph (``P`` pairs, ``E = 2P`` edges).

        Returns:
            ``(E, H)``: forward edges (rows ``:P``) then reverse edges (rows ``P:``).
        """
        odd_weight = self.sines.weight
        if self.direction is not None:
            odd_weight = torch.cat([odd_weight, self.direction.weight], dim=1)
        even_weight = self.cosines.weight
        if self.distances is not None:
            even_weight = torch.cat([even_weight, self.distances.weight], dim=1)
        even = F.linear(pairs.even, even_weight)  # (P, H)
        odd = F.linear(pairs.odd, odd_weight)  # (P, H)
        crystal = self.crystal(pairs.crystal).index_select(0, graph.atom_crystal)  # (N, H)
        receiver = self.receiver(h) + crystal  # (N, H), bias included
        table = torch.cat([receiver, self.sender(h), even, odd])  # (2N + 2P, H)
        # Each edge sums four table rows (receiver, sender, even, +-odd) in one pass.
        rows, signs = graph.edge_terms
        return F.embedding_bag(rows, table, per_sample_weights=signs.to(table.dtype), mode="sum")

    def dense_weight(self) -> tuple[Tensor, Tensor]:
        """The equivalent dense layer on ``[h_i, h_j, crystal, sin_ij, cos_ij, dir_ij, d_ij]``.

        Returns:
            ``(weight, bias)`` of shapes ``(H, D)`` and ``(H,)``.
        """
        parts = [
            self.receiver.weight,
            self.sender.weight,
            self.crystal.weight,
            self.sines.weight,
            self.cosines.weight,
        ]
        if self.direction is not None:
            parts.append(self.direction.weight)
        if self.distances is not None:
            parts.append(self.distances.weight)
        return torch.cat(parts, dim=1), self.receiver.bias


class MessageLayer(nn.Module):
    """One residual message-passing layer (CSPNet style, pre-LayerNorm).

    ``m_ij = SiLU(W2 SiLU(W1 x_ij + b1) + b2)``, pooled over senders ``j`` (mean or sum),
    then ``h_i += SiLU(W4 SiLU(W3 [h_i, m_i] + b3) + b4)``.
    """

    def __init__(
        self,
        hidden_dim: int,
        crystal_dim: int,
        sinusoid_dim: int,
        *,
        direction: bool,
        aggregation: str,
        layer_norm: bool,
        distance_dim: int = 0,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim) if layer_norm else nn.Identity()
        self.edge_input = EdgeInputLayer(
            hidden_dim, crystal_dim, sinusoid_dim, direction, distance_dim
        )
        self.edge_output = nn.Linear(hidden_dim, hidden_dim)
        self.node_mlp = nn.Sequential(
            nn.Linear(2 * hidden_dim, hidden_dim),
            nn.SiLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.SiLU(),
        )
        self.aggregation = aggregation
        self.activation = nn.SiLU()

    def forward(self, h: Tensor, pairs: PairFeatures, graph: CrystalGraph) -> Tensor:
        """``(N, H)`` -> ``(N, H)``."""
        hn = self.norm(h)
        messages = self.activation(self.edge_input(hn, pairs, graph))  # (E, H)
        messages = self.activation(self.edge_output(messages))  # (E, H)
        # Sum in at least float32, also when autocast made the messages bfloat16.
        messages = messages.to(torch.promote_types(messages.dtype, torch.float32))
        pooled = messages.new_zeros(hn.shape).index_add_(0, graph.receivers, messages)  # (N, H)
        if self.aggregation == "mean":
            pooled = pooled / graph.in_degree.clamp(min=1).unsqueeze(-1).to(pooled.dtype)
        return h + self.node_mlp(torch.cat([hn, pooled.to(hn.dtype)], dim=-1))


def bond_projection(displacement: Tensor, lengths: Tensor, matrix: Tensor) -> Tensor:
    """``(P, 6)`` how each pair's bond lies along the lattice vectors, in the order of the
    lattice parameters: ``(w_a^2, w_b^2, w_c^2, w_b w_c, w_a w_c, w_a w_b) / (|c|^2 + 1 Å^2)``.

    ``w_k = L_k sin(2 pi x_k) / (2 pi)`` is the bond's extent along lattice vector ``k`` in Å
    (to first order) and ``c`` its Cartesian vector, so the squares say which lengths the bond
    stretches and the products which angles it opens. Even in the displacement, periodic and
    continuous (0 at half-lattice offsets, whatever the wrap picked).

    Args:
        displacement: ``(P, 3)`` fractional displacements.
        lengths: ``(P, 3)`` each pair's lattice lengths in Å.
        matrix: ``(P, 3, 3)`` each pair's lattice matrix (rows are vectors).
    """
    periodic = periodic_displacement(displacement)  # (P, 3)
    extent = periodic * lengths
    norm = torch.einsum("pi,pij->pj", periodic, matrix).pow(2).sum(-1, keepdim=True) + 1.0
    a, b, c = extent.unbind(-1)
    return torch.stack([a * a, b * b, c * c, b * c, a * c, a * b], dim=-1) / norm


class EdgeLatticeHead(nn.Module):
    """Lattice velocity (standardized units) read from the atom pairs.

    Each pair proposes six numbers from both atoms' final features (summed, so the pair's
    order does not matter) and its even geometric features (cosines, distances); they are
    weighted by :func:`bond_projection` and averaged over the crystal's pairs. A pair whose
    bond is too long for its two elements can thus shorten exactly the lattice vectors it lies
    along, which the mean-pooled node head has to learn through all layers.
    """

    def __init__(self, hidden_dim: int, even_dim: int):
        super().__init__()
        self.atoms = nn.Linear(hidden_dim, hidden_dim)
        self.geometry = nn.Linear(even_dim, hidden_dim, bias=False)
        self.output = nn.Linear(hidden_dim, 6)

    def forward(
        self, h: Tensor, pairs: PairFeatures, graph: CrystalGraph, projection: Tensor
    ) -> Tensor:
        """``(B, 6)`` from ``h`` ``(N, H)`` and ``projection`` ``(P, 6)``."""
        both = h.index_select(0, graph.first) + h.index_select(0, graph.second)  # (P, H)
        hidden = F.silu(self.atoms(both) + self.geometry(pairs.even))
        proposal = self.output(hidden) * projection  # (P, 6)
        num = graph.num_atoms.shape[0]
        total = proposal.new_zeros(num, 6).index_add_(0, graph.pair_crystal, proposal)
        count = (graph.num_atoms * (graph.num_atoms - 1) // 2).clamp(min=1)
        return total / count.unsqueeze(-1).to(total.dtype)


class EdgeCoordinateHead(nn.Module):
    """Coordinate velocity (in units of the coordinate scale) as a weighted mean of bonds.

    Each directed edge ``i <- j`` gets a scalar ``s_ij`` from the receiver's and the sender's
    final features and the pair's even geometric features; atom ``i`` moves by the mean of
    ``s_ij * sin(2 pi x_ij) / (2 pi)`` over its partners ``j``, ``x_ij`` being the fractional
    displacement from ``i`` to ``j``: toward a partner it sits too far from, away from one it
    sits too close to (EGNN-style). The bond vector is periodic and odd, so the head is
    continuous and permutation-equivariant at half-lattice offsets too.
    """

    def __init__(self, hidden_dim: int, even_dim: int):
        super().__init__()
        self.receiver = nn.Linear(hidden_dim, hidden_dim)
        self.sender = nn.Linear(hidden_dim, hidden_dim, bias=False)
        self.geometry = nn.Linear(even_dim, hidden_dim, bias=False)
        self.output = nn.Linear(hidden_dim, 1, bias=False)

    def forward(self, h: Tensor, pairs: PairFeatures, graph: CrystalGraph, bond: Tensor) -> Tensor:
        """``(N, 3)`` from ``h`` ``(N, H)`` and ``bond`` ``(P, 3)``, the periodic bond vector
        ``sin(2 pi x) / (2 pi)`` of each pair's displacement from its first to its second atom."""
        receiver, sender = self.receiver(h), self.sender(h)  # (N, H) each
        geometry = self.geometry(pairs.even)  # (P, H), the same for both directions
        forward = receiver.index_select(0, graph.first) + sender.index_select(0, graph.second)
        reverse = receiver.index_select(0, graph.second) + sender.index_select(0, graph.first)
        weight_forward = self.output(F.silu(forward + geometry))  # (P, 1): first <- second
        weight_reverse = self.output(F.silu(reverse + geometry))  # (P, 1): second <- first
        moves = torch.cat([weight_forward * bond, -weight_reverse * bond])  # (E, 3)
        total = moves.new_zeros(h.shape[0], 3).index_add_(0, graph.receivers, moves)
        return total / graph.in_degree.clamp(min=1).unsqueeze(-1).to(total.dtype)
