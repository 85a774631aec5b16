"""Convex-hull references and the energy above the hull, E_hull (eV/atom).

Two sources of a hull:

* :meth:`HullReference.from_formation_energies` builds one from a dataset's formation energies
  per atom (MP-20's ``formation_energy_per_atom``) and the Materials Project elemental
  reference entries (``hull/2023-02-07-mp-elemental-reference-entries.json.gz``, Matbench
  Discovery): a compound with formation energy e_f per atom and atom fractions x_i gets the
  total energy N (e_f + sum_i x_i mu_i), mu_i the elemental energies per atom. Phase diagrams
  are built per chemical system on first use, so 18,000 entries cost nothing up front.
  A hull from MP-20 alone misses competing phases and is lenient: read its rates beside the
  same rates for real MP-20 crystals.
* :meth:`HullReference.from_patched_phase_diagram` loads the Matbench Discovery pickle the
  FlowLLM paper used (``2023-02-07-ppd-mp.pkl.gz``, ~220 MB, on figshare; see Matbench
  Discovery's data files). Loading a pickle runs code from the file: only load one you trust.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

QHULL_MAX_ELEMENTS = 4
"""Crystals of more elements than this get their E_hull from a linear program
(:meth:`HullReference.hull_energy_per_atom`) instead of a pymatgen ``PhaseDiagram``."""

if TYPE_CHECKING:
    from pymatgen.analysis.phase_diagram import PatchedPhaseDiagram, PhaseDiagram
    from pymatgen.core import Composition
    from pymatgen.entries.computed_entries import ComputedEntry

__all__ = [
    "QHULL_MAX_ELEMENTS",
    "HullReference",
    "entries_from_formation_energies",
    "load_elemental_references",
    "stability_flags",
]


def load_elemental_references(path: str | Path) -> dict[str, ComputedEntry]:
    """Element symbol -> lowest-energy elemental ``ComputedEntry`` from a (gzipped) JSON file."""
    from monty.json import MontyDecoder

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as handle:
        raw = json.load(handle)
    return {symbol: MontyDecoder().process_decoded(entry) for symbol, entry in raw.items()}


def entries_from_formation_energies(
    compositions: Sequence[Composition | str],
    formation_energies_per_atom: Sequence[float],
    elemental_references: Mapping[str, ComputedEntry],
    *,
    ids: Sequence[str] | None = None,
) -> list[ComputedEntry]:
    """Total-energy entries from formation energies per atom and elemental chemical potentials.

    Args:
        compositions: One composition (or formula) per entry.
        formation_energies_per_atom: eV/atom, relative to the same elemental references.
        elemental_references: Element symbol -> elemental entry (its energy per atom is mu).
        ids: Optional ``entry_id`` for each entry (e.g. Materials Project ids).

    Returns:
        One ``ComputedEntry`` per composition whose elements all have a reference (others are
        skipped with a warning).
    """
    from pymatgen.core import Composition
    from pymatgen.entries.computed_entries import ComputedEntry

    mu = {symbol: entry.energy_per_atom for symbol, entry in elemental_references.items()}
    entries, skipped = [], 0
    for index, (comp, e_form) in enumerate(
        zip(compositions, formation_energies_per_atom, strict=True)
    ):
        comp = Composition(comp)
        symbols = [el.symbol for el in comp.elements]
        if any(s not in mu for s in symbols) or not math.isfinite(e_form):
            skipped += 1
            continue
        per_atom = e_form + sum(comp.get_atomic_fraction(s) * mu[s] for s in symbols)
        entry_id = ids[index] if ids is not None else None
        entries.append(ComputedEntry(comp, per_atom * comp.num_atoms, entry_id=entry_id))
    if skipped:
        warnings.warn(f"skipped {skipped} entries without elemental references", stacklevel=2)
    return entries


def _chemsys(composition: Composition) -> frozenset[str]:
    return frozenset(el.symbol for el in composition.elements)


class HullReference:
    """E_hull of (composition, energy) pairs against a fixed set of reference entries.

    Example::

        >>> refs = load_elemental_references(
        ...     root / "hull" / "2023-02-07-mp-elemental-reference-entries.json.gz")
        >>> hull = HullReference.from_formation_energies(
        ...     frame.pretty_formula, frame.formation_energy_per_atom, refs, source="mp_20")
        >>> hull.e_above_hull("NaCl", -6.5)   # total energy of one formula unit, eV
    """

    def __init__(
        self,
        entries: Sequence[ComputedEntry] | None = None,
        *,
        source: str,
        patched: PatchedPhaseDiagram | None = None,
    ) -> None:
        """Use :meth:`from_formation_energies` or :meth:`from_patched_phase_diagram`."""
        self.source = source
        self._patched = patched
        self._by_chemsys: dict[frozenset[str], list[ComputedEntry]] = defaultdict(list)
        for entry in entries or []:
            self._by_chemsys[_chemsys(entry.composition)].append(entry)
        self._diagrams: dict[frozenset[str], PhaseDiagram | None] = {}
        self._programs: dict[frozenset[str], tuple[list[str], np.ndarray, np.ndarray] | None] = {}

    @classmethod
    def from_formation_energies(
        cls,
        compositions: Sequence[Composition | str],
        formation_energies_per_atom: Sequence[float],
        elemental_references: Mapping[str, ComputedEntry],
        *,
        source: str,
        ids: Sequence[str] | None = None,
    ) -> HullReference:
        """Hull from a dataset's formation energies plus the elemental reference entries."""
        entries = entries_from_formation_energies(
            compositions, formation_energies_per_atom, elemental_references, ids=ids
        )
        return cls([*entries, *elemental_references.values()], source=source)

    @classmethod
    def from_csv(
        cls, csv_paths: Sequence[str | Path], elemental_references: str | Path
    ) -> HullReference:
        """Hull from MP-20-style CSV files (``pretty_formula``, ``formation_energy_per_atom``,
        ``material_id`` columns) and the elemental reference file, e.g. mp_20 val + test."""
        import pandas as pd

        columns = ["material_id", "pretty_formula", "formation_energy_per_atom"]
        frame = pd.concat([pd.read_csv(p, usecols=columns) for p in csv_paths])
        return cls.from_formation_energies(
            frame["pretty_formula"].tolist(),
            frame["formation_energy_per_atom"].tolist(),
            load_elemental_references(elemental_references),
            ids=frame["material_id"].tolist(),
            source=" + ".join(f"{Path(p).parent.name}/{Path(p).name}" for p in csv_paths),
        )

    @classmethod
    def from_patched_phase_diagram(cls, path: str | Path) -> HullReference:
        """Load a pickled ``PatchedPhaseDiagram`` (``.pkl`` or ``.pkl.gz``), e.g. Matbench
        Discovery's ``2023-02-07-ppd-mp.pkl.gz``. Unpickling executes code from the file."""
        import pickle

        warnings.warn(
            f"unpickling {path}: a pickle can run arbitrary code; load only trusted files",
            stacklevel=2,
        )
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as handle:
            patched = pickle.load(handle)  # noqa: S301 - the user chose this file
        return cls(source=f"PatchedPhaseDiagram {Path(path).name}", patched=patched)

    def prepare(self, compositions: Sequence[Composition | str]) -> None:
        """Make the hulls of these compositions ready before many look-ups (nothing to do
        here; :class:`~flowllm_kit.evaluate.model_hull.RelaxedHull` relaxes its entries)."""

    @property
    def entries(self) -> list[ComputedEntry]:
        return [e for group in self._by_chemsys.values() for e in group]

    def _entries_within(self, chemsys: frozenset[str]) -> list[ComputedEntry]:
        """Every reference entry whose elements lie within ``chemsys``."""
        members = sorted(chemsys)
        return [
            e
            for size in range(1, len(members) + 1)
            for subset in itertools.combinations(members, size)
            for e in self._by_chemsys.get(frozenset(subset), [])
        ]

    def phase_diagram(self, chemsys: frozenset[str]) -> PhaseDiagram | None:
        """Phase diagram of every reference entry within ``chemsys`` (None if incomplete)."""
        from pymatgen.analysis.phase_diagram import PhaseDiagram

        if chemsys not in self._diagrams:
            try:
                self._diagrams[chemsys] = PhaseDiagram(self._entries_within(chemsys))
            except ValueError:  # an element of the system has no reference entry
                self._diagrams[chemsys] = None
        return self._diagrams[chemsys]

    def hull_program(
        self, chemsys: frozenset[str]
    ) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """The hull of ``chemsys`` as a linear program: its elements, the atom fractions of
        every reference entry within it (elements x entries) and their energies per atom (None
        if an element has no elemental entry, as :meth:`phase_diagram`)."""
        if chemsys not in self._programs:
            entries = self._entries_within(chemsys)
            elements = sorted(chemsys)
            terminal = {e.composition.elements[0].symbol for e in entries if e.is_element}
            if terminal != set(elements):
                self._programs[chemsys] = None
            else:
                fractions = np.array(
                    [[e.composition.get_atomic_fraction(el) for e in entries] for el in elements]
                )
                energies = np.array([e.energy_per_atom for e in entries])
                self._programs[chemsys] = (elements, fractions, energies)
        return self._programs[chemsys]

    def hull_energy_per_atom(self, composition: Composition) -> float:
        """The hull's energy per atom at ``composition``: the lowest energy of any mix of
        reference entries with that composition (NaN where not computable).

        Solved as a linear program (HiGHS through scipy) for systems of more than
        :data:`QHULL_MAX_ELEMENTS` elements, where pymatgen's ``PhaseDiagram`` builds the whole
        convex hull with qhull and its facets grow steeply with the dimension (a 7-element
        system of a de novo FlowMM sample took over 15 minutes); both give the same energy.
        """
        from scipy.optimize import linprog

        program = self.hull_program(_chemsys(composition))
        if program is None:
            return math.nan
        elements, fractions, energies = program
        target = [composition.get_atomic_fraction(el) for el in elements]
        mix = linprog(energies, A_eq=fractions, b_eq=target, bounds=(0, None), method="highs")
        return float(mix.fun) if mix.success else math.nan

    def e_above_hull(self, composition: Composition | str, energy: float) -> float:
        """Energy above the hull in eV/atom (negative below it; NaN if not computable).

        Args:
            composition: The cell's composition (or formula).
            energy: Total energy of that composition in eV, on the reference's energy scale
                (for the MP hulls: MP2020-compatible GGA/GGA+U energies).
        """
        from pymatgen.core import Composition
        from pymatgen.entries.computed_entries import ComputedEntry

        entry = ComputedEntry(Composition(composition), energy)
        if not math.isfinite(energy):
            return math.nan
        if self._patched is not None:
            diagram: Any = self._patched
        elif len(entry.composition.elements) > QHULL_MAX_ELEMENTS:
            return entry.energy_per_atom - self.hull_energy_per_atom(entry.composition)
        else:
            diagram = self.phase_diagram(_chemsys(entry.composition))
            if diagram is None:
                return math.nan
        try:
            _, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
        except ValueError:  # composition outside the diagram
            return math.nan
        return math.nan if e_hull is None else float(e_hull)

    def e_above_hull_many(
        self, compositions: Sequence[Composition | str], energies: Sequence[float]
    ) -> np.ndarray:
        """``(n,)`` E_hull in eV/atom for each (composition, total energy) pair."""
        pairs = zip(compositions, energies, strict=True)
        return np.array([self.e_above_hull(c, e) for c, e in pairs], dtype=float)


def stability_flags(
    e_hull: Sequence[float],
    num_elements: Sequence[int],
    *,
    threshold: float = 0.0,
    min_elements: int = 2,
    tolerance: float = 1e-8,
) -> np.ndarray:
    """``(n,)`` E_hull <= threshold (+ tolerance) and at least ``min_elements`` elements; NaN
    counts False.

    Use ``threshold=0.0`` for stability (a known material on the hull has E_hull 0 and counts as
    stable) and 0.08 or 0.1 eV/atom for metastability. ``tolerance`` (eV/atom) absorbs rounding:
    hull vertices come out at E_hull ~1e-14 rather than exactly 0.
    """
    e_hull = np.asarray(e_hull, dtype=float)
    with np.errstate(invalid="ignore"):
        return (e_hull <= threshold + tolerance) & (np.asarray(num_elements) >= min_elements)
