"""The command line: each stage of the notebook series as one command on a run folder.

Usage::

    python -m flowllm_kit generate   --formula LiFePO4 -n 8 --out out/   (the shipped checkpoint)

    python -m flowllm_kit train-llm  --preset smoke --run-dir runs/smoke
    python -m flowllm_kit sample-llm --preset smoke --run-dir runs/smoke --num-samples 16
    python -m flowllm_kit pairs      --preset smoke --run-dir runs/smoke
    python -m flowllm_kit train-flow --preset smoke --run-dir runs/smoke --max-steps 200
    python -m flowllm_kit sample     --preset smoke --run-dir runs/smoke --num-steps 50
    python -m flowllm_kit evaluate   --preset smoke --run-dir runs/smoke
    python -m flowllm_kit recipe     --preset kit   --run-dir runs/kit   (every training stage)
    python -m flowllm_kit submit-array sample-llm --preset paper --tasks 64   (then merge-array)
    python -m flowllm_kit view       runs/smoke --port 8050
    python -m flowllm_kit presets    show demo

Every command calls the same stage functions as notebooks 03-07 (:mod:`flowllm_kit.stages`),
with the same presets, and reads and writes the same run folder (``runs/<preset>`` unless
``--run-dir`` is given).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowllm_kit.cli import (
    array_command,
    evaluate_command,
    flow_commands,
    generate_command,
    llm_commands,
    presets_command,
    recipe_command,
    view_command,
)
from flowllm_kit.cli.common import CommandError, add_common_options
from flowllm_kit.crystal.store import CrystalFileError
from flowllm_kit.run import RunFolderError

__all__ = ["CommandError", "build_parser", "main"]

_MODULES = (
    generate_command,
    llm_commands,
    flow_commands,
    evaluate_command,
    recipe_command,
    array_command,
    view_command,
    presets_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m flowllm_kit`` parser with one subcommand per stage."""
    parser = argparse.ArgumentParser(
        prog="python -m flowllm_kit",
        description=__doc__.split("\n\n")[0],
        epilog="Run `python -m flowllm_kit COMMAND --help` for the options of a command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _MODULES:
        for name, (handler, add_options, help_text) in module.COMMANDS.items():
            sub = commands.add_parser(
                name,
                help=help_text,
                description=handler.__doc__.splitlines()[0],
            )
            add_common_options(sub)
            add_options(sub)
            sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command and return an exit code.

    A missing input or a bad option prints ``error: ...`` to stderr and returns 2.
    """
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (CommandError, RunFolderError, CrystalFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
