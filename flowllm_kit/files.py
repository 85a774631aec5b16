"""Write a file so that readers only ever see it complete: into a temporary file in the same
folder, then renamed over the destination; on any error the temporary file is removed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file"]


@contextmanager
def atomic_file(destination: str | Path) -> Iterator[BinaryIO]:
    """Open a binary sink whose contents replace ``destination`` only if the block succeeds.

    Example::

        >>> with atomic_file(cache / "entry.npz") as sink:
        ...     np.savez(sink, values=values)  # a file object, so numpy adds no ".npz"
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    try:
        with os.fdopen(handle, "wb") as sink:
            yield sink
            sink.flush()
            os.fsync(sink.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it owner-only; a cache may be shared
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
