"""What the series runner does around a notebook's kernel: an environment variable the kernel
inherits, and the kernel's messages kept in a log with only the ones worth reading passed on to
the terminal."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["HARMLESS_MESSAGES", "environment", "filtered_stderr"]

# Lines a notebook's kernel writes to the terminal that tell the user nothing they can act on.
# They still go to <run_dir>/logs/<notebook>.log.
HARMLESS_MESSAGES: tuple[re.Pattern[str], ...] = (
    # ipykernel 7 on jupyter_client's default TCP transport (the kernel listens on loopback).
    re.compile(r"Kernel is running over TCP without encryption"),
    re.compile(r"Use IPC transport or launch with kernel manager-provisioned CurveZMQ keys"),
)


@contextlib.contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """Set an environment variable (which the kernel started inside inherits), then restore."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextlib.contextmanager
def filtered_stderr(log: Path) -> Iterator[None]:
    """Route file descriptor 2 (this process's and the kernel's, which inherits it) through a
    pipe: every line is appended to ``log``, and those matching no ``HARMLESS_MESSAGES`` pattern
    are passed on to the real standard error.

    The kernel is a child process whose messages are written straight to the inherited
    descriptor, so a Python-level ``warnings`` filter or logging handler here cannot reach them.
    """
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as pipe, log.open("ab") as sink:
            for line in pipe:
                sink.write(line)
                sink.flush()
                text = line.decode("utf-8", "replace")
                if not any(pattern.search(text) for pattern in HARMLESS_MESSAGES):
                    os.write(terminal, line)

    thread = threading.Thread(target=pump, daemon=True, name="flowllm-kit-stderr")
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # closes our copy of the pipe's write end
        # The pipe ends when the kernel (which holds the other copy) has exited; a process it
        # left behind could hold it longer, so do not wait for ever.
        thread.join(timeout=10)
        if not thread.is_alive():
            os.close(terminal)
