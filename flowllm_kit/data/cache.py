"""The parsed-dataset cache: one crystal file per CSV (:mod:`flowllm_kit.crystal.store`: flat
arrays plus JSON metadata in one ``.npz``, no pickle).

Parsing a 45k-row CSV takes minutes; reading its arrays back takes about a second. An entry is
named after the SHA-256 of the CSV's bytes and :data:`PARSER_VERSION`, so an edited file or a
changed parser never hits a stale entry, and the same file found under two paths shares one.
Its metadata records the parser's settings and the pymatgen version that parsed it; an entry
written under others is a miss.
The file is written to a temporary name and renamed, so a reader sees a whole entry or none;
an unreadable or inconsistent entry counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowllm_kit.crystal.store import (
    CrystalFileError,
    PackedCrystals,
    read_crystal_file,
    write_crystal_file,
)
from flowllm_kit.data.parse import MIN_DISTANCE, MIN_VOLUME_PER_ATOM

__all__ = [
    "PARSER_VERSION",
    "ParsedDataset",
    "entry_path",
    "file_sha256",
    "pymatgen_version",
    "read_parsed",
    "write_parsed",
]

PARSER_VERSION = 1
"""Bump whenever parsing, reduction, checks or properties change what a CSV turns into."""

_KIND = "parsed dataset"  # the kind of its crystal file


@dataclass(frozen=True)
class ParsedDataset:
    """The crystals of one CSV as flat arrays (``M`` crystals, ``N`` atoms in total).

    Attributes:
        atomic_numbers: ``(N,)`` int16.
        frac_coords: ``(N, 3)`` float64.
        lengths: ``(M, 3)`` float64, Å.
        angles: ``(M, 3)`` float64, degrees.
        num_atoms: ``(M,)`` int64 atoms per crystal.
        rows: ``(M,)`` int64, the CSV data row (0-based) each crystal came from.
        ids: ``M`` ids (``None`` where absent).
        properties: ``M`` property dicts.
        skipped: ``(row, id, reason)`` for every row that was rejected.
        num_rows: Data rows in the CSV.
    """

    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    num_atoms: np.ndarray
    rows: np.ndarray
    ids: list[str | None]
    properties: list[dict[str, Any]]
    skipped: list[tuple[int, str | None, str]]
    num_rows: int


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def pymatgen_version() -> str:
    """The version of the distribution that provides ``pymatgen.core`` (CIF parsing and Niggli
    reduction live there), read from package metadata without importing pymatgen."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("pymatgen-core", "pymatgen"):  # pymatgen-core split off in 2026
        try:
            return f"{distribution} {version(distribution)}"
        except PackageNotFoundError:
            continue
    return "unknown"


def _settings() -> dict[str, Any]:
    # An entry written under other settings, or by another pymatgen (whose CIF parser and
    # Niggli reduction make the arrays), is a miss and is rewritten.
    return {
        "parser_version": PARSER_VERSION,
        "min_distance": MIN_DISTANCE,
        "min_volume_per_atom": MIN_VOLUME_PER_ATOM,
        "pymatgen": pymatgen_version(),
    }


def entry_path(folder: str | Path, csv_sha256: str) -> Path:
    """Where the entry for a CSV with this hash lives."""
    return Path(folder) / f"{csv_sha256}-v{PARSER_VERSION}.npz"


def write_parsed(path: str | Path, dataset: ParsedDataset, *, csv_sha256: str) -> Path:
    """Write an entry as a crystal file (:mod:`flowllm_kit.crystal.store`), atomically."""
    crystals = PackedCrystals(
        atomic_numbers=dataset.atomic_numbers,
        frac_coords=dataset.frac_coords,
        lengths=dataset.lengths,
        angles=dataset.angles,
        num_atoms=dataset.num_atoms,
    )
    meta = {
        **_settings(),
        "csv_sha256": csv_sha256,
        "num_rows": dataset.num_rows,
        "ids": dataset.ids,
        "properties": dataset.properties,
        "skipped": [list(entry) for entry in dataset.skipped],
    }
    return write_crystal_file(
        path, _KIND, {"crystals": crystals}, arrays={"rows": dataset.rows}, meta=meta
    )


def read_parsed(path: str | Path, *, csv_sha256: str) -> ParsedDataset | None:
    """Read an entry; ``None`` if it is missing, unreadable, or made for other settings."""
    try:
        stored = read_crystal_file(path, _KIND)
    except (FileNotFoundError, CrystalFileError):
        return None
    meta = stored.meta
    if meta.get("csv_sha256") != csv_sha256:
        return None
    if any(meta.get(key) != value for key, value in _settings().items()):
        return None
    try:
        crystals = stored.batches["crystals"]
        dataset = ParsedDataset(
            atomic_numbers=crystals.atomic_numbers,
            frac_coords=crystals.frac_coords,
            lengths=crystals.lengths,
            angles=crystals.angles,
            num_atoms=crystals.num_atoms,
            rows=stored.arrays["rows"],
            ids=list(meta["ids"]),
            properties=list(meta["properties"]),
            skipped=[(int(row), id_, str(reason)) for row, id_, reason in meta["skipped"]],
            num_rows=int(meta["num_rows"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return dataset if _consistent(dataset) else None


def _consistent(dataset: ParsedDataset) -> bool:
    crystals = len(dataset.num_atoms)
    atoms = int(dataset.num_atoms.sum()) if crystals else 0
    return (
        dataset.atomic_numbers.shape == (atoms,)
        and dataset.frac_coords.shape == (atoms, 3)
        and dataset.lengths.shape == (crystals, 3)
        and dataset.angles.shape == (crystals, 3)
        and dataset.rows.shape == (crystals,)
        and len(dataset.ids) == crystals
        and len(dataset.properties) == crystals
        and crystals + len(dataset.skipped) == dataset.num_rows
    )
