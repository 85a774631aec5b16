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

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flowllm_kit.progress import PROGRESS_ENV, Display, Relay, format_duration
from flowllm_kit.run import RunFolder

__all__ = [
    "HARMLESS_MESSAGES",
    "expected_times",
    "find_notebooks",
    "notebook_title",
    "record_times",
    "run_notebook",
    "run_series",
    "stage_times",
    "summary",
]

STAGE_TIMES_FILE = "stage_times.json"

# Lines a notebook's kernel writes to the terminal that tell the user nothing they can act on.
# They still go to <run_dir>/logs/<notebook>.log.
HARMLESS_MESSAGES: tuple[re.Pattern[str], ...] = (
    # ipykernel 7 on jupyter_client's default TCP transport (the kernel listens on loopback).
    re.compile(r"Kernel is running over TCP without encryption"),
    re.compile(r"Use IPC transport or launch with kernel manager-provisioned CurveZMQ keys"),
)

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
        _environment(PROGRESS_ENV, str(events.resolve())),
        _filtered_stderr(logs / f"{notebook.stem}.log"),
        Relay(events, display),
    ):
        execute()
    return output


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Set an environment variable (which the kernel started inside inherits), then restore."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextlib.contextmanager
def _filtered_stderr(log: Path) -> Iterator[None]:
    """Route file descriptor 2 (this process's and the kernel's, which inherits it) through a
    pipe: every line is appended to ``log``, and those matching no ``HARMLESS_MESSAGES`` pattern
    are passed on to the real standard error.

    The kernel is a child process whose messages are written straight to the inherited
    descriptor, so a Python-level ``warnings`` filter or logging handler here cannot reach them.
    """
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as pipe, log.open("ab") as sink:
            for line in pipe:
                sink.write(line)
                sink.flush()
                text = line.decode("utf-8", "replace")
                if not any(pattern.search(text) for pattern in HARMLESS_MESSAGES):
                    os.write(terminal, line)

    thread = threading.Thread(target=pump, daemon=True, name="flowllm-kit-stderr")
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # closes our copy of the pipe's write end
        # The pipe ends when the kernel (which holds the other copy) has exited; a process it
        # left behind could hold it longer, so do not wait for ever.
        thread.join(timeout=10)
        if not thread.is_alive():
            os.close(terminal)


def notebook_title(notebook: str | Path) -> str:
    """The notebook's title: its first markdown heading without the ``# NN ·`` prefix."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", []))
            first = source.strip().splitlines()[0] if source.strip() else ""
            return re.sub(r"^#+\s*(\d+\s*·\s*)?", "", first).strip()
    return Path(notebook).stem


def expected_times(notebooks_dir: str | Path, preset: str) -> dict[str, Any]:
    """The measured stage times of ``preset`` from ``stage_times.json`` beside the notebooks:
    ``{"measured": "<where and when>", "stages": {notebook stem: {"seconds": s, "work": [...]}}}``
    (empty when the file or the preset is missing)."""
    path = Path(notebooks_dir) / STAGE_TIMES_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get(preset, {})


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
                    "commit": _commit(),
                    "work": work,
                }
            )
        )
        print(f"[done] {notebook.name} in {format_duration(timings[notebook.stem])}", flush=True)
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    return timings


def stage_times(run_dir: str | Path) -> dict[str, float]:
    """Wall time in seconds of every finished stage of a run folder, from its stage markers
    (including stages finished by earlier invocations), in series order."""
    markers = sorted(RunFolder(run_dir).stages.glob("*.json"))
    return {marker.stem: float(json.loads(marker.read_text())["seconds"]) for marker in markers}


def _machine() -> str:
    """CPU model and core count of this machine, e.g. ``Intel(R) Xeon(R) ..., 2 cores``."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def _commit() -> str:
    """The repository's short commit, or ``unknown`` outside a git checkout."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True, cwd=Path(__file__).parent,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return found.stdout.strip()


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
    commit = ", ".join(sorted(commits))  # the commit(s) the stages ran at
    measured = f"measured {when} on {_machine()} at commit {commit}"
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
    run.add_argument(
        "--plain",
        action="store_true",
        help="papermill's cell counter and every kernel message instead of the inner progress",
    )
    listing = commands.add_parser("list", help="list the notebook series")
    listing.add_argument("--notebooks-dir", default="notebooks")
    record = commands.add_parser(
        "record-times",
        help="store a finished run's stage times as the expected times the runner prints",
    )
    record.add_argument("run_dir")
    record.add_argument("--preset", required=True, choices=["smoke", "demo", "paper"])
    record.add_argument("--notebooks-dir", default="notebooks")
    record.add_argument("--note", default="", help="how the run was made (printed with it)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for notebook in find_notebooks(args.notebooks_dir):
            print(notebook.name)
        return 0
    if args.command == "record-times":
        path = record_times(
            args.run_dir, preset=args.preset, notebooks_dir=args.notebooks_dir, note=args.note
        )
        print(f"wrote the {args.preset} stage times of {args.run_dir} to {path}")
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
        progress=not args.plain,
    )
    print(summary(args.run_dir or f"runs/{args.preset}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
