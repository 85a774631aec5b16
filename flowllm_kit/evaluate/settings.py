"""Everything that changes a number in an evaluation report, and its values per preset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from flowllm_kit.evaluate.sun import DEFAULT_MATCHER, MatcherSettings
from flowllm_kit.presets import lookup_preset
from flowllm_kit.relax import RelaxConfig

__all__ = ["REPORT_PRESETS", "ReportSettings", "report_preset"]


@dataclass(frozen=True)
class ReportSettings:
    """Everything that changes a number in the report (saved beside it).

    Attributes:
        dataset: Picks the coverage cutoffs.
        min_count: Smallest denominator for which a rate or mean is reported.
        stable_threshold: E_hull (eV/atom) at or below which a crystal is stable.
        metastable_threshold: Same for metastable (the field's 0.1; the paper: 0.08 or 0.1).
        matcher: StructureMatcher tolerances for uniqueness and novelty.
        relax: CHGNet relaxation settings (:class:`flowllm_kit.relax.RelaxConfig`).
        processes: Worker processes for fingerprints, and for relaxation unless
            ``relax.num_workers`` is set (None: one per core).
        seed: Seed of the bootstrap resampling behind the intervals.
    """

    dataset: Literal["mp_20", "perov_5", "carbon_24"] = "mp_20"
    min_count: int = 10
    stable_threshold: float = 0.0
    metastable_threshold: float = 0.1
    matcher: MatcherSettings = DEFAULT_MATCHER
    relax: RelaxConfig = field(default_factory=RelaxConfig)
    processes: int | None = None
    seed: int = 0


REPORT_PRESETS = {
    # One process: workers cost seconds to start, more than they save on 16 crystals.
    "smoke": ReportSettings(min_count=5, relax=RelaxConfig(max_steps=100), processes=1),
    # The demo relaxes 200 crystals per system at up to 250 FIRE steps (docs/METHOD.md §9: the
    # paper's 1,500 do not fit its time budget; the report counts the capped relaxations).
    "demo": ReportSettings(relax=RelaxConfig(max_steps=250)),
    "kit": ReportSettings(relax=RelaxConfig(max_steps=250)),
    "paper": ReportSettings(),
}


def report_preset(name: str) -> ReportSettings:
    """The report settings of a named preset (``smoke``, ``demo``, ``paper``)."""
    return lookup_preset(REPORT_PRESETS, name)
