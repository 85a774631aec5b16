"""Trajectory and loss-curve figures, checked on ODE solves with known exact answers."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.flow import FlowSamplerConfig, sample
from flowllm_kit.viz.training import loss_curves_figure
from flowllm_kit.viz.trajectory import (
    crystal_path,
    trajectory_animation,
    trajectory_figure,
)


class ConstantField:
    """Every atom moves by ``shift`` (fractional units) over t in [0, 1]; the lattice by
    ``lattice_shift`` in the unconstrained space."""

    def __init__(self, shift: list[float], lattice_shift: list[float] | None = None):
        self.shift = torch.tensor(shift)
        self.lattice_shift = torch.tensor(lattice_shift or [0.0] * 6)

    def velocity(self, batch, f_t, l_t, t):
        v_f = self.shift.to(f_t).expand_as(f_t)
        return v_f, self.lattice_shift.to(l_t).expand_as(l_t)


def _starts() -> CrystalBatch:
    crystals = [
        Crystal(
            atomic_numbers=[8, 12, 12],
            frac_coords=[[0.9, 0.1, 0.5], [0.2, 0.2, 0.2], [0.7, 0.4, 0.95]],
            lengths=[4.0, 5.0, 6.0],
            angles=[90.0, 90.0, 90.0],
            id="mgo-like",
        ),
        Crystal(
            atomic_numbers=[14], frac_coords=[[0.5, 0.5, 0.5]], lengths=[3.0] * 3, angles=[70.0] * 3
        ),
    ]
    return CrystalBatch.from_crystals(crystals, dtype=torch.float64)


@pytest.mark.parametrize("shift", [0.3, -0.45, 0.8])
def test_unwrapped_path_moves_atoms_by_the_exact_shift_across_the_boundary(shift: float) -> None:
    num_steps = 20  # steps of at most 0.04 < 0.5: unwrapping is exact
    field = ConstantField([shift, 0.0, 0.0])
    result = sample(field, _starts(), config=FlowSamplerConfig(num_steps=num_steps, record_every=1))
    path = crystal_path(result.trajectory, 0)
    assert path.frac_coords.shape == (num_steps + 1, 3, 3)
    np.testing.assert_allclose(
        path.frac_coords[-1] - path.frac_coords[0], [[shift, 0, 0]] * 3, atol=1e-9
    )
    # Orthorhombic cell, a = 4 Å: every atom ends |shift| * 4 Å from its start, linearly in t.
    np.testing.assert_allclose(path.displacements[-1], [abs(shift) * 4.0] * 3, atol=1e-9)
    np.testing.assert_allclose(path.displacements[:, 0], abs(shift) * 4.0 * path.times, atol=1e-9)
    wrapped = crystal_path(result.trajectory, 0, unwrap=False)
    np.testing.assert_allclose(wrapped.frac_coords, np.mod(path.frac_coords, 1.0), atol=1e-9)
    final = result.crystals.to_crystals()[0]
    np.testing.assert_allclose(wrapped.frac_coords[-1], final.frac_coords, atol=1e-9)


def test_path_follows_the_lattice_and_selects_the_right_crystal() -> None:
    field = ConstantField([0.0, 0.0, 0.0], lattice_shift=[1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    result = sample(field, _starts(), config=FlowSamplerConfig(num_steps=4, record_every=2))
    path = crystal_path(result.trajectory, 1)
    np.testing.assert_allclose(path.times, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(path.lengths[:, 0], [3.0, 3.5, 4.0], atol=1e-9)
    np.testing.assert_allclose(path.angles, 70.0, atol=1e-6)
    assert path.atomic_numbers.tolist() == [14]
    np.testing.assert_allclose(path.displacements, 0.0, atol=1e-12)


def test_animation_has_one_frame_per_state_ending_at_the_sample() -> None:
    result = sample(
        ConstantField([0.3, 0.1, 0.0]),
        _starts(),
        config=FlowSamplerConfig(num_steps=10, record_every=5),
    )
    figure = trajectory_animation(result.trajectory, 0, unwrap=False)
    assert isinstance(figure, go.Figure)
    assert len(figure.frames) == len(result.trajectory) == 3
    assert [frame.name for frame in figure.frames] == ["0.000", "0.500", "1.000"]
    assert all(len(frame.data) == 3 for frame in figure.frames)  # cell + O + Mg
    assert len(figure.layout.sliders[0].steps) == 3
    final = result.crystals.to_crystals()[0]
    oxygen = figure.frames[-1].data[1]
    np.testing.assert_allclose(
        [oxygen.x[0], oxygen.y[0], oxygen.z[0]], final.cart_coords[0], atol=1e-9
    )


def test_trajectory_figure_has_a_line_per_atom_and_per_lattice_parameter() -> None:
    result = sample(
        ConstantField([0.1, 0.0, 0.0]),
        _starts(),
        config=FlowSamplerConfig(num_steps=4, record_every=1),
    )
    figure = trajectory_figure(result.trajectory, 0)
    assert len(figure.data) == 3 + 6
    assert sum(trace.showlegend is not False for trace in figure.data[:3]) == 2  # O, Mg


def test_loss_curves_draw_train_and_validation_per_run() -> None:
    histories = {
        "FlowLLM": [
            {"step": float(k), "loss": 1.0 / (k + 1)} | ({"val_loss": 0.5} if k == 9 else {})
            for k in range(10)
        ],
        "FlowMM": [{"step": float(k), "loss": 2.0} for k in range(10)],
    }
    figure = loss_curves_figure(histories, smooth=3)
    assert [trace.name for trace in figure.data] == [
        "FlowLLM train",
        "FlowLLM validation",
        "FlowMM train",
    ]
    np.testing.assert_allclose(figure.data[0].y[2], np.mean([1.0, 0.5, 1 / 3]))
    assert list(figure.data[1].x) == [10]
