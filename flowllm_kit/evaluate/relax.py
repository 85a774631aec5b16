"""CHGNet relaxation of many crystals, resumable and crash-tolerant (REFERENCE §9 defaults).

Each structure is relaxed with ASE's FIRE under CHGNet (the pretrained weights shipped in
the ``chgnet`` wheel, no download), cell included through a Fréchet cell filter, until the
largest force (and stress, through the filter) is below ``fmax`` or ``max_steps`` is reached.
Structures go to worker processes with one torch thread each: on small cells that is much
faster than one process with several threads. BLAS is limited to one thread during each
relaxation: the cell filter solves tiny 3x3 systems every step, and a multi-threaded OpenBLAS
on a busy machine made those take ~20 ms each (0.45 s per FIRE step instead of ~0.05 s).
Every finished structure is appended to a JSON-lines cache at once, so a rerun skips it; an
exception inside the relaxer is recorded in the result (``error``), never raised.

CHGNet energies sit on the MP2020-corrected scale of the Materials Project hulls in
:mod:`flowllm_kit.evaluate.hull`, so no correction is applied. Checked on 12 MP-20 oxides: CHGNet
is within ~0.02 eV/atom of the corrected DFT energies, where the uncorrected scale would differ
by ~0.34 eV/atom (the oxide correction).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flowllm_kit.evaluate._structures import StructureLike, structure_key, to_structures

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["RelaxResult", "RelaxSettings", "read_cache", "relax", "structure_key"]


@dataclass(frozen=True)
class RelaxSettings:
    """How structures are relaxed (recorded in every cached result).

    Attributes:
        fmax: Force convergence threshold in eV/Å (REFERENCE: 0.1).
        max_steps: Largest number of optimizer steps (REFERENCE: 1500).
        relax_cell: Relax the lattice too (REFERENCE: yes).
        optimizer: ASE optimizer.
        cell_filter: ASE filter used when ``relax_cell`` is set.
        model: CHGNet pretrained version (``"0.3.0"`` ships in the wheel).
    """

    fmax: float = 0.1
    max_steps: int = 1500
    relax_cell: bool = True
    optimizer: Literal["FIRE", "BFGS", "LBFGS"] = "FIRE"
    cell_filter: Literal["FrechetCellFilter", "ExpCellFilter"] = "FrechetCellFilter"
    model: Literal["0.3.0", "0.2.0"] = "0.3.0"


@dataclass(frozen=True)
class RelaxResult:
    """The outcome of relaxing one structure.

    Attributes:
        key: Identifier (given, or :func:`structure_key` of the input).
        formula: Reduced formula.
        num_atoms: Atoms in the cell.
        initial_energy: CHGNet energy of the input, eV/atom (NaN after a crash).
        final_energy: CHGNet energy after relaxation, eV/atom (NaN after a crash).
        steps: Optimizer steps taken.
        converged: Whether the optimizer met ``fmax`` within ``max_steps``.
        seconds: Wall time of this relaxation.
        final_structure: The relaxed structure as a pymatgen dict (None after a crash).
        error: ``"ExceptionType: message"`` if the relaxer raised, else None.
        settings: The :class:`RelaxSettings` used, as a dict.
    """

    key: str
    formula: str
    num_atoms: int
    initial_energy: float
    final_energy: float
    steps: int
    converged: bool
    seconds: float
    final_structure: dict[str, Any] | None
    error: str | None
    settings: dict[str, Any]

    @property
    def structure(self) -> Structure | None:
        """The relaxed structure as a pymatgen ``Structure``."""
        from pymatgen.core import Structure

        return None if self.final_structure is None else Structure.from_dict(self.final_structure)

    def to_json(self) -> str:
        from monty.json import MontyEncoder  # numpy scalars in site properties

        return json.dumps(asdict(self), cls=MontyEncoder)

    @classmethod
    def from_json(cls, line: str) -> RelaxResult:
        return cls(**json.loads(line))


# --- worker side --------------------------------------------------------------------------
_MODEL: dict[str, Any] = {}


def _worker_init(model: str, threads: int) -> None:
    import torch
    from chgnet.model import CHGNet

    torch.set_num_threads(threads)
    if model not in _MODEL:
        with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet v0.3.0 initialized ..."
            _MODEL[model] = CHGNet.load(model_name=model, verbose=False)


def _relax_one(job: tuple[str, Structure, RelaxSettings]) -> RelaxResult:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn (a matminer dependency)
        return _relax_unlimited(job)
    with threadpool_limits(limits=1, user_api="blas"):
        return _relax_unlimited(job)


def _relax_unlimited(job: tuple[str, Structure, RelaxSettings]) -> RelaxResult:
    key, structure, settings = job
    start = time.perf_counter()
    initial = math.nan
    try:
        import ase.filters
        import ase.optimize
        from chgnet.model import CHGNetCalculator
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(structure)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet will run on cpu"
                calculator = CHGNetCalculator(model=_MODEL[settings.model], use_device="cpu")
            atoms.calc = calculator
            initial = float(atoms.get_potential_energy()) / len(atoms)
            target = (
                getattr(ase.filters, settings.cell_filter)(atoms) if settings.relax_cell else atoms
            )
            optimizer = getattr(ase.optimize, settings.optimizer)(target, logfile=None)
            converged = bool(optimizer.run(fmax=settings.fmax, steps=settings.max_steps))
            final = float(atoms.get_potential_energy()) / len(atoms)
        relaxed = AseAtomsAdaptor.get_structure(atoms)
        outcome = dict(
            final_energy=final,
            steps=int(optimizer.nsteps),
            converged=converged,
            final_structure=relaxed.as_dict(),
            error=None,
        )
    except Exception as exc:  # recorded, not fatal: one bad crystal must not stop a run
        outcome = dict(
            final_energy=math.nan,
            steps=0,
            converged=False,
            final_structure=None,
            error=f"{type(exc).__name__}: {exc}",
        )
    return RelaxResult(
        key=key,
        formula=structure.composition.reduced_formula,
        num_atoms=len(structure),
        initial_energy=initial,
        seconds=time.perf_counter() - start,
        settings=asdict(settings),
        **outcome,
    )


# --- driver -------------------------------------------------------------------------------
def read_cache(path: str | Path, settings: RelaxSettings) -> dict[str, RelaxResult]:
    """Results in a cache file that were made with ``settings`` (later lines win)."""
    path = Path(path)
    found: dict[str, RelaxResult] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            result = RelaxResult.from_json(line)
        except (json.JSONDecodeError, TypeError):  # a line cut short by an interrupted run
            continue
        if result.settings == asdict(settings):
            found[result.key] = result
    return found


def _results(
    jobs: list[tuple[str, Structure, RelaxSettings]], processes: int, threads: int
) -> Iterator[RelaxResult]:
    if not jobs:
        return
    model = jobs[0][2].model
    if processes == 1:
        import torch

        before = torch.get_num_threads()
        _worker_init(model, threads)
        try:
            yield from map(_relax_one, jobs)
        finally:
            torch.set_num_threads(before)
        return
    context = multiprocessing.get_context("spawn")  # torch is not fork-safe once threaded
    with context.Pool(processes, initializer=_worker_init, initargs=(model, threads)) as pool:
        yield from pool.imap_unordered(_relax_one, jobs)


def relax(
    structures: Sequence[StructureLike],
    *,
    keys: Sequence[str] | None = None,
    settings: RelaxSettings | None = None,
    cache: str | Path | None = None,
    processes: int | None = None,
    threads_per_process: int = 1,
) -> list[RelaxResult]:
    """Relax every structure with CHGNet; reuse and extend a JSON-lines cache.

    Args:
        structures: Pymatgen ``Structure`` or kit ``Crystal`` objects.
        keys: One identifier per structure (default: :func:`structure_key`). Structures with
            equal keys are taken to be the same and relaxed once.
        settings: Relaxation settings (default: REFERENCE §9, ``RelaxSettings()``).
        cache: JSON-lines file; results already in it (same key and settings) are not
            recomputed, and new results are appended as they finish. Recorded crashes count
            as finished; a worker killed outright (e.g. out of memory) stops the run, and a
            rerun resumes after the last finished structure.
        processes: Worker processes (default: one per CPU core). Fewer than 4 structures to
            relax are always relaxed in this process (starting workers costs seconds).
        threads_per_process: Torch threads in each worker.

    Returns:
        One :class:`RelaxResult` per structure, in input order.
    """
    settings = settings or RelaxSettings()
    prepared = to_structures(structures)
    keys = list(keys) if keys is not None else [structure_key(s) for s in prepared]
    if len(keys) != len(prepared):
        raise ValueError(f"{len(keys)} keys for {len(prepared)} structures")
    done = read_cache(cache, settings) if cache is not None else {}
    todo = {
        k: s for k, s in zip(keys, prepared, strict=True) if k not in done
    }  # first of equal keys
    jobs = [(k, s, settings) for k, s in todo.items()]
    handle = None
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        handle = open(cache, "a")  # noqa: SIM115 - closed below, written line by line
    try:
        workers = 1 if len(jobs) < 4 else (processes or os.cpu_count() or 1)
        for result in _results(jobs, workers, threads_per_process):
            done[result.key] = result
            if handle is not None:
                handle.write(result.to_json() + "\n")
                handle.flush()
    finally:
        if handle is not None:
            handle.close()
    return [done[k] for k in keys]
