"""Invariances of the velocity field at special positions: atoms exactly half a lattice vector
apart, atoms on 0 and 0.5, and real MP-20 crystals that hold such pairs.

At a half-lattice offset the wrapped displacement is -0.5 for either atom order, so a feature
that is odd in the displacement but not periodic (the reference's unit direction) depends on
the atom order there. Random coordinates never land on such offsets; these tests put atoms on
them on purpose, and check that the reference's feature does break there, so that the tests
would see the problem if it came back.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.data import load_dataset
from flowllm_kit.flow import FlowStatistics, VelocityNetwork, network_preset
from flowllm_kit.flow.graph import minimum_image_distance, smooth_direction
from flowllm_kit.geometry import lattice, torus
from flowllm_kit.geometry.lattice import LatticeStatistics
from flowllm_kit.presets import PRESET_NAMES


def _network(**changes) -> VelocityNetwork:
    statistics = FlowStatistics(
        lattice=LatticeStatistics(mean=(1.5, 1.6, 1.7, 0.1, 0.0, -0.1), std=(0.3,) * 6),
        lattice_velocity=LatticeStatistics(mean=(0.01,) * 6, std=(0.05,) * 6),
        coord_scale=0.05,
    )
    torch.manual_seed(0)
    return VelocityNetwork.from_preset("smoke", statistics=statistics, **changes).double()


# The kit's choice (smooth direction, distances, log lattice) and the reference lattice space.
KIT = {
    "smooth_direction": True,
    "edge_distances": 8,
    "lattice_representation": "log",
    "edge_lattice_head": True,
    "edge_coordinate_head": True,
}
KIT_LOGIT = {**KIT, "lattice_representation": "logit"}
REFERENCE = {
    "smooth_direction": False,
    "edge_distances": 0,
    "lattice_representation": "logit",
    "edge_lattice_head": False,
    "edge_coordinate_head": False,
    "angle_features": 0,
    "length_ratios": False,
}


def _special_crystals() -> list[Crystal]:
    """Hand-made crystals whose atoms sit on 0 and 0.5 (half-lattice offsets everywhere)."""

    def crystal(numbers, coords, lengths=(4.0, 4.5, 5.0), angles=(90.0, 90.0, 90.0)):
        return Crystal(np.array(numbers), np.array(coords, dtype=float), lengths, angles)

    return [
        crystal([31, 52], [[0, 0, 0], [0.5, 0, 0]]),  # one offset along a
        crystal([26, 26], [[0, 0, 0], [0.5, 0.5, 0.5]]),  # body centre
        crystal([29, 29, 29, 29], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
        crystal([11, 17, 11], [[0.25, 0, 0], [0.75, 0, 0], [0.25, 0.5, 0.5]], angles=(90, 90, 120)),
        crystal([8, 22, 8], [[0, 0, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5]], angles=(60, 60, 60)),
    ]


def _half_offset_pairs(crystal: Crystal, tolerance: float = 1e-6) -> int:
    """Pairs of atoms of ``crystal`` with a fractional displacement component at ±0.5."""
    f = crystal.frac_coords
    difference = (f[:, None, :] - f[None, :, :]) % 1.0
    return int((np.abs(difference - 0.5) < tolerance).any(-1).sum() // 2)


@pytest.fixture(scope="module")
def real_half_offset_crystals(data_root) -> list[Crystal]:
    """MP-20 crystals (the subset's test split) with atoms exactly half a lattice vector apart."""
    crystals = load_dataset("mp_20_subset", "test", root=data_root, progress=False)
    found = [c for c in crystals if 2 <= c.num_atoms <= 12 and _half_offset_pairs(c)]
    assert len(found) >= 10, "the subset should hold crystals with half-lattice offsets"
    return found[:10]


def _permute(batch: CrystalBatch, generator: torch.Generator) -> tuple[CrystalBatch, torch.Tensor]:
    permutation = torch.cat(
        [
            start + torch.randperm(int(n), generator=generator)
            for start, n in zip(batch.offsets[:-1], batch.num_atoms, strict=True)
        ]
    )
    permuted = batch.replace(
        atomic_numbers=batch.atomic_numbers[permutation], frac_coords=batch.frac_coords[permutation]
    )
    return permuted, permutation


@torch.no_grad()
def _max_relative_change(batch, other, permutation, net, t) -> tuple[float, float]:
    """Largest change of ``v_f`` (permuted) and ``v_l``, relative to the largest component
    (at least 1e-3: in a body-centred cell of one element the velocity is zero by symmetry and
    only rounding is left, while the network's velocities are of order 0.05)."""
    v_f, v_l = net(batch, t)
    w_f, w_l = net(other, t)
    change_f = (w_f - v_f[permutation]).abs().max() / v_f.abs().max().clamp(min=1e-3)
    change_l = (w_l - v_l).abs().max() / v_l.abs().max().clamp(min=1e-3)
    return float(change_f), float(change_l)


@pytest.mark.parametrize("changes", [KIT, KIT_LOGIT], ids=["log", "logit"])
def test_every_permutation_of_special_crystals_permutes_the_velocity(changes):
    net = _network(**changes)
    for crystal in _special_crystals():
        batch = CrystalBatch.from_crystals([crystal]).to(dtype=torch.float64)
        t = torch.tensor([0.3], dtype=torch.float64)
        for order in itertools.permutations(range(crystal.num_atoms)):
            permutation = torch.tensor(order)
            permuted = batch.replace(
                atomic_numbers=batch.atomic_numbers[permutation],
                frac_coords=batch.frac_coords[permutation],
            )
            change_f, change_l = _max_relative_change(batch, permuted, permutation, net, t)
            assert change_f < 1e-12 and change_l < 1e-12, (crystal, order)


def test_reference_direction_breaks_at_half_lattice_offsets():
    """The test crystals do hit the discontinuity: the reference feature fails there."""
    net = _network(**REFERENCE)
    changes = []
    for crystal in _special_crystals()[:3]:
        batch = CrystalBatch.from_crystals([crystal]).to(dtype=torch.float64)
        reverse = torch.arange(crystal.num_atoms - 1, -1, -1)
        permuted = batch.replace(
            atomic_numbers=batch.atomic_numbers[reverse], frac_coords=batch.frac_coords[reverse]
        )
        changes.append(_max_relative_change(batch, permuted, reverse, net, torch.tensor([0.3]))[0])
    assert max(changes) > 1e-3


def test_real_crystals_with_half_offsets_are_permutation_equivariant(real_half_offset_crystals):
    batch = CrystalBatch.from_crystals(real_half_offset_crystals).to(dtype=torch.float64)
    t = torch.rand(batch.num_crystals, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    for changes, should_hold in ((KIT, True), (REFERENCE, False)):
        net = _network(**changes)
        worst = max(
            max(_max_relative_change(batch, *_permute(batch, generator), net, t)) for _ in range(5)
        )
        assert (worst < 1e-12) == should_hold, (changes, worst)


@pytest.mark.parametrize("shift", [(0.5, 0.0, 0.0), (0.5, 0.5, 0.5), (0.7, 0.25, 0.1)])
@torch.no_grad()
def test_special_crystals_are_translation_invariant(shift):
    """Shifts that move atoms onto 0 and 0.5 or across the cell, and the universal cover."""
    net = _network(**KIT)
    batch = CrystalBatch.from_crystals(_special_crystals()).to(dtype=torch.float64)
    t = torch.full((batch.num_crystals,), 0.6, dtype=torch.float64)
    v_f, v_l = net(batch, t)
    shifted = batch.replace(frac_coords=torus.wrap(batch.frac_coords + torch.tensor(shift)))
    for other in (shifted, batch.replace(frac_coords=batch.frac_coords - 2.0)):
        w_f, w_l = net(other, t)
        torch.testing.assert_close(w_f, v_f, atol=1e-12 * float(v_f.abs().max()), rtol=0)
        torch.testing.assert_close(w_l, v_l, atol=1e-12 * float(v_l.abs().max()), rtol=0)


@pytest.mark.parametrize("changes", [KIT, KIT_LOGIT], ids=["log", "logit"])
@torch.no_grad()
def test_velocity_is_continuous_across_the_half_lattice_offset(changes):
    """Moving one atom through the offset 0.5 (where the wrap switches side) changes the
    velocity by O(step), with no jump."""
    net = _network(**changes)
    t = torch.tensor([0.5], dtype=torch.float64)
    base = _special_crystals()[0]
    velocities = []
    for offset in (0.5 - 1e-7, 0.5, 0.5 + 1e-7):
        crystal = base.replace(frac_coords=np.array([[0, 0, 0], [offset, 0.1, 0]], dtype=float))
        batch = CrystalBatch.from_crystals([crystal]).to(dtype=torch.float64)
        velocities.append(torch.cat([v.flatten() for v in net(batch, t)]))
    scale = float(velocities[1].abs().max())
    for left, right in itertools.pairwise(velocities):
        assert float((left - right).abs().max()) < 1e-4 * scale


@torch.no_grad()
def test_reference_velocity_jumps_across_the_half_lattice_offset():
    net = _network(**REFERENCE)
    t = torch.tensor([0.5], dtype=torch.float64)
    base = _special_crystals()[0]
    velocities = []
    for offset in (0.5 - 1e-7, 0.5 + 1e-7):
        crystal = base.replace(frac_coords=np.array([[0, 0, 0], [offset, 0.1, 0]], dtype=float))
        batch = CrystalBatch.from_crystals([crystal]).to(dtype=torch.float64)
        velocities.append(torch.cat([v.flatten() for v in net(batch, t)]))
    assert float((velocities[0] - velocities[1]).abs().max()) > 1e-3 * float(
        velocities[0].abs().max()
    )


def test_smooth_direction_is_odd_periodic_and_zero_at_half_offsets():
    matrix = lattice.params_to_matrix(
        torch.tensor([[4.0, 5.0, 6.0]], dtype=torch.float64),
        torch.tensor([[80.0, 95.0, 110.0]], dtype=torch.float64),
    )
    x = torch.rand(50, 3, dtype=torch.float64) - 0.5
    m = matrix.expand(50, 3, 3)
    torch.testing.assert_close(smooth_direction(-x, m), -smooth_direction(x, m))
    torch.testing.assert_close(smooth_direction(x + 1.0, m), smooth_direction(x, m))
    half = torch.tensor([[0.5, 0.5, 0.5], [-0.5, -0.5, -0.5]], dtype=torch.float64)
    assert smooth_direction(half, m[:2]).abs().max() < 1e-15
    # Small displacements: the Cartesian displacement itself (to first order), squashed.
    small = torch.tensor([[1e-3, 0.0, 0.0]], dtype=torch.float64)
    cartesian = small @ matrix[0]
    torch.testing.assert_close(smooth_direction(small, m[:1]), cartesian, rtol=1e-4, atol=0)


def test_minimum_image_distance_known_cells():
    """Cubic cell, a = 4 Å: (±0.5, 0, 0) is 2 Å for either representative, the body centre
    2 sqrt(3) Å. FCC primitive cell (angles 60°, lengths a): the displacement (0.5, 0.5, 0) is
    (a1 + a2) / 2 of length a sqrt(3) / 2, but its image (a1 - a2) / 2 is only a / 2 long."""
    cubic = lattice.params_to_matrix(
        torch.tensor([4.0, 4.0, 4.0], dtype=torch.float64),
        torch.tensor([90.0, 90.0, 90.0], dtype=torch.float64),
    )
    x = torch.tensor(
        [[0.5, 0, 0], [-0.5, 0, 0], [0.5, 0.5, 0.5], [0.4, 0, 0], [-0.3, 0.2, 0]],
        dtype=torch.float64,
    )
    distance = minimum_image_distance(x, cubic.expand(5, 3, 3))
    expected = torch.tensor([2.0, 2.0, 2 * 3**0.5, 1.6, 4 * (0.09 + 0.04) ** 0.5])
    torch.testing.assert_close(distance, expected.double())
    a = 2.5 * 2**0.5
    fcc = lattice.params_to_matrix(
        torch.tensor([a, a, a], dtype=torch.float64),
        torch.tensor([60.0, 60.0, 60.0], dtype=torch.float64),
    )
    d = minimum_image_distance(torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64), fcc[None])
    torch.testing.assert_close(d, torch.tensor([a / 2], dtype=torch.float64))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_use_the_continuous_direction(name):
    assert network_preset(name).smooth_direction


def test_angle_features_see_every_multiple_of_30_degrees_alike():
    from flowllm_kit.flow.network import angle_features

    angles = torch.tensor([[60.0, 90.0, 120.0], [61.0, 91.0, 121.0]], dtype=torch.float64)
    features = angle_features(angles, 3).reshape(2, 2, 3, 3)  # (B, sin|cos, angle, k)
    torch.testing.assert_close(features[:, :, 0], features[:, :, 1])
    torch.testing.assert_close(features[:, :, 0], features[:, :, 2])
    # The first harmonic's sine is 2 pi / 30 per degree near a multiple of 30°.
    assert float(features[1, 0, 0, 0]) == pytest.approx(np.sin(2 * np.pi / 30), rel=1e-12)
