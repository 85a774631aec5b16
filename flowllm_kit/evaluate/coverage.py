"""Coverage recall and precision against a reference split (CDVAE's COV-R / COV-P).

Each crystal gets two fingerprints:

* structure: the mean over sites of matminer's ``CrystalNNFingerprint`` ("ops" preset, 61
  numbers per site);
* composition: matminer's Magpie ``ElementProperty`` (132 numbers), z-scored with the mean and
  standard deviation of the *reference* fingerprints (constant columns keep unit scale, NaN
  becomes 0 after scaling, as in CDVAE).

A reference crystal is *recalled* when some generated crystal is within both cutoffs of it
(Euclidean distances); a generated crystal is *precise* when some reference crystal is within
both cutoffs of it. Crystals whose fingerprint fails (CrystalNN can raise on odd geometries)
are dropped, but still count in the precision denominator, as in CDVAE.

CrystalNN is slow (~0.1-0.2 s per MP-20 crystal on one core), so fingerprints are computed in
worker processes and can be saved with :meth:`Fingerprints.save`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from flowllm_kit.crystal.convert import StructureLike, as_structures
from flowllm_kit.evaluate.validity import structural_validity
from flowllm_kit.progress import progress_bar

__all__ = [
    "COVERAGE_CUTOFFS",
    "Coverage",
    "Fingerprints",
    "coverage",
    "fingerprints",
]

# (structure cutoff, composition cutoff) per dataset, CDVAE's values.
COVERAGE_CUTOFFS: dict[str, tuple[float, float]] = {
    "mp_20": (0.4, 10.0),
    "perov_5": (0.2, 4.0),
    "carbon_24": (0.2, 4.0),
}
STRUCTURE_SIZE = 61  # CrystalNN "ops" site fingerprint length
COMPOSITION_SIZE = 132  # Magpie ElementProperty length


@dataclass(frozen=True)
class Fingerprints:
    """Fingerprints of n crystals; a row of NaN marks a crystal whose fingerprint failed.

    Attributes:
        structure: ``(n, 61)`` mean CrystalNN site fingerprints.
        composition: ``(n, 132)`` Magpie composition features, unscaled.
    """

    structure: np.ndarray
    composition: np.ndarray

    def __len__(self) -> int:
        return len(self.structure)

    @property
    def ok(self) -> np.ndarray:
        """``(n,)`` True where the structure fingerprint could be computed."""
        return ~np.isnan(self.structure).any(axis=1)

    def save(self, path: str | Path) -> Path:
        """Write both arrays to an ``.npz`` file; returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, structure=self.structure, composition=self.composition)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Fingerprints:
        with np.load(path) as data:
            return cls(structure=data["structure"], composition=data["composition"])


_FEATURIZERS: tuple = ()


def _featurizers() -> tuple:
    global _FEATURIZERS
    if not _FEATURIZERS:
        from matminer.featurizers.composition import ElementProperty
        from matminer.featurizers.site import CrystalNNFingerprint

        _FEATURIZERS = (
            CrystalNNFingerprint.from_preset("ops"),
            ElementProperty.from_preset("magpie"),
        )
    return _FEATURIZERS


FINGERPRINT_TIME_LIMIT = 60.0
"""Seconds one structure's CrystalNN fingerprint may take. A few generated crystals (atoms
nearly on top of each other, cells packed far denser than any real one) keep CrystalNN's
Voronoi search busy for many minutes; past the limit such a crystal gets no fingerprint, as
for a structure CrystalNN cannot handle at all (CDVAE), and it does not hold up the run."""


class _TimeLimit(Exception):
    pass


def _on_alarm(signum, frame) -> None:  # noqa: ANN001
    raise _TimeLimit


def _fingerprint_one(  # noqa: ANN201
    structure,  # noqa: ANN001
    time_limit: float | None = FINGERPRINT_TIME_LIMIT,
    sites: bool = True,
):
    """``(mean site fingerprint, composition features)`` of one structure; the first is NaN
    when ``sites`` is False, when CrystalNN fails, or when it runs past ``time_limit`` seconds
    (SIGALRM: main thread, POSIX; a limit only takes effect between Python calls)."""
    site_featurizer, composition_featurizer = _featurizers()
    use_alarm = (
        time_limit is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no oxidation states", missing Magpie values
        composition = np.array(composition_featurizer.featurize(structure.composition), float)
        if not sites:
            return np.full(STRUCTURE_SIZE, np.nan), composition
        previous = signal.signal(signal.SIGALRM, _on_alarm) if use_alarm else None
        try:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, time_limit)
            per_site = [site_featurizer.featurize(structure, i) for i in range(len(structure))]
            mean = np.mean(np.array(per_site, dtype=float), axis=0)
        except Exception:  # CDVAE: a structure CrystalNN cannot handle has no fingerprint
            mean = np.full(STRUCTURE_SIZE, np.nan)
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
    return mean, composition


def _fingerprint_task(task: tuple, time_limit: float | None):  # noqa: ANN202
    structure, sites = task
    return _fingerprint_one(structure, time_limit=time_limit, sites=sites)


