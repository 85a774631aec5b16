"""Conversions between :class:`Crystal` and pymatgen, ASE and CIF, all in one place."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowllm_kit.crystal.crystal import Crystal

if TYPE_CHECKING:
    from ase import Atoms
    from pymatgen.core import Structure

__all__ = ["from_ase", "from_structure", "to_ase", "to_cif", "to_structure", "write_cif"]


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
