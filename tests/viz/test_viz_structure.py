"""Unit-cell, torus-path and distribution figures draw what they claim."""

from __future__ import annotations

import numpy as np

from flowllm_kit.crystal import Crystal
from flowllm_kit.viz import crystal_table, distribution_figure, torus_path_figure, unit_cell_figure


def _cscl() -> Crystal:
    return Crystal(
        atomic_numbers=[55, 17],
        frac_coords=[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
        lengths=[4.1, 4.1, 4.1],
        angles=[90.0, 90.0, 90.0],
        id="CsCl",
    )


def test_unit_cell_shows_corner_images_and_one_trace_per_element() -> None:
    figure = unit_cell_figure(_cscl())
    names = [trace.name for trace in figure.data]
    assert names == ["cell", "Cl", "Cs"]
    cesium = figure.data[2]
    corners = np.stack([cesium.x, cesium.y, cesium.z], axis=1)
    # The Cs at the origin is drawn at all 8 corners of the 4.1 Å cube.
    assert len(corners) == 8
    assert np.allclose(np.sort(np.unique(corners.round(6))), [0.0, 4.1])
    edges = figure.data[0]
    assert np.isnan(np.asarray(edges.x, dtype=float)).sum() == 12  # 12 edges, NaN-separated
    plain = unit_cell_figure(_cscl(), show_boundary_images=False)
    assert len(plain.data[2].x) == 1


def test_torus_path_crosses_the_boundary_with_a_break() -> None:
    figure = torus_path_figure([0.9, 0.5, 0.5], [0.1, 0.5, 0.5])
    geodesic = next(trace for trace in figure.data if trace.name == "torus geodesic")
    x = np.asarray(geodesic.x, dtype=float)
    assert np.isnan(x).sum() == 1  # one wrap, one break in the line
    finite = x[np.isfinite(x)]
    assert finite.min() >= 0 and finite.max() < 1 and np.ptp(finite) > 0.8


def test_distribution_table_counts() -> None:
    table = crystal_table([_cscl(), _cscl().replace(atomic_numbers=[55, 55])])
    assert table["num_atoms"].tolist() == [2, 2]
    assert table["num_elements"].tolist() == [2, 1]
    assert np.allclose(table["volume_per_atom"], 4.1**3 / 2)
    assert len(distribution_figure(table).data) == 9