def fingerprints(
    structures: Sequence[StructureLike],
    *,
    processes: int | None = None,
    start_method: Literal["fork", "spawn", "forkserver"] | None = None,
    time_limit: float | None = FINGERPRINT_TIME_LIMIT,
    skip_invalid: bool = True,
    desc: str = "CrystalNN fingerprints",
) -> Fingerprints:
    """Structure and composition fingerprints of every structure.

    A structure with atoms closer than 0.5 Å (structurally invalid, see
    :func:`~flowllm_kit.evaluate.structural_validity`) gets no structure fingerprint unless
    ``skip_invalid`` is False: CrystalNN's site environments mean nothing there, and on such
    generated crystals qhull's Voronoi construction, a single C call the time limit cannot
    interrupt, ran for over ten minutes. CDVAE computed them; generated sets with invalid
    crystals therefore lose a little coverage precision here (a missing fingerprint counts as
    not covering).

    Args:
        structures: Pymatgen ``Structure`` or kit ``Crystal`` objects.
        processes: Worker processes (default: every CPU core; 1 computes in this process).
            Fewer than 8 structures are always computed in this process.
        start_method: Multiprocessing start method (default: the platform's).
        time_limit: Seconds a structure's CrystalNN fingerprint may take before it is given
            up as failed (:data:`FINGERPRINT_TIME_LIMIT`); ``None``: no limit.
        desc: Label of the progress the series runner shows.

    Returns:
        :class:`Fingerprints` with one row per structure, in order.
    """
    prepared = as_structures(structures)
    processes = processes or os.cpu_count() or 1

    compute = structural_validity(prepared) if skip_invalid else [True] * len(prepared)
    one = partial(_fingerprint_task, time_limit=time_limit)
    tasks = list(zip(prepared, compute, strict=True))
    # No bar in a notebook (the reference set's is cached and the systems' are quick), but the
    # series runner shows it: the first run fingerprints hundreds of reference crystals.
    with progress_bar(total=len(tasks), desc=desc, unit="crystals", disable=True) as bar:
        if processes == 1 or len(prepared) < 8:
            rows = []
            for task in tasks:
                rows.append(one(task))
                bar.update(1)
        else:
            context = multiprocessing.get_context(start_method)
            with context.Pool(processes) as pool:
                # One structure per task: a slow structure delays only itself, not a chunk.
                rows = []
                for row in pool.imap(one, tasks, chunksize=1):
                    rows.append(row)
                    bar.update(1)
    if not rows:
        return Fingerprints(np.empty((0, STRUCTURE_SIZE)), np.empty((0, COMPOSITION_SIZE)))
    return Fingerprints(
        structure=np.stack([r[0] for r in rows]),
        composition=np.stack([r[1] for r in rows]),
    )


@dataclass(frozen=True)
class Coverage:
    """Coverage of a reference set by generated crystals.

    Attributes:
        recall: Fraction of reference crystals with a generated crystal within both cutoffs.
        precision: Fraction of generated crystals with a reference crystal within both cutoffs
            (denominator: every generated crystal, fingerprinted or not).
        structure_cutoff: Cutoff on structure-fingerprint distance.
        composition_cutoff: Cutoff on scaled composition-fingerprint distance.
        num_generated: Generated crystals counted.
        num_reference: Reference crystals with fingerprints.
        covered: ``(num_reference,)`` whether each fingerprinted reference crystal is recalled
            (recall is its mean).
        precise: ``(number of generated fingerprints,)`` whether each fingerprinted generated
            crystal has a reference crystal close to it.
    """

    recall: float
    precision: float
    structure_cutoff: float
    composition_cutoff: float
    num_generated: int
    num_reference: int
    covered: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)
    precise: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)


def coverage(
    generated: Fingerprints,
    reference: Fingerprints,
    *,
    dataset: Literal["mp_20", "perov_5", "carbon_24"] = "mp_20",
    structure_cutoff: float | None = None,
    composition_cutoff: float | None = None,
    num_generated: int | None = None,
) -> Coverage:
    """Coverage recall and precision (CDVAE definition, see the module notes).

    Args:
        generated: Fingerprints of the generated crystals.
        reference: Fingerprints of the reference crystals (e.g. the test split).
        dataset: Picks the cutoffs from :data:`COVERAGE_CUTOFFS`.
        structure_cutoff: Overrides the dataset's structure cutoff.
        composition_cutoff: Overrides the dataset's composition cutoff.
        num_generated: Precision denominator (default ``len(generated)``; pass the number of
            generated crystals when ``generated`` holds only a filtered part of them).

    Returns:
        A :class:`Coverage`.
    """
    from scipy.spatial.distance import cdist

    default_structure, default_composition = COVERAGE_CUTOFFS[dataset]
    structure_cutoff = default_structure if structure_cutoff is None else structure_cutoff
    composition_cutoff = default_composition if composition_cutoff is None else composition_cutoff
    num_generated = len(generated) if num_generated is None else num_generated
    gen_ok, ref_ok = generated.ok, reference.ok
    ref_composition = reference.composition[ref_ok]
    mean = np.nanmean(ref_composition, axis=0)
    std = np.nanstd(ref_composition, axis=0)
    std = np.where((std == 0) | np.isnan(std), 1.0, std)

    def scale(x: np.ndarray) -> np.ndarray:
        return np.nan_to_num((x - mean) / std, nan=0.0)

    structure_distance = cdist(generated.structure[gen_ok], reference.structure[ref_ok])
    composition_distance = cdist(scale(generated.composition[gen_ok]), scale(ref_composition))
    close = (structure_distance <= structure_cutoff) & (composition_distance <= composition_cutoff)
    num_reference = int(ref_ok.sum())
    covered, precise = close.any(axis=0), close.any(axis=1)
    recall = float(covered.mean()) if num_reference else float("nan")
    precision = float(precise.sum() / num_generated) if num_generated else float("nan")
    return Coverage(
        recall=recall,
        precision=precision,
        structure_cutoff=structure_cutoff,
        composition_cutoff=composition_cutoff,
        num_generated=num_generated,
        num_reference=num_reference,
        covered=covered,
        precise=precise,
    )
