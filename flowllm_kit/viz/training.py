"""Training curves of the flow models: the running training loss and the validation loss of
several runs in one figure (plotly).

Example::

    >>> loss_curves_figure({"flowllm": trainer.history}, smooth=50)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

__all__ = ["loss_curves_figure"]


def loss_curves_figure(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    *,
    smooth: int = 20,
    log_y: bool = True,
    title: str = "Flow-matching loss",
) -> go.Figure:
    """Training loss (running mean) and validation loss of several runs, one colour each.

    Args:
        histories: Run name -> :attr:`flowllm_kit.flow.FlowTrainer.history` (records with
            ``step``, ``loss`` and, every ``val_every`` steps, ``val_loss``).
        smooth: Window of the running mean over training steps (1: raw).
        log_y: Logarithmic loss axis.
        title: Figure title.

    Returns:
        Solid lines: training loss; dashed lines with markers: validation loss (EMA weights).
    """
    figure = go.Figure()
    colors = qualitative.Plotly
    for k, (name, history) in enumerate(histories.items()):
        table = pd.DataFrame(list(history))
        color = colors[k % len(colors)]
        train = table["loss"].rolling(max(smooth, 1), min_periods=1).mean()
        figure.add_trace(
            go.Scatter(
                x=table["step"] + 1,
                y=train,
                mode="lines",
                name=f"{name} train",
                line={"color": color},
            )
        )
        if "val_loss" in table:
            val = table.dropna(subset=["val_loss"])
            figure.add_trace(
                go.Scatter(
                    x=val["step"] + 1,
                    y=val["val_loss"],
                    mode="lines+markers",
                    name=f"{name} validation",
                    line={"color": color, "dash": "dash"},
                )
            )
    figure.update_layout(
        title=title,
        xaxis_title="optimizer step",
        yaxis_title="loss",
        yaxis_type="log" if log_y else "linear",
    )
    return figure
