"""Find a dataset's CSV on disk, or download a registered one into the cache.

A missing file is a :class:`FileNotFoundError` whose message lists every path tried, what
happened to the download, and the environment variable to set.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowllm_kit.data.download import DownloadError, DownloadMismatchError, download_file
from flowllm_kit.data.paths import CACHE_ENV, DATA_ENV, URL_ENV, cache_dir, candidate_paths
from flowllm_kit.data.registry import DATASETS, Source, get_dataset

__all__ = ["fetch_dataset", "locate_csv"]


def fetch_dataset(
    name: str,
    split: str,
    *,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download one split of a registered dataset into the cache, unless it is there already.

    Sources are tried in order: the mirror (``base_url``, else ``$FLOWLLM_KIT_DATA_URL``, if
    set; serving ``<url>/<name>/<split>.csv`` and held to the canonical source's size and hash),
    then the registered sources. A source that cannot be reached is skipped; a file that
    arrives with the wrong size or hash stops the search with an error.

    Args:
        name: A registered dataset, e.g. ``"mp_20"``.
        split: One of its splits.
        base_url: Mirror to try first.
        progress: Show a download progress bar.
        timeout: Seconds to wait for a server on each read.

    Returns:
        Path of the CSV in the cache folder.

    Raises:
        KeyError: If ``name`` is not registered or has no such split.
        DownloadMismatchError: If a downloaded file fails its size or hash check.
        DownloadError: If no source could be reached.
    """
    spec = get_dataset(name)
    if spec is None:
        raise KeyError(f"{name!r} is not a registered dataset; registered: {sorted(DATASETS)}")
    if split not in spec.splits:
        raise KeyError(f"dataset {name!r} has splits {list(spec.splits)}, not {split!r}")
    destination = cache_dir() / name / f"{split}.csv"
    if destination.is_file():
        return destination
    sources = list(spec.sources)
    mirror = base_url or os.environ.get(URL_ENV)
    if mirror:
        canonical = sources[0].checks if sources else {}
        sources.insert(0, Source(f"{mirror.rstrip('/')}/{name}", canonical))
    failures: list[str] = []
    for source in sources:
        url = source.url(split)
        try:
            return download_file(
                url, destination, expected=source.check(split), timeout=timeout, progress=progress
            )
        except DownloadMismatchError as error:
            raise DownloadMismatchError(
                f"{error}. If the source changed on purpose, download {name}/{split}.csv "
                f"yourself into a folder named by ${DATA_ENV}"
            ) from error
        except DownloadError as error:
            failures.append(str(error))
    tried = "; ".join(failures) or "no download source is registered"
    raise DownloadError(f"no source could be reached for {name}/{split}.csv: {tried}")


def locate_csv(
    name: str | os.PathLike[str],
    split: str,
    root: str | Path | None = None,
    *,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """The CSV for ``name``/``split``: found on disk, else downloaded if ``name`` is registered.

    Args:
        name: Dataset name, folder of ``<split>.csv`` files, or CSV path (see
            :mod:`flowllm_kit.data.paths` for the look-up order).
        split: Split name.
        root: Explicit data root, searched first.
        download: Download a registered dataset that is not found.
        progress: Show a download progress bar.

    Raises:
        FileNotFoundError: If the file is nowhere and cannot be downloaded; the message names
            every place looked and the variable ``FLOWLLM_KIT_DATA``.
        DownloadMismatchError: If a download arrived with the wrong size or hash.
    """
    candidates = candidate_paths(name, split, root)
    for path in candidates:
        if path.is_file():
            return path
    spec = get_dataset(name) if isinstance(name, str) else None
    if spec is None:
        download_note = f"{str(name)!r} is not a registered dataset ({', '.join(sorted(DATASETS))})"
    elif split not in spec.splits:
        download_note = f"{name!r} has splits {list(spec.splits)}, not {split!r}"
    elif not download:
        download_note = "downloading was turned off (download=False)"
    else:
        try:
            return fetch_dataset(spec.name, split, progress=progress)
        except DownloadMismatchError:
            raise
        except DownloadError as error:
            download_note = f"the download failed: {error}"
    looked = "\n".join(f"  - {path}" for path in candidates)
    raise FileNotFoundError(
        f"dataset {str(name)!r}, split {split!r}: no CSV found. Looked in:\n{looked}\n"
        f"Not downloaded: {download_note}.\n"
        f"Set {DATA_ENV} to a folder holding <name>/<split>.csv (e.g. "
        f"export {DATA_ENV}=/path/to/data), pass root=..., or set {CACHE_ENV} / {URL_ENV} "
        "to use another cache folder or download mirror."
    )
