"""The comparison figures draw one trace per system and the paper's means where given."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from flowllm_kit.viz.compare import (
    CLOSENESS_PANELS,
    closeness_figure,
    differences_figure,
    e_hull_figure,
)


def _per_structure() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "system": ["a", "a", "a", "b", "b"],
            "e_hull": [-0.1, 0.2, 5.0, math.nan, 0.0],
            "relaxed_rms": [0.1, math.nan, 0.3, 0.2, 0.05],
            "initial_energy_per_atom": [-5.0, -4.0, None, -3.0, -2.0],
            "final_energy_per_atom": [-5.5, -4.25, None, -3.5, -2.0],
            "steps": [10, 20, None, 30, 5],
        }
    )


def test_e_hull_figure_has_a_normalized_clipped_histogram_per_system() -> None:
    figure = e_hull_figure(_per_structure(), threshold=0.0, clip=(-0.5, 1.0))
    assert [trace.name for trace in figure.data] == ["a", "b"]
    assert all(trace.histnorm == "percent" for trace in figure.data)
    assert np.allclose(figure.data[0].x, [-0.1, 0.2, 1.0]), "outliers land in the end bin"
    assert len(figure.data[1].x) == 1, "NaN (not relaxed) is left out"
    titles = [a.text for a in figure.layout.annotations]
    assert titles == ["a (3 relaxed)", "b (1 relaxed)"]


def test_e_hull_figure_overlays_both_hulls_with_both_thresholds() -> None:
    table = _per_structure().assign(e_hull_chgnet=[-0.3, None, 0.05, 0.4, None])
    columns = {"e_hull": "DFT hull", "e_hull_chgnet": "CHGNet hull"}
    figure = e_hull_figure(table, columns=columns, threshold=[0.0, 0.1])
    assert [(t.name, len(t.x)) for t in figure.data] == [
        ("DFT hull", 3), ("CHGNet hull", 2), ("DFT hull", 1), ("CHGNet hull", 1)
    ]  # fmt: skip
    titles = [a.text for a in figure.layout.annotations]
    assert titles == ["a (3 DFT hull, 2 CHGNet hull)", "b (1 DFT hull, 1 CHGNet hull)"]
    assert sorted(shape.x0 for shape in figure.layout.shapes) == [0.0, 0.0, 0.1, 0.1]


def test_closeness_figure_boxes_and_paper_means() -> None:
    paper = {"b": (0.02, 0.09, 38.0)}
    figure = closeness_figure(_per_structure(), systems=["a", "b"], paper=paper)
    boxes = [t for t in figure.data if t.type == "box"]
    assert len(boxes) == 2 * len(CLOSENESS_PANELS)
    drops = [t for t in boxes if t.xaxis == "x2"]
    assert np.allclose(drops[0].y, [0.5, 0.25]) and np.allclose(drops[1].y, [0.5, 0.0])
    assert np.allclose(boxes[0].y, [0.1, 0.3]), "unmatched RMS (NaN) is left out"
    diamonds = [t for t in figure.data if t.type == "scatter"]
    assert [list(t.y) for t in diamonds] == [[0.02], [0.09], [38.0]]
    assert sum(bool(t.showlegend) for t in diamonds) == 1


def test_differences_figure_has_a_panel_per_metric_and_asymmetric_error_bars() -> None:
    differences = pd.DataFrame({
        "first": ["real", "real", "real"], "second": ["a", "b", "a"],
        "metric": ["stable %", "stable %", "novel %"], "difference": [30.0, 5.0, -2.0],
        "low": [10.0, -8.0, -9.0], "high": [45.0, 19.0, 1.0], "excludes_zero": [True, False, False],
    })  # fmt: skip
    figure = differences_figure(differences)
    assert [a.text for a in figure.layout.annotations] == ["stable %", "novel %"]
    stable = figure.data[0]
    assert list(stable.y) == ["real − a", "real − b"]
    assert list(stable.error_x.array) == [15.0, 14.0]
    assert list(stable.error_x.arrayminus) == [20.0, 13.0]
    assert stable.marker.color[0] != stable.marker.color[1]  # excluding 0 is marked
