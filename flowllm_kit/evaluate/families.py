"""The metric families of a report that need no relaxation: validity, property distances,
coverage, uniqueness and novelty. Each returns a :class:`Family`: its metrics (each an
:class:`~flowllm_kit.evaluate.intervals.Estimate` with its 95% interval), its per-structure
columns and its counts. Stability, S.U.N. and closeness are in
:mod:`flowllm_kit.evaluate.stability`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from flowllm_kit.crystal import Crystal
from flowllm_kit.crystal.convert import StructureLike
from flowllm_kit.evaluate.coverage import Fingerprints, coverage, fingerprints
from flowllm_kit.evaluate.intervals import Estimate, bootstrap_estimate, rate_estimate
from flowllm_kit.evaluate.properties import densities, element_counts, wasserstein
from flowllm_kit.evaluate.settings import ReportSettings
from flowllm_kit.evaluate.sun import novelty, uniqueness
from flowllm_kit.evaluate.validity import composition_status, structural_validity

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "Family",
    "coverage_family",
    "distribution_family",
    "uniqueness_novelty_family",
    "validity_family",
]


@dataclass
class Family:
    """What one metric family adds to a report: metrics, per-structure columns, counts."""

    metrics: dict[str, Estimate] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def validity_flags(structures: Sequence[Structure]) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Structural validity, composition status and compositional validity of each structure
    (the filter generated and baseline crystals pass before relaxation)."""
    struct_ok = np.array(structural_validity(structures), dtype=bool)
    comp_status = composition_status(structures)
    comp_ok = np.array([status == "valid" for status in comp_status], dtype=bool)
    return struct_ok, comp_status, comp_ok


def validity_family(structures: Sequence[Structure], m: int) -> tuple[Family, np.ndarray]:
    """Structural and compositional validity (CDVAE definitions), and which crystals are both
    (the ones the other families measure)."""
    struct_ok, comp_status, comp_ok = validity_flags(structures)
    valid = struct_ok & comp_ok
    undetermined = Counter(comp_status)["undetermined"]
    return Family(
        metrics={
            "structural validity %": rate_estimate(struct_ok, min_count=m),
            "compositional validity %": rate_estimate(comp_ok, min_count=m),
            "valid %": rate_estimate(valid, min_count=m),
            "compositions undetermined": Estimate(float(undetermined), n=len(structures)),
        },
        columns={"structurally_valid": struct_ok, "composition_status": comp_status},
        counts={"valid": int(valid.sum())},
    ), valid


def distribution_family(
    valid_structures: Sequence[Structure], reference: Sequence[Structure], m: int, seed: int
) -> Family:
    """Wasserstein distances of density and element count between the valid generated crystals
    and the reference, with bootstrap intervals over the generated crystals (the reference is
    held fixed: it is the yardstick, not the sample)."""
    ref_density, ref_count = densities(reference), element_counts(reference)
    density, count = densities(valid_structures), element_counts(valid_structures)
    distance = {"interval": "normal", "floor": 0.0}  # why not percentile: evaluate.intervals
    return Family(
        metrics={
            "wdist density": bootstrap_estimate(
                wasserstein, density, fixed=[ref_density], min_count=m, seed=seed, **distance
            ),
            "wdist N_el": bootstrap_estimate(
                wasserstein,
                count.astype(float),
                fixed=[ref_count],
                min_count=m,
                seed=seed,
                **distance,
            ),
        },
        counts={"reference": len(reference)},
    )


def coverage_family(
    structures: Sequence[Structure],
    reference: Sequence[Structure],
    reference_fingerprints: Fingerprints | None,
    settings: ReportSettings,
    m: int,
) -> Family:
    """Coverage recall and precision against the reference (CrystalNN and Magpie
    fingerprints), as rates with Wilson intervals: recall over the reference crystals (k of
    them covered by the generated set), precision over the generated crystals (k of them close
    to the reference; failed fingerprints count as not close). Not a bootstrap, although the
    flags are the same: a percentile bootstrap of 0 of n flags is the interval [0, 0]."""
    ref_fp = reference_fingerprints or fingerprints(reference, processes=settings.processes)
    gen_fp = fingerprints(structures, processes=settings.processes)
    cov = coverage(gen_fp, ref_fp, dataset=settings.dataset)
    precise = np.zeros(len(structures), dtype=bool)
    precise[np.flatnonzero(gen_fp.ok)] = cov.precise
    enough = len(structures) >= m
    recall = rate_estimate(cov.covered)
    return Family(
        metrics={
            "coverage recall %": recall if enough else Estimate(math.nan, n=recall.n, k=recall.k),
            "coverage precision %": rate_estimate(precise, min_count=m),
        },
        columns={"fingerprint_ok": gen_fp.ok, "coverage_precise": precise},
    )


def uniqueness_novelty_family(
    structures: Sequence[Structure],
    training: Sequence[StructureLike] | None,
    settings: ReportSettings,
    m: int,
) -> Family:
    """Uniqueness among the generated crystals and novelty against the training crystals, each
    on its own and together (U.N.), and novelty of the composition alone (no training crystal
    with the same reduced formula); without a training set there is no novelty."""
    unique = np.array(uniqueness(structures, settings=settings.matcher), dtype=bool)
    family = Family(
        metrics={"unique %": rate_estimate(unique, min_count=m)}, columns={"unique": unique}
    )
    if training is not None:
        novel = np.array(novelty(structures, training, settings=settings.matcher), dtype=bool)
        family.metrics["novel %"] = rate_estimate(novel, min_count=m)
        family.metrics["U.N. %"] = rate_estimate(unique & novel, min_count=m)
        family.columns["novel"] = novel
        known = {_reduced_formula(item) for item in training}
        new = np.array([_reduced_formula(s) not in known for s in structures], dtype=bool)
        family.metrics["novel composition %"] = rate_estimate(new, min_count=m)
        family.columns["novel_composition"] = new
    return family


def _reduced_formula(item: StructureLike) -> str:
    """The reduced formula of a pymatgen Structure or a Crystal."""
    return item.formula if isinstance(item, Crystal) else item.composition.reduced_formula
