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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from flowllm_kit.crystal.convert import StructureLike, as_structures
from flowllm_kit.evaluate.closeness import closeness
from flowllm_kit.evaluate.coverage import Fingerprints, coverage, fingerprints
from flowllm_kit.evaluate.hull import HullReference, stability_flags
from flowllm_kit.evaluate.properties import element_counts, nary_histogram, property_distances
from flowllm_kit.evaluate.sun import DEFAULT_MATCHER, MatcherSettings, novelty, uniqueness
from flowllm_kit.evaluate.validity import composition_status, structural_validity
from flowllm_kit.presets import lookup_preset
from flowllm_kit.relax import RelaxConfig, RelaxResult, relax_structures
from flowllm_kit.run import METRICS_JSON, PER_STRUCTURE_CSV, REPORT_SETTINGS_JSON

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from pymatgen.core import Structure

__all__ = ["REPORT_PRESETS", "Report", "ReportSettings", "report", "report_preset"]

# RelaxResult fields copied into the per-structure table.
_RELAX_COLUMNS = (
    "initial_energy_per_atom", "final_energy_per_atom", "steps", "converged", "stalled", "error"
)  # fmt: skip


@dataclass(frozen=True)
class ReportSettings:
    """Everything that changes a number in the report (saved beside it).

    Attributes:
        dataset: Picks the coverage cutoffs.
        min_count: Smallest denominator for which a rate or mean is reported.
        stable_threshold: E_hull (eV/atom) at or below which a crystal is stable.
        metastable_threshold: Same for metastable (paper: 0.08 or 0.1).
        matcher: StructureMatcher tolerances for uniqueness and novelty.
        relax: CHGNet relaxation settings (:class:`flowllm_kit.relax.RelaxConfig`).
        processes: Worker processes for fingerprints, and for relaxation unless
            ``relax.num_workers`` is set (None: one per core).
    """

    dataset: Literal["mp_20", "perov_5", "carbon_24"] = "mp_20"
    min_count: int = 10
    stable_threshold: float = 0.0
    metastable_threshold: float = 0.08
    matcher: MatcherSettings = DEFAULT_MATCHER
    relax: RelaxConfig = field(default_factory=RelaxConfig)
    processes: int | None = None


REPORT_PRESETS = {
    # One process: workers cost seconds to start, more than they save on 16 crystals.
    "smoke": ReportSettings(min_count=5, relax=RelaxConfig(max_steps=100), processes=1),
    # The demo relaxes 48 crystals per system at up to 250 FIRE steps (docs/METHOD.md §9: the
    # paper's 1,500 do not fit its time budget; the report counts the capped relaxations).
    "demo": ReportSettings(relax=RelaxConfig(max_steps=250)),
    "paper": ReportSettings(),
}


