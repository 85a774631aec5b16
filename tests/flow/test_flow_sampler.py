"""The ODE sampler against fake velocity fields with exact answers."""

from __future__ import annotations

import math

import pytest
import torch

from flowllm_kit.crystal import CrystalBatch
from flowllm_kit.flow import (
    FlowSamplerConfig,
    Trajectory,
    VelocityNetwork,
    sample,
    sample_in_chunks,
)
from flowllm_kit.geometry import lattice, torus

METHODS = ["euler", "midpoint", "rk4", "dopri5"]


class _Field:
    """``v(t) = a + b t`` (for both f and l), independent of the state; counts evaluations."""

    def __init__(self, x_0: CrystalBatch, slope: float = 0.0, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        dtype = x_0.frac_coords.dtype
        self.a_f = torch.randn(x_0.frac_coords.shape, generator=generator).to(dtype)
        self.a_l = 0.3 * torch.randn(x_0.num_crystals, 6, generator=generator).to(dtype)
        self.b_f, self.b_l = slope * self.a_f.flip(0), slope * self.a_l.flip(0)

    def velocity(self, batch, f_t, l_t, t):
        tau = t[0]
        return self.a_f + self.b_f * tau, self.a_l + self.b_l * tau

    def exact(self, x_0: CrystalBatch, time: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Unwrapped ``f`` and unconstrained ``l`` at ``time``."""
        half_t2 = 0.5 * time**2
        return (
            x_0.frac_coords + self.a_f * time + self.b_f * half_t2,
            x_0.lattice_unconstrained + self.a_l * time + self.b_l * half_t2,
        )


def _batch(make_crystals, count=5):
    return CrystalBatch.from_crystals(make_crystals(count)).to(dtype=torch.float64)


def _assert_state(result_batch, f_expected, l_expected):
    distance = torus.logmap(result_batch.frac_coords, torus.wrap(f_expected))
    torch.testing.assert_close(distance, torch.zeros_like(distance), atol=1e-10, rtol=0)
    lengths, angles = lattice.unconstrained_to_lattice(l_expected)
    torch.testing.assert_close(result_batch.lengths, lengths, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(result_batch.angles, angles, atol=1e-9, rtol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_every_solver_is_exact_on_a_constant_field(method, make_crystals):
    x_0 = _batch(make_crystals)
    field = _Field(x_0)
    result = sample(field, x_0, config=FlowSamplerConfig(method=method, num_steps=7))
    _assert_state(result.crystals, *field.exact(x_0))


@pytest.mark.parametrize("method", ["midpoint", "rk4", "dopri5"])
def test_second_order_solvers_are_exact_on_a_field_linear_in_time(method, make_crystals):
    x_0 = _batch(make_crystals)
    field = _Field(x_0, slope=2.0)
    result = sample(field, x_0, config=FlowSamplerConfig(method=method, num_steps=3))
    _assert_state(result.crystals, *field.exact(x_0))


def test_euler_has_its_known_error_on_a_field_linear_in_time(make_crystals):
    # Euler sums v at the left ends t_k = k/n: a + b (n - 1) / (2n) instead of a + b / 2.
    x_0, n = _batch(make_crystals), 4
    field = _Field(x_0, slope=2.0)
    result = sample(field, x_0, config=FlowSamplerConfig(method="euler", num_steps=n))
    f_exact, l_exact = field.exact(x_0)
    shortfall = 0.5 - (n - 1) / (2 * n)
    _assert_state(result.crystals, f_exact - field.b_f * shortfall, l_exact - field.b_l * shortfall)


@pytest.mark.parametrize(("method", "evaluations"), [("euler", 10), ("midpoint", 20), ("rk4", 40)])
def test_number_of_evaluations(method, evaluations, make_crystals):
    x_0 = _batch(make_crystals)
    result = sample(_Field(x_0), x_0, config=FlowSamplerConfig(method=method, num_steps=10))
    assert result.num_evaluations == evaluations


def test_coordinates_are_integrated_unwrapped_and_wrapped_at_the_end(make_crystals):
    x_0 = _batch(make_crystals)
    field = _Field(x_0)
    field.a_f = torch.full_like(field.a_f, 2.3)  # crosses the boundary twice
    result = sample(field, x_0, config=FlowSamplerConfig(method="euler", num_steps=5))
    assert result.crystals.frac_coords.min() >= 0 and result.crystals.frac_coords.max() < 1
    expected = torus.wrap(x_0.frac_coords + 2.3)
    torch.testing.assert_close(
        torus.logmap(result.crystals.frac_coords, expected),
        torch.zeros_like(expected),
        atol=1e-10,
        rtol=0,
    )


class _PeriodicField:
    """``v_f = sin(2 pi f)``: its solution from f and from f + 1 agree modulo 1."""

    def velocity(self, batch, f_t, l_t, t):
        return torch.sin(2 * math.pi * f_t), torch.zeros_like(l_t)


def test_periodic_field_gives_the_same_crystal_from_any_image(make_crystals):
    x_0 = _batch(make_crystals)
    config = FlowSamplerConfig(method="rk4", num_steps=20)
    a = sample(_PeriodicField(), x_0, config=config).crystals
    b = sample(_PeriodicField(), x_0.replace(frac_coords=x_0.frac_coords - 1.0), config=config)
    torch.testing.assert_close(
        torus.logmap(a.frac_coords, b.crystals.frac_coords),
        torch.zeros_like(a.frac_coords),
        atol=1e-12,
        rtol=0,
    )


def test_anti_annealing_scales_coordinate_speed_only(make_crystals):
    # The integral of 1 + s max(0, t - b) over [0, 1] is 1 + s (1 - b)^2 / 2; midpoint is exact
    # for this piecewise-linear factor when b lies on the grid.
    x_0 = _batch(make_crystals)
    field = _Field(x_0)
    config = FlowSamplerConfig(
        method="midpoint", num_steps=10, anti_annealing_scale=5.0, anti_annealing_start=0.5
    )
    result = sample(field, x_0, config=config)
    f_exact, l_exact = field.exact(x_0)
    factor = 1 + 5.0 * 0.5**2 / 2
    _assert_state(result.crystals, x_0.frac_coords + field.a_f * factor, l_exact)


def test_trajectory_records_every_k_steps(make_crystals):
    x_0 = _batch(make_crystals)
    field = _Field(x_0, slope=1.0)
    result = sample(
        field, x_0, config=FlowSamplerConfig(method="rk4", num_steps=20, record_every=5)
    )
    trajectory = result.trajectory
    assert trajectory is not None and len(trajectory) == 5
    torch.testing.assert_close(
        trajectory.times, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    )
    for index, time in enumerate(trajectory.times.tolist()):
        _assert_state(trajectory.crystals_at(index), *field.exact(x_0, time))
    odd = sample(field, x_0, config=FlowSamplerConfig(num_steps=10, record_every=4)).trajectory
    assert odd.times.tolist() == pytest.approx([0.0, 0.4, 0.8, 1.0])


def test_trajectory_save_load_round_trip(make_crystals, tmp_path):
    x_0 = _batch(make_crystals)
    field = _Field(x_0, slope=1.0)
    config = FlowSamplerConfig(method="euler", num_steps=6, record_every=2)
    trajectory = sample(field, x_0, config=config).trajectory
    loaded = Trajectory.load(trajectory.save(tmp_path / "run" / "trajectory.npz"))
    assert len(loaded) == len(trajectory)
    torch.testing.assert_close(loaded.times, trajectory.times)
    torch.testing.assert_close(loaded.frac_coords, trajectory.frac_coords)
    torch.testing.assert_close(loaded.lattice, trajectory.lattice)
    for index in (0, len(trajectory) - 1):
        original, copy = trajectory.crystals_at(index), loaded.crystals_at(index)
        assert torch.equal(copy.atomic_numbers, original.atomic_numbers)
        assert torch.equal(copy.num_atoms, original.num_atoms)
        torch.testing.assert_close(copy.lengths, original.lengths)
        torch.testing.assert_close(copy.angles, original.angles)


@pytest.mark.parametrize("method", ["euler", "dopri5"])
def test_network_sampling_mixed_sizes(method, make_crystals):
    crystals = make_crystals(6, min_atoms=1, max_atoms=8)
    x_0 = CrystalBatch.from_crystals(crystals)
    net = VelocityNetwork.from_preset("smoke")
    config = FlowSamplerConfig(
        method=method, num_steps=5, anti_annealing_scale=5.0, rtol=1e-3, atol=1e-3
    )
    result = sample(net, x_0, config=config).crystals
    assert torch.equal(result.num_atoms, x_0.num_atoms)
    assert torch.equal(result.atomic_numbers, x_0.atomic_numbers)
    assert result.frac_coords.min() >= 0 and result.frac_coords.max() < 1
    assert result.angles.min() > 59.9 and result.angles.max() < 120.1
    assert result.ids == x_0.ids


def test_sample_in_chunks_keeps_order(make_crystals):
    crystals = make_crystals(7)
    net = VelocityNetwork.from_preset("smoke")
    config = FlowSamplerConfig(num_steps=2)
    chunks = list(sample_in_chunks(net, crystals, batch_size=3, config=config))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [c.id for chunk in chunks for c in chunk] == [c.id for c in crystals]


def test_bfloat16_sampling_stays_close_to_float32(make_crystals):
    x_0 = CrystalBatch.from_crystals(make_crystals(4, min_atoms=2))
    net = VelocityNetwork.from_preset("smoke")
    full = sample(net, x_0, config=FlowSamplerConfig(num_steps=4)).crystals
    low = sample(net, x_0, config=FlowSamplerConfig(num_steps=4, precision="bfloat16")).crystals
    assert low.frac_coords.dtype == torch.float32
    moved = torus.logmap(x_0.frac_coords, full.frac_coords).abs().mean()
    assert torus.logmap(full.frac_coords, low.frac_coords).abs().mean() < 0.05 * moved


class _LogField(_Field):
    """The same field, in the ``"log"`` lattice space (log lengths, linear angles)."""

    lattice_representation = "log"

    def exact(self, x_0, time=1.0):
        half_t2 = 0.5 * time**2
        return (
            x_0.frac_coords + self.a_f * time + self.b_f * half_t2,
            x_0.lattice_in("log") + self.a_l * time + self.b_l * half_t2,
        )


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_sampler_integrates_in_the_models_lattice_space(method, make_crystals):
    """A constant velocity in the log space multiplies lengths by exp(a) and adds 30 a degrees
    to the angles, exactly."""
    x_0 = _batch(make_crystals)
    field = _LogField(x_0)
    config = FlowSamplerConfig(method=method, num_steps=5, record_every=1)
    result = sample(field, x_0, config=config)
    torch.testing.assert_close(result.crystals.lengths, x_0.lengths * field.a_l[:, :3].exp())
    torch.testing.assert_close(result.crystals.angles, x_0.angles + 30.0 * field.a_l[:, 3:])
    assert result.trajectory.representation == "log"
    last = result.trajectory.crystals_at(len(result.trajectory) - 1)
    torch.testing.assert_close(last.lengths, result.crystals.lengths)


def test_trajectory_file_keeps_the_lattice_space(tmp_path, make_crystals):
    x_0 = _batch(make_crystals)
    result = sample(_LogField(x_0), x_0, config=FlowSamplerConfig(num_steps=4, record_every=2))
    loaded = Trajectory.load(result.trajectory.save(tmp_path / "trajectory.npz"))
    assert loaded.representation == "log"
    torch.testing.assert_close(loaded.crystals_at(2).angles, result.crystals.angles)
