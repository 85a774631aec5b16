"""Stage times of the notebook series: what a run folder's stage markers say, the expected times
the runner prints before each notebook (``stage_times.json`` beside the notebooks), and the
summary printed after a series."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from flowllm_kit.provenance import cpu_model, source_commit
from flowllm_kit.run import RunFolder

__all__ = [
    "STAGE_TIMES_FILE",
    "commit",
    "expected_times",
    "record_times",
    "stage_times",
    "summary",
]

STAGE_TIMES_FILE = "stage_times.json"


def expected_times(notebooks_dir: str | Path, preset: str) -> dict[str, Any]:
    """The measured stage times of ``preset`` from ``stage_times.json`` beside the notebooks:
    ``{"measured": "<where and when>", "stages": {notebook stem: {"seconds": s, "work": [...]}}}``
    (empty when the file or the preset is missing)."""
    path = Path(notebooks_dir) / STAGE_TIMES_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get(preset, {})


def stage_times(run_dir: str | Path) -> dict[str, float]:
    """Wall time in seconds of every finished stage of a run folder, from its stage markers
    (including stages finished by earlier invocations), in series order."""
    markers = sorted(RunFolder(run_dir).stages.glob("*.json"))
    return {marker.stem: float(json.loads(marker.read_text())["seconds"]) for marker in markers}


def _machine() -> str:
    """CPU model and core count of this machine, e.g. ``Intel(R) Xeon(R) ..., 2 cores``."""
    return f"{cpu_model()}, {os.cpu_count()} cores"


def commit() -> str:
    """The repository's short commit, or ``unknown`` outside a git checkout."""
    return source_commit() or "unknown"


def record_times(
    run_dir: str | Path, *, preset: str, notebooks_dir: str | Path = "notebooks", note: str = ""
) -> Path:
    """Store the stage times of a finished run folder (its stage markers: wall time and the
    long work inside each notebook) as the expected times of ``preset`` in
    ``<notebooks_dir>/stage_times.json``, with the date, this machine and the commit the stages
    ran at; returns the file.

    Raises:
        ValueError: If the run folder has no finished stage of ``preset``.
    """
    markers = sorted(RunFolder(run_dir).stages.glob("*.json"))
    stages, commits = {}, set()
    for marker in markers:
        record = json.loads(marker.read_text())
        if record.get("preset") == preset:
            commits.add(record.get("commit", "unknown"))
            stages[marker.stem] = {
                "seconds": round(float(record["seconds"]), 1),
                "work": record.get("work", []),
            }
    if not stages:
        raise ValueError(f"{run_dir}: no finished stage of preset {preset!r} in its stages/")
    path = Path(notebooks_dir) / STAGE_TIMES_FILE
    table = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    when = datetime.date.today().isoformat()
    ran_at = ", ".join(sorted(commits))  # the commit(s) the stages ran at
    measured = f"measured {when} on {_machine()} at commit {ran_at}"
    table[preset] = {"measured": measured + (f"; {note}" if note else ""), "stages": stages}
    path.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return path


def summary(run_dir: str | Path) -> str:
    """What a finished series leaves to read: each stage's wall time and their total, then the
    run's metrics table (``evaluation/metrics.csv``, written by notebook 07) when it exists."""
    run_dir = Path(run_dir)
    times = stage_times(run_dir)
    lines = [f"Stages of {run_dir} (wall time):"]
    lines += [f"  {stage:36s} {seconds / 60:6.1f} min" for stage, seconds in times.items()]
    lines.append(f"  {'total':36s} {sum(times.values()) / 60:6.1f} min")
    metrics = RunFolder(run_dir).metrics
    if metrics.exists():
        import pandas as pd

        table = pd.read_csv(metrics, index_col=0).T.round(3)  # one column per system
        shown = table.astype(object).where(table.notna(), "n/c")
        with pd.option_context("display.width", 250, "display.max_columns", None):
            lines += ["", f"Metrics ({metrics}; n/c: not computable):", shown.to_string()]
    return "\n".join(lines)
