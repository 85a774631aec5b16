"""Figures: 3D unit cells, torus paths and dataset distributions (plotly)."""

from __future__ import annotations

from flowllm_kit.viz.distributions import crystal_table, distribution_figure
from flowllm_kit.viz.structure import unit_cell_figure
from flowllm_kit.viz.torus import torus_path_figure

__all__ = ["crystal_table", "distribution_figure", "torus_path_figure", "unit_cell_figure"]
