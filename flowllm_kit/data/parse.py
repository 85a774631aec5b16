"""CIF text -> Niggli-reduced arrays, with the checks that reject broken rows.

This is the slow step of loading a dataset (a few ms per CIF in pymatgen), so it runs in worker
processes in chunks. Workers return plain arrays rather than :class:`Crystal` objects: they are
cheaper to send between processes, and the cached path rebuilds crystals from the very same
arrays, so a cached load equals a fresh one exactly.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from flowllm_kit.progress import progress_bar

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "MIN_DISTANCE",
    "MIN_VOLUME_PER_ATOM",
    "ParsedCif",
    "Rejected",
    "default_workers",
    "parse_cif",
    "parse_cifs",
]

MIN_DISTANCE = 0.5
"""Å. Two atoms (or an atom and its own periodic image) closer than this overlap."""

MIN_VOLUME_PER_ATOM = 0.5
"""Å^3. Cells below this volume per atom are degenerate (real solids have ~5-50)."""

_REASON_CHARS = 160


class ParsedCif(NamedTuple):
    """One structure after Niggli reduction.

    Attributes:
        atomic_numbers: ``(n,)`` int16.
        frac_coords: ``(n, 3)`` float64 fractional coordinates of the reduced cell.
        lengths: ``(3,)`` float64, Å, with ``a <= b <= c``.
        angles: ``(3,)`` float64, degrees.
    """

    atomic_numbers: np.ndarray
    frac_coords: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray


class Rejected(NamedTuple):
    """A row that was not turned into a crystal, and why (one line)."""

    reason: str


def parse_cif(cif: str) -> ParsedCif | Rejected:
    """Parse one CIF, Niggli-reduce it and check it is a usable, ordered crystal.

    Rejected: unparsable text, disordered (partially occupied) sites, non-element species,
    zero or tiny volume (< :data:`MIN_VOLUME_PER_ATOM` per atom), overlapping atoms (closer
    than :data:`MIN_DISTANCE`, periodic images included).
    """
    from pymatgen.core import Element, Structure

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structure = Structure.from_str(cif, fmt="cif")
        except Exception as error:  # pymatgen raises many types for bad CIFs
            return Rejected(_unparsable_reason(error, [str(w.message) for w in caught]))
    if len(structure) == 0:
        return Rejected("CIF holds no atoms")
    if not structure.is_ordered:
        return Rejected("disordered: partially occupied sites")
    if not all(isinstance(specie, Element) for specie in structure.species):
        return Rejected(f"non-element species {sorted({str(s) for s in structure.species})}")
    volume = float(structure.volume)
    if not math.isfinite(volume) or volume < MIN_VOLUME_PER_ATOM * len(structure):
        return Rejected(f"tiny volume: {volume:.3g} Å^3 for {len(structure)} atoms")
    try:
        reduced = structure.get_reduced_structure()  # Niggli, pymatgen's default
    except Exception as error:
        return Rejected(_clip(f"Niggli reduction failed: {type(error).__name__}: {error}"))
    closest = _closest_pair(reduced)
    if closest is not None:
        return Rejected(closest)
    return ParsedCif(
        atomic_numbers=np.array([site.specie.Z for site in reduced], dtype=np.int16),
        frac_coords=np.asarray(reduced.frac_coords, dtype=np.float64),
        lengths=np.array(reduced.lattice.abc, dtype=np.float64),
        angles=np.array(reduced.lattice.angles, dtype=np.float64),
    )


def _closest_pair(structure: Structure) -> str | None:
    """Why the atoms overlap, or ``None`` when every pair is at least MIN_DISTANCE apart."""
    # After Niggli reduction ``a`` is the shortest lattice vector, i.e. the distance from any
    # atom to its own periodic image; the distance matrix covers every other pair.
    shortest = float(min(structure.lattice.abc))
    if shortest < MIN_DISTANCE:
        return f"overlapping atoms: an atom is {shortest:.3g} Å from its own periodic image"
    if len(structure) > 1:
        distances = np.array(structure.distance_matrix, dtype=np.float64)
        np.fill_diagonal(distances, np.inf)
        i, j = np.unravel_index(np.argmin(distances), distances.shape)
        if distances[i, j] < MIN_DISTANCE:
            return f"overlapping atoms: sites {i} and {j} are {distances[i, j]:.3g} Å apart"
    return None


def _unparsable_reason(error: Exception, messages: list[str]) -> str:
    detail = next((m for m in messages if "No structure parsed" in m), "")
    detail = " ".join(detail.replace("No structure parsed for section 1 in CIF.", "").split())
    if "thickness" in detail:  # pymatgen's check for a flat (zero-volume) cell
        return "zero or tiny volume: pymatgen found the cell flat and parsed no structure"
    suffix = f" ({detail})" if detail else ""
    return _clip(f"unparsable CIF: {type(error).__name__}: {error}{suffix}")


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _parse_chunk(cifs: Sequence[str]) -> list[ParsedCif | Rejected]:
    return [parse_cif(cif) for cif in cifs]


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def parse_cifs(
    cifs: Sequence[str],
    *,
    workers: int | None = None,
    progress: bool = False,
    desc: str = "parse",
) -> list[ParsedCif | Rejected]:
    """Parse many CIFs, in order, on ``workers`` processes (``1``: in this process).

    Args:
        cifs: CIF texts.
        workers: Processes to use; ``None`` means every available core. Inputs too small to
            split into two chunks are parsed in this process.
        progress: Show a tqdm progress bar.
        desc: The progress bar's label.

    Returns:
        One :class:`ParsedCif` or :class:`Rejected` per input, in input order.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    # ~8 chunks per worker keeps every core busy to the end without much pickling overhead.
    size = int(np.clip(len(cifs) // (workers * 8), 16, 512))
    chunks = [cifs[start : start + size] for start in range(0, len(cifs), size)]
    if workers > 1 and len(chunks) > 1:
        try:
            return _parse_in_pool(chunks, workers=workers, progress=progress, desc=desc)
        except (OSError, NotImplementedError) as error:  # e.g. no semaphores in a sandbox
            warnings.warn(f"parsing in one process: cannot start workers ({error})", stacklevel=2)
    results: list[ParsedCif | Rejected] = []
    with progress_bar(total=len(cifs), desc=desc, unit="cif", disable=not progress) as bar:
        for chunk in chunks:
            results.extend(_parse_chunk(chunk))
            bar.update(len(chunk))
    return results


def _parse_in_pool(
    chunks: list[Sequence[str]], *, workers: int, progress: bool, desc: str
) -> list[ParsedCif | Rejected]:
    # fork starts workers at once with pymatgen already imported and needs no
    # ``if __name__ == "__main__"`` guard in users' scripts; elsewhere keep the safe default.
    context = get_context("fork") if sys.platform.startswith("linux") else None
    import pymatgen.core  # noqa: F401  (imported once here, inherited by forked workers)

    parts: list[list[ParsedCif | Rejected]] = [[] for _ in chunks]
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=context) as pool:
        futures = {pool.submit(_parse_chunk, chunk): index for index, chunk in enumerate(chunks)}
        # The bar (and tqdm's monitor thread) starts only now, after the workers were forked.
        total = sum(len(chunk) for chunk in chunks)
        with progress_bar(total=total, desc=desc, unit="cif", disable=not progress) as bar:
            for future in as_completed(futures):
                parts[futures[future]] = future.result()
                bar.update(len(chunks[futures[future]]))
    return [result for part in parts for result in part]
