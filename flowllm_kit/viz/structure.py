"""A crystal's unit cell in 3D with plotly."""

from __future__ import annotations

import itertools

import numpy as np
import plotly.graph_objects as go
from ase.data import chemical_symbols, covalent_radii
from ase.data.colors import jmol_colors

from flowllm_kit.crystal import Crystal

__all__ = ["unit_cell_figure"]

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
    matrix = crystal.lattice_matrix
    frac, source = (
        _boundary_images(crystal.frac_coords)
        if show_boundary_images
        else (crystal.frac_coords, np.arange(crystal.num_atoms))
    )
    cart = frac @ matrix  # (M, 3)
    numbers = crystal.atomic_numbers[source]
    figure = go.Figure()
    corners = _CORNERS @ matrix  # (8, 3)
    edge_points = np.full((3 * len(_EDGES), 3), np.nan)  # NaN rows break the line between edges
    for k, (i, j) in enumerate(_EDGES):
        edge_points[3 * k], edge_points[3 * k + 1] = corners[i], corners[j]
    figure.add_trace(
        go.Scatter3d(
            x=edge_points[:, 0],
            y=edge_points[:, 1],
            z=edge_points[:, 2],
            mode="lines",
            line={"color": "black", "width": 3},
            name="cell",
            hoverinfo="skip",
        )
    )
    for z in np.unique(numbers):
        mask = numbers == z
        figure.add_trace(
            go.Scatter3d(
                x=cart[mask, 0],
                y=cart[mask, 1],
                z=cart[mask, 2],
                mode="markers",
                name=chemical_symbols[z],
                marker={
                    "size": 8 + 10 * covalent_radii[z],
                    "color": _rgb(int(z)),
                    "line": {"width": 1, "color": "black"},
                },
                text=[f"{chemical_symbols[z]} {f.round(3).tolist()}" for f in frac[mask]],
                hoverinfo="text",
            )
        )
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
