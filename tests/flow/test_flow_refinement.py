"""The refinement benchmark's corruption and error measures, against values worked out by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from flowllm_kit.crystal import Crystal
from flowllm_kit.flow import VelocityNetwork, train_preset
from flowllm_kit.flow.refinement import (
    Corruption,
    angle_class,
    corrupt,
    denoising_pairs,
    refinement_errors,
    run_refinement,
)


def _crystal(coords, lengths=(4.0, 4.0, 4.0), angles=(90.0, 90.0, 90.0), numbers=None):
    coords = np.array(coords, dtype=float)
    numbers = numbers if numbers is not None else [14] * len(coords)
    return Crystal(np.array(numbers), coords, np.array(lengths), np.array(angles), id="x")


def test_identical_and_translated_crystals_have_no_error():
    truth = [_crystal([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], numbers=[26, 27])]
    shifted = [truth[0].replace(frac_coords=(truth[0].frac_coords + [0.3, 0.9, 0.5]) % 1.0)]
    for crystals in (truth, shifted):
        errors = refinement_errors(crystals, truth)
        assert errors.coord_rms == pytest.approx(0.0, abs=1e-12)
        assert errors.length_mae == errors.angle_mae == errors.volume_error == 0.0
        assert errors.match_rate == 1.0


def test_known_coordinate_length_angle_and_volume_errors():
    # Cubic 4 Å cell, two atoms; atom 1 moved by 0.1 along a: displacements (0, 0.1) minus
    # their mean 0.05 -> ±0.05 fractional = ±0.2 Å, so the RMS is 0.2 Å.
    truth = _crystal([[0.1, 0.2, 0.3], [0.6, 0.2, 0.3]])
    moved = truth.replace(frac_coords=[[0.1, 0.2, 0.3], [0.7, 0.2, 0.3]])
    assert refinement_errors([moved], [truth], match=False).coord_rms == pytest.approx(0.2)
    # Across the periodic boundary: 0.95 -> 0.05 is a move of 0.1, not 0.9.
    wrapped_truth = _crystal([[0.0, 0.0, 0.0], [0.95, 0.0, 0.0]])
    wrapped = wrapped_truth.replace(frac_coords=[[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]])
    assert refinement_errors([wrapped], [wrapped_truth], match=False).coord_rms == pytest.approx(
        0.2
    )
    # Lattice: a 4 -> 4.3 (MAE 0.1 over three lengths); gamma 90 -> 93 (MAE 1 over three).
    stretched = truth.replace(lengths=[4.3, 4.0, 4.0], angles=[90.0, 90.0, 93.0])
    errors = refinement_errors([stretched], [truth], match=False)
    assert errors.length_mae == pytest.approx(0.1)
    assert errors.angle_mae == pytest.approx(1.0)
    assert errors.angle_mae_by_class["90"] == pytest.approx(1.0)
    assert errors.angle_count_by_class == {"60": 0, "90": 3, "120": 0, "other": 0}
    assert math.isnan(errors.angle_mae_by_class["60"])
    volume = 4.3 * 4.0 * 4.0 * math.sin(math.radians(93.0))
    assert errors.volume_error == pytest.approx(100 * abs(volume / 64.0 - 1))
    assert math.isnan(errors.match_rate)


def test_angle_errors_are_split_by_the_true_angle():
    truth = [
        _crystal([[0, 0, 0]], angles=(60.0, 60.0, 60.0)),
        _crystal([[0, 0, 0]], angles=(90.0, 90.0, 120.0)),
        _crystal([[0, 0, 0]], angles=(75.0, 90.005, 110.0)),
    ]
    off = [c.replace(angles=c.angles + np.array([1.0, 2.0, 3.0])) for c in truth]
    errors = refinement_errors(off, truth, match=False)
    assert errors.angle_count_by_class == {"60": 3, "90": 3, "120": 1, "other": 2}
    assert errors.angle_mae_by_class["60"] == pytest.approx(2.0)
    assert errors.angle_mae_by_class["90"] == pytest.approx((1 + 2 + 2) / 3)
    assert errors.angle_mae_by_class["120"] == pytest.approx(3.0)
    assert errors.angle_mae_by_class["other"] == pytest.approx(2.0)
    assert list(angle_class(np.array([60.0, 60.02, 119.995]))) == ["60", "other", "120"]


def test_match_rate_counts_structure_matches():
    truth = [_crystal([[0, 0, 0], [0.5, 0.5, 0.5]], numbers=[55, 17])] * 2
    far = truth[0].replace(lengths=[6.0, 4.0, 4.0])  # 50% longer a: no match
    assert refinement_errors([truth[0], far], truth).match_rate == 0.5


def test_mismatched_inputs_are_named():
    truth = [_crystal([[0, 0, 0]])]
    with pytest.raises(ValueError, match="got 2 crystals for 1"):
        refinement_errors(truth * 2, truth)
    with pytest.raises(ValueError, match="does not hold the true crystal's atoms"):
        refinement_errors([_crystal([[0, 0, 0]], numbers=[8])], truth)


def test_corruption_is_reproducible_keeps_atoms_and_has_its_scales():
    truth = [
        _crystal(np.random.default_rng(i).random((6, 3)), numbers=list(range(1, 7)))
        for i in range(300)
    ]
    corruption = Corruption(coord_std=0.02, length_log_std=0.05, angle_std=2.0)
    first, second = corrupt(truth, corruption, seed=3), corrupt(truth, corruption, seed=3)
    assert all(
        np.array_equal(a.frac_coords, b.frac_coords) for a, b in zip(first, second, strict=True)
    )
    assert all(
        np.array_equal(a.atomic_numbers, t.atomic_numbers)
        for a, t in zip(first, truth, strict=True)
    )
    assert all(((c.frac_coords >= 0) & (c.frac_coords < 1)).all() for c in first)
    log_ratio = np.log(np.stack([c.lengths for c in first]) / 4.0)
    angle_shift = np.stack([c.angles for c in first]) - 90.0
    assert log_ratio.std() == pytest.approx(0.05, rel=0.1)
    assert angle_shift.std() == pytest.approx(2.0, rel=0.1)
    # Coordinates: RMS in Å (4 Å cubic cell, 3 dims, mean removed over 6 atoms) ~ 4 * 0.02 *
    # sqrt(3) * sqrt(5 / 6).
    expected = 4 * 0.02 * math.sqrt(3 * 5 / 6)
    assert refinement_errors(first, truth, match=False).coord_rms == pytest.approx(
        expected, rel=0.1
    )
    none = corrupt(truth[:3], Corruption(0.0, 0.0, 0.0))
    assert refinement_errors(none, truth[:3], match=False).coord_rms == pytest.approx(0.0)
    with pytest.raises(ValueError, match="coord_std"):
        Corruption(coord_std=-1.0)


def test_denoising_pairs_draw_real_targets_with_corrupted_starts():
    truth = [_crystal([[0, 0, 0], [0.5, 0.5, 0.5]], numbers=[i, i + 1]) for i in range(1, 6)]
    pairs = denoising_pairs(truth, 12, seed=1)
    assert len(pairs) == 12 and all(any(t is c for c in truth) for _, t in pairs)
    assert all(np.array_equal(s.atomic_numbers, t.atomic_numbers) for s, t in pairs)
    with pytest.raises(ValueError, match="at least one crystal"):
        denoising_pairs([], 3)


def test_run_refinement_trains_and_reports_both_ends(make_crystals):
    crystals = make_crystals(24, min_atoms=2, max_atoms=5)
    config = dataclasses.replace(train_preset("smoke"), max_steps=3, progress=False, val_every=0)
    run = run_refinement(
        VelocityNetwork.from_preset("smoke"),
        crystals[:16],
        crystals[16:],
        config=config,
        num_pairs=32,
        match=False,
    )
    assert run.trainer.step == 3 and len(run.refined_crystals) == 8
    assert run.start.num_crystals == run.refined.num_crystals == 8
    assert set(run.table()) == {"start", "refined"}


def test_default_denoise_pairs():
    from flowllm_kit.flow.refinement import default_denoise_pairs

    assert default_denoise_pairs("demo") > default_denoise_pairs("smoke") > 0
    assert default_denoise_pairs("paper") == default_denoise_pairs("demo", "reference") == 0
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        default_denoise_pairs("huge")
