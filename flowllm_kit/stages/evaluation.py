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
from pathlib import Path

import numpy as np
import pandas as pd

from flowllm_kit.crystal import Crystal
from flowllm_kit.data import load_dataset
from flowllm_kit.data.paths import cache_dir
from flowllm_kit.distributed import barrier, world
from flowllm_kit.evaluate import (
    COVERAGE_CUTOFFS,
    Fingerprints,
    HullReference,
    RelaxedHull,
    Report,
    ReportSettings,
    difference,
    format_estimate,
    reference_fingerprints,
    report,
    report_preset,
)
from flowllm_kit.evaluate.intervals import Estimate
from flowllm_kit.evaluate.stability import relax_config
from flowllm_kit.presets import get_preset
from flowllm_kit.run import RunFolder

__all__ = [
    "EvaluatedSystem",
    "EvaluationData",
    "differences_table",
    "evaluate_systems",
    "evaluation_data",
    "intervals_table",
    "metrics_table",
    "relaxed_hull",
    "report_settings",
    "table_with_intervals",
]

BASELINE_SIZE = 1000  # real crystals of the stability baseline when every crystal is evaluated


@dataclass(frozen=True)
class EvaluationData:
    """The real crystals a run's systems are scored against."""

    dataset: str
    eval_split: str
    train_split: str
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
        train_split=data.train_split,
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
    seed: int | None = None,
) -> ReportSettings:
    """The report settings of a preset (:func:`~flowllm_kit.evaluate.report_preset`) with the
    coverage cutoffs of its dataset, and the values given replaced (``seed``: the bootstrap's)."""
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
        seed=base.seed if seed is None else seed,
    )


def relaxed_hull(
    data: EvaluationData,
    settings: ReportSettings,
    *,
    cache_path: str | Path | None = None,
    progress: bool = False,
) -> RelaxedHull:
    """The hull of the training and evaluation splits' crystals, less the real crystals of the
    baseline, relaxed with the report's own CHGNet settings
    (:class:`~flowllm_kit.evaluate.RelaxedHull`).

    So the hull holds the competing phases the DFT hull of :func:`~flowllm_kit.evaluate.
    dataset_hull` holds, with energies from the same model and relaxation as the crystals placed
    on it, and the real yardstick crystals are not in it: they meet it as generated ones do.

    Args:
        data: The run's evaluation data.
        settings: The report settings: the hull is relaxed as the evaluated crystals are.
        cache_path: The reference crystals' relaxation cache (default: one file per dataset in
            the kit's cache folder, shared by every run: results are keyed by structure and
            settings, so each crystal is relaxed once).
        progress: Show a bar while relaxing reference crystals.
    """
    if cache_path is None:
        cache_path = cache_dir() / "hulls" / f"{data.dataset}.relax.jsonl"
    Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
    held_out = {c.id for c in data.real}
    evaluation = [c for c in load_dataset(data.dataset, data.eval_split) if c.id not in held_out]
    source = (
        f"{data.dataset} {data.train_split} + {data.eval_split} less the {len(held_out)} real "
        f"crystals, relaxed with CHGNet {settings.relax.model_name}"
    )
    return RelaxedHull(
        [*data.training, *evaluation], relax=relax_config(settings), cache_path=cache_path,
        progress=progress, source=source,
    )  # fmt: skip


def evaluate_systems(
    run: RunFolder,
    systems: Mapping[str, Sequence[Crystal]],
    data: EvaluationData,
    *,
    settings: ReportSettings,
    hull: HullReference | None,
    relaxed: HullReference | None = None,
    fingerprints: Fingerprints | None = None,
) -> dict[str, EvaluatedSystem]:
    """Evaluate every system into ``run.evaluation_of(system)`` and write the metrics tables
    (``run.metrics``: one row per system; ``run.metrics_intervals``: one row per system and
    metric, with its interval).

    The reference fingerprints (unless given) are computed once and cached in the evaluation
    folder; relaxations are cached there too (``relax.jsonl``), so a rerun skips finished work.
    ``relaxed`` is the hull of relaxed reference crystals (:func:`relaxed_hull`).

    Under a launcher every process makes this call: the CHGNet relaxations (of the systems,
    the real crystals and the reference crystals of the relaxed hull) are shared out over them
    through the caches (:mod:`flowllm_kit.relax.sharded`), the other metrics are computed by
    each, and rank 0 alone writes the reports and tables.
    """
    on = world()
    run.evaluation.mkdir(parents=True, exist_ok=True)
    if fingerprints is None:
        for turn in ("main", "others"):  # rank 0 computes and caches them; the rest read them
            if (turn == "main") == on.is_main:
                fingerprints = reference_fingerprints(
                    data.reference,
                    path=run.reference_fingerprints(data.name),
                    processes=settings.processes,
                )
            barrier()
    evaluated = {}
    for name, crystals in systems.items():
        start = time.perf_counter()
        result = report(
            list(crystals), reference=data.reference, reference_fingerprints=fingerprints,
            training=data.training, hull=hull, relaxed_hull=relaxed, baseline=data.real,
            settings=settings,
            cache_folder=run.evaluation, progress=False, label=name,
        )  # fmt: skip
        if on.is_main:
            result.save(run.evaluation_of(name))
        evaluated[name] = EvaluatedSystem(result, len(crystals), time.perf_counter() - start)
    if on.is_main:
        metrics_table(evaluated).to_csv(run.metrics)
        intervals_table(evaluated).to_csv(run.metrics_intervals, index=False)
    barrier()
    return evaluated


