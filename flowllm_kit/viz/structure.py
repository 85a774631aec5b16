"""A crystal's unit cell in 3D with plotly."""

from __future__ import annotations

import itertools

import numpy as np
import plotly.graph_objects as go
from ase.data import chemical_symbols, covalent_radii
from ase.data.colors import jmol_colors

from flowllm_kit.crystal import Crystal

__all__ = ["cell_traces", "unit_cell_figure"]

_CORNERS = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float)  # (8, 3)
_EDGES = [
    (i, j)
    for i, j in itertools.combinations(range(8), 2)
    if np.abs(_CORNERS[i] - _CORNERS[j]).sum() == 1
]


def _rgb(z: int) -> str:
    red, green, blue = (int(255 * c) for c in jmol_colors[z])
    return f"rgb({red},{green},{blue})"


def _boundary_images(
    frac_coords: np.ndarray, *, tol: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of atoms on faces/edges/corners at the opposite side of the cell, so a cubic
    cell shows all eight corner atoms. Returns (coords (M, 3), source atom index (M,))."""
    coords, sources = [frac_coords], [np.arange(len(frac_coords))]
    for shift in itertools.product([0, 1], repeat=3):
        shift = np.array(shift, dtype=float)
        if not shift.any():
            continue
        on_face = np.all((frac_coords < tol) | (shift == 0), axis=1)
        coords.append(frac_coords[on_face] + shift)
        sources.append(np.flatnonzero(on_face))
    return np.concatenate(coords), np.concatenate(sources)


def cell_traces(
    matrix: np.ndarray,
    frac_coords: np.ndarray,
    atomic_numbers: np.ndarray,
    *,
    marker_size: tuple[float, float] = (8.0, 10.0),
    hover: bool = True,
) -> list[go.Scatter3d]:
    """Plotly traces of one cell: its edges, then one marker trace per element.

    Args:
        matrix: ``(3, 3)`` lattice, rows are vectors.
        frac_coords: ``(n, 3)`` fractional coordinates of the atoms to draw.
        atomic_numbers: ``(n,)``.
        marker_size: ``(base, per Å of covalent radius)``: an atom's marker size.
        hover: Show element and fractional coordinates on hover.
    """
    corners = _CORNERS @ matrix  # (8, 3)
    edges = np.full((3 * len(_EDGES), 3), np.nan)  # NaN rows break the line between edges
    for k, (i, j) in enumerate(_EDGES):
        edges[3 * k], edges[3 * k + 1] = corners[i], corners[j]
    traces = [
        go.Scatter3d(
            x=edges[:, 0],
            y=edges[:, 1],
            z=edges[:, 2],
            mode="lines",
            line={"color": "black", "width": 3},
            name="cell",
            hoverinfo="skip",
        )
    ]
    cart = frac_coords @ matrix  # (n, 3)
    for z in np.unique(atomic_numbers):
        mask = atomic_numbers == z
        symbol = chemical_symbols[z]
        traces.append(
            go.Scatter3d(
                x=cart[mask, 0],
                y=cart[mask, 1],
                z=cart[mask, 2],
                mode="markers",
                name=symbol,
                marker={
                    "size": marker_size[0] + marker_size[1] * covalent_radii[z],
                    "color": _rgb(int(z)),
                    "line": {"width": 1, "color": "black"},
                },
                text=[f"{symbol} {f.round(3).tolist()}" for f in frac_coords[mask]]
                if hover
                else None,
                hoverinfo="text" if hover else "skip",
            )
        )
    return traces


def unit_cell_figure(
    crystal: Crystal, *, title: str | None = None, show_boundary_images: bool = True
) -> go.Figure:
    """Plotly 3D figure of a crystal's unit cell: atoms coloured by element, cell edges.

    Args:
        crystal: The crystal to draw.
        title: Figure title (default: id and formula).
        show_boundary_images: Also draw periodic copies of atoms that sit on the cell's faces.

    Returns:
        A ``plotly.graph_objects.Figure``; one marker trace per element, so the legend names them.
    """
    frac, source = (
        _boundary_images(crystal.frac_coords)
        if show_boundary_images
        else (crystal.frac_coords, np.arange(crystal.num_atoms))
    )
    figure = go.Figure(cell_traces(crystal.lattice_matrix, frac, crystal.atomic_numbers[source]))
    label = title or " ".join(part for part in (crystal.id, crystal.formula) if part)
    figure.update_layout(
        title=label,
        scene={
            "aspectmode": "data",
            "xaxis_title": "x (Å)",
            "yaxis_title": "y (Å)",
            "zaxis_title": "z (Å)",
        },
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
    )
    return figure
