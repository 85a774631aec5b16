"""``python -m flowllm_kit.notebooks``: run the numbered notebook series (see the package)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from flowllm_kit.notebooks import find_notebooks, record_times, run_series, summary
from flowllm_kit.presets import PRESET_NAMES

__all__ = ["main"]

_DESCRIPTION = "Run the numbered notebook series with papermill, stage by stage, into a run folder."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowllm_kit.notebooks",
        description=_DESCRIPTION,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the notebook series")
    run.add_argument("--preset", choices=PRESET_NAMES, default="demo")
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
    record.add_argument("--preset", required=True, choices=PRESET_NAMES)
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
