"""The flat torus: wrap, exp/log maps, geodesics and per-crystal mean removal."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from flowllm_kit.geometry import torus

finite = st.floats(min_value=-50.0, max_value=50.0, allow_nan=False, width=64)
points = arrays("float64", (7, 3), elements=st.floats(0.0, 1.0, exclude_max=True, width=64))


def circular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Independent reference: distance on the unit circle through angles."""
    return torch.abs(
        torch.atan2(torch.sin(2 * torch.pi * (a - b)), torch.cos(2 * torch.pi * (a - b)))
    ) / (2 * torch.pi)


@given(arrays("float64", (5, 3), elements=finite))
def test_wrap_lands_in_unit_interval_and_is_idempotent(values) -> None:
    f = torch.from_numpy(values)
    wrapped = torus.wrap(f)
    assert torch.all((wrapped >= 0) & (wrapped < 1))
    assert torch.equal(torus.wrap(wrapped), wrapped)
    assert torch.allclose(circular_distance(wrapped, f), torch.zeros_like(f), atol=1e-9)


def test_wrap_folds_rounding_to_one_back_to_zero() -> None:
    f = torch.tensor([-1e-20, -0.0, 1.0, 2.0], dtype=torch.float64)
    assert torus.wrap(f).tolist() == [0.0, 0.0, 0.0, 0.0]


@settings(max_examples=200)
@given(points, points)
def test_exp_of_log_returns_target_and_log_is_short(f0, f1) -> None:
    f0, f1 = torch.from_numpy(f0), torch.from_numpy(f1)
    u = torus.logmap(f0, f1)
    assert torch.all(u >= -0.5) and torch.all(u < 0.5)
    landed = torus.expmap(f0, u)
    assert torch.allclose(circular_distance(landed, f1), torch.zeros_like(f1), atol=1e-12)
    # |log| is the circular distance, computed independently.
    assert torch.allclose(u.abs(), circular_distance(f0, f1), atol=1e-12)


@given(points, arrays("float64", (7, 3), elements=st.floats(-0.49, 0.49, width=64)))
def test_log_of_exp_recovers_short_tangent(f, u) -> None:
    f, u = torch.from_numpy(f), torch.from_numpy(u)
    assert torch.allclose(torus.logmap(f, torus.expmap(f, u)), u, atol=1e-12)


def test_geodesic_crosses_the_boundary_the_short_way() -> None:
    f0 = torch.tensor([[0.9, 0.2, 0.5]])
    f1 = torch.tensor([[0.1, 0.2, 0.5]])
    t = torch.linspace(0, 1, 5).view(-1, 1)
    path = torus.geodesic(f0.expand(5, 3), f1.expand(5, 3), t)
    expected_x = torch.tensor([0.9, 0.95, 0.0, 0.05, 0.1])
    assert torch.allclose(path[:, 0], expected_x, atol=1e-6)
    assert torch.allclose(path[:, 1:], f0[:, 1:].expand(5, 2))


@given(st.lists(st.integers(1, 6), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_remove_mean_zeroes_each_crystal_sum(sizes, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    v = torch.randn(sum(sizes), 3, generator=generator, dtype=torch.float64)
    centred = torus.remove_mean(v, index, len(sizes))
    sums = torus.scatter_sum(centred, index, len(sizes))
    assert torch.allclose(sums, torch.zeros_like(sums), atol=1e-12)
    # Removing the mean twice changes nothing; the difference is a per-crystal constant.
    assert torch.allclose(torus.remove_mean(centred, index, len(sizes)), centred, atol=1e-12)
    shift = v - centred
    for crystal in range(len(sizes)):
        rows = shift[index == crystal]
        assert torch.allclose(rows, rows[:1].expand_as(rows), atol=1e-12)


def test_scatter_mean_of_empty_group_is_zero() -> None:
    index = torch.tensor([0, 0, 2])
    values = torch.tensor([[1.0], [3.0], [5.0]])
    assert torus.scatter_mean(values, index, 3).flatten().tolist() == [2.0, 0.0, 5.0]
