"""The machine a benchmark ran on, as the lines its results file starts with."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from flowllm_kit.provenance import cpu_model, source_commit


def describe(threads: str = "") -> str:
    """CPU model and cores, torch version (and ``threads``, a note on threads), load average."""
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    note = f"; {threads}" if threads else ""
    return (
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__}{note}\n"
        f"- load average at start (1/5/15 min): {load}"
    )


def commit() -> str:
    """The short hash of the checked-out commit ("unknown" outside a git checkout)."""
    return source_commit() or "unknown"


def data_root() -> Path:
    """The folder of datasets, ``$FLOWLLM_KIT_DATA`` (the one the kit and its tests read);
    exits with a message naming the variable when it is not set."""
    root = os.environ.get("FLOWLLM_KIT_DATA")
    if not root:
        raise SystemExit("set FLOWLLM_KIT_DATA to the folder that holds mp_20/ (see README, Data)")
    return Path(root)
