"""Run the numbered notebook series with papermill, stage by stage, into a run folder.

Usage::

    python -m flowllm_kit.notebooks run --preset demo --run-dir runs/demo
    python -m flowllm_kit.notebooks run --preset smoke --run-dir runs/smoke --only 01 --redo
    python -m flowllm_kit.notebooks list

Each notebook receives the papermill parameters ``preset`` and ``run_dir`` (plus any
``-p name value`` given). The executed copy is written to ``<run_dir>/notebooks/``; a finished
stage leaves ``<run_dir>/stages/<notebook>.json`` and is skipped on the next run unless
``--redo`` is given, so an interrupted series resumes at the stage that did not finish.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["find_notebooks", "run_notebook", "run_series", "stage_times", "summary"]

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
) -> Path:
    """Execute one notebook with papermill; returns the executed copy's path.

    Args:
        notebook: The ``.ipynb`` to run.
        preset: Passed as the ``preset`` parameter (``smoke``, ``demo`` or ``paper``).
        run_dir: Passed as the ``run_dir`` parameter; stages read and write their artifacts there.
        parameters: Further papermill parameters.
        output_dir: Where the executed copy goes (default ``<run_dir>/notebooks``).
        progress: Show papermill's cell progress bar.
    """
    import papermill

    notebook = Path(notebook)
    run_dir = Path(run_dir)
    output_dir = Path(output_dir) if output_dir is not None else run_dir / "notebooks"
    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / notebook.name
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters={"preset": preset, "run_dir": str(run_dir), **(parameters or {})},
        cwd=str(notebook.parent),
        progress_bar=progress,
        kernel_name="python3",
    )
    return output


def run_series(
    *,
    preset: str,
    run_dir: str | Path,
    notebooks_dir: str | Path = "notebooks",
    only: Sequence[str] = (),
    redo: bool = False,
    parameters: dict[str, Any] | None = None,
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

    Returns:
        Wall time in seconds of each stage that ran (name -> seconds).
    """
    run_dir = Path(run_dir).resolve()
    stages = run_dir / "stages"
    stages.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for notebook in find_notebooks(notebooks_dir):
        if only and not any(notebook.name.startswith(prefix) for prefix in only):
            continue
        marker = stages / f"{notebook.stem}.json"
        if marker.exists() and not redo:
            print(
                f"[skip] {notebook.name}: finished earlier ({marker}); use --redo to run it again"
            )
            continue
        print(f"[run ] {notebook.name} (preset {preset})", flush=True)
        start = time.perf_counter()
        run_notebook(notebook, preset=preset, run_dir=run_dir, parameters=parameters)
        timings[notebook.stem] = time.perf_counter() - start
        marker.write_text(
            json.dumps(
                {
                    "preset": preset,
                    "seconds": timings[notebook.stem],
                    "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                }
            )
        )
        print(f"[done] {notebook.name} in {timings[notebook.stem]:.1f} s", flush=True)
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    return timings


def stage_times(run_dir: str | Path) -> dict[str, float]:
    """Wall time in seconds of every finished stage of a run folder, from its stage markers
    (including stages finished by earlier invocations), in series order."""
    markers = sorted((Path(run_dir) / "stages").glob("*.json"))
    return {marker.stem: float(json.loads(marker.read_text())["seconds"]) for marker in markers}


def summary(run_dir: str | Path) -> str:
    """What a finished series leaves to read: each stage's wall time and their total, then the
    run's metrics table (``evaluation/metrics.csv``, written by notebook 07) when it exists."""
    run_dir = Path(run_dir)
    times = stage_times(run_dir)
    lines = [f"Stages of {run_dir} (wall time):"]
    lines += [f"  {stage:36s} {seconds / 60:6.1f} min" for stage, seconds in times.items()]
    lines.append(f"  {'total':36s} {sum(times.values()) / 60:6.1f} min")
    metrics = run_dir / "evaluation" / "metrics.csv"
    if metrics.exists():
        import pandas as pd

        table = pd.read_csv(metrics, index_col=0).T.round(3)  # one column per system
        shown = table.astype(object).where(table.notna(), "n/c")
        with pd.option_context("display.width", 250, "display.max_columns", None):
            lines += ["", f"Metrics ({metrics}; n/c: not computable):", shown.to_string()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowllm_kit.notebooks", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the notebook series")
    run.add_argument("--preset", choices=["smoke", "demo", "paper"], default="demo")
    run.add_argument("--run-dir", default=None, help="run folder (default runs/<preset>)")
    run.add_argument("--notebooks-dir", default="notebooks")
    run.add_argument("--only", nargs="*", default=[], help="notebook numbers or names to run")
    run.add_argument("--redo", action="store_true", help="re-run stages that already finished")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="extra papermill parameter (value parsed as JSON when possible)",
    )
    listing = commands.add_parser("list", help="list the notebook series")
    listing.add_argument("--notebooks-dir", default="notebooks")
    args = parser.parse_args(argv)
    if args.command == "list":
        for notebook in find_notebooks(args.notebooks_dir):
            print(notebook.name)
        return 0
    parameters = {}
    for name, value in args.parameter:
        try:
            parameters[name] = json.loads(value)
        except json.JSONDecodeError:
            parameters[name] = value
    run_series(
        preset=args.preset,
        run_dir=args.run_dir or f"runs/{args.preset}",
        notebooks_dir=args.notebooks_dir,
        only=args.only,
        redo=args.redo,
        parameters=parameters,
    )
    print(summary(args.run_dir or f"runs/{args.preset}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
