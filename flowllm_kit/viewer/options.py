"""The viewer's command-line options and the call that serves it, shared by
``python -m flowllm_kit.viewer`` and ``python -m flowllm_kit view``."""

from __future__ import annotations

import argparse

from flowllm_kit.run import RunFolderError
from flowllm_kit.viewer.data import SYSTEMS

__all__ = ["ViewerError", "add_viewer_options", "serve_viewer"]


class ViewerError(RuntimeError):
    """The viewer cannot start; the message says why (a run folder without crystals, a missing
    package)."""


def add_viewer_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--host``, ``--port``, ``--system`` and ``--debug`` to a parser."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to serve on (%(default)s)")
    parser.add_argument("--port", type=int, default=8050, help="TCP port (%(default)s)")
    parser.add_argument(
        "--system", choices=SYSTEMS, help="system shown first (default: the first found)"
    )
    parser.add_argument("--debug", action="store_true", help="Dash debug mode")


def serve_viewer(args: argparse.Namespace, run_dir: str) -> None:
    """Serve the viewer of ``run_dir`` with the options of :func:`add_viewer_options`.

    Raises:
        ViewerError: If the viewer's packages are missing or the run folder lacks crystals.
    """
    try:
        from flowllm_kit.viewer.app import serve  # dash and crystal-toolkit, the viewer extra

        serve(run_dir, host=args.host, port=args.port, system=args.system, debug=args.debug)
    except RunFolderError as error:
        raise ViewerError(str(error)) from None
    except ModuleNotFoundError as error:
        raise ViewerError(
            f"the viewer needs {error.name}: pip install 'flowllm-kit[viewer]'"
        ) from None
