"""Per-crystal summary table and the distribution plots of a dataset."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from flowllm_kit.crystal import Crystal

__all__ = ["crystal_table", "distribution_figure"]


def crystal_table(crystals: Sequence[Crystal]) -> pd.DataFrame:
    """One row per crystal: id, formula, atom and element counts, lattice, volume per atom."""
    rows = [
        {
            "id": c.id,
            "formula": c.formula,
            "num_atoms": c.num_atoms,
            "num_elements": len(set(c.atomic_numbers.tolist())),
            **dict(zip(("a", "b", "c"), c.lengths.tolist(), strict=True)),
            **dict(zip(("alpha", "beta", "gamma"), c.angles.tolist(), strict=True)),
            "volume_per_atom": c.volume / c.num_atoms,
        }
        for c in crystals
    ]
    return pd.DataFrame(rows)


def distribution_figure(table: pd.DataFrame, *, title: str = "") -> go.Figure:
    """Histograms of atoms per cell, N-ary (distinct elements), lattice lengths and angles and
    volume per atom, from :func:`crystal_table`."""
    figure = make_subplots(
        rows=2,
        cols=3,
        subplot_titles=(
            "atoms per cell",
            "N-ary (distinct elements)",
            "volume per atom (Å³)",
            "lengths a, b, c (Å)",
            "angles α, β, γ (°)",
            "",
        ),
    )
    figure.add_trace(
        go.Histogram(x=table["num_atoms"], name="atoms", xbins={"size": 1}), row=1, col=1
    )
    nary = table["num_elements"].value_counts().sort_index()
    figure.add_trace(go.Bar(x=nary.index, y=nary.values, name="N-ary"), row=1, col=2)
    figure.add_trace(go.Histogram(x=table["volume_per_atom"], name="V/atom"), row=1, col=3)
    for name in ("a", "b", "c"):
        figure.add_trace(go.Histogram(x=table[name], name=name, opacity=0.6), row=2, col=1)
    for name in ("alpha", "beta", "gamma"):
        figure.add_trace(go.Histogram(x=table[name], name=name, opacity=0.6), row=2, col=2)
    figure.update_layout(barmode="overlay", title=title, height=600, showlegend=False)
    return figure
