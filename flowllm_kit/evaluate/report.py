"""One call that evaluates generated crystals and says exactly how (docs/METHOD.md §9-10).

:func:`report` runs every metric family it has inputs for and returns a :class:`Report`: the
metrics table (the columns of the paper's Tables 1 and 2), a per-structure table, the settings
used and figures. A rate whose denominator has fewer than ``min_count`` structures is NaN
("not computable"), never 0% or 100%. Stability rates against a dataset hull come with the
same rate for real reference crystals run through the same pipeline (``baseline``), because
such a hull is lenient.

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowllm_kit.crystal.convert import StructureLike, as_structures
from flowllm_kit.evaluate.closeness import closeness
from flowllm_kit.evaluate.coverage import Fingerprints, coverage, fingerprints
from flowllm_kit.evaluate.figures import report_figures
from flowllm_kit.evaluate.hull import HullReference, stability_flags
from flowllm_kit.evaluate.properties import element_counts, property_distances
from flowllm_kit.evaluate.settings import ReportSettings
from flowllm_kit.evaluate.sun import novelty, uniqueness
from flowllm_kit.evaluate.validity import composition_status, structural_validity
from flowllm_kit.relax import RelaxConfig, RelaxResult, relax_structures
from flowllm_kit.run import METRICS_JSON, PER_STRUCTURE_CSV, REPORT_SETTINGS_JSON

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from pymatgen.core import Structure

__all__ = ["Report", "report"]

# RelaxResult fields copied into the per-structure table.
_RELAX_COLUMNS = (
    "initial_energy_per_atom", "final_energy_per_atom", "steps", "converged", "stalled", "error"
)  # fmt: skip


@dataclass
class Report:
    """The result of :func:`report`.

    Attributes:
        metrics: Metric name -> value (rates in %, NaN when not computable).
        per_structure: One row per generated structure.
        settings: The settings, hull source and sample counts, JSON-ready.
        figures: Name -> matplotlib figure (empty when matplotlib is missing).
    """

    metrics: dict[str, float]
    per_structure: pd.DataFrame
    settings: dict[str, Any]
    figures: dict[str, Figure]

    def save(self, folder: str | Path) -> Path:
        """Write metrics.json, per_structure.csv, settings.json and figure PNGs into a folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / METRICS_JSON).write_text(json.dumps(self.metrics, indent=2))
        (folder / REPORT_SETTINGS_JSON).write_text(json.dumps(self.settings, indent=2, default=str))
        self.per_structure.to_csv(folder / PER_STRUCTURE_CSV, index=False)
        for name, figure in self.figures.items():
            figure.savefig(folder / f"{name}.png", dpi=120, bbox_inches="tight")
        return folder


def _rate(flags: np.ndarray, denominator: int, min_count: int) -> float:
    return 100.0 * float(np.sum(flags)) / denominator if denominator >= min_count else math.nan


def _relax_config(settings: ReportSettings) -> RelaxConfig:
    """``settings.relax``, with ``settings.processes`` as its worker count if it has none."""
    if settings.relax.num_workers is None and settings.processes is not None:
        return replace(settings.relax, num_workers=settings.processes)
    return settings.relax


def _relax_label(what: str, label: str) -> str:
    return f"{what} ({label})" if label else what


def _stability(
    structures: list[Structure],
    settings: ReportSettings,
    hull: HullReference,
    cache: Path | None,
    progress: bool,
    desc: str,
) -> tuple[list[RelaxResult], np.ndarray, np.ndarray, np.ndarray]:
    """Relax, then E_hull, stable and metastable flags for each structure."""
    results = relax_structures(
        structures, config=_relax_config(settings), cache_path=cache, progress=progress, desc=desc
    )
    e_hull = np.array(
        [
            math.nan
            if (s := r.final_structure) is None
            else hull.e_above_hull(s.composition, r.final_energy_per_atom * len(s))
            for r in results
        ]
    )
    n_el = element_counts(structures)
    stable = stability_flags(e_hull, n_el, threshold=settings.stable_threshold)
    meta = stability_flags(e_hull, n_el, threshold=settings.metastable_threshold)
    return results, e_hull, stable, meta


