"""Figures of one crystal's ODE trajectory: an animation over flow time, and per-atom and
lattice curves (plotly).

Example::

    >>> result = sample(net, x_0, config=FlowSamplerConfig(num_steps=50, record_every=1))
    >>> trajectory_animation(result.trajectory, 0)  # play button and time slider
    >>> trajectory_figure(result.trajectory, 0)  # displacement, lengths, angles against t
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import torch
from ase.data import chemical_symbols
from plotly.subplots import make_subplots

from flowllm_kit.geometry import lattice, torus
from flowllm_kit.viz.structure import _CORNERS, _rgb, cell_traces

if TYPE_CHECKING:
    from flowllm_kit.flow.sampler import Trajectory

__all__ = [
    "CrystalPath",
    "crystal_path",
    "trajectory_animation",
    "trajectory_figure",
]


@dataclass(frozen=True)
class CrystalPath:
    """One crystal's recorded ODE states as NumPy arrays.

    Attributes:
        times: ``(T,)`` flow times.
        atomic_numbers: ``(n,)`` atom types at the end of the flow.
        frac_coords: ``(T, n, 3)`` fractional coordinates; unwrapped (continuous in time, may
            leave [0, 1)) or wrapped, see :func:`crystal_path`.
        lengths: ``(T, 3)`` lattice lengths in Å.
        angles: ``(T, 3)`` lattice angles in degrees.
        matrices: ``(T, 3, 3)`` lattice matrices, rows are lattice vectors.
        types: ``(T, n)`` atom types at every state, for a flow that generates them (None: the
            types are ``atomic_numbers`` throughout).
    """

    times: np.ndarray
    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    matrices: np.ndarray
    types: np.ndarray | None = None

    def atomic_numbers_at(self, k: int) -> np.ndarray:
        """``(n,)`` atom types at state ``k``."""
        return self.atomic_numbers if self.types is None else self.types[k]

    @property
    def cart_coords(self) -> np.ndarray:
        """``(T, n, 3)`` Cartesian coordinates in Å, each state in its own lattice."""
        return np.einsum("tnk,tkj->tnj", self.frac_coords, self.matrices)

    @property
    def displacements(self) -> np.ndarray:
        """``(T, n)`` distance in Å of every atom from its start: the fractional displacement
        along the path, measured in the lattice of each time."""
        moved = self.frac_coords - self.frac_coords[:1]  # (T, n, 3)
        return np.linalg.norm(np.einsum("tnk,tkj->tnj", moved, self.matrices), axis=-1)


def crystal_path(trajectory: Trajectory, index: int = 0, *, unwrap: bool = True) -> CrystalPath:
    """Crystal ``index`` of a recorded trajectory.

    Args:
        trajectory: From :func:`flowllm_kit.flow.sample` with ``record_every`` set.
        index: Which crystal of the batch.
        unwrap: Follow atoms continuously across the periodic boundary (each step adds the
            short-way torus displacement), so no atom jumps from one face to the other.
            Assumes no atom moves half a cell or more between two recorded states.

    Returns:
        The crystal's states at every recorded time.
    """
    offsets = trajectory.template.offsets.cpu()
    rows = slice(int(offsets[index]), int(offsets[index + 1]))
    f = trajectory.frac_coords[:, rows].detach().cpu().double()  # (T, n, 3)
    if unwrap:
        steps = torus.logmap(f[:-1], f[1:])  # (T - 1, n, 3)
        f = torch.cat([f[:1], f[:1] + torch.cumsum(steps, dim=0)])
    lengths, angles = lattice.unconstrained_to_lattice(
        trajectory.lattice[:, index].detach().cpu().double(), trajectory.representation
    )  # (T, 3) each
    return CrystalPath(
        times=trajectory.times.detach().cpu().double().numpy(),
        atomic_numbers=trajectory.types_at(len(trajectory) - 1)[rows].cpu().numpy(),
        types=None
        if trajectory.atomic_numbers is None
        else trajectory.atomic_numbers[:, rows].cpu().numpy(),
        frac_coords=f.numpy(),
        lengths=lengths.numpy(),
        angles=angles.numpy(),
        matrices=lattice.params_to_matrix(lengths, angles).numpy(),
    )


def _frame_traces(path: CrystalPath, k: int) -> list[go.Scatter3d]:
    """Cell edges and one marker trace per element at recorded state ``k``."""
    return cell_traces(
        path.matrices[k],
        path.frac_coords[k],
        path.atomic_numbers_at(k),
        marker_size=(5.0, 8.0),
        hover=False,
    )


def _scene_ranges(path: CrystalPath) -> dict[str, list[float]]:
    """Axis ranges that hold every state, so the view stays still while the crystal moves."""
    corners = np.einsum("ck,tkj->tcj", _CORNERS, path.matrices)  # (T, 8, 3)
    points = np.concatenate([corners, path.cart_coords], axis=1).reshape(-1, 3)
    low, high = points.min(0), points.max(0)
    pad = 0.05 * float((high - low).max()) + 0.5
    return {axis: [low[i] - pad, high[i] + pad] for i, axis in enumerate("xyz")}


def trajectory_animation(
    trajectory: Trajectory,
    index: int = 0,
    *,
    unwrap: bool = True,
    title: str | None = None,
    frame_ms: int = 80,
) -> go.Figure:
    """3D animation of one crystal moving from its start (t = 0) to the sample (t = 1).

    One plotly frame per recorded state, with a play button and a time slider; the cell and
    the atoms move together (Cartesian coordinates in the lattice of each time).

    Args:
        trajectory: From :func:`flowllm_kit.flow.sample` with ``record_every`` set.
        index: Which crystal of the batch.
        unwrap: Draw atoms continuously across the cell's faces (see :func:`crystal_path`);
            atoms may then sit outside the drawn cell, at a periodic image of their site.
        title: Figure title (default: the crystal's id and the number of states).
        frame_ms: Milliseconds per frame when playing.

    Returns:
        A ``plotly.graph_objects.Figure`` with ``len(trajectory)`` frames.
    """
    path = crystal_path(trajectory, index, unwrap=unwrap)
    names = [f"{t:.3f}" for t in path.times]
    frames = [
        go.Frame(data=_frame_traces(path, k), name=name, layout={"title": f"t = {name}"})
        for k, name in enumerate(names)
    ]
    figure = go.Figure(data=frames[0].data, frames=frames)
    play = {"frame": {"duration": frame_ms, "redraw": True}, "fromcurrent": True}
    still = {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}
    ranges = _scene_ranges(path)
    label = trajectory.template.ids[index] or f"crystal {index}"
    figure.update_layout(
        title=title or f"{label}: flow from t = 0 to t = 1 ({len(path.times)} states)",
        scene={
            "xaxis": {"range": ranges["x"], "title": "x (Å)"},
            "yaxis": {"range": ranges["y"], "title": "y (Å)"},
            "zaxis": {"range": ranges["z"], "title": "z (Å)"},
            "aspectmode": "manual",
            "aspectratio": dict(zip("xyz", _aspect(ranges), strict=True)),
        },
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0.1,
                "y": 0.0,
                "xanchor": "right",
                "yanchor": "top",
                "pad": {"r": 10, "t": 60},
                "buttons": [
                    {"label": "▶ play", "method": "animate", "args": [None, play]},
                    {"label": "❚❚ pause", "method": "animate", "args": [[None], still]},
                ],
            }
        ],
        sliders=[
            {
                "x": 0.1,
                "len": 0.9,
                "y": 0.0,
                "pad": {"t": 50, "b": 10},
                "currentvalue": {"prefix": "t = "},
                "steps": [
                    {"label": name, "method": "animate", "args": [[name], still]} for name in names
                ],
            }
        ],
        height=600,
        margin={"l": 0, "r": 0, "t": 40, "b": 60},
    )
    return figure


def _aspect(ranges: dict[str, list[float]]) -> list[float]:
    spans = np.array([high - low for low, high in ranges.values()])
    return (spans / spans.max()).tolist()


def trajectory_figure(
    trajectory: Trajectory, index: int = 0, *, title: str | None = None
) -> go.Figure:
    """Per-atom displacement from the start, lattice lengths and angles against flow time.

    Args:
        trajectory: From :func:`flowllm_kit.flow.sample` with ``record_every`` set.
        index: Which crystal of the batch.
        title: Figure title (default: the crystal's id).

    Returns:
        Three panels side by side; one line per atom (coloured by element) in the first.
    """
    path = crystal_path(trajectory, index, unwrap=True)
    figure = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("distance from start (Å)", "lattice lengths (Å)", "lattice angles (°)"),
    )
    shown: set[int] = set()
    for atom, z in enumerate(path.atomic_numbers.tolist()):
        figure.add_trace(
            go.Scatter(
                x=path.times,
                y=path.displacements[:, atom],
                mode="lines",
                line={"color": _rgb(z), "width": 1.5},
                name=chemical_symbols[z],
                legendgroup=chemical_symbols[z],
                showlegend=z not in shown,
                hovertext=f"atom {atom} ({chemical_symbols[z]})",
            ),
            row=1,
            col=1,
        )
        shown.add(z)
    for column, (values, names) in enumerate(
        ((path.lengths, ("a", "b", "c")), (path.angles, ("α", "β", "γ"))), start=2
    ):
        for k, name in enumerate(names):
            figure.add_trace(
                go.Scatter(x=path.times, y=values[:, k], mode="lines", name=name),
                row=1,
                col=column,
            )
    figure.update_xaxes(title_text="flow time t", range=[0, 1])
    label = trajectory.template.ids[index] or f"crystal {index}"
    figure.update_layout(title=title or f"{label}: trajectory", height=380)
    return figure