def metrics_table(evaluated: Mapping[str, EvaluatedSystem]) -> pd.DataFrame:
    """One row per system: its crystal count, seconds and metrics."""
    rows = {
        name: {"crystals": e.crystals, "seconds": round(e.seconds, 1), **e.report.metrics}
        for name, e in evaluated.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("system")


def intervals_table(evaluated: Mapping[str, EvaluatedSystem | Report]) -> pd.DataFrame:
    """One row per (system, metric): value, low, high, n, k and the interval's method."""
    rows = [
        {"system": name, "metric": metric, **estimate.as_dict()}
        for name, e in evaluated.items()
        for metric, estimate in (
            e.report if isinstance(e, EvaluatedSystem) else e
        ).estimates.items()
    ]
    columns = ["system", "metric", "value", "low", "high", "n", "k", "method"]
    return pd.DataFrame(rows, columns=columns)


def table_with_intervals(
    intervals: pd.DataFrame, *, metrics: Sequence[str] | None = None, spec: str = ".3g"
) -> pd.DataFrame:
    """``value [low, high]`` strings, one row per system and one column per metric ("n/c": not
    computable), from :func:`intervals_table` (or the ``metrics_intervals.csv`` it saved)."""
    frame = intervals if metrics is None else intervals[intervals["metric"].isin(metrics)]
    cells = {
        (row.system, row.metric): format_estimate(Estimate.from_dict(_no_nan(row._asdict())), spec)
        for row in frame.itertuples(index=False)
    }
    table = pd.Series(cells, dtype=object).unstack()
    order = list(dict.fromkeys(frame["metric"])) if metrics is None else list(metrics)
    systems = list(dict.fromkeys(frame["system"]))
    return table.reindex(index=systems, columns=order).fillna("n/c").rename_axis("system")


def differences_table(
    intervals: pd.DataFrame, pairs: Sequence[tuple[str, str]], metrics: Sequence[str]
) -> pd.DataFrame:
    """``first - second`` for each pair of systems and each metric, with its 95% interval
    (:func:`~flowllm_kit.evaluate.difference`: Newcombe's for rates, in percentage points).

    Args:
        intervals: :func:`intervals_table`, or the ``metrics_intervals.csv`` it saved.
        pairs: (first, second) system names.
        metrics: The metrics to difference (a pair missing one gets no row for it).

    Returns:
        One row per (first, second, metric): difference, low, high, n, method, and
        ``excludes_zero`` (the interval lies wholly on one side of 0).
    """
    estimates = {
        (row.system, row.metric): Estimate.from_dict(_no_nan(row._asdict()))
        for row in intervals.itertuples(index=False)
    }
    rows = []
    for first, second in pairs:
        for metric in metrics:
            if (first, metric) not in estimates or (second, metric) not in estimates:
                continue
            d = difference(estimates[first, metric], estimates[second, metric])
            rows.append({
                "first": first, "second": second, "metric": metric, "difference": d.value,
                "low": d.low, "high": d.high, "n": d.n, "method": d.method,
                "excludes_zero": bool(d.low > 0 or d.high < 0),
            })  # fmt: skip
    columns = ["first", "second", "metric", "difference", "low", "high", "n", "method"]
    return pd.DataFrame(rows, columns=[*columns, "excludes_zero"])


def _no_nan(row: dict) -> dict:
    return {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()}
