"""Lattice parameters, matrices, the angle bijection and standardization statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pymatgen.core import Lattice

from flowllm_kit.geometry import lattice

lengths_st = st.tuples(*[st.floats(1.0, 30.0)] * 3)
angles_st = st.tuples(*[st.floats(60.0, 120.0)] * 3).filter(
    # Only angle triples that form a real cell (positive volume squared).
    lambda a: (
        1
        - sum(math.cos(math.radians(x)) ** 2 for x in a)
        + 2 * math.prod(math.cos(math.radians(x)) for x in a)
        > 1e-3
    )
)


@given(lengths_st, angles_st)
def test_matrix_matches_pymatgen_and_round_trips(lengths, angles) -> None:
    matrix = lattice.params_to_matrix(
        torch.tensor(lengths, dtype=torch.float64), torch.tensor(angles, dtype=torch.float64)
    )
    expected = Lattice.from_parameters(*lengths, *angles).matrix
    np.testing.assert_allclose(matrix.numpy(), expected, atol=1e-9)
    back_lengths, back_angles = lattice.matrix_to_params(matrix)
    np.testing.assert_allclose(back_lengths.numpy(), lengths, rtol=1e-9)
    np.testing.assert_allclose(back_angles.numpy(), angles, atol=1e-6)
    volume = lattice.volume(
        torch.tensor(lengths, dtype=torch.float64), torch.tensor(angles, dtype=torch.float64)
    )
    assert float(volume) == pytest.approx(
        Lattice.from_parameters(*lengths, *angles).volume, rel=1e-9
    )


def test_matrix_is_batched() -> None:
    lengths = torch.tensor([[3.0, 4.0, 5.0], [6.0, 6.0, 6.0]], dtype=torch.float64)
    angles = torch.tensor([[90.0, 90.0, 90.0], [60.0, 60.0, 60.0]], dtype=torch.float64)
    matrices = lattice.params_to_matrix(lengths, angles)
    assert matrices.shape == (2, 3, 3)
    np.testing.assert_allclose(matrices[0].numpy(), np.diag([3.0, 4.0, 5.0]), atol=1e-12)


@given(st.floats(60.0, 120.0))
def test_angle_bijection_round_trips_inside_interval(angle) -> None:
    eta = torch.tensor([angle], dtype=torch.float64)
    u = lattice.angles_to_unconstrained(eta)
    assert torch.isfinite(u).all()
    assert torch.allclose(lattice.unconstrained_to_angles(u), eta, atol=1e-9)


def test_angle_bijection_is_symmetric_about_90_and_monotone() -> None:
    assert float(
        lattice.angles_to_unconstrained(torch.tensor(90.0, dtype=torch.float64))
    ) == pytest.approx(0.0, abs=1e-12)
    eta = torch.linspace(60.0, 120.0, 101, dtype=torch.float64)
    u = lattice.angles_to_unconstrained(eta)
    assert torch.all(u[1:] > u[:-1])
    assert torch.allclose(u, -u.flip(0), atol=1e-9)


@given(st.floats(-1e6, 1e6) | st.sampled_from([59.9, 120.1, 0.0, 180.0]))
def test_angle_bijection_clamps_out_of_range_angles(angle) -> None:
    u = lattice.angles_to_unconstrained(torch.tensor([angle], dtype=torch.float64))
    assert torch.isfinite(u).all()
    back = float(lattice.unconstrained_to_angles(u))
    assert lattice.ANGLE_LOW < back < lattice.ANGLE_HIGH
    if angle <= lattice.ANGLE_LOW:
        assert back == pytest.approx(lattice.ANGLE_LOW, abs=0.01)
    if angle >= lattice.ANGLE_HIGH:
        assert back == pytest.approx(lattice.ANGLE_HIGH, abs=0.01)


def test_unconstrained_lattice_round_trip() -> None:
    lengths = torch.tensor([[3.0, 4.0, 5.0]], dtype=torch.float64)
    angles = torch.tensor([[70.0, 95.0, 110.0]], dtype=torch.float64)
    back_lengths, back_angles = lattice.unconstrained_to_lattice(
        lattice.lattice_to_unconstrained(lengths, angles)
    )
    assert torch.allclose(back_lengths, lengths) and torch.allclose(back_angles, angles)


def test_statistics_standardize_round_trip_and_serialize() -> None:
    generator = torch.Generator().manual_seed(0)
    lengths = 3 + 5 * torch.rand(50, 3, generator=generator, dtype=torch.float64)
    angles = 70 + 40 * torch.rand(50, 3, generator=generator, dtype=torch.float64)
    stats = lattice.LatticeStatistics.from_lattices(lengths, angles)
    z = stats.standardize(lattice.lattice_to_unconstrained(lengths, angles))
    assert torch.allclose(z.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(z.std(0), torch.ones(6, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(stats.destandardize(z), lattice.lattice_to_unconstrained(lengths, angles))
    assert lattice.LatticeStatistics.from_dict(stats.to_dict()) == stats
    with pytest.raises(ValueError, match="positive"):
        lattice.LatticeStatistics.from_dict({"mean": [0.0] * 6, "std": [1.0] * 5 + [0.0]})
    with pytest.raises(ValueError, match="at least 2"):
        lattice.LatticeStatistics.from_lattices(lengths[:1], angles[:1])


def test_log_representation_round_trip_and_values():
    lengths = torch.tensor([[3.0, 4.5, 10.0], [2.5, 2.5, 7.0]], dtype=torch.float64)
    angles = torch.tensor([[60.0, 90.0, 120.0], [75.0, 101.0, 58.0]], dtype=torch.float64)
    values = lattice.lattice_to_unconstrained(lengths, angles, "log")
    torch.testing.assert_close(values[:, :3], lengths.log())
    torch.testing.assert_close(values[0, 3:], torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64))
    back_lengths, back_angles = lattice.unconstrained_to_lattice(values, "log")
    torch.testing.assert_close(back_lengths, lengths)
    torch.testing.assert_close(back_angles, angles)  # 58° is kept: no clamp at 60°


def test_log_representation_clamps_angles_on_the_way_back():
    values = torch.tensor([[1.0, 1.0, 1.0, -5.0, 0.0, 5.0]], dtype=torch.float64)
    _, angles = lattice.unconstrained_to_lattice(values, "log")
    assert angles.tolist() == [[lattice.ANGLE_MIN_LINEAR, 90.0, lattice.ANGLE_MAX_LINEAR]]


def test_a_2_degree_change_is_the_same_at_every_angle_in_the_log_space():
    angles = torch.tensor([60.0, 90.0, 120.0], dtype=torch.float64)
    lengths = torch.ones(3, dtype=torch.float64)
    step = lattice.lattice_to_unconstrained(lengths, angles + 2.0, "log")
    step = step - lattice.lattice_to_unconstrained(lengths, angles, "log")
    torch.testing.assert_close(step[3:], torch.full((3,), 2.0 / 30.0, dtype=torch.float64))
    # The logit space stretches the same change near 60° and 120° (the reason for "log").
    logit = lattice.angles_to_unconstrained(angles.clamp(61.0, 119.0) + 1.0)
    logit = logit - lattice.angles_to_unconstrained(angles.clamp(61.0, 119.0))
    assert logit[0] > 5 * logit[1]


def test_unknown_representation_is_named():
    with pytest.raises(ValueError, match="unknown lattice representation 'cubic'"):
        lattice.lattice_to_unconstrained(torch.ones(3), torch.ones(3), "cubic")
