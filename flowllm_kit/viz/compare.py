"""Figures that put several evaluated systems side by side (notebook 08).

Both take the per-structure tables of :class:`flowllm_kit.evaluate.Report` stacked into one
frame with a ``system`` column, e.g.::

    per_structure = pd.concat(
        {name: pd.read_csv(RunFolder(run_dir).per_structure(name)) for name in names},
        names=["system", "row"],
    ).reset_index()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["CLOSENESS_PANELS", "closeness_figure", "e_hull_figure"]

CLOSENESS_PANELS = (
    "RMS displacement",
    "energy drop (eV/atom)",
    "relaxation steps",
)
"""Panels of :func:`closeness_figure`, in the order of the paper's closeness values (after the
match rate): RMSD, ΔE, steps."""


def e_hull_figure(
    per_structure: pd.DataFrame,
    *,
    systems: Sequence[str] | None = None,
    threshold: float = 0.0,
    clip: tuple[float, float] = (-0.5, 1.0),
    bin_size: float = 0.05,
    title: str = "",
) -> go.Figure:
    """One E_hull histogram per system, stacked with a shared x axis.

    Args:
        per_structure: Rows with ``system`` and ``e_hull`` (eV/atom; NaN: not relaxed).
        systems: Which systems, top to bottom (default: in order of appearance).
        threshold: Stability threshold, drawn as a dashed line.
        clip: E_hull is clipped to this range so outliers land in the end bins.
        bin_size: Bin width, eV/atom.
        title: Figure title.

    Returns:
        A figure with one row per system; bar heights are percent of that system's relaxed
        crystals, and each row's title gives how many there were.
    """
    systems = list(systems) if systems is not None else list(dict.fromkeys(per_structure["system"]))
    values = {
        name: per_structure.loc[per_structure["system"] == name, "e_hull"].dropna().to_numpy()
        for name in systems
    }
    titles = [f"{name} ({len(v)} relaxed)" for name, v in values.items()]
    figure = make_subplots(
        rows=len(systems),
        cols=1,
        shared_xaxes=True,
        subplot_titles=titles,
        vertical_spacing=0.3 / len(systems),
    )
    bins = {"start": clip[0], "end": clip[1] + bin_size, "size": bin_size}
    for row, (name, v) in enumerate(values.items(), start=1):
        clipped = np.clip(v.astype(float), *clip)
        figure.add_trace(
            go.Histogram(x=clipped, name=name, histnorm="percent", xbins=bins), row=row, col=1
        )
        figure.add_vline(x=threshold, line_dash="dash", row=row, col=1)
    figure.update_xaxes(title_text=f"E_hull (eV/atom, clipped to {list(clip)})", row=len(systems))
    figure.update_yaxes(title_text="%")
    figure.update_layout(title=title, showlegend=False, height=160 + 170 * len(systems))
    return figure


def closeness_figure(
    per_structure: pd.DataFrame,
    *,
    systems: Sequence[str] | None = None,
    paper: Mapping[str, Sequence[float]] | None = None,
    title: str = "",
) -> go.Figure:
    """How far each system's crystals are from their relaxed selves: one box per system in each
    of :data:`CLOSENESS_PANELS`, with the paper's means as diamonds.

    Args:
        per_structure: Rows with ``system``, ``relaxed_rms`` (NaN: no match),
            ``initial_energy_per_atom``, ``final_energy_per_atom`` and ``steps``.
        systems: Which systems, left to right in each panel (default: order of appearance).
        paper: System name -> the paper's (RMSD, ΔE, steps) means, drawn over that system's box
            (e.g. ``{"flowllm": PAPER_CLOSENESS["FlowLLM τ=0.7 P=0.9"][1:]}``).
        title: Figure title.

    Returns:
        A figure with three panels.
    """
    systems = list(systems) if systems is not None else list(dict.fromkeys(per_structure["system"]))
    table = per_structure.assign(
        drop=pd.to_numeric(per_structure["initial_energy_per_atom"], errors="coerce")
        - pd.to_numeric(per_structure["final_energy_per_atom"], errors="coerce")
    )
    columns = ("relaxed_rms", "drop", "steps")
    figure = make_subplots(rows=1, cols=len(columns), subplot_titles=CLOSENESS_PANELS)
    colors = dict(zip(systems, _palette(len(systems)), strict=True))
    for col, column in enumerate(columns, start=1):
        for name in systems:
            values = pd.to_numeric(table.loc[table["system"] == name, column], errors="coerce")
            figure.add_trace(
                go.Box(y=values.dropna(), name=name, marker_color=colors[name], boxpoints="all",
                       legendgroup=name, showlegend=col == 1),
                row=1, col=col,
            )  # fmt: skip
        for name, means in (paper or {}).items():
            figure.add_trace(
                go.Scatter(x=[name], y=[means[col - 1]], mode="markers", name="paper mean",
                           marker={"symbol": "diamond", "size": 12, "color": "black"},
                           legendgroup="paper", showlegend=col == 1 and name == next(iter(paper))),
                row=1, col=col,
            )  # fmt: skip
    figure.update_layout(title=title, height=450)
    return figure


def _palette(n: int) -> list[str]:
    import plotly.express as px

    colors = px.colors.qualitative.Plotly
    return [colors[k % len(colors)] for k in range(n)]
