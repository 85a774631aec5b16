"""Uniqueness, novelty and S.U.N. (stable, unique, novel) with pymatgen's StructureMatcher.

Two structures are "the same material" when ``StructureMatcher.fit`` says so. The matcher
only ever matches structures of the same reduced composition (it rescales volumes, so a
supercell or a compressed copy still matches), hence structures are first grouped by reduced
formula and only compared within a group: n structures cost far fewer than n^2 fits.
Primitive cells are computed once per structure instead of once per comparison.

A structure whose cell is not a cell (non-finite, or flattened below 0.1 Å³, e.g. angles whose
sum passes 360°, which pymatgen turns into a zero-volume lattice) is not a material: it matches
nothing, and it is neither unique nor novel (it counts in a rate's denominator, never in its
count, as structurally invalid crystals count in S.U.N.). pymatgen's cell reduction fails on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from flowllm_kit.crystal.convert import StructureLike, as_structures

if TYPE_CHECKING:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

__all__ = [
    "CLOSENESS_MATCHER",
    "DEFAULT_MATCHER",
    "MatcherSettings",
    "novelty",
    "sun",
    "uniqueness",
]


@dataclass(frozen=True)
class MatcherSettings:
    """Tolerances of pymatgen's ``StructureMatcher`` (recorded in every report).

    Attributes:
        ltol: Fractional length tolerance.
        stol: Site tolerance, in units of the average free length per atom, (V/n)^(1/3).
        angle_tol: Angle tolerance in degrees.
        primitive_cell: Reduce both structures to primitive cells before matching.
        scale: Scale volumes to match (a compressed copy is the same material).
        attempt_supercell: Also try supercell matches between different cell sizes.
    """

    ltol: float = 0.2
    stol: float = 0.3
    angle_tol: float = 5.0
    primitive_cell: bool = True
    scale: bool = True
    attempt_supercell: bool = False

    def matcher(self) -> StructureMatcher:
        """A ``StructureMatcher`` that expects cells already made primitive (see module)."""
        from pymatgen.analysis.structure_matcher import StructureMatcher

        options = asdict(self) | {"primitive_cell": False}
        return StructureMatcher(**options)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# pymatgen's defaults, used by the paper for S.U.N.
DEFAULT_MATCHER = MatcherSettings()
# FlowMM/FlowLLM closeness of a generated crystal to its relaxed self (docs/METHOD.md §9).
CLOSENESS_MATCHER = MatcherSettings(ltol=0.3, stol=0.5, angle_tol=10.0)


# Å³: the smallest cell structural validity accepts (CDVAE's), the smallest one matched here
MIN_MATCHED_VOLUME = 0.1


def is_real_cell(structure: Structure) -> bool:
    """Whether the lattice is a cell that can be matched: finite, volume >= 0.1 Å³."""
    matrix = structure.lattice.matrix
    return bool(np.isfinite(matrix).all()) and abs(np.linalg.det(matrix)) >= MIN_MATCHED_VOLUME


def _prepared(
    structures: Iterable[StructureLike], settings: MatcherSettings
) -> list[Structure | None]:
    """Each structure ready to match (primitive if asked), or None when it is not a real cell."""
    prepared: list[Structure | None] = []
    for structure in as_structures(structures):
        if not is_real_cell(structure):
            prepared.append(None)
        elif settings.primitive_cell:
            prepared.append(structure.get_primitive_structure())
        else:
            prepared.append(structure)
    return prepared


def _group_by_formula(structures: Sequence[Structure | None]) -> dict[str, list[int]]:
    """Indices of the real cells, by reduced formula (structures that are None are left out)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, structure in enumerate(structures):
        if structure is not None:
            groups[structure.composition.reduced_formula].append(index)
    return groups


def uniqueness(
    structures: Sequence[StructureLike], *, settings: MatcherSettings = DEFAULT_MATCHER
) -> list[bool]:
    """Whether each structure is the first of its kind in the list.

    A structure that matches an earlier one is a duplicate (False); so duplicates are counted
    once and ``sum(result)`` is the number of distinct materials. A structure whose cell is not
    a real cell (see module) is False.

    Args:
        structures: Pymatgen ``Structure`` or kit ``Crystal`` objects.
        settings: Matcher tolerances.

    Returns:
        One boolean per structure.
    """
    prepared = _prepared(structures, settings)
    matcher = settings.matcher()
    first = [False] * len(prepared)
    for members in _group_by_formula(prepared).values():
        representatives: list[int] = []
        for index in members:
            if not any(matcher.fit(prepared[r], prepared[index]) for r in representatives):
                representatives.append(index)
                first[index] = True
    return first


def novelty(
    structures: Sequence[StructureLike],
    reference: Sequence[StructureLike],
    *,
    settings: MatcherSettings = DEFAULT_MATCHER,
) -> list[bool]:
    """Whether each structure matches none of the reference structures.

    Args:
        structures: Structures to test (e.g. generated crystals).
        reference: Known structures (paper: train + val; reference code: train).
        settings: Matcher tolerances.

    Returns:
        One boolean per structure: True when novel (False where its cell is not a real cell).
    """
    prepared = _prepared(structures, settings)
    query_formulas = {s.composition.reduced_formula for s in prepared if s is not None}
    reference = as_structures(reference)
    # only reference structures sharing a formula with some query can match: reduce just those
    candidates = [s for s in reference if s.composition.reduced_formula in query_formulas]
    known = _prepared(candidates, settings)
    by_formula = _group_by_formula(known)
    matcher = settings.matcher()
    return [
        structure is not None
        and not any(
            matcher.fit(known[r], structure)
            for r in by_formula.get(structure.composition.reduced_formula, [])
        )
        for structure in prepared
    ]


def sun(stable: Sequence[bool], unique: Sequence[bool], novel: Sequence[bool]) -> list[bool]:
    """Stable and unique and novel, structure by structure (inputs of equal length)."""
    if not len(stable) == len(unique) == len(novel):
        raise ValueError(f"lengths differ: {len(stable)}, {len(unique)}, {len(novel)}")
    return [bool(s and u and n) for s, u, n in zip(stable, unique, novel, strict=True)]
