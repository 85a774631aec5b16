"""Run the numbered notebook series with papermill, stage by stage, into a run folder.

Usage::

    python -m flowllm_kit.notebooks run --preset demo --run-dir runs/demo
    python -m flowllm_kit.notebooks run --preset smoke --run-dir runs/smoke --only 01 --redo
    python -m flowllm_kit.notebooks list

Each notebook receives the papermill parameters ``preset`` and ``run_dir`` (plus any
``-p name value`` given). The executed copy is written to ``<run_dir>/notebooks/``; a finished
stage leaves ``<run_dir>/stages/<notebook>.json`` and is skipped on the next run unless
``--redo`` is given, so an interrupted series resumes at the stage that did not finish.

What the terminal shows while a notebook runs:

- before it starts, its title and how long it took on this preset when last measured
  (``stage_times.json`` beside the notebooks, written by ``record-times`` from a finished run);
- the inner progress of its long work (LLM training and sampling, pair drawing, flow training
  and sampling, CHGNet relaxation): step and total, running loss, elapsed time and time left,
  relayed from the kernel through :mod:`flowllm_kit.progress`;
- the kernel's own messages, except the harmless ones listed in ``HARMLESS_MESSAGES``; all of
  them, harmless or not, are kept in ``<run_dir>/logs/<notebook>.log``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowllm_kit.notebooks.kernel import HARMLESS_MESSAGES, environment, filtered_stderr
from flowllm_kit.notebooks.times import (
    STAGE_TIMES_FILE,
    commit,
    expected_times,
    record_times,
    stage_times,
    summary,
)
from flowllm_kit.progress import PROGRESS_ENV, Display, Relay, format_duration
from flowllm_kit.run import RunFolder

__all__ = [
    "HARMLESS_MESSAGES",
    "STAGE_TIMES_FILE",
    "expected_times",
    "find_notebooks",
    "notebook_title",
    "record_times",
    "run_notebook",
    "run_series",
    "stage_times",
    "summary",
]

_NUMBERED = re.compile(r"^(\d\d)_.+\.ipynb$")


def find_notebooks(notebooks_dir: str | Path = "notebooks") -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in ``notebooks_dir``, in order.

    Raises:
        FileNotFoundError: If the folder does not exist or holds no numbered notebook.
    """
    folder = Path(notebooks_dir)
    found = (
        sorted(p for p in folder.glob("*.ipynb") if _NUMBERED.match(p.name))
        if folder.is_dir()
        else []
    )
    if not found:
        raise FileNotFoundError(
            f"no numbered notebooks (NN_name.ipynb) in {folder.resolve()}; "
            "run from the repository root or pass --notebooks-dir"
        )
    return found


def run_notebook(
    notebook: str | Path,
    *,
    preset: str,
    run_dir: str | Path,
    parameters: dict[str, Any] | None = None,
    output_dir: str | Path | None = None,
    progress: bool = True,
    display: Display | None = None,
) -> Path:
    """Execute one notebook with papermill; returns the executed copy's path.

    Args:
        notebook: The ``.ipynb`` to run.
        preset: Passed as the ``preset`` parameter (``smoke``, ``demo`` or ``paper``).
        run_dir: Passed as the ``run_dir`` parameter; stages read and write their artifacts there.
        parameters: Further papermill parameters.
        output_dir: Where the executed copy goes (default ``<run_dir>/notebooks``).
        progress: Relay the kernel's progress (:mod:`flowllm_kit.progress`) to ``display`` and
            keep its harmless messages out of the terminal (both into ``<run_dir>/logs/``);
            ``False``: papermill's cell counter and the kernel's messages as they come.
        display: Where the progress goes (default: a :class:`~flowllm_kit.progress.Display` on
            standard output).
    """
    import papermill

    notebook = Path(notebook)
    run_dir = Path(run_dir)
    output_dir = Path(output_dir) if output_dir is not None else RunFolder(run_dir).notebooks
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / notebook.name

    def execute() -> None:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters={"preset": preset, "run_dir": str(run_dir), **(parameters or {})},
            cwd=str(notebook.parent),
            progress_bar=not progress,
            kernel_name="python3",
        )

    if not progress:
        execute()
        return output
    logs = RunFolder(run_dir).logs
    logs.mkdir(parents=True, exist_ok=True)
    events = logs / f"{notebook.stem}.progress.jsonl"
    events.unlink(missing_ok=True)
    display = display if display is not None else Display()
    with (
        environment(PROGRESS_ENV, str(events.resolve())),
        filtered_stderr(logs / f"{notebook.stem}.log"),
        Relay(events, display),
    ):
        execute()
    return output


