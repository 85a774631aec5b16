"""Where a result came from: the kit's git commit and this machine's CPU model, as the stage
records, checkpoint manifests and expected stage times write them."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from pathlib import Path

__all__ = ["cpu_model", "source_commit"]


def source_commit() -> str | None:
    """The short commit of the checkout the kit runs from; None outside a git checkout or
    without git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).parent,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows of it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"
