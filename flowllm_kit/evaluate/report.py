"""One call that evaluates generated crystals and says exactly how (docs/METHOD.md §9-10).

:func:`report` runs every metric family it has inputs for and returns a :class:`Report`: every
metric with its 95% interval and the count behind it (the columns of the paper's Tables 1 and 2
and more), a per-structure table, the settings used and figures. A rate whose denominator has
fewer than ``min_count`` structures is NaN ("not computable"), never 0% or 100%.

Stability is measured against up to two hulls (:mod:`flowllm_kit.evaluate.stability`): the
paper's definition, a DFT-energy hull (``hull``), and a hull of reference crystals relaxed with
the same model and settings (``relaxed_hull``), which is the one that tells real crystals from
generated ones at the 0 eV/atom threshold. Real crystals run through the same pipeline
(``baseline``) give each stability rate its yardstick.

Relaxation is :func:`flowllm_kit.relax.relax_structures` (batched CHGNet, FIRE with a Fréchet cell
filter), with one cache file per report folder: results are keyed by structure and settings, so
generated and baseline crystals share it and a crystal met twice is relaxed once.

CHGNet energies sit on the MP2020-corrected scale of the Materials Project hulls in
:mod:`flowllm_kit.evaluate.hull`, so no correction is applied. Checked on 12 MP-20 oxides: CHGNet
is within ~0.02 eV/atom of the corrected DFT energies, where the uncorrected scale would differ
by ~0.34 eV/atom (the oxide correction).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowllm_kit.crystal.convert import StructureLike, as_structures
from flowllm_kit.evaluate.coverage import Fingerprints
from flowllm_kit.evaluate.families import (
    Family,
    coverage_family,
    distribution_family,
    uniqueness_novelty_family,
    validity_family,
)
from flowllm_kit.evaluate.figures import report_figures
from flowllm_kit.evaluate.hull import HullReference
from flowllm_kit.evaluate.intervals import BOOTSTRAP_RESAMPLES, Estimate
from flowllm_kit.evaluate.model_hull import RelaxedHull
from flowllm_kit.evaluate.properties import element_counts
from flowllm_kit.evaluate.settings import ReportSettings
from flowllm_kit.evaluate.stability import (
    NamedHull,
    baseline_family,
    closeness_family,
    relax_valid,
    stability_family,
)
from flowllm_kit.run import (
    METRICS_JSON,
    PER_STRUCTURE_CSV,
    RELAX_CACHE_JSONL,
    REPORT_SETTINGS_JSON,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["INTERVALS", "RELAXED_HULL_SUFFIX", "Report", "report"]

RELAXED_HULL_SUFFIX = " (CHGNet hull)"
"""Ends the names of the metrics measured against the relaxed hull."""

INTERVALS = (
    "95% intervals: Wilson score for rates (coverage recall over the reference crystals); "
    f"percentile bootstrap over the generated crystals ({BOOTSTRAP_RESAMPLES} resamples, "
    "seeded) for closeness means; for Wasserstein distances the bootstrap's normal interval "
    "(value ± 1.96 standard errors, cut at 0)"
)


@dataclass
class Report:
    """The result of :func:`report`.

    Attributes:
        estimates: Metric name -> :class:`~flowllm_kit.evaluate.intervals.Estimate` (value,
            95% interval, count; rates in %, NaN when not computable).
        per_structure: One row per generated structure.
        settings: The settings, hull sources and sample counts, JSON-ready.
        figures: Name -> matplotlib figure (empty when matplotlib is missing).
    """

    estimates: dict[str, Estimate]
    per_structure: pd.DataFrame
    settings: dict[str, Any]
    figures: dict[str, Figure]

    @property
    def metrics(self) -> dict[str, float]:
        """Metric name -> value, without the intervals."""
        return {name: e.value for name, e in self.estimates.items()}

    def save(self, folder: str | Path) -> Path:
        """Write metrics.json (``value``, ``low``, ``high``, ``n`` per metric), per_structure.csv,
        settings.json and figure PNGs into a folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        saved = {name: e.as_dict() for name, e in self.estimates.items()}
        (folder / METRICS_JSON).write_text(json.dumps(saved, indent=2))
        (folder / REPORT_SETTINGS_JSON).write_text(json.dumps(self.settings, indent=2, default=str))
        self.per_structure.to_csv(folder / PER_STRUCTURE_CSV, index=False)
        for name, figure in self.figures.items():
            figure.savefig(folder / f"{name}.png", dpi=120, bbox_inches="tight")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Report:
        """A saved report (without its figures)."""
        import pandas as pd

        folder = Path(folder)
        saved = json.loads((folder / METRICS_JSON).read_text())
        return cls(
            estimates={name: Estimate.from_dict(data) for name, data in saved.items()},
            per_structure=pd.read_csv(folder / PER_STRUCTURE_CSV),
            settings=json.loads((folder / REPORT_SETTINGS_JSON).read_text()),
            figures={},
        )


