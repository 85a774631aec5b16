"""``python -m flowllm_kit``: the command line (see :mod:`flowllm_kit.cli`)."""

from __future__ import annotations

import sys

from flowllm_kit.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
