"""The FlowLLM paper's headline numbers (docs/METHOD.md §10) as data, and a table that puts a run's
metrics beside them.

The paper's numbers come from 10,000 MP-20 samples per model; its stability rates are DFT
energies (after a CHGNet pre-relaxation) against the Materials Project hull of 2023-02-07. A
run of this kit on a laptop uses fewer samples, CHGNet energies and usually a hull built from
MP-20 alone, which is lenient: compare its stability rates with those of real test crystals
evaluated the same way, not with the paper's.

Example::

    >>> from flowllm_kit.evaluate.paper import beside_paper
    >>> beside_paper({"flowllm": report.metrics})   # our row above the paper's five
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CLOSENESS_COLUMNS",
    "PAPER_CLOSENESS",
    "PAPER_NUM_SAMPLES",
    "PAPER_TABLE",
    "TABLE_COLUMNS",
    "beside_paper",
    "paper_table",
]

PAPER_NUM_SAMPLES = 10_000
"""Crystals sampled per model for the paper's tables."""

TABLE_COLUMNS = (
    "structural validity %",
    "compositional validity %",
    "coverage recall %",
    "coverage precision %",
    "wdist density",
    "wdist N_el",
    "stable %",
    "S.U.N. %",
)
"""The paper's main-table columns, named as :func:`flowllm_kit.evaluate.report` names them."""

CLOSENESS_COLUMNS = (
    "closeness match %",
    "closeness RMSD",
    "closeness dE eV/atom",
    "relaxation steps",
)
"""Closeness of generated crystals to their CHGNet-relaxed selves (RMSD in Å)."""

_MISSING = math.nan  # the paper reports no value ("–")

PAPER_TABLE: dict[str, tuple[float, ...]] = {
    "CDVAE": (100.00, 86.70, 99.15, 99.49, 0.688, 0.278, 1.57, _MISSING),
    "DiffCSP": (100.00, 83.25, 99.71, 99.76, 0.350, 0.125, 5.06, 3.34),
    "FlowMM": (96.85, 83.19, 99.49, 99.58, 0.239, 0.083, 4.65, 2.34),
    "CrystalLLM 70B": (99.6, 95.4, 85.8, 98.9, 0.81, 0.44, 5.28, _MISSING),
    "FlowLLM τ=0.7 P=0.9": (99.94, 90.84, 96.95, 99.82, 1.14, 0.15, 17.82, 4.92),
}
"""Model -> values in :data:`TABLE_COLUMNS` order (MP-20, 10,000 samples)."""

PAPER_CLOSENESS: dict[str, tuple[float, ...]] = {
    "FlowMM": (74.3, 0.096, 0.303, 192.0),
    "FlowLLM τ=0.7 P=0.9": (94.9, 0.023, 0.090, 38.0),
}
"""Model -> values in :data:`CLOSENESS_COLUMNS` order."""


def paper_table() -> pd.DataFrame:
    """The paper's numbers: one row per model, :data:`TABLE_COLUMNS` then
    :data:`CLOSENESS_COLUMNS`; NaN where the paper gives none."""
    import pandas as pd

    table = pd.DataFrame.from_dict(PAPER_TABLE, orient="index", columns=list(TABLE_COLUMNS))
    closeness = pd.DataFrame.from_dict(
        PAPER_CLOSENESS, orient="index", columns=list(CLOSENESS_COLUMNS)
    )
    table = table.join(closeness)
    table.index.name = "model"
    return table


def beside_paper(
    metrics: pd.DataFrame | Mapping[str, Mapping[str, float]],
    *,
    columns: Sequence[str] | None = None,
    label: str = "this run",
) -> pd.DataFrame:
    """A run's metrics above the paper's, in the paper's columns.

    Args:
        metrics: System name -> metric name -> value (e.g. ``{"flowllm": report.metrics}``),
            or a frame with one row per system and metric names as columns.
        columns: Columns to show (default: :data:`TABLE_COLUMNS` + :data:`CLOSENESS_COLUMNS`).
            A column a system lacks is NaN there ("not computable" or not evaluated).
        label: First index level of the run's rows.

    Returns:
        A frame indexed by (source, model): ``(label, system)`` rows first, then
        ``("paper", model)`` rows.
    """
    import pandas as pd

    columns = list(columns) if columns is not None else [*TABLE_COLUMNS, *CLOSENESS_COLUMNS]
    if not isinstance(metrics, pd.DataFrame):
        rows = {name: dict(values) for name, values in metrics.items()}
        metrics = pd.DataFrame.from_dict(rows, orient="index")
    ours = metrics.reindex(columns=columns).astype(float)
    paper = paper_table().reindex(columns=columns)
    return pd.concat({label: ours, "paper": paper}, names=["source", "model"])
