"""The one place where evaluation inputs become pymatgen ``Structure`` objects."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Union

import numpy as np

from flowllm_kit.crystal import Crystal

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["StructureLike", "structure_key", "to_structures"]

StructureLike = Union["Structure", Crystal]


def to_structures(structures: Iterable[StructureLike]) -> list[Structure]:
    """Pymatgen structures from pymatgen structures or kit :class:`Crystal` objects.

    Args:
        structures: Any mix of ``pymatgen.core.Structure`` and :class:`Crystal`.

    Returns:
        One ``Structure`` per input, in order (pymatgen inputs are passed through, not copied).

    Raises:
        TypeError: If an item is neither.
    """
    from pymatgen.core import Structure

    out = []
    for item in structures:
        if isinstance(item, Crystal):
            out.append(item.to_structure())
        elif isinstance(item, Structure):
            out.append(item)
        else:
            raise TypeError(
                f"expected a pymatgen Structure or a Crystal, got {type(item).__name__}"
            )
    return out


def structure_key(structure: Structure) -> str:
    """A short content hash of species, lattice and coordinates (rounded to 1e-6)."""
    payload = json.dumps(
        [
            [site.specie.symbol for site in structure],
            np.round(structure.lattice.matrix, 6).tolist(),
            np.round(structure.frac_coords, 6).tolist(),
        ]
    )
    return hashlib.sha1(payload.encode()).hexdigest()[:16]