def report_preset(name: str) -> ReportSettings:
    """The report settings of a named preset (``smoke``, ``demo``, ``paper``)."""
    return lookup_preset(REPORT_PRESETS, name)


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
    structures = as_structures(generated)
    n = len(structures)
    m = settings.min_count
    struct_ok, comp_status, comp_ok = _validity(structures)
    valid = struct_ok & comp_ok
    valid_structures = [s for s, ok in zip(structures, valid, strict=True) if ok]
    table = pd.DataFrame(
        {
            "formula": [s.composition.reduced_formula for s in structures],
            "num_atoms": [len(s) for s in structures],
            "num_elements": element_counts(structures),
            "structurally_valid": struct_ok,
            "composition_status": comp_status,
        }
    )
    metrics: dict[str, float] = {
        "structural validity %": _rate(struct_ok, n, m),
        "compositional validity %": _rate(comp_ok, n, m),
        "valid %": _rate(valid, n, m),
        "compositions undetermined": float(Counter(comp_status)["undetermined"]),
    }
    counts: dict[str, int] = {"generated": n, "valid": int(valid.sum())}
    if reference is not None:
        ref = as_structures(reference)
        counts["reference"] = len(ref)
        enough = len(valid_structures) >= m
        dist = property_distances(valid_structures, ref)
        metrics["wdist density"] = dist.density if enough else math.nan
        metrics["wdist N_el"] = dist.num_elements if enough else math.nan
        ref_fp = reference_fingerprints or fingerprints(ref, processes=settings.processes)
        gen_fp = fingerprints(structures, processes=settings.processes)
        cov = coverage(gen_fp, ref_fp, dataset=settings.dataset)
        metrics["coverage recall %"] = 100 * cov.recall if n >= m else math.nan
        metrics["coverage precision %"] = 100 * cov.precision if n >= m else math.nan
        table["fingerprint_ok"] = gen_fp.ok
    unique = np.array(uniqueness(structures, settings=settings.matcher), dtype=bool)
    table["unique"] = unique
    metrics["unique %"] = _rate(unique, n, m)
    novel = np.ones(n, dtype=bool)
    if training is not None:
        novel = np.array(novelty(structures, training, settings=settings.matcher), dtype=bool)
        table["novel"] = novel
        metrics["novel %"] = _rate(novel, n, m)
    cache = Path(cache_folder) / "relax.jsonl" if cache_folder is not None else None
    e_hull = np.full(n, math.nan)
    if hull is not None:
        counts["relaxed"] = len(valid_structures)
        results, e_valid, stable_v, meta_v = _stability(
            valid_structures, settings, hull, cache, progress, _relax_label("CHGNet relax", label)
        )
        counts["relaxation converged"] = sum(r.converged for r in results)
        counts["relaxation stalled"] = sum(r.stalled for r in results)
        counts["relaxation failed"] = sum(not r.ok for r in results)
        index = np.flatnonzero(valid)
        e_hull[index] = e_valid
        stable, meta = np.zeros(n, bool), np.zeros(n, bool)
        stable[index], meta[index] = stable_v, meta_v
        table["e_hull"], table["stable"], table["metastable"] = e_hull, stable, meta
        for column in _RELAX_COLUMNS:
            values = np.full(n, None, dtype=object)
            values[index] = [getattr(r, column) for r in results]
            table[column] = values
        metrics["stable %"] = _rate(stable, n, m)
        metrics["metastable %"] = _rate(meta, n, m)
        near = closeness(valid_structures, results)
        table["relaxed_rms"] = np.full(n, math.nan)
        table.loc[index, "relaxed_rms"] = near.per_structure_rms
        metrics["closeness match %"] = 100 * near.match_rate if near.num_relaxed >= m else math.nan
        metrics["closeness RMSD"] = near.rmsd if near.num_relaxed >= m else math.nan
        metrics["closeness dE eV/atom"] = near.delta_energy if near.num_relaxed >= m else math.nan
        metrics["relaxation steps"] = near.steps if near.num_relaxed >= m else math.nan
        if baseline is not None:
            # The same pipeline as the generated crystals: only valid ones are relaxed, and
            # invalid ones count as not stable.
            base = as_structures(baseline)
            base_struct_ok, _, base_comp_ok = _validity(base)
            base_valid = base_struct_ok & base_comp_ok
            counts["baseline"] = len(base)
            kept = [s for s, ok in zip(base, base_valid, strict=True) if ok]
            *_, kept_stable, kept_meta = _stability(
                kept, settings, hull, cache, progress, _relax_label("CHGNet relax baseline", label)
            )
            b_stable, b_meta = np.zeros(len(base), bool), np.zeros(len(base), bool)
            b_stable[base_valid], b_meta[base_valid] = kept_stable, kept_meta
            metrics["baseline stable %"] = _rate(b_stable, len(base), m)
            metrics["baseline metastable %"] = _rate(b_meta, len(base), m)
        if training is not None:
            table["sun"] = stable & unique & novel
            metrics["S.U.N. %"] = _rate(table["sun"].to_numpy(), n, m)
    run_settings = {
        **asdict(settings),
        "hull source": None if hull is None else hull.source,
        "energy model": f"CHGNet {settings.relax.model_name} (MP2020-compatible energies)",
        "counts": counts,
    }
    drawn = _figures(e_hull, structures, reference) if figures else {}
    return Report(metrics=metrics, per_structure=table, settings=run_settings, figures=drawn)


def _figures(e_hull: np.ndarray, generated, reference) -> dict[str, Figure]:
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
