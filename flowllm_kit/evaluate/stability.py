"""The metric families that need a relaxation: stability against each hull, S, U and N
combined, the real-crystal baseline, and closeness to the relaxed state (docs/METHOD.md §9).

Valid crystals are relaxed once (CHGNet, cached); each hull then places the relaxed energies:

* the DFT-energy hull (the paper's definition of stability; with the kit's MP-20 hull, a lenient
  one whose inflation the baseline measures), metric names without a suffix;
* the relaxed hull (:class:`~flowllm_kit.evaluate.model_hull.RelaxedHull`, reference crystals
  relaxed with the same model and settings), metric names ending in `` (CHGNet hull)``.

For each hull: stable (E_hull ≤ ``stable_threshold``, 0 eV/atom) and metastable
(≤ ``metastable_threshold``, 0.1 eV/atom), then S.U. and S.U.N. and their metastable variants,
all over every generated crystal (invalid ones count as not stable).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowllm_kit.crystal.convert import StructureLike, as_structures
from flowllm_kit.evaluate.closeness import closeness
from flowllm_kit.evaluate.families import Family, validity_flags
from flowllm_kit.evaluate.hull import HullReference, stability_flags
from flowllm_kit.evaluate.intervals import Estimate, bootstrap_estimate, rate_estimate
from flowllm_kit.evaluate.properties import element_counts
from flowllm_kit.evaluate.settings import ReportSettings
from flowllm_kit.relax import RelaxConfig, RelaxResult, relax_structures

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["NamedHull", "baseline_family", "closeness_family", "relax_valid", "stability_family"]

# RelaxResult fields copied into the per-structure table.
_RELAX_COLUMNS = (
    "initial_energy_per_atom", "final_energy_per_atom", "steps", "converged", "stalled", "error"
)  # fmt: skip


@dataclass(frozen=True)
class NamedHull:
    """A hull with the suffixes its metrics and per-structure columns carry."""

    hull: HullReference
    metric_suffix: str = ""  # "stable %" or "stable (CHGNet hull) %"
    column_suffix: str = ""  # "e_hull" or "e_hull_chgnet"

    def metric(self, name: str) -> str:
        return f"{name}{self.metric_suffix} %"

    def column(self, name: str) -> str:
        return f"{name}{self.column_suffix}"


def relax_config(settings: ReportSettings) -> RelaxConfig:
    """``settings.relax``, with ``settings.processes`` as its worker count if it has none."""
    if settings.relax.num_workers is None and settings.processes is not None:
        return replace(settings.relax, num_workers=settings.processes)
    return settings.relax


def relax_valid(
    structures: Sequence[Structure],
    valid: np.ndarray,
    settings: ReportSettings,
    cache: Path | None,
    progress: bool,
    desc: str,
) -> list[RelaxResult | None]:
    """Relax the valid structures (cached); None for the others."""
    index = np.flatnonzero(valid)
    results = relax_structures(
        [structures[i] for i in index],
        config=relax_config(settings),
        cache_path=cache,
        progress=progress,
        desc=desc,
    )
    out: list[RelaxResult | None] = [None] * len(structures)
    for i, result in zip(index, results, strict=True):
        out[i] = result
    return out


def e_above_hull(results: Sequence[RelaxResult | None], hull: HullReference) -> np.ndarray:
    """E_hull (eV/atom) of each relaxed structure; NaN where there is none or no hull for it."""
    finals = [r.final_structure for r in results if r is not None and r.final_structure]
    hull.prepare([s.composition for s in finals])
    return np.array(
        [
            math.nan
            if r is None or (s := r.final_structure) is None
            else hull.e_above_hull(s.composition, r.final_energy_per_atom * len(s))
            for r in results
        ]
    )


def _flags(
    structures: Sequence[Structure], e_hull: np.ndarray, settings: ReportSettings
) -> tuple[np.ndarray, np.ndarray]:
    n_el = element_counts(structures)
    stable = stability_flags(e_hull, n_el, threshold=settings.stable_threshold)
    return stable, stability_flags(e_hull, n_el, threshold=settings.metastable_threshold)


def stability_family(
    structures: Sequence[Structure],
    results: Sequence[RelaxResult | None],
    named: NamedHull,
    settings: ReportSettings,
    unique: np.ndarray,
    novel: np.ndarray | None,
) -> Family:
    """Stable and metastable rates against one hull, and S.U. / S.U.N. with each threshold."""
    m = settings.min_count
    e_hull = e_above_hull(results, named.hull)
    stable, meta = _flags(structures, e_hull, settings)
    metrics = {
        named.metric("stable"): rate_estimate(stable, min_count=m),
        named.metric("metastable"): rate_estimate(meta, min_count=m),
        named.metric("S.U."): rate_estimate(stable & unique, min_count=m),
        named.metric("metastable S.U."): rate_estimate(meta & unique, min_count=m),
    }
    columns: dict[str, Any] = {
        named.column("e_hull"): e_hull,
        named.column("stable"): stable,
        named.column("metastable"): meta,
    }
    if novel is not None:
        sun, meta_sun = stable & unique & novel, meta & unique & novel
        metrics[named.metric("S.U.N.")] = rate_estimate(sun, min_count=m)
        metrics[named.metric("metastable S.U.N.")] = rate_estimate(meta_sun, min_count=m)
        columns[named.column("sun")] = sun
    relaxed = sum(r is not None and r.final_structure is not None for r in results)
    counts = {named.column("relaxed, no e_hull"): relaxed - int(np.isfinite(e_hull).sum())}
    return Family(metrics=metrics, columns=columns, counts=counts)


def closeness_family(
    structures: Sequence[Structure], results: Sequence[RelaxResult | None], settings: ReportSettings
) -> Family:
    """The relaxation's own columns, and how close each relaxed crystal was to its start."""
    n, m, seed = len(structures), settings.min_count, settings.seed
    index = [i for i, r in enumerate(results) if r is not None]
    relaxed = [results[i] for i in index]
    columns: dict[str, Any] = {}
    for column in _RELAX_COLUMNS:
        values = np.full(n, None, dtype=object)
        values[index] = [getattr(r, column) for r in relaxed]
        columns[column] = values
    near = closeness([structures[i] for i in index], relaxed)
    rms = np.full(n, math.nan)
    rms[index] = near.per_structure_rms
    columns["relaxed_rms"] = rms
    ok = np.array([r.error is None for r in relaxed], dtype=bool)
    ok_rms = near.per_structure_rms[ok]
    drops = np.array([r.initial_energy_per_atom - r.final_energy_per_atom for r in relaxed])[ok]
    steps = np.array([r.steps for r in relaxed], dtype=float)[ok]
    enough = int(ok.sum()) >= m

    def mean(values: np.ndarray) -> float:
        return float(np.mean(values)) if len(values) else math.nan

    def mean_estimate(values: np.ndarray) -> Estimate:  # NaN below min_count relaxed crystals
        if not enough:
            return Estimate(math.nan, n=len(values), method="bootstrap")
        return bootstrap_estimate(mean, values, seed=seed)

    return Family(
        metrics={
            "closeness match %": rate_estimate(~np.isnan(ok_rms), min_count=m),
            "closeness RMSD": mean_estimate(ok_rms[~np.isnan(ok_rms)]),
            "closeness dE eV/atom": mean_estimate(drops),
            "relaxation steps": mean_estimate(steps),
        },
        columns=columns,
        counts={
            "relaxed": len(relaxed),
            "relaxation converged": sum(r.converged for r in relaxed),
            "relaxation stalled": sum(r.stalled for r in relaxed),
            "relaxation failed": sum(not r.ok for r in relaxed),
        },
    )


def baseline_family(
    baseline: Sequence[StructureLike],
    hulls: Sequence[NamedHull],
    settings: ReportSettings,
    cache: Path | None,
    progress: bool,
    *,
    desc: str,
) -> Family:
    """The stable and metastable rates of real crystals through the same pipeline as the
    generated ones, against each hull: only valid ones are relaxed, invalid ones count as not
    stable."""
    base = as_structures(baseline)
    struct_ok, _, comp_ok = validity_flags(base)
    results = relax_valid(base, struct_ok & comp_ok, settings, cache, progress, desc)
    family = Family(counts={"baseline": len(base)})
    for named in hulls:
        stable, meta = _flags(base, e_above_hull(results, named.hull), settings)
        m = settings.min_count
        family.metrics[named.metric("baseline stable")] = rate_estimate(stable, min_count=m)
        family.metrics[named.metric("baseline metastable")] = rate_estimate(meta, min_count=m)
    return family