def notebook_title(notebook: str | Path) -> str:
    """The notebook's title: its first markdown heading without the ``# NN ·`` prefix."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", []))
            first = source.strip().splitlines()[0] if source.strip() else ""
            return re.sub(r"^#+\s*(\d+\s*·\s*)?", "", first).strip()
    return Path(notebook).stem


def _announce(notebook: Path, preset: str, expected: dict[str, Any]) -> str:
    lines = [f"[run ] {notebook.name} (preset {preset}): {notebook_title(notebook)}"]
    stage = expected.get("stages", {}).get(notebook.stem)
    if stage is None:
        lines.append("       expected duration: not measured for this preset")
        return "\n".join(lines)
    lines.append(
        f"       expected about {format_duration(stage['seconds'])}"
        f" ({expected.get('measured', 'measured earlier')})"
    )
    for work in stage.get("work", []):
        total = f" {work['total']:,} {work['unit']}," if work.get("total") else ""
        lines.append(f"         {work['desc']}:{total} {format_duration(work['seconds'])}")
    return "\n".join(lines)


def run_series(
    *,
    preset: str,
    run_dir: str | Path,
    notebooks_dir: str | Path = "notebooks",
    only: Sequence[str] = (),
    redo: bool = False,
    parameters: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Run the numbered notebooks in order, skipping finished stages unless ``redo``.

    Args:
        preset: Preset passed to every notebook.
        run_dir: The run folder (created if needed; made absolute so every notebook sees the
            same folder whatever its working directory).
        notebooks_dir: Folder of ``NN_name.ipynb`` files.
        only: Run only notebooks whose number or name starts with one of these.
        redo: Re-run stages that already finished.
        parameters: Extra papermill parameters for every notebook.
        progress: Show each notebook's inner progress and keep harmless kernel messages in
            ``<run_dir>/logs/`` (see :func:`run_notebook`).

    Returns:
        Wall time in seconds of each stage that ran (name -> seconds).
    """
    run_dir = Path(run_dir).resolve()
    stages = RunFolder(run_dir).stages
    stages.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    expected = expected_times(notebooks_dir, preset)
    for notebook in find_notebooks(notebooks_dir):
        if only and not any(notebook.name.startswith(prefix) for prefix in only):
            continue
        marker = stages / f"{notebook.stem}.json"
        if marker.exists() and not redo:
            print(
                f"[skip] {notebook.name}: finished earlier ({marker}); use --redo to run it again"
            )
            continue
        print(_announce(notebook, preset, expected), flush=True)
        start = time.perf_counter()
        display = Display()
        run_notebook(
            notebook,
            preset=preset,
            run_dir=run_dir,
            parameters=parameters,
            progress=progress,
            display=display,
        )
        timings[notebook.stem] = time.perf_counter() - start
        work = [
            {
                "desc": event["desc"],
                "total": event.get("total"),
                "unit": event.get("unit", "it"),
                "seconds": event["elapsed"],
            }
            for event in display.finished.values()
            if event["elapsed"] >= display.min_seconds
        ]
        marker.write_text(
            json.dumps(
                {
                    "preset": preset,
                    "seconds": timings[notebook.stem],
                    "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "commit": commit(),
                    "work": work,
                }
            )
        )
        print(f"[done] {notebook.name} in {format_duration(timings[notebook.stem])}", flush=True)
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    return timings
