"""Evaluation of generated crystals (docs/METHOD.md §9), one module per metric family.

* :mod:`~flowllm_kit.evaluate.validity`: structural and SMACT compositional validity.
* :mod:`~flowllm_kit.evaluate.properties`: Wasserstein distances of density and element
  count, N-ary histogram.
* :mod:`~flowllm_kit.evaluate.coverage`: CrystalNN / Magpie fingerprints, coverage recall and
  precision.
* :mod:`~flowllm_kit.evaluate.sun`: uniqueness, novelty, S.U.N. with StructureMatcher.
* :mod:`~flowllm_kit.evaluate.hull`: hull references and E_hull, stability flags.
* :mod:`~flowllm_kit.evaluate.model_hull`: a hull of reference crystals relaxed with the same
  model and settings as the evaluated ones (the stability that tells real from generated).
* :mod:`~flowllm_kit.evaluate.intervals`: Wilson, Newcombe and bootstrap 95% intervals.
* :mod:`~flowllm_kit.evaluate.closeness`: closeness of crystals to their relaxed selves.
* :mod:`~flowllm_kit.evaluate.report`: all of the above in one table, with its settings
  (the families: :mod:`~flowllm_kit.evaluate.families`, :mod:`~flowllm_kit.evaluate.stability`).
* :mod:`~flowllm_kit.evaluate.inputs`: any generator's structure files (CIF, POSCAR, extxyz,
  ASE trajectories, JSON lines) read for evaluation, with every rejected structure listed.
* :mod:`~flowllm_kit.evaluate.systems`: what a run is scored on (its generated systems, the
  controls, a dataset's hull, cached reference fingerprints).

Relaxation is :mod:`flowllm_kit.relax` (batched CHGNet, resumable cache); its
:class:`~flowllm_kit.relax.RelaxConfig`, :class:`~flowllm_kit.relax.RelaxResult` and
:func:`~flowllm_kit.relax.relax_structures` are re-exported here.

Every function takes pymatgen ``Structure`` objects or kit ``Crystal`` objects. Some names
here (``closeness``, ``coverage``, ``sun``, ``report``) are both a module and its main function;
the package attribute is the function.

Example::

    >>> from flowllm_kit import evaluate
    >>> evaluate.structural_validity(structures)   # [True, False, ...]
    >>> evaluate.compositional_validity(structures)
"""

from __future__ import annotations

from flowllm_kit.evaluate.closeness import Closeness, closeness, relaxed_rms
from flowllm_kit.evaluate.coverage import (
    COVERAGE_CUTOFFS,
    Coverage,
    Fingerprints,
    coverage,
    fingerprints,
)
from flowllm_kit.evaluate.hull import (
    HullReference,
    entries_from_formation_energies,
    load_elemental_references,
    stability_flags,
)
from flowllm_kit.evaluate.inputs import Rejected, StructureInputs, read_structure_inputs
from flowllm_kit.evaluate.intervals import (
    Estimate,
    bootstrap_estimate,
    difference,
    format_estimate,
    rate_difference,
    rate_estimate,
    wilson_interval,
)
from flowllm_kit.evaluate.model_hull import RelaxedHull
from flowllm_kit.evaluate.properties import (
    PropertyDistances,
    densities,
    element_counts,
    nary_histogram,
    property_distances,
)
from flowllm_kit.evaluate.report import RELAXED_HULL_SUFFIX, Report, report
from flowllm_kit.evaluate.settings import REPORT_PRESETS, ReportSettings, report_preset
from flowllm_kit.evaluate.sun import (
    CLOSENESS_MATCHER,
    DEFAULT_MATCHER,
    MatcherSettings,
    novelty,
    sun,
    uniqueness,
)
from flowllm_kit.evaluate.systems import (
    ELEMENTAL_REFERENCE_FILE,
    control_systems,
    dataset_hull,
    elemental_reference_file,
    find_systems,
    reference_fingerprints,
)
from flowllm_kit.evaluate.validity import (
    CompositionStatus,
    composition_status,
    compositional_validity,
    smact_status,
    structural_validity,
)
from flowllm_kit.relax import RelaxConfig, RelaxResult, relax_structures

__all__ = [
    "REPORT_PRESETS",
    "report_preset",
    # validity
    "CompositionStatus",
    "composition_status",
    "compositional_validity",
    "smact_status",
    "structural_validity",
    # properties
    "PropertyDistances",
    "densities",
    "element_counts",
    "nary_histogram",
    "property_distances",
    # coverage
    "COVERAGE_CUTOFFS",
    "Coverage",
    "Fingerprints",
    "coverage",
    "fingerprints",
    # uniqueness, novelty, S.U.N.
    "CLOSENESS_MATCHER",
    "DEFAULT_MATCHER",
    "MatcherSettings",
    "novelty",
    "sun",
    "uniqueness",
    # relaxation (from flowllm_kit.relax)
    "RelaxConfig",
    "RelaxResult",
    "relax_structures",
    # hull
    "HullReference",
    "RelaxedHull",
    "entries_from_formation_energies",
    "load_elemental_references",
    "stability_flags",
    # closeness
    "Closeness",
    "closeness",
    "relaxed_rms",
    # intervals
    "Estimate",
    "bootstrap_estimate",
    "format_estimate",
    "rate_difference",
    "rate_estimate",
    "difference",
    "wilson_interval",
    # structure files of any generator
    "Rejected",
    "StructureInputs",
    "read_structure_inputs",
    # report
    "RELAXED_HULL_SUFFIX",
    "Report",
    "ReportSettings",
    "report",
    # the systems of a run
    "ELEMENTAL_REFERENCE_FILE",
    "control_systems",
    "dataset_hull",
    "elemental_reference_file",
    "find_systems",
    "reference_fingerprints",
]
