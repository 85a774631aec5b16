"""Options and helpers shared by every command: preset, run folder, seed, threads."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flowllm_kit.distributed import init_world
from flowllm_kit.presets import PRESET_NAMES, configure_threads
from flowllm_kit.run import RunFolder

__all__ = [
    "PRESETS",
    "CommandError",
    "add_common_options",
    "add_sharded_option",
    "require",
    "run_folder",
    "setup",
]

PRESETS = PRESET_NAMES


class CommandError(Exception):
    """A command cannot run (a missing input, an option out of range); the message says why."""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset``, ``--run-dir``, ``--seed`` and ``--threads`` to a subcommand."""
    group = parser.add_argument_group("common options")
    group.add_argument("--preset", choices=PRESETS, default="demo", help="settings preset")
    group.add_argument("--run-dir", default=None, help="run folder (default: runs/<preset>)")
    group.add_argument("--seed", type=int, default=0, help="random seed of the stage")
    group.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the preset's; smoke 1, else torch's default)",
    )


def run_folder(args: argparse.Namespace) -> RunFolder:
    """The run folder of ``args``: ``--run-dir`` or ``runs/<preset>``."""
    return RunFolder(args.run_dir or f"runs/{args.preset}")


def setup(args: argparse.Namespace) -> RunFolder:
    """Join the launcher's processes (when one started several: ``accelerate launch``,
    ``torchrun``), set torch's thread count as the notebooks do and return the run folder.
    Only rank 0 prints its summary lines."""

    world = init_world()
    if not world.is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    if args.threads is not None and args.threads < 1:
        raise CommandError(f"--threads must be positive, got {args.threads}")
    configure_threads(args.preset, args.threads)
    return run_folder(args)


def add_sharded_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--sharded`` to a sampling command."""
    parser.add_argument(
        "--sharded",
        action="store_true",
        help="draw in the fixed blocks of a multi-process run even in one process, so it gives "
        "the crystals any number of processes gives (on by itself under a launcher)",
    )


def require(path: Path, what: str, command: str, args: argparse.Namespace) -> Path:
    """``path`` if it exists, else a :class:`CommandError` naming it and the command to run.

    Args:
        path: The input file or folder.
        what: What it is, for the message (e.g. ``"model"``).
        command: The command that writes it (e.g. ``"train-llm"``).
        args: The parsed options (for the preset and run folder in the suggested command).
    """
    if not path.exists():
        suggestion = f"python -m flowllm_kit {command} --preset {args.preset}"
        suggestion += f" --run-dir {run_folder(args)}"
        raise CommandError(f"no {what} at {path}: run `{suggestion}` first")
    return path
