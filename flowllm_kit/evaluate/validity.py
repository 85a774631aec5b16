"""Structural and compositional validity of crystals (CDVAE definitions, docs/METHOD.md §9).

Structural: every pair of atoms, periodic images included, at least ``cutoff`` (0.5 Å) apart,
and a cell volume of at least 0.1 Å^3. Unlike CDVAE's distance matrix, an atom's distance to
its own periodic images counts too, so a cell with a lattice vector shorter than the cutoff is
invalid.

Compositional: SMACT charge neutrality with the Pauling electronegativity test. A composition
is valid if one element only, if every element is a metal (an alloy), or if some choice of one
oxidation state per element is charge neutral for the reduced formula and puts every cation
below every anion in electronegativity. The search over oxidation states grows as the product
of the per-element choices; above ``max_combinations`` the answer is ``"undetermined"``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from typing import Literal

import numpy as np

from flowllm_kit.crystal.convert import StructureLike, as_structures

__all__ = [
    "CompositionStatus",
    "OxidationStateSet",
    "composition_status",
    "compositional_validity",
    "smact_status",
    "structural_validity",
]

CompositionStatus = Literal["valid", "invalid", "undetermined"]
# SMACT's oxidation-state tables: "smact14" is the list CDVAE evaluated with (SMACT < 3
# default); "icsd24" is the default of SMACT >= 3 (fewer, commoner states).
OxidationStateSet = Literal["smact14", "icsd24"]

_CHUNK = 1 << 18  # oxidation-state combinations scored per numpy block


# --- structural validity ------------------------------------------------------------------
def _has_close_pair(frac: np.ndarray, matrix: np.ndarray, cutoff: float) -> bool:
    """Whether two atoms (or an atom and its own image) are closer than ``cutoff``.

    Args:
        frac: ``(n, 3)`` fractional coordinates in the basis ``matrix``.
        matrix: ``(3, 3)`` LLL-reduced lattice, rows are lattice vectors (Å).
        cutoff: Distance in Å.
    """
    # An image within `cutoff` has |fractional component i| <= cutoff * |column i of M^-1|;
    # with displacements wrapped into [-0.5, 0.5] this bounds the image indices exactly.
    inverse = np.linalg.inv(matrix)
    reach = np.floor(cutoff * np.linalg.norm(inverse, axis=0) + 0.5).astype(int)  # (3,)
    ranges = [np.arange(-r, r + 1) for r in reach]
    images = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)  # (m, 3)
    first, second = np.triu_indices(len(frac))  # i <= j: self-images included
    for start in range(0, len(first), 4096):  # bounded memory for large cells
        i, j = first[start : start + 4096], second[start : start + 4096]
        delta = frac[j] - frac[i]  # (p, 3)
        delta -= np.round(delta)
        shifted = delta[:, None, :] + images[None, :, :]  # (p, m, 3)
        distance = np.linalg.norm(shifted @ matrix, axis=-1)  # (p, m)
        # An atom is always at distance 0 from itself in the home cell: not a pair.
        is_self = (i == j)[:, None] & ~images.any(axis=1)[None, :]
        if np.any((distance < cutoff) & ~is_self):
            return True
    return False


def structural_validity(
    structures: Iterable[StructureLike], *, cutoff: float = 0.5, min_volume: float = 0.1
) -> list[bool]:
    """Whether each structure has no atoms closer than ``cutoff`` and a sensible volume.

    Args:
        structures: Pymatgen ``Structure`` or kit ``Crystal`` objects.
        cutoff: Smallest allowed interatomic distance in Å, periodic images included
            (CDVAE: 0.5). A distance equal to the cutoff is allowed.
        min_volume: Smallest allowed cell volume in Å^3 (CDVAE: 0.1).

    Returns:
        One boolean per structure.
    """
    results = []
    for structure in as_structures(structures):
        lattice = structure.lattice
        matrix = lattice.matrix
        if not np.all(np.isfinite(matrix)) or not np.all(np.isfinite(structure.frac_coords)):
            results.append(False)
            continue
        if abs(lattice.volume) < min_volume:
            results.append(False)
            continue
        reduced = lattice.lll_matrix
        if np.linalg.norm(reduced, axis=1).min() < cutoff:  # every atom meets its own image
            results.append(False)
            continue
        frac = lattice.get_lll_frac_coords(structure.frac_coords)
        results.append(not _has_close_pair(frac, reduced, cutoff))
    return results


# --- compositional validity ---------------------------------------------------------------
@cache
def _element_data(symbol: str, table: OxidationStateSet) -> tuple[tuple[int, ...], float, bool]:
    """Oxidation states, Pauling electronegativity (NaN if unknown), is-metal, from SMACT."""
    import smact

    try:
        element = smact.Element(symbol)
    except (NameError, KeyError, ValueError):
        return (), math.nan, False
    states = element.oxidation_states_smact14 if table == "smact14" else element.oxidation_states
    eneg = element.pauling_eneg
    return tuple(states or ()), math.nan if eneg is None else float(eneg), symbol in smact.metals


def _pauling_pass(ox: np.ndarray, eneg: np.ndarray) -> np.ndarray:
    """Pauling test for each row of ``ox`` ``(k, e)``; ``eneg`` ``(e,)`` may hold NaN.

    Follows CDVAE with SMACT 2: element pairs are checked in order and only pairs of opposite
    charge matter. A cation at least as electronegative as its anion fails the row; reaching a
    pair with an unknown electronegativity first passes it (SMACT 2 raised a TypeError there,
    which CDVAE caught and counted as a pass).
    """
    decided = np.zeros(len(ox), dtype=bool)
    passed = np.ones(len(ox), dtype=bool)
    for a, b in itertools.combinations(range(ox.shape[1]), 2):
        pending = (ox[:, a] * ox[:, b] < 0) & ~decided  # opposite charges, still undecided
        if np.isnan(eneg[a]) or np.isnan(eneg[b]):
            decided |= pending  # unknown electronegativity: the row passes here
            continue
        # the cation must be strictly less electronegative than the anion
        ordered = np.where(ox[:, a] > 0, eneg[a] < eneg[b], eneg[b] < eneg[a])
        failed = pending & ~ordered
        passed[failed] = False
        decided |= failed
    return passed


@lru_cache(maxsize=65536)
def _status_cached(
    symbols: tuple[str, ...],
    counts: tuple[int, ...],
    table: OxidationStateSet,
    max_combinations: int,
) -> CompositionStatus:
    if len(symbols) == 1:
        return "valid"
    data = [_element_data(s, table) for s in symbols]
    if all(is_metal for _, _, is_metal in data):
        return "valid"
    states = [np.array(ox, dtype=np.int64) for ox, _, _ in data]
    sizes = [len(s) for s in states]
    total = math.prod(sizes)
    if total == 0:
        return "invalid"
    if total > max_combinations:
        return "undetermined"
    eneg = np.array([e for _, e, _ in data])
    stoich = np.array(counts, dtype=np.int64)
    strides = np.cumprod([1, *sizes[:0:-1]])[::-1]  # mixed-radix place values, (e,)
    for start in range(0, total, _CHUNK):
        index = np.arange(start, min(total, start + _CHUNK))
        digits = (index[:, None] // strides[None, :]) % np.array(sizes)[None, :]  # (k, e)
        ox = np.stack([states[e][digits[:, e]] for e in range(len(symbols))], axis=1)
        neutral = ox[(ox @ stoich) == 0]
        if len(neutral) and _pauling_pass(neutral, eneg).any():
            return "valid"
    return "invalid"


def smact_status(
    composition: Mapping[str, float],
    *,
    oxidation_states: OxidationStateSet = "smact14",
    max_combinations: int = 10**7,
) -> CompositionStatus:
    """SMACT validity of one composition.

    Args:
        composition: Element symbol -> count (integer counts, e.g. atoms in the cell).
        oxidation_states: Which SMACT oxidation-state table to search (see module notes).
        max_combinations: Largest number of oxidation-state combinations searched; beyond it
            the status is ``"undetermined"``.

    Returns:
        ``"valid"``, ``"invalid"`` or ``"undetermined"``.
    """
    from pymatgen.core import Element

    items = sorted(composition.items(), key=lambda kv: Element(kv[0]).Z)  # CDVAE's order
    counts = [round(c) for _, c in items]
    divisor = math.gcd(*counts)
    return _status_cached(
        tuple(s for s, _ in items),
        tuple(c // divisor for c in counts),
        oxidation_states,
        max_combinations,
    )


def composition_status(
    structures: Iterable[StructureLike],
    *,
    oxidation_states: OxidationStateSet = "smact14",
    max_combinations: int = 10**7,
) -> list[CompositionStatus]:
    """SMACT status of each structure's composition: valid, invalid or undetermined.

    Args:
        structures: Pymatgen ``Structure`` or kit ``Crystal`` objects.
        oxidation_states: See :func:`smact_status`.
        max_combinations: See :func:`smact_status`.

    Returns:
        One status per structure; count them with ``collections.Counter``.
    """
    return [
        smact_status(
            {el.symbol: n for el, n in s.composition.element_composition.items()},
            oxidation_states=oxidation_states,
            max_combinations=max_combinations,
        )
        for s in as_structures(structures)
    ]


def compositional_validity(
    structures: Iterable[StructureLike],
    *,
    undetermined_as: bool = False,
    oxidation_states: OxidationStateSet = "smact14",
    max_combinations: int = 10**7,
) -> list[bool]:
    """Whether each structure's composition passes SMACT (see :func:`composition_status`).

    Args:
        structures: Pymatgen ``Structure`` or kit ``Crystal`` objects.
        undetermined_as: The boolean given to ``"undetermined"`` compositions.
        oxidation_states: See :func:`smact_status`.
        max_combinations: See :func:`smact_status`.

    Returns:
        One boolean per structure.
    """
    statuses = composition_status(
        structures, oxidation_states=oxidation_states, max_combinations=max_combinations
    )
    return [undetermined_as if s == "undetermined" else s == "valid" for s in statuses]
