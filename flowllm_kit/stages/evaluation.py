"""The evaluation stage on a run folder: which real crystals the systems are scored against, the
report settings, and one report per system with the metrics table.

Notebook 07 and the command ``evaluate`` call these functions, so the split rule (which
evaluation-split crystals are the reference, which are the real controls and the stability
baseline), the coverage cutoffs and the per-system loop exist once. The notebook still shows
the hull, the systems and every metric family.

Example::

    >>> run = RunFolder("runs/smoke")
    >>> data = evaluation_data("smoke", n_evaluate=16, n_reference=40)
    >>> systems = find_systems(run.root, n=16) | control_systems(data.real)
    >>> reports = evaluate_systems(run, systems, data, settings=report_settings("smoke"), hull=None)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flowllm_kit.crystal import Crystal
from flowllm_kit.data import load_dataset
from flowllm_kit.evaluate import (
    COVERAGE_CUTOFFS,
    Fingerprints,
    HullReference,
    Report,
    ReportSettings,
    reference_fingerprints,
    report,
    report_preset,
)
from flowllm_kit.presets import get_preset
from flowllm_kit.run import RunFolder

__all__ = [
    "EvaluatedSystem",
    "EvaluationData",
    "evaluate_systems",
    "evaluation_data",
    "metrics_table",
    "report_settings",
]

BASELINE_SIZE = 1000  # real crystals of the stability baseline when every crystal is evaluated


@dataclass(frozen=True)
class EvaluationData:
    """The real crystals a run's systems are scored against."""

    dataset: str
    eval_split: str
    reference: list[Crystal]  # coverage and property distances are measured against these
    real: list[Crystal]  # the real controls and the stability baseline (the other end)
    training: list[Crystal]  # novelty is judged against these
    seed: int

    @property
    def name(self) -> str:
        """Names the reference set (its cached fingerprints, for one)."""
        return f"{self.dataset}_{self.eval_split}_{len(self.reference)}_{self.seed}"


@dataclass(frozen=True)
class EvaluatedSystem:
    """One system's report and how long it took."""

    report: Report
    crystals: int
    seconds: float


def evaluation_data(
    preset: str, *, n_evaluate: int | None = None, n_reference: int | None = None, seed: int = 0
) -> EvaluationData:
    """The preset's evaluation split, shuffled with ``seed``: the last ``n_reference`` crystals
    are the reference, the first ``n_evaluate`` (all: 1,000) the real controls and the
    stability baseline, so the two overlap only when the split is small; and the training split
    for novelty. None takes the preset's evaluation sizes."""
    data, sizes = get_preset(preset).data, get_preset(preset).evaluation
    n_evaluate, n_reference = n_evaluate or sizes.n_evaluate, n_reference or sizes.n_reference
    eval_crystals = load_dataset(data.dataset, data.eval_split)
    order = np.random.default_rng(seed).permutation(len(eval_crystals))
    shuffled = [eval_crystals[i] for i in order]
    return EvaluationData(
        dataset=data.dataset,
        eval_split=data.eval_split,
        reference=shuffled[-n_reference:] if n_reference else shuffled,
        real=shuffled[: n_evaluate or BASELINE_SIZE],
        training=load_dataset(data.dataset, data.train_split),
        seed=seed,
    )


def report_settings(
    preset: str,
    *,
    relax_steps: int | None = None,
    relax_stall_steps: int | None = None,
    min_count: int | None = None,
    processes: int | None = None,
) -> ReportSettings:
    """The report settings of a preset (:func:`~flowllm_kit.evaluate.report_preset`) with the
    coverage cutoffs of its dataset, and the values given replaced."""
    base = report_preset(preset)
    dataset = get_preset(preset).data.dataset
    cutoffs = next((name for name in COVERAGE_CUTOFFS if dataset.startswith(name)), "mp_20")
    relax = dataclasses.replace(
        base.relax, max_steps=relax_steps or base.relax.max_steps, stall_steps=relax_stall_steps
    )
    return dataclasses.replace(
        base,
        dataset=cutoffs,
        min_count=min_count or base.min_count,
        relax=relax,
        processes=processes or base.processes,
    )


def evaluate_systems(
    run: RunFolder,
    systems: Mapping[str, Sequence[Crystal]],
    data: EvaluationData,
    *,
    settings: ReportSettings,
    hull: HullReference | None,
    fingerprints: Fingerprints | None = None,
) -> dict[str, EvaluatedSystem]:
    """Evaluate every system into ``run.evaluation_of(system)`` and write the metrics table
    (``run.metrics``: one row per system).

    The reference fingerprints (unless given) are computed once and cached in the evaluation
    folder; relaxations are cached there too (``relax.jsonl``), so a rerun skips finished work.
    """
    run.evaluation.mkdir(parents=True, exist_ok=True)
    if fingerprints is None:
        fingerprints = reference_fingerprints(
            data.reference,
            path=run.reference_fingerprints(data.name),
            processes=settings.processes,
        )
    evaluated = {}
    for name, crystals in systems.items():
        start = time.perf_counter()
        result = report(
            list(crystals), reference=data.reference, reference_fingerprints=fingerprints,
            training=data.training, hull=hull, baseline=data.real, settings=settings,
            cache_folder=run.evaluation, progress=False, label=name,
        )  # fmt: skip
        result.save(run.evaluation_of(name))
        evaluated[name] = EvaluatedSystem(result, len(crystals), time.perf_counter() - start)
    metrics_table(evaluated).to_csv(run.metrics)
    return evaluated


def metrics_table(evaluated: Mapping[str, EvaluatedSystem]) -> pd.DataFrame:
    """One row per system: its crystal count, seconds and metrics."""
    rows = {
        name: {"crystals": e.crystals, "seconds": round(e.seconds, 1), **e.report.metrics}
        for name, e in evaluated.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("system")
