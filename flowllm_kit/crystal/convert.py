"""Conversions between crystals and pymatgen, ASE and CIF beyond one crystal's own
(``Crystal.to_structure``, ``Crystal.from_structure``, ``Crystal.to_ase``, ``Crystal.from_ase``):
many structures of either kind (:func:`as_structures`), raw cells and positions such as the
relaxation's (:func:`structure_from_cell`), and CIF. Together with those methods, the one place
the kit builds pymatgen structures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from flowllm_kit.crystal.crystal import Crystal

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["StructureLike", "as_structures", "structure_from_cell", "to_cif", "write_cif"]

StructureLike = Union["Structure", Crystal]
"""What functions that take structures accept: pymatgen ``Structure`` or kit :class:`Crystal`."""


def structure_from_cell(
    cell: Any,
    species: Sequence[Any],
    coords: Any,
    *,
    cartesian: bool = False,
    to_unit_cell: bool = False,
) -> Structure:
    """pymatgen ``Structure`` from a lattice matrix (rows a, b, c, in Å), species (atomic
    numbers or pymatgen species) and coordinates (fractional, or Cartesian in Å with
    ``cartesian``); ``to_unit_cell`` wraps the sites into the cell."""
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice(np.asarray(cell, dtype=float)), list(species), np.asarray(coords, dtype=float),
        coords_are_cartesian=cartesian, to_unit_cell=to_unit_cell,
    )  # fmt: skip


def as_structures(items: Iterable[StructureLike]) -> list[Structure]:
    """pymatgen structures from any mix of pymatgen structures and kit crystals, in order
    (pymatgen inputs are passed through, not copied).

    Raises:
        TypeError: If an item is neither, naming its type.
    """
    from pymatgen.core import Structure

    out = []
    for item in items:
        if isinstance(item, Crystal):
            out.append(item.to_structure())
        elif isinstance(item, Structure):
            out.append(item)
        else:
            raise TypeError(
                f"expected a pymatgen Structure or a Crystal, got {type(item).__name__}"
            )
    return out


def to_cif(crystal: Crystal, *, name: str | None = None) -> str:
    """One CIF data block (P1) for the crystal, named after ``name`` or its id."""
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(crystal.to_structure()))
    block = name or crystal.id or crystal.formula
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in block)
    lines = text.splitlines()
    lines[next(i for i, line in enumerate(lines) if line.startswith("data_"))] = f"data_{safe}"
    return "\n".join(lines) + "\n"


def write_cif(crystals: Iterable[Crystal], path: str | Path) -> Path:
    """Write many crystals into one multi-block CIF file; returns the path.

    Blocks are named after each crystal's id (or ``crystal_<i>`` when it has none). Read it
    back with ``pymatgen.io.cif.CifParser(path).parse_structures(primitive=False)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = [to_cif(c, name=c.id or f"crystal_{i}") for i, c in enumerate(crystals)]
    path.write_text("".join(blocks))
    return path