def _validity(structures: Sequence[Structure]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Structural validity, composition status and compositional validity of each structure
    (the filter both generated and baseline crystals pass before relaxation)."""
    struct_ok = np.array(structural_validity(structures), dtype=bool)
    comp_status = composition_status(structures)
    comp_ok = np.array([status == "valid" for status in comp_status], dtype=bool)
    return struct_ok, comp_status, comp_ok


def report(
    generated: Sequence[StructureLike],
    *,
    reference: Sequence[StructureLike] | None = None,
    reference_fingerprints: Fingerprints | None = None,
    training: Sequence[StructureLike] | None = None,
    hull: HullReference | None = None,
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
        hull: Hull for E_hull; with it, valid crystals are relaxed with CHGNet.
        baseline: Real crystals run through the same relax + hull pipeline, so stability rates
            against a lenient hull have a yardstick.
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
    metrics: dict[str, float] = {}
    counts: dict[str, int] = {"generated": n}

    def add(family: _Family) -> None:
        metrics.update(family.metrics)
        counts.update(family.counts)
        for column, values in family.columns.items():
            table[column] = values

    validity, valid = _validity_family(structures, m)
    add(validity)
    valid_structures = [s for s, ok in zip(structures, valid, strict=True) if ok]
    if reference is not None:
        ref = as_structures(reference)
        add(_distribution_family(valid_structures, ref, m))
        add(_coverage_family(structures, ref, reference_fingerprints, settings, m))
    novelty_family = _uniqueness_novelty_family(structures, training, settings, m)
    add(novelty_family)
    e_hull = np.full(n, math.nan)
    if hull is not None:
        cache = Path(cache_folder) / "relax.jsonl" if cache_folder is not None else None
        relax = (settings, hull, cache, progress)
        stability = _stability_family(
            structures, valid, *relax, desc=_relax_label("CHGNet relax", label)
        )
        add(stability)
        e_hull = stability.columns["e_hull"]
        if baseline is not None:
            desc = _relax_label("CHGNet relax baseline", label)
            add(_baseline_family(baseline, *relax, desc=desc))
        if training is not None:
            add(_sun_family(stability, novelty_family, m))
    run_settings = {
        **asdict(settings),
        "hull source": None if hull is None else hull.source,
        "energy model": f"CHGNet {settings.relax.model_name} (MP2020-compatible energies)",
        "counts": counts,
    }
    drawn = report_figures(e_hull, structures, reference) if figures else {}
    return Report(metrics=metrics, per_structure=table, settings=run_settings, figures=drawn)


@dataclass
class _Family:
    """What one metric family adds to a report: metrics, per-structure columns, counts."""

    metrics: dict[str, float] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _validity_family(structures: Sequence[Structure], m: int) -> tuple[_Family, np.ndarray]:
    """Structural and compositional validity (CDVAE definitions), and which crystals are both
    (the ones the other families measure)."""
    struct_ok, comp_status, comp_ok = _validity(structures)
    valid = struct_ok & comp_ok
    n = len(structures)
    return _Family(
        metrics={
            "structural validity %": _rate(struct_ok, n, m),
            "compositional validity %": _rate(comp_ok, n, m),
            "valid %": _rate(valid, n, m),
            "compositions undetermined": float(Counter(comp_status)["undetermined"]),
        },
        columns={"structurally_valid": struct_ok, "composition_status": comp_status},
        counts={"valid": int(valid.sum())},
    ), valid


def _distribution_family(
    valid_structures: Sequence[Structure], reference: Sequence[Structure], m: int
) -> _Family:
    """Wasserstein distances of density and element count to the reference (valid crystals)."""
    enough = len(valid_structures) >= m
    dist = property_distances(valid_structures, reference)
    return _Family(
        metrics={
            "wdist density": dist.density if enough else math.nan,
            "wdist N_el": dist.num_elements if enough else math.nan,
        },
        counts={"reference": len(reference)},
    )


def _coverage_family(
    structures: Sequence[Structure],
    reference: Sequence[Structure],
    reference_fingerprints: Fingerprints | None,
    settings: ReportSettings,
    m: int,
) -> _Family:
    """Coverage recall and precision against the reference (CrystalNN and Magpie
    fingerprints)."""
    ref_fp = reference_fingerprints or fingerprints(reference, processes=settings.processes)
    gen_fp = fingerprints(structures, processes=settings.processes)
    cov = coverage(gen_fp, ref_fp, dataset=settings.dataset)
    enough = len(structures) >= m
    return _Family(
        metrics={
            "coverage recall %": 100 * cov.recall if enough else math.nan,
            "coverage precision %": 100 * cov.precision if enough else math.nan,
        },
        columns={"fingerprint_ok": gen_fp.ok},
    )


def _uniqueness_novelty_family(
    structures: Sequence[Structure],
    training: Sequence[StructureLike] | None,
    settings: ReportSettings,
    m: int,
) -> _Family:
    """Uniqueness among the generated crystals, novelty against the training crystals (every
    crystal counts as novel when no training set is given)."""
    n = len(structures)
    unique = np.array(uniqueness(structures, settings=settings.matcher), dtype=bool)
    family = _Family(metrics={"unique %": _rate(unique, n, m)}, columns={"unique": unique})
    if training is not None:
        novel = np.array(novelty(structures, training, settings=settings.matcher), dtype=bool)
        family.metrics["novel %"] = _rate(novel, n, m)
        family.columns["novel"] = novel
    return family


def _stability_family(
    structures: Sequence[Structure],
    valid: np.ndarray,
    settings: ReportSettings,
    hull: HullReference,
    cache: Path | None,
    progress: bool,
    *,
    desc: str,
) -> _Family:
    """CHGNet relaxation of the valid crystals, E_hull, stable and metastable rates, and how
    close each crystal was to its relaxed self (invalid crystals count as not stable)."""
    n, m = len(structures), settings.min_count
    index = np.flatnonzero(valid)
    relaxed = [structures[i] for i in index]
    results, e_valid, stable_v, meta_v = _stability(relaxed, settings, hull, cache, progress, desc)
    e_hull = np.full(n, math.nan)
    stable, meta = np.zeros(n, bool), np.zeros(n, bool)
    e_hull[index], stable[index], meta[index] = e_valid, stable_v, meta_v
    columns: dict[str, Any] = {"e_hull": e_hull, "stable": stable, "metastable": meta}
    for column in _RELAX_COLUMNS:
        values = np.full(n, None, dtype=object)
        values[index] = [getattr(r, column) for r in results]
        columns[column] = values
    near = closeness(relaxed, results)
    relaxed_rms = np.full(n, math.nan)
    relaxed_rms[index] = near.per_structure_rms
    columns["relaxed_rms"] = relaxed_rms
    enough = near.num_relaxed >= m
    return _Family(
        metrics={
            "stable %": _rate(stable, n, m),
            "metastable %": _rate(meta, n, m),
            "closeness match %": 100 * near.match_rate if enough else math.nan,
            "closeness RMSD": near.rmsd if enough else math.nan,
            "closeness dE eV/atom": near.delta_energy if enough else math.nan,
            "relaxation steps": near.steps if enough else math.nan,
        },
        columns=columns,
        counts={
            "relaxed": len(relaxed),
            "relaxation converged": sum(r.converged for r in results),
            "relaxation stalled": sum(r.stalled for r in results),
            "relaxation failed": sum(not r.ok for r in results),
        },
    )


def _baseline_family(
    baseline: Sequence[StructureLike],
    settings: ReportSettings,
    hull: HullReference,
    cache: Path | None,
    progress: bool,
    *,
    desc: str,
) -> _Family:
    """The stability rates of real crystals through the same pipeline as the generated ones:
    only valid ones are relaxed, and invalid ones count as not stable."""
    base = as_structures(baseline)
    struct_ok, _, comp_ok = _validity(base)
    valid = struct_ok & comp_ok
    kept = [s for s, ok in zip(base, valid, strict=True) if ok]
    *_, kept_stable, kept_meta = _stability(kept, settings, hull, cache, progress, desc)
    stable, meta = np.zeros(len(base), bool), np.zeros(len(base), bool)
    stable[valid], meta[valid] = kept_stable, kept_meta
    m = settings.min_count
    return _Family(
        metrics={
            "baseline stable %": _rate(stable, len(base), m),
            "baseline metastable %": _rate(meta, len(base), m),
        },
        counts={"baseline": len(base)},
    )


def _sun_family(stability: _Family, novelty_family: _Family, m: int) -> _Family:
    """S.U.N.: stable, unique among the generated crystals and novel."""
    sun = (
        stability.columns["stable"]
        & novelty_family.columns["unique"]
        & novelty_family.columns["novel"]
    )
    return _Family(metrics={"S.U.N. %": _rate(sun, len(sun), m)}, columns={"sun": sun})
