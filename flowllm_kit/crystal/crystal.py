"""One crystal: atom types, fractional coordinates on the torus, and a lattice."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from flowllm_kit.geometry import lattice

if TYPE_CHECKING:
    from ase import Atoms
    from pymatgen.core import Structure

__all__ = ["Crystal"]


def _frozen_array(values: Any, dtype: type, shape: tuple[int | None, ...], name: str) -> np.ndarray:
    array = np.array(values, dtype=dtype)  # always a copy, so the caller's array stays theirs
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        raise ValueError(f"Crystal.{name} must have shape {shape}, got {array.shape}")
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Crystal:
    """One crystal structure ``c = (a, f, l)``.

    Immutable: change it with :meth:`replace`. Arrays are copied on construction and made
    read-only; fractional coordinates are wrapped into [0, 1).

    Attributes:
        atomic_numbers: ``(n,)`` atomic numbers ``a``.
        frac_coords: ``(n, 3)`` fractional coordinates ``f`` in [0, 1).
        lengths: ``(3,)`` lattice lengths a, b, c in Å.
        angles: ``(3,)`` lattice angles alpha, beta, gamma in degrees.
        id: Optional identifier (e.g. a Materials Project id).
        properties: Optional read-only mapping of scalar properties (formation energy per atom,
            band gap, e_above_hull, space group, formula, ...).

    Example::

        >>> rock_salt = Crystal(
        ...     atomic_numbers=[11, 17], frac_coords=[[0, 0, 0], [0.5, 0.5, 0.5]],
        ...     lengths=[3.99, 3.99, 3.99], angles=[60, 60, 60], id="NaCl")
        >>> rock_salt.formula
        'NaCl'
    """

    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray
    id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        numbers = _frozen_array(self.atomic_numbers, np.int64, (None,), "atomic_numbers")
        coords = _frozen_array(self.frac_coords, np.float64, (len(numbers), 3), "frac_coords")
        lengths = _frozen_array(self.lengths, np.float64, (3,), "lengths")
        angles = _frozen_array(self.angles, np.float64, (3,), "angles")
        if len(numbers) == 0:
            raise ValueError("Crystal needs at least one atom")
        if numbers.min() < 1 or numbers.max() > 118:
            raise ValueError(f"Crystal.atomic_numbers must lie in 1..118, got {numbers.tolist()}")
        if not np.all(np.isfinite(coords)) or not np.all(np.isfinite(lengths)):
            raise ValueError("Crystal coordinates and lengths must be finite")
        if not np.all(np.isfinite(angles)):
            raise ValueError("Crystal angles must be finite")
        wrapped = np.mod(coords, 1.0)
        wrapped[wrapped >= 1.0] = 0.0
        wrapped.flags.writeable = False
        object.__setattr__(self, "atomic_numbers", numbers)
        object.__setattr__(self, "frac_coords", wrapped)
        object.__setattr__(self, "lengths", lengths)
        object.__setattr__(self, "angles", angles)
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))

    # --- derived quantities -------------------------------------------------------------
    @property
    def num_atoms(self) -> int:
        return len(self.atomic_numbers)

    @property
    def lattice_matrix(self) -> np.ndarray:
        """``(3, 3)`` matrix, rows are lattice vectors (pymatgen's convention)."""
        matrix = lattice.params_to_matrix(torch.tensor(self.lengths), torch.tensor(self.angles))
        return matrix.numpy()

    @property
    def volume(self) -> float:
        """Cell volume in Å^3."""
        return float(abs(np.linalg.det(self.lattice_matrix)))

    @property
    def cart_coords(self) -> np.ndarray:
        """``(n, 3)`` Cartesian coordinates in Å."""
        return self.frac_coords @ self.lattice_matrix

    @property
    def elements(self) -> list[str]:
        """Element symbol of every atom, in order."""
        from pymatgen.core import Element

        return [Element.from_Z(int(z)).symbol for z in self.atomic_numbers]

    @property
    def composition(self) -> dict[str, int]:
        """Element symbol -> count in the cell."""
        return dict(Counter(self.elements))

    @property
    def formula(self) -> str:
        """Reduced formula (pymatgen's), e.g. ``'NaCl'``."""
        from pymatgen.core import Composition

        return Composition(self.composition).reduced_formula

    # --- changes and conversions ---------------------------------------------------------
    def replace(self, **changes: Any) -> Crystal:
        """A copy with some fields changed, e.g. ``crystal.replace(frac_coords=new)``."""
        return dataclasses.replace(self, **changes)

    # The conversions of one crystal to and from pymatgen and ASE live on the class (with
    # :mod:`flowllm_kit.crystal.convert` for many structures, raw cells and CIF); pymatgen and
    # ASE are heavy, so they are imported when a conversion is asked for.
    @classmethod
    def from_structure(
        cls, structure: Structure, *, id: str | None = None, **properties: Any
    ) -> Crystal:
        """From a pymatgen ``Structure`` (ordered sites only).

        Raises:
            ValueError: If the structure has partially occupied (disordered) sites.
        """
        if not structure.is_ordered:
            raise ValueError(f"structure {id or structure.formula!r} is disordered; order it first")
        return cls(
            atomic_numbers=[site.specie.Z for site in structure],
            frac_coords=structure.frac_coords,
            lengths=structure.lattice.abc,
            angles=structure.lattice.angles,
            id=id,
            properties=properties,
        )

    def to_structure(self) -> Structure:
        """To a pymatgen ``Structure`` (lattice built from the six parameters, c along z)."""
        from pymatgen.core import Lattice, Structure

        lattice = Lattice.from_parameters(*self.lengths, *self.angles)
        return Structure(lattice, self.atomic_numbers.tolist(), self.frac_coords)

    @classmethod
    def from_ase(cls, atoms: Atoms, *, id: str | None = None, **properties: Any) -> Crystal:
        """From a periodic ASE ``Atoms``.

        Raises:
            ValueError: If the atoms are not periodic in all three directions.
        """
        if not np.all(atoms.pbc):
            raise ValueError(
                f"ASE atoms {id or atoms.get_chemical_formula()!r} must be periodic in 3D"
            )
        cell = atoms.cell
        return cls(
            atomic_numbers=atoms.numbers,
            frac_coords=atoms.get_scaled_positions(wrap=True),
            lengths=cell.lengths(),
            angles=cell.angles(),
            id=id,
            properties=properties,
        )

    def to_ase(self) -> Atoms:
        """To an ASE ``Atoms`` with periodic boundary conditions (pymatgen's cell orientation)."""
        from ase import Atoms

        return Atoms(
            numbers=self.atomic_numbers,
            scaled_positions=self.frac_coords,
            cell=self.lattice_matrix,
            pbc=True,
        )

    def __repr__(self) -> str:
        lengths = ", ".join(f"{x:.3f}" for x in self.lengths)
        angles = ", ".join(f"{x:.2f}" for x in self.angles)
        name = f"{self.id!r}, " if self.id else ""
        return (
            f"Crystal({name}{self.formula}, {self.num_atoms} atoms, "
            f"lengths=({lengths}) Å, angles=({angles})°)"
        )
