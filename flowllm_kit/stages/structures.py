"""The evaluation stage for any generator's structure files: the same report as a run folder's
systems get (notebook 07), against the same real crystals, hulls and settings, written to a
folder of its own (notebook 09; ``evaluate --structures``).

Example::

    >>> result = evaluate_structures(["mattergen_cifs/"], "eval/mattergen", preset="demo",
    ...                              hull=dataset_hull("mp_20"))
    >>> result.report.estimates["stable (CHGNet hull) %"]
    >>> result.inputs.rejected_table()       # every file or structure that could not be used
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flowllm_kit.evaluate import (
    HullReference,
    Report,
    ReportSettings,
    StructureInputs,
    read_structure_inputs,
    reference_fingerprints,
    report,
)
from flowllm_kit.stages.evaluation import (
    evaluation_data,
    intervals_table,
    relaxed_hull,
    report_settings,
)

__all__ = ["REJECTED_CSV", "EvaluatedStructures", "evaluate_structures"]

REJECTED_CSV = "rejected.csv"
"""The structures that could not be evaluated, by source and reason, beside the report."""


@dataclass(frozen=True)
class EvaluatedStructures:
    """What :func:`evaluate_structures` read, scored and wrote."""

    report: Report
    inputs: StructureInputs
    folder: Path


def evaluate_structures(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    name: str = "structures",
    preset: str = "demo",
    hull: HullReference | None = None,
    use_relaxed_hull: bool = True,
    settings: ReportSettings | None = None,
    n_evaluate: int | None = None,
    n_reference: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> EvaluatedStructures:
    """Read structure files (:func:`~flowllm_kit.evaluate.read_structure_inputs`) and write their
    report into ``out``: metrics.json (value, low, high, n per metric), metrics.csv,
    metrics_intervals.csv, per_structure.csv (one row per structure, ``id`` naming its file),
    settings.json (with the input counts), the figures and rejected.csv.

    The real crystals are the preset's, drawn as notebook 07 draws them (same ``seed``,
    ``n_evaluate``, ``n_reference``), so the numbers sit beside a run's systems: reference for
    coverage and distances, training split for novelty and the relaxed hull, real crystals as
    the stability baseline.

    Args:
        paths: Files and folders (CIF, POSCAR, extxyz, ASE .traj, pymatgen JSON, kit JSONL).
        out: The report folder (created; its relaxation cache makes a rerun resume).
        name: Names the system in tables and progress.
        preset: Picks the dataset, splits, sizes and report settings.
        hull: The DFT-energy hull (the paper's definition; e.g. ``dataset_hull("mp_20")``).
        use_relaxed_hull: Also place crystals on the hull of relaxed training crystals.
        settings: Report settings (default: the preset's, :func:`report_settings`).
        n_evaluate: Real crystals of the baseline (None: the preset's).
        n_reference: Reference crystals (None: the preset's).
        seed: Which evaluation-split crystals are drawn, and the bootstrap's seed.
        progress: Show progress bars.

    Raises:
        FileNotFoundError: If a path does not exist.
        ValueError: If no structure at all could be read (the rejections are still written).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = read_structure_inputs(paths)
    inputs.rejected_table().to_csv(out / REJECTED_CSV, index=False)
    if not inputs.crystals:
        raise ValueError(
            f"no structure could be read from {', '.join(map(str, paths))}: "
            f"{len(inputs.rejected)} rejected, listed in {out / REJECTED_CSV}"
        )
    data = evaluation_data(preset, n_evaluate=n_evaluate, n_reference=n_reference, seed=seed)
    settings = settings or report_settings(preset, seed=seed)
    fingerprints = reference_fingerprints(
        data.reference,
        path=out / f"reference_fingerprints_{data.name}.npz",
        processes=settings.processes,
    )
    relaxed = relaxed_hull(data, settings, progress=progress) if use_relaxed_hull else None
    result = report(
        inputs.crystals, reference=data.reference, reference_fingerprints=fingerprints,
        training=data.training, hull=hull, relaxed_hull=relaxed, baseline=data.real,
        settings=settings, cache_folder=out, progress=progress, label=name,
    )  # fmt: skip
    result.settings["inputs"] = {
        "paths": [str(p) for p in paths],
        **inputs.counts(),
        "evaluation data": data.name,
    }
    result.save(out)
    intervals = intervals_table({name: result})
    intervals.to_csv(out / "metrics_intervals.csv", index=False)
    values = intervals.set_index("metric")["value"].rename(name)
    values.to_frame().T.rename_axis("system").to_csv(out / "metrics.csv")
    (out / "inputs.json").write_text(json.dumps(result.settings["inputs"], indent=2))
    return EvaluatedStructures(report=result, inputs=inputs, folder=out)
