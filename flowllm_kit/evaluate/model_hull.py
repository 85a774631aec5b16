"""A hull whose energies come from the same model and relaxation as the crystals placed on it.

Against a hull of DFT energies, a crystal's E_hull mixes two things: how far it is from
stability, and how far CHGNet's energy scale sits from DFT's for its chemistry (on MP-20 test, a
median +9 meV/atom and a mean absolute 22 meV/atom). At the 0 eV/atom threshold the second
dominates: real test crystals and the demo's generated crystals came out "stable" equally often.
:class:`RelaxedHull` removes the offset the way LeMat-GenBench builds its hulls: every reference
crystal is relaxed with the same CHGNet settings as the generated crystals, and the hull is made
of those energies. A real crystal that is not itself in the hull then lands near 0, and a
generated one only lands there if it is as good.

The reference crystals are a dataset split (the training split in the kit's stages). Relaxing all
of them would take hours on a CPU, so the hull is built lazily, per chemical system: before
crystals are placed on it, :meth:`RelaxedHull.prepare` relaxes, in one batch, just the reference
crystals whose elements are a subset of some crystal's elements. Results go to a relaxation
cache (keyed by structure and settings), so they are computed once and an interrupted run
resumes. Each element needs a terminal entry: the split's own crystals of that element, else
ASE's reference crystal structure for it (``ase.build.bulk``), relaxed the same way; an element
with neither leaves its systems without a hull (E_hull NaN, counted as not stable).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowllm_kit.crystal import Crystal
from flowllm_kit.evaluate.hull import HullReference
from flowllm_kit.relax import RelaxConfig, relax_structures

if TYPE_CHECKING:
    import numpy as np
    from pymatgen.analysis.phase_diagram import PhaseDiagram
    from pymatgen.core import Composition, Structure
    from torch_sim.models.interface import ModelInterface

__all__ = ["RelaxedHull", "elemental_structure"]

# (structures) -> total energy of each structure's relaxed cell, eV (NaN where it failed)
EnergyFunction = Callable[[list["Structure"]], list[float]]


def elemental_structure(symbol: str) -> Structure | None:
    """ASE's reference crystal of an element (``ase.build.bulk``), or None where ASE has none
    (molecular elements such as O or N, and a few others)."""
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        atoms = bulk(symbol)
    except (ValueError, KeyError, RuntimeError, NotImplementedError):
        return None
    return AseAtomsAdaptor.get_structure(atoms)


def _chemsys(symbols: Iterable[str]) -> frozenset[str]:
    return frozenset(symbols)


def _subsystems(chemsys: frozenset[str]) -> list[frozenset[str]]:
    members = sorted(chemsys)
    return [
        frozenset(subset)
        for size in range(1, len(members) + 1)
        for subset in itertools.combinations(members, size)
    ]


class RelaxedHull(HullReference):
    """E_hull against reference crystals relaxed with the evaluation's own model and settings.

    Example::

        >>> hull = RelaxedHull(training_crystals, relax=RelaxConfig(max_steps=250),
        ...                    cache_path="hull_relax.jsonl", source="mp_20 val, CHGNet")
        >>> hull.prepare(["NaCl", "LiFePO4"])        # relaxes the reference crystals needed
        >>> hull.e_above_hull("NaCl", -27.1)          # total energy of the cell, eV

    Args:
        crystals: The reference crystals (a dataset split); their energies are not needed.
        relax: The relaxation settings, the same as the evaluated crystals'.
        cache_path: Relaxation cache of the reference crystals (shared between runs is fine:
            results are keyed by structure and settings).
        source: Names the hull in reports.
        progress: Show a bar while relaxing reference crystals.
        energies: Replaces the CHGNet relaxation (tests pass exact energies).
        model: A torch-sim model instead of CHGNet (passed to the relaxation).
    """

    def __init__(
        self,
        crystals: Sequence[Crystal],
        *,
        relax: RelaxConfig | None = None,
        cache_path: str | Path | None = None,
        source: str,
        progress: bool = False,
        energies: EnergyFunction | None = None,
        model: ModelInterface | None = None,
    ) -> None:
        super().__init__(source=source)
        self.relax = relax or RelaxConfig()
        self.cache_path = None if cache_path is None else Path(cache_path)
        self._progress = progress
        self._model = model
        self._energies = energies or self._relaxed_energies
        self._waiting: dict[frozenset[str], list[Crystal]] = defaultdict(list)
        for crystal in crystals:
            self._waiting[_chemsys(crystal.elements)].append(crystal)
        self._ready: set[frozenset[str]] = set()
        self.relaxed = 0  # reference crystals placed on the hull so far
        self.failed = 0  # reference crystals whose relaxation failed (left out of the hull)
        self.missing_elements: set[str] = set()  # elements without any terminal entry

    def summary(self) -> dict[str, Any]:
        """What the hull holds so far: its source, relaxation settings and counts."""
        return {
            "source": self.source,
            "relaxation": self.relax.result_settings(),
            "reference crystals relaxed": self.relaxed,
            "reference relaxations failed": self.failed,
            "elements without a terminal entry": sorted(self.missing_elements),
        }

    def _relaxed_energies(self, structures: list[Structure]) -> list[float]:
        results = relax_structures(
            structures, config=self.relax, cache_path=self.cache_path,
            progress=self._progress, desc="CHGNet relax (hull)", model=self._model,
        )  # fmt: skip
        return [
            math.nan
            if r.final_structure is None
            else r.final_energy_per_atom * len(r.final_structure)
            for r in results
        ]

    def prepare(self, compositions: Iterable[Composition | str]) -> None:
        """Relax, in one batch, every reference crystal the hulls of these compositions need."""
        from pymatgen.core import Composition

        wanted = {
            system
            for composition in compositions
            for system in _subsystems(
                _chemsys(el.symbol for el in Composition(composition).elements)
            )
            if system not in self._ready
        }
        if not wanted:
            return
        crystals = [c for system in sorted(wanted, key=sorted) for c in self._waiting[system]]
        structures = [c.to_structure() for c in crystals]
        elemental = []  # elements of the wanted systems without a crystal of their own
        for system in wanted:
            if len(system) == 1 and not self._waiting[system]:
                (symbol,) = system
                structure = elemental_structure(symbol)
                if structure is None:
                    self.missing_elements.add(symbol)
                else:
                    elemental.append(structure)
        structures += elemental
        energies = self._energies(structures) if structures else []
        self._add(structures, energies)
        self._ready |= wanted

    def _add(self, structures: Sequence[Structure], energies: Sequence[float]) -> None:
        from pymatgen.entries.computed_entries import ComputedEntry

        for structure, energy in zip(structures, energies, strict=True):
            if not math.isfinite(energy):
                self.failed += 1
                continue
            entry = ComputedEntry(structure.composition, energy)
            self._by_chemsys[_chemsys(el.symbol for el in entry.composition.elements)].append(entry)
            self.relaxed += 1

    def phase_diagram(self, chemsys: frozenset[str]) -> PhaseDiagram | None:
        """As :meth:`HullReference.phase_diagram`, relaxing the system's reference crystals
        first if :meth:`prepare` has not."""
        if chemsys not in self._ready:
            self.prepare(["".join(sorted(chemsys))])
        return super().phase_diagram(chemsys)

    def hull_program(
        self, chemsys: frozenset[str]
    ) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """As :meth:`HullReference.hull_program`, relaxing the system's reference crystals
        first if :meth:`prepare` has not."""
        if chemsys not in self._ready:
            self.prepare(["".join(sorted(chemsys))])
        return super().hull_program(chemsys)
