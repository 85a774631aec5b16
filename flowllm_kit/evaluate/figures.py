"""The static figures of an evaluation report: E_hull and N-ary histograms, saved as PNG files
beside the report's tables.

Matplotlib, where the rest of the kit draws with plotly: these are static images in a report
folder, readable without a browser, and plotly writes PNG files only through an extra
rendering engine (kaleido and a headless browser). The interactive versions for notebooks are
:func:`flowllm_kit.viz.e_hull_figure` and friends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from flowllm_kit.evaluate.properties import nary_histogram

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from pymatgen.core import Structure

__all__ = ["report_figures"]


def report_figures(
    e_hull: np.ndarray,
    generated: Sequence[Structure],
    reference: Sequence[Structure] | None,
) -> dict[str, Figure]:
    """The E_hull histogram (when any E_hull is finite) and the N-ary histogram of generated
    crystals beside the reference's; empty when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    drawn = {}
    finite = e_hull[np.isfinite(e_hull)]
    if len(finite):
        figure, axis = plt.subplots(figsize=(4, 3))
        axis.hist(np.clip(finite, -0.5, 1.0), bins=40)
        axis.set(xlabel="E_hull (eV/atom, clipped to [-0.5, 1])", ylabel="crystals")
        drawn["e_hull_histogram"] = figure
    figure, axis = plt.subplots(figsize=(4, 3))
    ours = nary_histogram(generated)
    keys = np.array(list(ours))
    axis.bar(keys - 0.2, np.array(list(ours.values())) / max(1, len(generated)), 0.4, label="gen.")
    if reference is not None:
        theirs = nary_histogram(reference, max_arity=int(keys.max()))
        share = [theirs.get(k, 0) / max(1, len(reference)) for k in keys]
        axis.bar(keys + 0.2, share, 0.4, label="reference")
    axis.set(xlabel="distinct elements", ylabel="fraction")
    axis.legend()
    drawn["nary_histogram"] = figure
    return drawn
