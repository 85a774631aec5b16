"""Figures: 3D unit cells, torus paths, dataset distributions, flow trajectories, training
curves, systems side by side (plotly)."""

from __future__ import annotations

from flowllm_kit.viz.compare import closeness_figure, differences_figure, e_hull_figure
from flowllm_kit.viz.distributions import crystal_table, distribution_figure
from flowllm_kit.viz.structure import unit_cell_figure
from flowllm_kit.viz.torus import torus_path_figure
from flowllm_kit.viz.training import loss_curves_figure
from flowllm_kit.viz.trajectory import (
    CrystalPath,
    crystal_path,
    trajectory_animation,
    trajectory_figure,
)

__all__ = [
    "CrystalPath",
    "closeness_figure",
    "crystal_path",
    "crystal_table",
    "differences_figure",
    "distribution_figure",
    "e_hull_figure",
    "loss_curves_figure",
    "torus_path_figure",
    "trajectory_animation",
    "trajectory_figure",
    "unit_cell_figure",
]
