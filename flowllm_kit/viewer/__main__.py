"""``python -m flowllm_kit.viewer RUN_DIR``: serve the trajectory viewer of a run folder.

The same as ``python -m flowllm_kit view RUN_DIR``; ``--help`` lists the options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowllm_kit.viewer.options import ViewerError, add_viewer_options, serve_viewer

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m flowllm_kit.viewer`` parser."""
    parser = argparse.ArgumentParser(
        prog="python -m flowllm_kit.viewer",
        description="Browse a run folder's crystals in 3D along their flow trajectories, with "
        "the LLM text they came from and their evaluation (a Dash app).",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder (e.g. runs/smoke)")
    add_viewer_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and serve until interrupted.

    A missing run folder or package prints ``error: ...`` to stderr and returns 2.
    """
    args = build_parser().parse_args(argv)
    try:
        serve_viewer(args, args.run_dir)
    except ViewerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
