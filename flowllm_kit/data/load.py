"""``load_dataset``: a benchmark split as a list of Niggli-reduced :class:`Crystal` objects.

Steps: find the CSV (or download it), hash it, return the parsed-dataset cache entry if there
is one, else read the table, parse every CIF on all cores, skip and report bad rows, and write
the cache entry.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowllm_kit.crystal import Crystal
from flowllm_kit.data.cache import (
    ParsedDataset,
    entry_path,
    file_sha256,
    read_parsed,
    write_parsed,
)
from flowllm_kit.data.fetch import locate_csv
from flowllm_kit.data.parse import ParsedCif, Rejected, parse_cifs
from flowllm_kit.data.paths import parsed_cache_dir
from flowllm_kit.data.table import read_table

__all__ = ["LoadResult", "SkippedRow", "SkippedRowsWarning", "load_dataset", "load_dataset_report"]

_EXAMPLES_IN_WARNING = 3


class SkippedRowsWarning(UserWarning):
    """Some CSV rows did not give a usable crystal and were left out."""


@dataclass(frozen=True)
class SkippedRow:
    """A CSV row left out of a dataset.

    Attributes:
        row: 0-based data row in the CSV (header not counted).
        id: Its ``material_id``, if any.
        reason: Why, in one line (unparsable CIF, tiny volume, overlapping atoms, ...).
    """

    row: int
    id: str | None
    reason: str


@dataclass(frozen=True)
class LoadResult:
    """A loaded split and how it was loaded.

    Attributes:
        crystals: The crystals, in CSV row order, bad rows left out.
        source: The CSV file read.
        sha256: SHA-256 of that file (the cache key).
        num_rows: Data rows in the CSV.
        skipped: Rows left out, with reasons.
        from_cache: Whether the crystals came from the parsed-dataset cache.
        seconds: Wall time of the load.
    """

    crystals: list[Crystal] = field(repr=False)
    source: Path
    sha256: str
    num_rows: int
    skipped: tuple[SkippedRow, ...]
    from_cache: bool
    seconds: float


def load_dataset(
    name: str | os.PathLike[str],
    split: str,
    root: str | Path | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    use_cache: bool = True,
    download: bool = True,
) -> list[Crystal]:
    """Load one split of a crystal dataset as Niggli-reduced crystals.

    Example::

        >>> crystals = load_dataset("mp_20", "val")        # 9,047 crystals
        >>> crystals[0].id, crystals[0].properties["formation_energy_per_atom"]

    Args:
        name: A registered dataset (``"mp_20"``, ``"mpts_52"``, ``"perov_5"``,
            ``"carbon_24"``), any folder name under a data root (``"mp_20_subset"``), or a
            path to a folder of ``<split>.csv`` files or to one CSV file.
        split: ``"train"``, ``"val"`` or ``"test"`` (any ``<split>.csv`` for folders; not
            used when ``name`` is a CSV file).
        root: Data root searched first; then ``$FLOWLLM_KIT_DATA``, then the kit's cache
            folder (``$FLOWLLM_KIT_CACHE``, default ``~/.cache/flowllm_kit``).
        workers: Processes parsing CIFs; ``None`` uses every available core.
        progress: Show progress bars.
        use_cache: Read and write the parsed-dataset cache (keyed by the CSV's SHA-256).
        download: Download a registered dataset that is not found on disk.

    Returns:
        The crystals in CSV order, with ``id`` set from ``material_id`` and scalar properties
        (e.g. ``formation_energy_per_atom``, ``band_gap``, ``e_above_hull``, ``spacegroup``,
        ``formula`` for MP-20). Rows that give no usable crystal are skipped with one
        :class:`SkippedRowsWarning`; :func:`load_dataset_report` lists them.

    Raises:
        FileNotFoundError: If the CSV is nowhere and cannot be downloaded; the message lists
            every place looked and the variable ``FLOWLLM_KIT_DATA`` to set.
        DownloadMismatchError: If a download arrived with the wrong size or hash.
    """
    return _load(name, split, root, workers, progress, use_cache, download, stacklevel=3).crystals


def load_dataset_report(
    name: str | os.PathLike[str],
    split: str,
    root: str | Path | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    use_cache: bool = True,
    download: bool = True,
) -> LoadResult:
    """Like :func:`load_dataset`, but also says where the data came from and what was skipped.

    Takes the same arguments as :func:`load_dataset`.
    """
    return _load(name, split, root, workers, progress, use_cache, download, stacklevel=3)


def _load(
    name: str | os.PathLike[str],
    split: str,
    root: str | Path | None,
    workers: int | None,
    progress: bool,
    use_cache: bool,
    download: bool,
    *,
    stacklevel: int,
) -> LoadResult:
    start = time.perf_counter()
    source = locate_csv(name, split, root, download=download, progress=progress)
    sha256 = file_sha256(source)
    entry = entry_path(parsed_cache_dir(), sha256)
    parsed = read_parsed(entry, csv_sha256=sha256) if use_cache else None
    from_cache = parsed is not None
    if parsed is None:
        parsed = _parse(source, workers=workers, progress=progress)
        if use_cache:
            try:
                write_parsed(entry, parsed, csv_sha256=sha256)
            except OSError as error:  # a read-only home must not stop a load
                warnings.warn(f"could not cache {source}: {error}", stacklevel=stacklevel)
    skipped = tuple(SkippedRow(row, id_, reason) for row, id_, reason in parsed.skipped)
    if skipped:
        warnings.warn(
            _skipped_message(source, skipped, parsed.num_rows),
            SkippedRowsWarning,
            stacklevel=stacklevel,
        )
    return LoadResult(
        crystals=_to_crystals(parsed),
        source=source,
        sha256=sha256,
        num_rows=parsed.num_rows,
        skipped=skipped,
        from_cache=from_cache,
        seconds=time.perf_counter() - start,
    )


def _parse(source: Path, *, workers: int | None, progress: bool) -> ParsedDataset:
    """Read and parse a CSV into flat arrays, recording rejected rows."""
    table = read_table(source)
    label = f"{source.parent.name}/{source.name}"
    results = parse_cifs(table.cifs, workers=workers, progress=progress, desc=f"parse {label}")
    kept = [row for row, result in enumerate(results) if isinstance(result, ParsedCif)]
    good = [result for result in results if isinstance(result, ParsedCif)]
    skipped = [
        (row, table.ids[row], result.reason)
        for row, result in enumerate(results)
        if isinstance(result, Rejected)
    ]
    return ParsedDataset(
        atomic_numbers=np.concatenate([np.zeros(0, np.int16)] + [c.atomic_numbers for c in good]),
        frac_coords=np.concatenate([np.zeros((0, 3))] + [c.frac_coords for c in good]),
        lengths=np.array([c.lengths for c in good], dtype=np.float64).reshape(-1, 3),
        angles=np.array([c.angles for c in good], dtype=np.float64).reshape(-1, 3),
        num_atoms=np.array([len(c.atomic_numbers) for c in good], dtype=np.int64),
        rows=np.array(kept, dtype=np.int64),
        ids=[table.ids[row] for row in kept],
        properties=[table.properties[row] for row in kept],
        skipped=skipped,
        num_rows=len(table),
    )


def _to_crystals(parsed: ParsedDataset) -> list[Crystal]:
    offsets = np.concatenate([[0], np.cumsum(parsed.num_atoms)])
    return [
        Crystal(
            atomic_numbers=parsed.atomic_numbers[offsets[k] : offsets[k + 1]],
            frac_coords=parsed.frac_coords[offsets[k] : offsets[k + 1]],
            lengths=parsed.lengths[k],
            angles=parsed.angles[k],
            id=parsed.ids[k],
            properties=parsed.properties[k],
        )
        for k in range(len(parsed.num_atoms))
    ]


def _skipped_message(source: Path, skipped: tuple[SkippedRow, ...], num_rows: int) -> str:
    examples = "; ".join(
        f"row {entry.row}" + (f" ({entry.id})" if entry.id else "") + f": {entry.reason}"
        for entry in skipped[:_EXAMPLES_IN_WARNING]
    )
    more = " ..." if len(skipped) > _EXAMPLES_IN_WARNING else ""
    return (
        f"{source}: skipped {len(skipped)} of {num_rows} rows that give no usable crystal, "
        f"e.g. {examples}{more} (load_dataset_report(...).skipped lists them all)"
    )
