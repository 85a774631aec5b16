"""Paths on the flat torus, drawn in the unit square with the periodic boundary visible."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from flowllm_kit.geometry import torus

__all__ = ["torus_path_figure"]


def _break_at_wraps(points: np.ndarray) -> np.ndarray:
    """Insert NaN rows where the wrapped path jumps across the boundary, so no line is drawn
    through the middle of the square. ``points`` is ``(T, 2)``."""
    jumps = np.abs(np.diff(points, axis=0)).max(axis=1) > 0.5
    pieces = np.split(points, np.flatnonzero(jumps) + 1)
    gap = np.full((1, 2), np.nan)
    return np.concatenate([np.concatenate([piece, gap]) for piece in pieces])[:-1]


def torus_path_figure(
    f0: np.ndarray | torch.Tensor,
    f1: np.ndarray | torch.Tensor,
    *,
    axes: tuple[int, int] = (0, 1),
    n_points: int = 101,
) -> go.Figure:
    """The torus geodesic from ``f0`` to ``f1`` beside the naive straight line in [0, 1)^2.

    Args:
        f0: Start, fractional coordinates of shape ``(3,)``.
        f1: End, shape ``(3,)``.
        axes: The two coordinate axes to draw.
        n_points: Points along each path.

    Returns:
        A plotly figure of the unit square with both paths.
    """
    f0 = torch.as_tensor(f0, dtype=torch.float64).view(1, 3)
    f1 = torch.as_tensor(f1, dtype=torch.float64).view(1, 3)
    t = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64).view(-1, 1)  # (T, 1)
    geodesic = torus.geodesic(f0.expand(n_points, 3), f1.expand(n_points, 3), t).numpy()[:, axes]
    straight = ((1 - t) * f0 + t * f1).numpy()[:, axes]
    geodesic = _break_at_wraps(geodesic)
    figure = go.Figure()
    figure.add_shape(type="rect", x0=0, y0=0, x1=1, y1=1, line={"color": "gray", "dash": "dot"})
    figure.add_trace(
        go.Scatter(
            x=straight[:, 0],
            y=straight[:, 1],
            mode="lines",
            name="straight line in [0,1)²",
            line={"dash": "dash"},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=geodesic[:, 0],
            y=geodesic[:, 1],
            mode="lines",
            name="torus geodesic",
            line={"width": 3},
        )
    )
    ends = np.stack([f0.numpy()[0, axes], f1.numpy()[0, axes]])
    figure.add_trace(
        go.Scatter(
            x=ends[:, 0],
            y=ends[:, 1],
            mode="markers+text",
            text=["f0", "f1"],
            textposition="top center",
            name="ends",
            marker={"size": 10},
        )
    )
    names = "abc"
    figure.update_layout(
        xaxis={"range": [-0.05, 1.05], "title": f"fractional {names[axes[0]]}"},
        yaxis={"range": [-0.05, 1.05], "title": f"fractional {names[axes[1]]}", "scaleanchor": "x"},
        title="Geodesic on the flat torus vs. a straight line",
        width=560,
        height=520,
    )
    return figure
