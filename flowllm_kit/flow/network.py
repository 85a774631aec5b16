"""The velocity network ``v_theta(t, c) = (v_f, v_l)`` (docs/METHOD.md §7).

Usage::

    >>> net = VelocityNetwork.from_preset("smoke")
    >>> v_f, v_l = net(batch, t)      # batch: CrystalBatch, t: (B,)
    >>> v_f.shape, v_l.shape          # (N, 3), (B, 6)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from flowllm_kit.crystal import CrystalBatch
from flowllm_kit.flow.config import NetworkConfig, network_preset
from flowllm_kit.flow.graph import (
    CrystalGraph,
    displacement_features,
    distance_features,
    fully_connected_graph,
    minimum_image_distance,
    pair_displacement,
    periodic_displacement,
    smooth_direction,
    unit_direction,
)
from flowllm_kit.flow.layers import (
    EdgeCoordinateHead,
    EdgeLatticeHead,
    MessageLayer,
    PairFeatures,
    bond_projection,
    time_embedding,
)
from flowllm_kit.flow.statistics import FlowStatistics
from flowllm_kit.flow.types import encode_types
from flowllm_kit.geometry import lattice, torus
from flowllm_kit.geometry.lattice import LatticeStatistics
from flowllm_kit.presets import PresetName

__all__ = ["VelocityNetwork", "angle_features"]


def angle_features(angles: Tensor, num_harmonics: int) -> Tensor:
    """``(B, 6K)`` ``sin`` and ``cos`` of ``2 pi k angle / 30°`` for k = 1..K, per angle.

    Periodic with period 30°, so every multiple of 30° (60°, 90°, 120°) looks the same and a
    change of angle reads the same at all of them.
    """
    k = torch.arange(1, num_harmonics + 1, device=angles.device, dtype=angles.dtype)
    phase = (2 * math.pi / 30.0) * angles.unsqueeze(-1) * k  # (B, 3, K)
    return torch.cat([phase.sin().flatten(1), phase.cos().flatten(1)], dim=-1)


class VelocityNetwork(nn.Module):
    """GNN velocity field on fully connected crystal graphs.

    Atoms start from an atom-type embedding combined with a time embedding; ``num_layers``
    message layers see, on every edge, both atoms' features, the z-scored lattice, the atom
    count and a sinusoidal embedding of the torus displacement, and optionally (the kit's
    presets) a direction feature, a radial basis of the minimum-image distance in Å, angle
    harmonics and length ratios of the lattice. Heads: a per-atom 3-vector (no bias) for ``f``
    (plus, optionally, a move along each bond: :class:`~flowllm_kit.flow.layers.
    EdgeCoordinateHead`) and a mean-pooled 6-vector for ``l`` (plus, optionally,
    :class:`~flowllm_kit.flow.layers.EdgeLatticeHead`), both de-standardized with the training
    statistics; ``v_f`` has zero mean per crystal. The lattice lives in the space
    ``config.lattice_representation`` (:mod:`flowllm_kit.geometry.lattice`).

    With ``config.type_bits`` (de novo FlowMM) atoms start from a linear embedding of their
    current type bits instead of a fixed type, and a per-atom head predicts the bits' velocity
    (:meth:`velocity_with_types`).

    Invariances: permuting atoms within a crystal permutes ``v_f`` and leaves ``v_l``
    unchanged; translating all coordinates of a crystal changes nothing (only displacements
    enter). Every input is continuous and periodic in the coordinates, so both hold exactly at
    half-lattice offsets too, where the wrapped displacement is -0.5 for either atom order,
    except with ``smooth_direction=False`` (the reference's unit direction).

    Args:
        config: Network shape.
        statistics: Standardization statistics (identity when omitted; set them from the
            training data with :meth:`set_statistics` before training).
    """

    def __init__(
        self, config: NetworkConfig | None = None, *, statistics: FlowStatistics | None = None
    ):
        super().__init__()
        self.config = config = config or NetworkConfig()
        hidden = config.hidden_dim
        self.atom_embedding = nn.Embedding(config.max_atomic_number + 1, hidden)
        # A de novo flow sees its atoms' current type bits instead of a fixed type.
        self.type_embedding = nn.Linear(config.type_bits, hidden) if config.type_bits else None
        self.type_head = nn.Linear(hidden, config.type_bits) if config.type_bits else None
        self.node_init = nn.Linear(hidden + config.time_dim, hidden)
        self.num_atoms_embedding = (
            nn.Embedding(config.max_num_atoms + 1, hidden) if config.num_atoms_embedding else None
        )
        crystal_dim = 6 + 6 * config.angle_features + (3 if config.length_ratios else 0)
        crystal_dim += hidden if config.num_atoms_embedding else 0
        self.layers = nn.ModuleList(
            MessageLayer(
                hidden,
                crystal_dim,
                3 * config.num_frequencies,
                direction=config.edge_direction,
                aggregation=config.aggregation,
                layer_norm=config.layer_norm,
                distance_dim=config.edge_distances,
            )
            for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(hidden) if config.layer_norm else nn.Identity()
        self.coord_head = nn.Linear(hidden, 3, bias=False)
        self.lattice_head = nn.Linear(hidden, 6)
        self.edge_lattice_head = (
            EdgeLatticeHead(hidden, 3 * config.num_frequencies + config.edge_distances)
            if config.edge_lattice_head
            else None
        )
        self.edge_coordinate_head = (
            EdgeCoordinateHead(hidden, 3 * config.num_frequencies + config.edge_distances)
            if config.edge_coordinate_head
            else None
        )
        for name, value in (statistics or FlowStatistics()).tensors().items():
            self.register_buffer(name, value.float())
        self._graph_cache: tuple[Tensor, CrystalGraph] | None = None

    @classmethod
    def from_preset(
        cls, name: PresetName, *, statistics: FlowStatistics | None = None, **changes: Any
    ) -> VelocityNetwork:
        """A network with the named preset's shape (``"smoke"``, ``"demo"``, ``"paper"``);
        ``changes`` override config fields."""
        return cls(dataclasses.replace(network_preset(name), **changes), statistics=statistics)

    # --- statistics ----------------------------------------------------------------------
    def set_statistics(self, statistics: FlowStatistics) -> None:
        """Copy standardization statistics into the network's buffers."""
        for name, value in statistics.tensors().items():
            getattr(self, name).copy_(value)

    @property
    def statistics(self) -> FlowStatistics:
        """The statistics currently held in the buffers."""

        def pair(mean: Tensor, std: Tensor) -> LatticeStatistics:
            return LatticeStatistics(mean=tuple(mean.tolist()), std=tuple(std.tolist()))

        return FlowStatistics(
            lattice=pair(self.lattice_mean, self.lattice_std),
            lattice_velocity=pair(self.velocity_mean, self.velocity_std),
            coord_scale=float(self.coord_scale),
        )

    @property
    def type_bits(self) -> int:
        """Analog bits per atom type when the network generates types, else 0."""
        return self.config.type_bits

    @property
    def lattice_representation(self) -> str:
        """The lattice space of ``l_t`` and ``v_l`` (``"logit"`` or ``"log"``)."""
        return self.config.lattice_representation

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- forward -------------------------------------------------------------------------
    def forward(self, batch: CrystalBatch, t: Tensor) -> tuple[Tensor, ...]:
        """Velocity at the batch's own coordinates and lattice (and, for a network that
        generates atom types, at its atom types written as exact bits: then ``(v_f, v_l, v_a)``).

        Args:
            batch: ``B`` crystals, ``N`` atoms.
            t: ``(B,)`` times in [0, 1].

        Returns:
            ``(v_f, v_l)`` of shapes ``(N, 3)`` and ``(B, 6)`` (``v_l`` in the lattice space
            ``config.lattice_representation`` of
            :func:`flowllm_kit.geometry.lattice.lattice_to_unconstrained`).
        """
        l_t = batch.lattice_in(self.lattice_representation)
        if self.type_bits:
            a_t = encode_types(batch.atomic_numbers, self.type_bits, dtype=batch.frac_coords.dtype)
            return self.velocity_with_types(batch, batch.frac_coords, l_t, a_t, t)
        return self.velocity(batch, batch.frac_coords, l_t, t)

    def velocity(
        self,
        batch: CrystalBatch,
        f_t: Tensor,
        l_t: Tensor,
        t: Tensor,
        *,
        graph: CrystalGraph | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Velocity at state ``(f_t, l_t)`` of crystals with ``batch``'s atom types and sizes.

        The ODE solver and the training loss call this with the flow's state directly, so the
        lattice never round-trips through lengths and angles.

        Args:
            batch: Supplies atom types and atoms per crystal (its coordinates are ignored).
            f_t: ``(N, 3)`` fractional coordinates (wrapped or not: only displacements enter).
            l_t: ``(B, 6)`` lattice in the space ``config.lattice_representation``.
            t: ``(B,)`` times (a scalar is broadcast).
            graph: The crystals' graph; built (and cached per ``num_atoms`` tensor) if omitted.

        Returns:
            ``(v_f, v_l)`` of shapes ``(N, 3)`` and ``(B, 6)``.

        Raises:
            ValueError: If the network generates atom types (use :meth:`velocity_with_types`).
        """
        if self.type_bits:
            raise ValueError(
                "this network generates atom types (type_bits="
                f"{self.type_bits}): call velocity_with_types with the types' state"
            )
        v_f, v_l, _ = self._velocity(batch, f_t, l_t, t, None, graph)
        return v_f, v_l

    def velocity_with_types(
        self,
        batch: CrystalBatch,
        f_t: Tensor,
        l_t: Tensor,
        a_t: Tensor,
        t: Tensor,
        *,
        graph: CrystalGraph | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """As :meth:`velocity` for a network that generates atom types: ``a_t`` is the
        ``(N, type_bits)`` analog bits of the atoms' types (:mod:`flowllm_kit.flow.types`),
        and ``batch``'s atom types are ignored.

        Returns:
            ``(v_f, v_l, v_a)`` of shapes ``(N, 3)``, ``(B, 6)`` and ``(N, type_bits)``.
        """
        if not self.type_bits:
            raise ValueError("this network does not generate atom types (type_bits=0)")
        if a_t.shape != (f_t.shape[0], self.type_bits):
            raise ValueError(
                f"a_t must be (N, type_bits) = ({f_t.shape[0]}, {self.type_bits}), got "
                f"{tuple(a_t.shape)}"
            )
        v_f, v_l, v_a = self._velocity(batch, f_t, l_t, t, a_t, graph)
        assert v_a is not None
        return v_f, v_l, v_a

    def _velocity(
        self,
        batch: CrystalBatch,
        f_t: Tensor,
        l_t: Tensor,
        t: Tensor,
        a_t: Tensor | None,
        graph: CrystalGraph | None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        config = self.config
        graph = graph or self.graph_for(batch.num_atoms)
        t = t.to(f_t.dtype).expand(batch.num_crystals)
        atom_crystal = graph.atom_crystal

        time = time_embedding(t, config.time_dim).index_select(0, atom_crystal)  # (N, T)
        if self.type_embedding is not None and a_t is not None:
            atoms = self.type_embedding(a_t.to(f_t.dtype))
        else:
            atoms = self.atom_embedding(batch.atomic_numbers)
        h = self.node_init(torch.cat([atoms, time], dim=-1))

        displacement = pair_displacement(f_t, graph)  # (P, 3)
        sines, cosines = displacement_features(displacement, config.num_frequencies)
        crystal = (l_t - self.lattice_mean) / self.lattice_std  # (B, 6)
        if config.angle_features or config.length_ratios:
            lengths, angles = lattice.unconstrained_to_lattice(l_t, self.lattice_representation)
            if config.angle_features:
                features = angle_features(angles, config.angle_features)
                crystal = torch.cat([crystal, features], dim=-1)
            if config.length_ratios:
                log_lengths = lengths.log()
                a, b, c = log_lengths.unbind(-1)
                crystal = torch.cat([crystal, 10.0 * torch.stack([a - b, b - c, a - c], -1)], -1)
        if self.num_atoms_embedding is not None:
            counts = batch.num_atoms.clamp(max=config.max_num_atoms)
            crystal = torch.cat([crystal, self.num_atoms_embedding(counts)], dim=-1)
        direction = distances = None
        if config.edge_direction or config.edge_distances or config.edge_lattice_head:
            pair_lengths, matrix = self._pair_lattices(l_t, graph)
            if config.edge_direction:
                form = smooth_direction if config.smooth_direction else unit_direction
                direction = form(displacement, matrix)
            if config.edge_distances:
                distance = minimum_image_distance(displacement, matrix)
                distances = distance_features(
                    distance, config.edge_distances, config.distance_cutoff
                )
        pairs = PairFeatures(sines, cosines, direction, crystal, distances)

        for layer in self.layers:
            h = layer(h, pairs, graph)
        h = self.final_norm(h)

        v_f = self.coord_head(h)  # (N, 3), in units of the coordinate scale
        if self.edge_coordinate_head is not None:
            bond = periodic_displacement(displacement)  # (P, 3)
            v_f = v_f + self.edge_coordinate_head(h, pairs, graph, bond)
        v_f = v_f * self.coord_scale
        v_f = torus.remove_mean(v_f, atom_crystal, batch.num_crystals)
        pooled = torus.scatter_mean(h, atom_crystal, batch.num_crystals)  # (B, H)
        v_l = self.lattice_head(pooled)  # (B, 6), standardized
        if self.edge_lattice_head is not None:
            projection = bond_projection(displacement, pair_lengths, matrix)
            v_l = v_l + self.edge_lattice_head(h, pairs, graph, projection)
        v_a = self.type_head(h) if self.type_head is not None else None
        return v_f, v_l * self.velocity_std + self.velocity_mean, v_a

    def graph_for(self, num_atoms: Tensor) -> CrystalGraph:
        """The fully connected graph, reused while the same ``num_atoms`` tensor comes back
        (every step of an ODE solve)."""
        cached = self._graph_cache
        if cached is None or cached[0] is not num_atoms:
            cached = self._graph_cache = (num_atoms, fully_connected_graph(num_atoms))
        return cached[1]

    def _pair_lattices(self, l_t: Tensor, graph: CrystalGraph) -> tuple[Tensor, Tensor]:
        """``(P, 3)`` lengths and ``(P, 3, 3)`` lattice matrix of each pair's crystal."""
        lengths, angles = lattice.unconstrained_to_lattice(l_t, self.lattice_representation)
        matrix = lattice.params_to_matrix(lengths, angles)
        return lengths.index_select(0, graph.pair_crystal), matrix.index_select(
            0, graph.pair_crystal
        )

    def _edge_direction(self, displacement: Tensor, l_t: Tensor, graph: CrystalGraph) -> Tensor:
        """``(P, 3)`` the configured direction feature of the pair displacements."""
        form = smooth_direction if self.config.smooth_direction else unit_direction
        return form(displacement, self._pair_lattices(l_t, graph)[1])
