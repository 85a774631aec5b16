"""Conversions between :class:`Crystal` and pymatgen, ASE and CIF, all in one place: the kit
builds a pymatgen ``Structure`` nowhere else (the relaxation's cells and positions come back
through :func:`structure_from_cell`, mixed inputs through :func:`as_structures`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from flowllm_kit.crystal.crystal import Crystal

if TYPE_CHECKING:
    from ase import Atoms
    from pymatgen.core import Structure

__all__ = [
    "StructureLike",
    "as_structures",
    "from_ase",
    "from_structure",
    "structure_from_cell",
    "to_ase",
    "to_cif",
    "to_structure",
    "write_cif",
]

StructureLike = Union["Structure", Crystal]
"""What functions that take structures accept: pymatgen ``Structure`` or kit :class:`Crystal`."""


def from_structure(structure: Structure, *, id: str | None = None, **properties: Any) -> Crystal:
    """Crystal from a pymatgen ``Structure``.

    Raises:
        ValueError: If the structure has partially occupied (disordered) sites.
    """
    if not structure.is_ordered:
        raise ValueError(f"structure {id or structure.formula!r} is disordered; order it first")
    return Crystal(
        atomic_numbers=[site.specie.Z for site in structure],
        frac_coords=structure.frac_coords,
        lengths=structure.lattice.abc,
        angles=structure.lattice.angles,
        id=id,
        properties=properties,
    )


def to_structure(crystal: Crystal) -> Structure:
    """pymatgen ``Structure`` from a crystal (lattice built from its six parameters)."""
    from pymatgen.core import Lattice, Structure

    lattice = Lattice.from_parameters(*crystal.lengths, *crystal.angles)
    return Structure(lattice, crystal.atomic_numbers.tolist(), crystal.frac_coords)


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
            out.append(to_structure(item))
        elif isinstance(item, Structure):
            out.append(item)
        else:
            raise TypeError(
                f"expected a pymatgen Structure or a Crystal, got {type(item).__name__}"
            )
    return out


def from_ase(atoms: Atoms, *, id: str | None = None, **properties: Any) -> Crystal:
    """Crystal from a periodic ASE ``Atoms``.

    Raises:
        ValueError: If the atoms are not periodic in all three directions.
    """
    if not np.all(atoms.pbc):
        raise ValueError(f"ASE atoms {id or atoms.get_chemical_formula()!r} must be periodic in 3D")
    cell = atoms.cell
    return Crystal(
        atomic_numbers=atoms.numbers,
        frac_coords=atoms.get_scaled_positions(wrap=True),
        lengths=cell.lengths(),
        angles=cell.angles(),
        id=id,
        properties=properties,
    )


def to_ase(crystal: Crystal) -> Atoms:
    """Periodic ASE ``Atoms`` (cell in pymatgen's orientation)."""
    from ase import Atoms

    return Atoms(
        numbers=crystal.atomic_numbers,
        scaled_positions=crystal.frac_coords,
        cell=crystal.lattice_matrix,
        pbc=True,
    )


def to_cif(crystal: Crystal, *, name: str | None = None) -> str:
    """One CIF data block (P1) for the crystal, named after ``name`` or its id."""
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(to_structure(crystal)))
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
