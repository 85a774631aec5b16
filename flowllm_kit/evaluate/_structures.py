"""The one place where evaluation inputs become pymatgen ``Structure`` objects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Union

from flowllm_kit.crystal import Crystal

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["StructureLike", "to_structures"]

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
