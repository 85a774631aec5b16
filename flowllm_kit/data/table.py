"""Read one CDVAE/DiffCSP-style CSV into CIF strings, ids and scalar properties.

Two layouts occur in the wild and both are read: the original CDVAE files start with an
unnamed pandas index column (header ``,material_id,...``), while some copies drop it (header
``material_id,...``). Which columns become properties is decided per column, not per dataset:

- ``cif`` is the structure, ``material_id`` becomes :attr:`Crystal.id` (as a string);
- unnamed index columns and columns holding serialized lists (MP-20's ``elements``) are dropped;
- every other column is kept as a scalar property, with MP-20's ``pretty_formula`` renamed to
  ``formula`` and ``spacegroup.number`` to ``spacegroup`` (so every dataset says ``formula``);
- missing values (empty cells, NaN) are left out of that row's properties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CIF_COLUMN", "ID_COLUMN", "PROPERTY_RENAMES", "Table", "read_table"]

CIF_COLUMN = "cif"
ID_COLUMN = "material_id"
PROPERTY_RENAMES = {"pretty_formula": "formula", "spacegroup.number": "spacegroup"}
"""CSV column -> property key, where the CSV's name is not the kit's."""


@dataclass(frozen=True)
class Table:
    """The rows of one CSV, in file order.

    Attributes:
        cifs: CIF text of each row.
        ids: ``material_id`` of each row as a string (``None`` where the CSV has no ids).
        properties: Scalar properties of each row (``str``, ``int``, ``float`` or ``bool``).
        columns: The CSV's data columns, index column excluded.
        has_index_column: Whether the file starts with an unnamed index column.
    """

    cifs: list[str]
    ids: list[str | None]
    properties: list[dict[str, Any]]
    columns: tuple[str, ...]
    has_index_column: bool

    def __len__(self) -> int:
        return len(self.cifs)


def read_table(path: str | Path) -> Table:
    """Read a CSV with a ``cif`` column, with or without a leading index column.

    Args:
        path: The CSV file.

    Returns:
        Its rows, split into CIFs, ids and properties.

    Raises:
        ValueError: If the file has no ``cif`` column.
    """
    header = pd.read_csv(path, nrows=0).columns
    unnamed = [name for name in header if str(name).startswith("Unnamed:")]
    has_index_column = bool(header.size) and header[0] in unnamed
    if CIF_COLUMN not in header:
        raise ValueError(f"{path} has no {CIF_COLUMN!r} column; columns are {list(header)}")
    # Ids stay text ("mp-1234", but also perov_5's numbers), so "007" would keep its zeros.
    frame = pd.read_csv(path, dtype={ID_COLUMN: str} if ID_COLUMN in header else None)
    frame = frame.drop(columns=unnamed)
    cifs = frame[CIF_COLUMN].fillna("").astype(str).tolist()
    if ID_COLUMN in frame:
        ids = [None if _missing(value) else str(value) for value in frame[ID_COLUMN]]
    else:
        ids = [None] * len(frame)
    kept = [
        name
        for name in frame.columns
        if name not in (CIF_COLUMN, ID_COLUMN) and not _holds_containers(frame[name])
    ]
    keys = [PROPERTY_RENAMES.get(name, name) for name in kept]
    if len(set(keys)) < len(keys):  # e.g. both "formula" and "pretty_formula": keep CSV names
        keys = list(kept)
    properties = [
        {
            key: _scalar(value)
            for key, value in zip(keys, values, strict=True)
            if not _missing(value)
        }
        for values in frame[kept].itertuples(index=False, name=None)
    ]
    return Table(
        cifs=cifs,
        ids=ids,
        properties=properties,
        columns=tuple(str(name) for name in frame.columns),
        has_index_column=has_index_column,
    )


def _holds_containers(column: pd.Series) -> bool:
    """Whether a text column holds serialized lists or dicts (e.g. ``"['Co', 'O']"``)."""
    if column.dtype != object:
        return False
    text = column.dropna().astype(str).str.lstrip()
    return bool(len(text)) and bool(text.str.startswith(("[", "{", "(")).any())


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _scalar(value: Any) -> str | int | float | bool:
    """A plain Python scalar, so properties compare, hash and serialize to JSON simply."""
    if isinstance(value, np.generic):
        return value.item()
    return value
