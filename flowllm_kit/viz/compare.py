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
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["CLOSENESS_PANELS", "closeness_figure", "differences_figure", "e_hull_figure"]

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
    columns: Mapping[str, str] | None = None,
    threshold: float | Sequence[float] = 0.0,
    clip: tuple[float, float] = (-0.5, 1.0),
    bin_size: float = 0.05,
    title: str = "",
) -> go.Figure:
    """One E_hull histogram per system, stacked with a shared x axis.

    Args:
        per_structure: Rows with ``system`` and the E_hull columns (eV/atom; NaN: not relaxed or
            no hull for the crystal's chemical system).
        systems: Which systems, top to bottom (default: in order of appearance).
        columns: E_hull column -> legend name, drawn overlaid in each row (default
            ``{"e_hull": "E_hull"}``; e.g. add ``"e_hull_chgnet"`` for the CHGNet hull).
        threshold: Stability threshold(s), drawn as dashed lines.
        clip: E_hull is clipped to this range so outliers land in the end bins.
        bin_size: Bin width, eV/atom.
        title: Figure title.

    Returns:
        A figure with one row per system; bar heights are percent of that system's crystals
        with a value in the column, and each row's title gives how many there were.
    """
    systems = list(systems) if systems is not None else list(dict.fromkeys(per_structure["system"]))
    columns = dict(columns or {"e_hull": "E_hull"})
    values = {
        (name, column): per_structure.loc[per_structure["system"] == name, column]
        .dropna()
        .to_numpy()
        for name in systems
        for column in columns
    }
    titles = [
        f"{name} ({', '.join(f'{len(values[name, c])} {label}' for c, label in columns.items())})"
        if len(columns) > 1
        else f"{name} ({len(values[name, next(iter(columns))])} relaxed)"
        for name in systems
    ]
    figure = make_subplots(
        rows=len(systems),
        cols=1,
        shared_xaxes=True,
        subplot_titles=titles,
        vertical_spacing=0.3 / len(systems),
    )
    bins = {"start": clip[0], "end": clip[1] + bin_size, "size": bin_size}
    colours = px.colors.qualitative.Plotly
    thresholds = [threshold] if isinstance(threshold, int | float) else list(threshold)
    for row, name in enumerate(systems, start=1):
        for index, (column, label) in enumerate(columns.items()):
            clipped = np.clip(values[name, column].astype(float), *clip)
            figure.add_trace(
                go.Histogram(
                    x=clipped, name=label if len(columns) > 1 else name, histnorm="percent",
                    xbins=bins, marker_color=colours[index % len(colours)],
                    opacity=0.6 if len(columns) > 1 else 1.0, legendgroup=column,
                    showlegend=len(columns) > 1 and row == 1,
                ),
                row=row, col=1,
            )  # fmt: skip
        for value in thresholds:
            figure.add_vline(x=value, line_dash="dash", row=row, col=1)
    figure.update_xaxes(title_text=f"E_hull (eV/atom, clipped to {list(clip)})", row=len(systems))
    figure.update_yaxes(title_text="%")
    figure.update_layout(
        title=title, showlegend=len(columns) > 1, barmode="overlay",
        height=160 + 170 * len(systems),
    )  # fmt: skip
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


def differences_figure(differences: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Each difference between two systems as a point with its 95% interval, one panel per
    metric, and a line at 0: an interval that crosses it is a difference the data cannot
    tell from none.

    Args:
        differences: Rows of :func:`flowllm_kit.stages.differences_table` (``first``,
            ``second``, ``metric``, ``difference``, ``low``, ``high``, ``excludes_zero``).
        title: Figure title.
    """
    metrics = list(dict.fromkeys(differences["metric"]))
    figure = make_subplots(rows=1, cols=max(len(metrics), 1), shared_yaxes=True,
                           subplot_titles=metrics)  # fmt: skip
    for col, metric in enumerate(metrics, start=1):
        rows = differences[differences["metric"] == metric]
        labels = [f"{a} − {b}" for a, b in zip(rows["first"], rows["second"], strict=True)]
        colours = ["#d62728" if flag else "#7f7f7f" for flag in rows["excludes_zero"]]
        figure.add_trace(
            go.Scatter(
                x=rows["difference"], y=labels, mode="markers", marker={"color": colours},
                error_x={"type": "data", "symmetric": False,
                         "array": rows["high"] - rows["difference"],
                         "arrayminus": rows["difference"] - rows["low"]},
                name=metric, showlegend=False,
            ),
            row=1, col=col,
        )  # fmt: skip
        figure.add_vline(x=0.0, line_dash="dash", row=1, col=col)
    figure.update_layout(
        title=title, height=200 + 28 * differences[["first", "second"]].drop_duplicates().shape[0]
    )
    return figure
