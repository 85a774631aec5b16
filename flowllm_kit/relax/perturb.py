"""Perturbed copies of crystals: relaxation inputs with a known nearby minimum."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flowllm_kit.crystal.convert import structure_from_cell

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["perturb_structure"]


def perturb_structure(
    structure: Structure, *, seed: int, displacement: float = 0.1, max_strain: float = 0.03
) -> Structure:
    """A copy with every atom moved ``displacement`` Å in a random direction and each lattice
    axis strained by a uniform random amount in ``[-max_strain, max_strain]``.

    Deterministic in ``seed``; the input is not changed.
    """
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(len(structure), 3))  # (n, 3)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    cart = structure.cart_coords + displacement * directions  # (n, 3)
    copy = structure_from_cell(structure.lattice.matrix, structure.species, cart, cartesian=True)
    copy.apply_strain(rng.uniform(-max_strain, max_strain, size=3))
    return copy
