"""The crystal sets a run is scored on: generated systems, controls, hull, reference fingerprints.

Shared by notebook 07 and ``python -m flowllm_kit evaluate``:

* :func:`find_systems`: the generated crystals of a run folder, one list per system.
* :func:`control_systems`: real eval-split crystals and perturbed copies of them.
* :func:`elemental_reference_file` / :func:`dataset_hull`: the hull of a dataset's val + test.
* :func:`reference_fingerprints`: CrystalNN fingerprints of the reference, cached to a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flowllm_kit.crystal import Crystal
from flowllm_kit.crystal.io import crystal_from_dict, read_jsonl
from flowllm_kit.data import locate_csv
from flowllm_kit.data.paths import data_roots
from flowllm_kit.evaluate.coverage import Fingerprints, fingerprints
from flowllm_kit.evaluate.hull import HullReference
from flowllm_kit.llm.draws import read_draws
from flowllm_kit.run import LLM_ONLY, RunFolder

__all__ = [
    "ELEMENTAL_REFERENCE_FILE",
    "control_systems",
    "dataset_hull",
    "elemental_reference_file",
    "find_systems",
    "reference_fingerprints",
]

ELEMENTAL_REFERENCE_FILE = "hull/2023-02-07-mp-elemental-reference-entries.json.gz"
"""Materials Project elemental references (Matbench Discovery), relative to a data root."""


def find_systems(
    run_dir: str | Path, *, n: int | None = None, names: Sequence[str] | None = None
) -> dict[str, list[Crystal]]:
    """Generated crystals of a run folder, by system name.

    Every ``<run_dir>/samples/<system>.jsonl`` (crystal records,
    :func:`~flowllm_kit.crystal.write_crystals`) is one system, named by its file stem, and
    the kept draws of ``<run_dir>/llm_samples.jsonl`` (:class:`~flowllm_kit.llm.LLMDraw`
    records) are the system ``llm_only``, in draw order. A crystal without an id is named
    ``<system>-<number>``. Files are read without repairing a cut-off last line. Systems
    without any crystal are left out.

    Args:
        run_dir: The run folder.
        n: At most this many crystals per system (None: all).
        names: Only these systems, in this order (None: all); a name the run folder has no
            crystals for is left out, as a system without crystals is.

    Returns:
        ``{system: crystals}``, the ``samples/`` files in name order, then ``llm_only``.
    """

    systems: dict[str, list[Crystal]] = {}
    for name, path in RunFolder(run_dir).sample_sets().items():
        if names is not None and name not in names:
            continue
        if name == LLM_ONLY:  # the LLM's draws: its kept crystals, in draw order
            found = [d.crystal for d in read_draws(path, repair=False) if d.crystal is not None]
            crystals = [c.replace(id=f"{name}-{k}") for k, c in enumerate(found)]
        else:  # crystal records (write_crystals); the readers only read, never repair
            rows = [r for r in read_jsonl(path, repair=False) if "atomic_numbers" in r]
            ids = [r.get("id") or f"{name}-{number}" for number, r in enumerate(rows)]
            crystals = [crystal_from_dict(r, id=k) for r, k in zip(rows, ids, strict=True)]
        if crystals:
            systems[name] = crystals[:n]
    if names is not None:
        return {name: systems[name] for name in names if name in systems}
    return systems


def control_systems(
    real: Sequence[Crystal], *, perturbation: float = 0.1, seed: int = 0
) -> dict[str, list[Crystal]]:
    """The controls: real crystals and copies with atoms moved and lattice lengths strained.

    Each copy (id ``<id>-perturbed``) has every atom moved by a Gaussian step of standard
    deviation ``perturbation`` Å along each axis and each lattice length strained by a uniform
    factor in ±3%; angles and atom types are kept.

    Args:
        real: Real crystals, e.g. of the evaluation split.
        perturbation: Standard deviation of the atom steps, Å.
        seed: Seed of the steps and strains.

    Returns:
        ``{"real": real, "perturbed": copies}``.
    """
    real = list(real)
    rng = np.random.default_rng(seed)
    steps = [rng.normal(0, perturbation, (c.num_atoms, 3)) / c.lengths for c in real]  # Å -> frac
    strains = rng.uniform(-0.03, 0.03, (len(real), 3))
    perturbed = [
        c.replace(
            id=f"{c.id}-perturbed", frac_coords=c.frac_coords + step, lengths=c.lengths * (1 + e)
        )
        for c, step, e in zip(real, steps, strains, strict=True)
    ]
    return {"real": real, "perturbed": perturbed}


def elemental_reference_file(root: str | Path | None = None) -> Path | None:
    """The first :data:`ELEMENTAL_REFERENCE_FILE` in the data roots (None: in none of them).

    Args:
        root: A data folder searched first (see :func:`flowllm_kit.data.paths.data_roots`).
    """

    found = (r / ELEMENTAL_REFERENCE_FILE for r in data_roots(root))
    return next((path for path in found if path.is_file()), None)


def dataset_hull(dataset: str, *, root: str | Path | None = None) -> HullReference | None:
    """The hull of ``dataset``'s val + test formation energies and the elemental references.

    Args:
        dataset: A dataset with ``val`` and ``test`` CSVs, e.g. ``"mp_20"``.
        root: A data folder searched first, for the CSVs and the elemental file.

    Returns:
        The hull, or None without the elemental reference file in any data root.

    Raises:
        FileNotFoundError: If the elemental file is there but a CSV of ``dataset`` is not.
    """

    elemental = elemental_reference_file(root)
    if elemental is None:
        return None
    csvs = [locate_csv(dataset, split, root=root) for split in ("val", "test")]
    return HullReference.from_csv(csvs, elemental)


def reference_fingerprints(
    reference: Sequence[Crystal], *, path: str | Path, processes: int | None = None
) -> Fingerprints:
    """CrystalNN fingerprints of the reference crystals, computed once and saved at ``path``.

    An existing file at ``path`` is loaded as is: name it after the reference set.

    Args:
        reference: The reference crystals.
        path: The ``.npz`` cache file.
        processes: Worker processes for the fingerprints (None: one per core).
    """
    path = Path(path)
    if path.is_file():
        return Fingerprints.load(path)
    computed = fingerprints(
        list(reference), processes=processes, desc="CrystalNN fingerprints (reference)"
    )
    computed.save(path)
    return computed