def _relax_label(what: str, label: str) -> str:
    return f"{what} ({label})" if label else what


def report(
    generated: Sequence[StructureLike],
    *,
    reference: Sequence[StructureLike] | None = None,
    reference_fingerprints: Fingerprints | None = None,
    training: Sequence[StructureLike] | None = None,
    hull: HullReference | None = None,
    relaxed_hull: HullReference | None = None,
    baseline: Sequence[StructureLike] | None = None,
    settings: ReportSettings | None = None,
    cache_folder: str | Path | None = None,
    figures: bool = True,
    progress: bool = True,
    label: str = "",
) -> Report:
    """Evaluate generated crystals with every metric whose inputs are given.

    Args:
        generated: The crystals to evaluate.
        reference: Reference split (the test split) for property distances and coverage.
        reference_fingerprints: Precomputed fingerprints of ``reference`` (saves minutes).
        training: Known crystals for novelty (paper: train + val).
        hull: DFT-energy hull for E_hull, the paper's definition; with it or ``relaxed_hull``,
            valid crystals are relaxed with CHGNet.
        relaxed_hull: A hull of reference crystals relaxed with the same settings
            (:class:`~flowllm_kit.evaluate.model_hull.RelaxedHull`); its metrics end in
            :data:`RELAXED_HULL_SUFFIX`.
        baseline: Real crystals run through the same relax + hull pipeline, so stability rates
            have a yardstick (keep them out of ``relaxed_hull``'s crystals).
        settings: :class:`ReportSettings` (defaults: the values of docs/METHOD.md §9).
        cache_folder: Where the relaxation cache ``relax.jsonl`` lives (reruns skip finished
            structures).
        figures: Draw the E_hull and N-ary histograms.
        progress: Show a progress bar while relaxing.
        label: Name of the system, shown with the relaxation's progress (the series runner
            shows it whatever ``progress`` says).

    Returns:
        A :class:`Report`.
    """
    import pandas as pd

    settings = settings or ReportSettings()
    m = settings.min_count
    structures = as_structures(generated)
    n = len(structures)
    table = pd.DataFrame(
        {
            "formula": [s.composition.reduced_formula for s in structures],
            "num_atoms": [len(s) for s in structures],
            "num_elements": element_counts(structures),
        }
    )
    ids = [getattr(item, "id", None) for item in generated]  # kit crystals carry their names
    if any(ids):
        table.insert(0, "id", ids)
    estimates: dict[str, Estimate] = {}
    counts: dict[str, int] = {"generated": n}

    def add(family: Family) -> None:
        estimates.update(family.metrics)
        counts.update(family.counts)
        for column, values in family.columns.items():
            table[column] = values

    validity, valid = validity_family(structures, m)
    add(validity)
    if reference is not None:
        ref = as_structures(reference)
        valid_structures = [s for s, ok in zip(structures, valid, strict=True) if ok]
        add(distribution_family(valid_structures, ref, m, settings.seed))
        fps = reference_fingerprints
        add(coverage_family(structures, ref, fps, settings, m))
    novelty = uniqueness_novelty_family(structures, training, settings, m)
    add(novelty)
    hulls = [NamedHull(h) for h in [hull] if h is not None]
    if relaxed_hull is not None:
        hulls.append(NamedHull(relaxed_hull, RELAXED_HULL_SUFFIX, "_chgnet"))
    if hulls:
        cache = Path(cache_folder) / RELAX_CACHE_JSONL if cache_folder is not None else None
        desc = _relax_label("CHGNet relax", label)
        results = relax_valid(structures, valid, settings, cache, progress, desc)
        for named in hulls:
            unique, novel = novelty.columns["unique"], novelty.columns.get("novel")
            add(stability_family(structures, results, named, settings, unique, novel))
        add(closeness_family(structures, results, settings))
        if baseline is not None:
            desc = _relax_label("CHGNet relax baseline", label)
            add(baseline_family(baseline, hulls, settings, cache, progress, desc=desc))
    run_settings = {
        **asdict(settings),
        "hull source": None if hull is None else hull.source,
        "relaxed hull source": None if relaxed_hull is None else relaxed_hull.source,
        "energy model": f"CHGNet {settings.relax.model_name} (MP2020-compatible energies)",
        "intervals": INTERVALS,
        "counts": counts,
    }
    if isinstance(relaxed_hull, RelaxedHull):
        run_settings["relaxed hull"] = relaxed_hull.summary()
    column = next((c for c in ("e_hull", "e_hull_chgnet") if c in table), None)
    e_hull = np.full(n, math.nan) if column is None else table[column].to_numpy(float)
    drawn = report_figures(e_hull, structures, reference) if figures else {}
    return Report(estimates=estimates, per_structure=table, settings=run_settings, figures=drawn)
