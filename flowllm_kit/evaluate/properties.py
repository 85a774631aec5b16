"""Property distributions: Wasserstein distances of density and element count, N-ary histogram.

CDVAE compares the generated (valid) crystals with the test split by the 1-D Wasserstein
(earth mover's) distance between the two empirical distributions of a scalar property: the
mass density in g/cm^3 and the number of distinct elements. Which crystals enter is the
caller's choice (CDVAE: valid generated crystals against all test crystals).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from flowllm_kit.crystal.convert import StructureLike, as_structures

__all__ = [
    "PropertyDistances",
    "densities",
    "element_counts",
    "nary_histogram",
    "property_distances",
    "wasserstein",
]


def densities(structures: Iterable[StructureLike]) -> np.ndarray:
    """``(n,)`` mass density of each structure in g/cm^3."""
    return np.array([float(s.density) for s in as_structures(structures)])


def element_counts(structures: Iterable[StructureLike]) -> np.ndarray:
    """``(n,)`` number of distinct elements in each structure (1 = unary, 2 = binary, ...)."""
    return np.array([len(s.composition.elements) for s in as_structures(structures)], dtype=int)


def nary_histogram(structures: Iterable[StructureLike], *, max_arity: int = 8) -> dict[int, int]:
    """How many structures have 1, 2, ..., ``max_arity`` distinct elements.

    Args:
        structures: Pymatgen ``Structure`` or kit ``Crystal`` objects.
        max_arity: Largest element count listed; every key 1..max_arity is present (0 when
            none), larger counts are added under their own key.

    Returns:
        Element count -> number of structures, keys in increasing order.
    """
    counts = Counter(element_counts(structures).tolist())
    keys = sorted(set(range(1, max_arity + 1)) | set(counts))
    return {k: counts.get(k, 0) for k in keys}


@dataclass(frozen=True)
class PropertyDistances:
    """Wasserstein distances between generated and reference property distributions.

    Attributes:
        density: Distance between density distributions, g/cm^3 (``nan`` if a side is empty).
        num_elements: Distance between distributions of the number of distinct elements.
        num_generated: Generated structures compared.
        num_reference: Reference structures compared.
    """

    density: float
    num_elements: float
    num_generated: int
    num_reference: int


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def property_distances(
    generated: Sequence[StructureLike], reference: Sequence[StructureLike]
) -> PropertyDistances:
    """Wasserstein distances of density and of the number of distinct elements.

    Args:
        generated: Structures to evaluate (CDVAE uses the structurally and compositionally
            valid ones).
        reference: Reference structures (CDVAE: the test split).

    Returns:
        The two distances and the sample sizes behind them.
    """
    return PropertyDistances(
        density=wasserstein(densities(generated), densities(reference)),
        num_elements=wasserstein(element_counts(generated), element_counts(reference)),
        num_generated=len(generated),
        num_reference=len(reference),
    )
