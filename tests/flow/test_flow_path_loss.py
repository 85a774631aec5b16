"""Conditional path, targets, loss, statistics and base distributions."""

from __future__ import annotations

import pytest
import torch

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.flow import (
    FlowStatistics,
    LossConfig,
    PairedBase,
    TypesOnlyBase,
    UniformBase,
    flow_matching_loss,
    path_loss,
    sample_path,
)
from flowllm_kit.geometry import torus


def _pair_batches(make_pairs, count=6, seed=0):
    pairs = make_pairs(count, seed=seed)
    x_0 = CrystalBatch.from_crystals([p[0] for p in pairs]).to(dtype=torch.float64)
    x_1 = CrystalBatch.from_crystals([p[1] for p in pairs]).to(dtype=torch.float64)
    return x_0, x_1


def test_path_endpoints(make_pairs):
    x_0, x_1 = _pair_batches(make_pairs)
    start = sample_path(x_0, x_1, torch.zeros(6, dtype=torch.float64))
    end = sample_path(x_0, x_1, torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(start.f_t, x_0.frac_coords)
    torch.testing.assert_close(start.l_t, x_0.lattice_unconstrained)
    torch.testing.assert_close(torus.logmap(end.f_t, x_1.frac_coords), torch.zeros_like(end.f_t))
    torch.testing.assert_close(end.l_t, x_1.lattice_unconstrained)
    torch.testing.assert_close(end.x_t.angles, x_1.angles)


def test_targets_are_constant_along_the_path_and_mean_free(make_pairs):
    x_0, x_1 = _pair_batches(make_pairs)
    early = sample_path(x_0, x_1, torch.full((6,), 0.2, dtype=torch.float64))
    late = sample_path(x_0, x_1, torch.full((6,), 0.9, dtype=torch.float64))
    torch.testing.assert_close(early.df_t, late.df_t)
    torch.testing.assert_close(early.dl_t, late.dl_t)
    means = torus.scatter_mean(early.df_t, x_1.batch_index, 6)
    torch.testing.assert_close(means, torch.zeros_like(means))


def test_geodesic_wraps_across_the_boundary():
    def crystal(coords):
        return Crystal(
            atomic_numbers=[8, 8], frac_coords=coords, lengths=[4, 4, 4], angles=[90] * 3
        )

    x_0 = CrystalBatch.from_crystals([crystal([[0.95, 0.5, 0.0], [0.3, 0.3, 0.3]])]).to(
        dtype=torch.float64
    )
    x_1 = CrystalBatch.from_crystals([crystal([[0.05, 0.5, 0.0], [0.3, 0.3, 0.3]])]).to(
        dtype=torch.float64
    )
    sample = sample_path(x_0, x_1, torch.tensor([0.75], dtype=torch.float64))
    # The short way round is +0.1 through 1 == 0, not -0.9 through the middle of the cell.
    torch.testing.assert_close(sample.f_t[0], torch.tensor([0.025, 0.5, 0.0], dtype=torch.float64))
    expected = torch.tensor([[0.05, 0.0, 0.0], [-0.05, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(sample.df_t, expected)


def test_misaligned_pairs_are_rejected(make_crystals):
    x_1 = CrystalBatch.from_crystals(make_crystals(3, seed=0, min_atoms=2))
    x_0 = CrystalBatch.from_crystals(make_crystals(3, seed=5, min_atoms=2))
    with pytest.raises(ValueError, match="same"):
        sample_path(x_0, x_1, torch.rand(3))


class _ExactVelocity:
    """A stand-in network that returns the path's own target velocity."""

    def __init__(self, sample, offset=0.0):
        self.sample, self.offset = sample, offset

    def velocity(self, batch, f_t, l_t, t):
        return self.sample.df_t + self.offset, self.sample.dl_t + self.offset


def test_loss_is_zero_for_the_exact_velocity(make_pairs):
    x_0, x_1 = _pair_batches(make_pairs)
    sample = sample_path(x_0, x_1, torch.rand(6, dtype=torch.float64))
    loss = path_loss(_ExactVelocity(sample), sample)
    assert float(loss.total) == 0.0 and float(loss.coords) == 0.0 and float(loss.lattice) == 0.0


@pytest.mark.parametrize("normalize", [True, False])
def test_loss_weights(normalize, make_pairs):
    x_0, x_1 = _pair_batches(make_pairs)
    sample = sample_path(x_0, x_1, torch.rand(6, dtype=torch.float64))
    config = LossConfig(weight_coords=400.0, weight_lattice=1.0, normalize=normalize)
    loss = path_loss(_ExactVelocity(sample, offset=0.5), sample, config=config)
    # Every component is off by 0.5: both mean squared errors are 0.25.
    assert float(loss.coords) == pytest.approx(0.25) and float(loss.lattice) == pytest.approx(0.25)
    total = 0.25 * (400 + 1) / (401 if normalize else 1)
    assert float(loss.total) == pytest.approx(total)


def test_loss_averages_per_atom_then_over_crystals(make_pairs):
    x_0, x_1 = _pair_batches(make_pairs, count=2)
    sample = sample_path(x_0, x_1, torch.rand(2, dtype=torch.float64))
    v_f = sample.df_t.clone()
    v_f[0] += 1.0  # one atom of crystal 0 off by 1 in each coordinate
    loss = flow_matching_loss(v_f, sample.dl_t, sample, config=LossConfig(normalize=False))
    n_0 = int(x_1.num_atoms[0])
    assert float(loss.coords) == pytest.approx((3.0 / (3 * n_0)) / 2)


def test_statistics_from_pairs(make_pairs):
    x_0, x_1 = _pair_batches(make_pairs, count=20)
    stats = FlowStatistics.from_pairs(x_0, x_1)
    u_l = x_1.lattice_unconstrained - x_0.lattice_unconstrained
    assert stats.lattice_velocity.mean == pytest.approx(u_l.mean(0).tolist())
    assert stats.lattice.mean[:3] == pytest.approx(x_1.lengths.mean(0).tolist())
    assert 0 < stats.coord_scale < 0.5


def test_uniform_base(make_crystals):
    crystals = make_crystals(50, min_atoms=2)
    base = UniformBase.fit(crystals)
    x_1 = CrystalBatch.from_crystals(crystals)
    x_0 = base.sample(x_1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_0.atomic_numbers, x_1.atomic_numbers)
    assert torch.equal(x_0.num_atoms, x_1.num_atoms)
    assert x_0.frac_coords.min() >= 0 and x_0.frac_coords.max() < 1
    assert x_0.angles.min() >= 60 and x_0.angles.max() <= 120
    assert x_0.lengths.min() > 0 and x_0.frac_coords.dtype == x_1.frac_coords.dtype
    logs = x_1.lengths.double().log()
    assert base.log_length_mean == pytest.approx(logs.mean(0).tolist())
    again = base.sample(x_1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.frac_coords, x_0.frac_coords)  # seeded


def test_types_only_and_paired_bases(make_pairs):
    x_0, x_1 = _pair_batches(make_pairs)
    llm = x_0.replace(atomic_numbers=torch.flip(x_0.atomic_numbers, [0]))
    types_only = TypesOnlyBase().sample(x_1, x_0=llm)
    assert torch.equal(types_only.atomic_numbers, llm.atomic_numbers)
    assert not torch.equal(types_only.frac_coords, llm.frac_coords)
    assert PairedBase().sample(x_1, x_0=x_0) is x_0
    noisy = PairedBase(noise_std=0.01).sample(x_1, x_0=x_0)
    assert 0 < (noisy.frac_coords - x_0.frac_coords).abs().max() < 1
    for base in (PairedBase(), TypesOnlyBase()):
        with pytest.raises(ValueError, match="x_0"):
            base.sample(x_1)


def test_standardized_errors_divide_by_the_target_scales(make_pairs):
    x_0, x_1 = _pair_batches(make_pairs)
    sample = sample_path(x_0, x_1, torch.rand(6, dtype=torch.float64))
    lattice_scale = torch.tensor([0.5, 1.0, 2.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    config = LossConfig(
        weight_coords=1.0,
        weight_lattice=3.0,
        normalize=False,
        lattice_error="standardized",
        coord_error="standardized",
    )
    # Every component off by 0.5; coordinates scaled by 0.25 -> error 2 (squared 4); lattice
    # components by 0.5, 1, 2 -> squared errors 1, 0.25, 0.0625 (mean 0.4375).
    loss = flow_matching_loss(
        sample.df_t + 0.5,
        sample.dl_t + 0.5,
        sample,
        config=config,
        lattice_scale=lattice_scale,
        coord_scale=0.25,
    )
    assert float(loss.coords) == pytest.approx(4.0)
    assert float(loss.lattice) == pytest.approx(0.4375)
    assert float(loss.total) == pytest.approx(4.0 + 3 * 0.4375)
    with pytest.raises(ValueError, match="needs lattice_scale"):
        flow_matching_loss(sample.df_t, sample.dl_t, sample, config=config, coord_scale=0.25)
    with pytest.raises(ValueError, match="lattice_error must be"):
        LossConfig(lattice_error="z")


def test_path_in_the_log_lattice_space(make_pairs):
    x_0, x_1 = _pair_batches(make_pairs)
    end = sample_path(x_0, x_1, torch.ones(6, dtype=torch.float64), representation="log")
    torch.testing.assert_close(end.l_t, x_1.lattice_in("log"))
    torch.testing.assert_close(end.x_t.lengths, x_1.lengths)
    torch.testing.assert_close(end.dl_t[:, :3], (x_1.lengths / x_0.lengths).log())
    stats = FlowStatistics.from_pairs(x_0, x_1, "log")
    assert stats.lattice.mean[:3] == pytest.approx(x_1.lengths.log().mean(0).tolist())
