"""``view``: browse a run folder's crystals and flow trajectories in 3D (a Dash app).

Also ``python -m flowllm_kit.viewer RUN_DIR``, with the same options (:func:`add_viewer_options`).
"""

from __future__ import annotations

import argparse

from flowllm_kit.cli.common import CommandError, run_folder
from flowllm_kit.cli.flow_commands import MODELS

__all__ = ["COMMANDS", "add_viewer_options", "serve_viewer", "view"]


def add_viewer_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--host``, ``--port``, ``--system`` and ``--debug`` to a parser."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to serve on (%(default)s)")
    parser.add_argument("--port", type=int, default=8050, help="TCP port (%(default)s)")
    parser.add_argument(
        "--system", choices=MODELS, help="system shown first (default: the first found)"
    )
    parser.add_argument("--debug", action="store_true", help="Dash debug mode")


def serve_viewer(args: argparse.Namespace, run_dir: str) -> None:
    """Serve the viewer of ``run_dir`` with the options of :func:`add_viewer_options`.

    Raises:
        CommandError: If the viewer's packages are missing or the run folder lacks crystals.
    """
    from flowllm_kit.viewer.app import serve
    from flowllm_kit.viewer.data import RunFolderError

    try:
        serve(run_dir, host=args.host, port=args.port, system=args.system, debug=args.debug)
    except RunFolderError as error:
        raise CommandError(str(error)) from None
    except ModuleNotFoundError as error:  # dash or crystal-toolkit, imported by the app
        raise CommandError(
            f"the viewer needs {error.name}: pip install 'flowllm-kit[viewer]'"
        ) from None


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
    serve_viewer(args, args.run_dir_argument or str(run_folder(args)))


COMMANDS = {"view": (view, _options, "browse crystals and trajectories in 3D (Dash)")}
