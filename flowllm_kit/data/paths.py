"""Where dataset files are looked for, in order, and the environment variables that steer it.

Look-up order for ``load_dataset(name, split, root)``:

1. ``name`` itself, when it spells a path (contains a slash or ends in ``.csv``): a CSV file,
   or a folder of ``<split>.csv`` files; nothing else is searched then;
2. otherwise, the explicit ``root``;
3. every folder in ``$FLOWLLM_KIT_DATA`` (several may be joined with ``os.pathsep``);
4. the kit's cache folder, ``$FLOWLLM_KIT_CACHE`` or ``$XDG_CACHE_HOME/flowllm_kit`` or
   ``~/.cache/flowllm_kit``, where downloads land.

In each root, ``<root>/<name>/<split>.csv`` is tried, and ``<root>/<split>.csv`` as well when
the root folder is itself called ``name``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "URL_ENV",
    "cache_dir",
    "candidate_paths",
    "data_roots",
    "parsed_cache_dir",
]

DATA_ENV = "FLOWLLM_KIT_DATA"
"""Environment variable naming folder(s) of dataset CSVs, searched after an explicit root."""

CACHE_ENV = "FLOWLLM_KIT_CACHE"
"""Environment variable naming the kit's cache folder (downloads and parsed datasets)."""

URL_ENV = "FLOWLLM_KIT_DATA_URL"
"""Environment variable naming a mirror: ``<url>/<name>/<split>.csv`` is tried first."""


def cache_dir() -> Path:
    """The kit's cache folder (not created here)."""
    if configured := os.environ.get(CACHE_ENV):
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "flowllm_kit"


def parsed_cache_dir() -> Path:
    """Folder of parsed datasets, ``<cache_dir>/parsed``."""
    return cache_dir() / "parsed"


def data_roots(root: str | Path | None = None) -> list[Path]:
    """Folders searched for ``<name>/<split>.csv``, in order: root, $FLOWLLM_KIT_DATA, cache."""
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root).expanduser())
    for entry in os.environ.get(DATA_ENV, "").split(os.pathsep):
        if entry.strip():
            roots.append(Path(entry.strip()).expanduser())
    roots.append(cache_dir())
    unique: list[Path] = []
    for path in roots:
        if path not in unique:
            unique.append(path)
    return unique


def candidate_paths(
    name: str | os.PathLike[str], split: str, root: str | Path | None = None
) -> list[Path]:
    """Every path at which ``name``/``split`` may be stored, in look-up order.

    Args:
        name: A dataset name (``"mp_20"``), or a folder of split CSVs or a CSV file (any
            ``os.PathLike``, or a string with a slash or ending in ``.csv``).
        split: Split name; the file is ``<split>.csv``.
        root: Explicit data root, searched before the environment and the cache.

    Returns:
        Candidate CSV paths (existing or not), without duplicates.
    """
    candidates: list[Path] = []
    if isinstance(name, os.PathLike) or _is_path(name):
        as_path = Path(name).expanduser()
        is_file = as_path.suffix.lower() == ".csv"
        candidates.append(as_path if is_file else as_path / f"{split}.csv")
    else:
        for base in data_roots(root):
            candidates.append(base / str(name) / f"{split}.csv")
            if base.name == name:
                candidates.append(base / f"{split}.csv")
    unique: list[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def _is_path(name: str) -> bool:
    """Whether ``name`` spells a path (``./x``, ``a/b``, ``x.csv``) rather than a dataset name."""
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (
        any(sep in name for sep in separators)
        or name.lower().endswith(".csv")
        or name.startswith("~")
        or name in {".", ".."}
    )
