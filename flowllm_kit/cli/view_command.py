"""``view``: browse a run folder's crystals and flow trajectories in 3D (a Dash app).

Also ``python -m flowllm_kit.viewer RUN_DIR``, with the same options
(:func:`flowllm_kit.viewer.options.add_viewer_options`).
"""

from __future__ import annotations

import argparse

from flowllm_kit.cli.common import CommandError, run_folder
from flowllm_kit.viewer.options import ViewerError, add_viewer_options, serve_viewer

__all__ = ["COMMANDS", "view"]


def _options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``view`` to its subparser."""
    parser.add_argument(
        "run_dir_argument",
        nargs="?",
        metavar="RUN_DIR",
        help="run folder (default: --run-dir, else runs/<preset>)",
    )
    add_viewer_options(parser)


def view(args: argparse.Namespace) -> None:
    """Serve a Dash viewer of the run's crystals, trajectories, LLM texts and evaluations."""
    try:
        serve_viewer(args, args.run_dir_argument or str(run_folder(args)))
    except ViewerError as error:
        raise CommandError(str(error)) from None


COMMANDS = {"view": (view, _options, "browse crystals and trajectories in 3D (Dash)")}
