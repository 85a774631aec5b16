"""What the viewer shows, read from a run folder: each system's crystals, their flow
trajectories, the LLM text they came from and their evaluation rows.

Plain data and pure functions, without Dash, so they are tested on their own. The run folder
is the one notebooks 04-07 (or ``python -m flowllm_kit sample-llm / sample / evaluate``) write:

* ``samples/<system>.jsonl``: the final crystals of each system, one per line, in start order;
* ``samples/trajectory_<system>.npz``: recorded trajectories of the *first* few of them
  (:meth:`flowllm_kit.flow.Trajectory.save`; crystal ``i`` of the batch is line ``i``);
* ``llm_samples.jsonl``: the LLM's draws with their text, FlowLLM's start crystals;
* ``evaluation/<system>/per_structure.csv``: one row per evaluated crystal, in sample order
  (:meth:`flowllm_kit.evaluate.Report.save`).

Example::

    >>> run = load_run("runs/smoke")
    >>> frames = crystal_frames(run, "flowllm", 0)  # start (the LLM crystal) ... final
    >>> frame_structure(run, "flowllm", 0, len(frames) - 1)  # pymatgen Structure
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from flowllm_kit import text
from flowllm_kit.crystal import Crystal
from flowllm_kit.crystal.io import crystal_from_dict, read_jsonl
from flowllm_kit.crystal.store import CrystalFileError
from flowllm_kit.flow.sampler import Trajectory
from flowllm_kit.geometry import torus
from flowllm_kit.llm.draws import LLMDraw, read_draws
from flowllm_kit.run import RunFolder, RunFolderError
from flowllm_kit.viz.trajectory import crystal_path

if TYPE_CHECKING:
    import pandas as pd
    from pymatgen.core import Structure

    from flowllm_kit.flow.sampler import Trajectory

__all__ = [
    "SYSTEMS",
    "CrystalText",
    "Frame",
    "RunFolderError",
    "RunView",
    "SystemName",
    "SystemSamples",
    "crystal_frames",
    "crystal_text",
    "describe_frame",
    "evaluation_row",
    "frame_at",
    "frame_structure",
    "load_run",
]

SystemName = Literal["flowllm", "flowmm", "flowmm_csp", "flowllm_types"]
SYSTEMS: tuple[SystemName, ...] = ("flowllm", "flowmm", "flowmm_csp", "flowllm_types")
"""The sampled systems the viewer knows, in the order it lists them."""

# Where the LLM's draw number sits in a crystal id: "llm-7" (FlowLLM), "types-llm-7" (Types).
_DRAW_IN_ID = re.compile(r"(?:^|-)llm-(\d+)$")
# A trajectory's last state is its sampled crystal up to float32 round-off of the same solve
# (a batch of other crystals beside it changes the sums slightly).
_COORD_TOLERANCE = 1e-3  # fractional
_LATTICE_TOLERANCE = 1e-3  # relative, lengths and angles


@dataclass(frozen=True, eq=False)
class SystemSamples:
    """One system's crystals in a run folder.

    Attributes:
        name: The system (``"flowllm"``, ``"flowmm"``, ``"flowmm_csp"`` or
            ``"flowllm_types"``).
        crystals: The final crystals, in the order of ``samples/<name>.jsonl``.
        trajectory: The recorded trajectories (of the first ``num_recorded`` crystals), or None.
        evaluation: The rows of ``evaluation/<name>/per_structure.csv`` (row ``i`` is crystal
            ``i``), or None when the system was not evaluated.
    """

    name: SystemName
    crystals: tuple[Crystal, ...]
    trajectory: Trajectory | None
    evaluation: pd.DataFrame | None

    @property
    def num_recorded(self) -> int:
        """How many crystals (the first ones) have a recorded trajectory."""
        return 0 if self.trajectory is None else self.trajectory.template.num_crystals

    def __len__(self) -> int:
        return len(self.crystals)


@dataclass(frozen=True, eq=False)
class RunView:
    """A run folder as the viewer sees it.

    Attributes:
        folder: The run folder.
        systems: System name -> its samples, only systems with at least one crystal, in the
            order of :data:`SYSTEMS`.
        llm_draws: Draw number -> its record in ``llm_samples.jsonl``; empty without that
            file.
    """

    folder: Path
    systems: Mapping[SystemName, SystemSamples]
    llm_draws: Mapping[int, LLMDraw]

    def system(self, name: str) -> SystemSamples:
        """The samples of system ``name``.

        Raises:
            RunFolderError: If the run folder has no crystals of that system.
        """
        if name not in self.systems:
            raise RunFolderError(
                f"no {name} crystals in {self.folder}: neither "
                f"{self.folder / 'samples' / f'{name}.jsonl'} nor "
                f"{self.folder / 'samples' / f'trajectory_{name}.npz'} exists "
                f"(systems found: {', '.join(self.systems)})"
            )
        return self.systems[name]


class Frame(NamedTuple):
    """One recorded state of a crystal along its flow."""

    step: int
    """Position among the crystal's states (0: the start)."""
    time: float
    """Flow time t in [0, 1]."""
    crystal: Crystal
    """The crystal at that time."""


class CrystalText(NamedTuple):
    """The LLM text a crystal came from, and where it was found."""

    text: str
    """CrystalLLM text (lattice lengths, angles, then element and coordinates per atom)."""
    source: str
    """How it was obtained, for the reader (e.g. ``"LLM draw 7, as generated"``)."""


def _trajectory_crystal(trajectory: Trajectory, index: int) -> list[Frame]:
    """Every recorded state of crystal ``index`` of a trajectory batch (wrapped coordinates)."""

    path = crystal_path(trajectory, index, unwrap=False)
    return [
        Frame(
            step,
            float(path.times[step]),
            Crystal(
                path.atomic_numbers_at(step),
                path.frac_coords[step],
                path.lengths[step],
                path.angles[step],
            ),
        )
        for step in range(len(path.times))
    ]


def _matches(trajectory: Trajectory, crystals: tuple[Crystal, ...]) -> bool:
    """Whether the trajectory's crystals are the first sampled crystals: the same atoms, and
    last states equal to the samples (a trajectory file left from an earlier sampling run, or
    one solved with other settings, is not)."""
    if trajectory.template.num_crystals > len(crystals):
        return False
    last = trajectory.crystals_at(len(trajectory) - 1).to_crystals()
    return all(
        np.array_equal(end.atomic_numbers, crystal.atomic_numbers)
        and _torus_distance(end.frac_coords, crystal.frac_coords) < _COORD_TOLERANCE
        and np.allclose(end.lengths, crystal.lengths, rtol=_LATTICE_TOLERANCE)
        and np.allclose(end.angles, crystal.angles, rtol=_LATTICE_TOLERANCE)
        for end, crystal in zip(last, crystals, strict=False)
    )


def _torus_distance(f_0: np.ndarray, f_1: np.ndarray) -> float:
    """Largest fractional component of the shortest steps from ``f_0`` to ``f_1`` (``(n, 3)``)."""
    import torch

    return float(torus.logmap(torch.tensor(f_0), torch.tensor(f_1)).abs().max())


def _load_system(folder: Path, name: SystemName) -> SystemSamples | None:
    """The samples of one system, or None when the folder holds none."""
    import pandas as pd

    run = RunFolder(folder)
    records = read_jsonl(run.samples_file(name), repair=False)  # the viewer only reads
    crystals = tuple(crystal_from_dict(r) for r in records if "atomic_numbers" in r)
    trajectory_file = run.trajectory(name)
    trajectory = None
    if trajectory_file.is_file():
        try:
            trajectory = Trajectory.load(trajectory_file)
        except CrystalFileError as error:  # e.g. written by an earlier version of the kit
            warnings.warn(f"trajectory not shown: {error}", stacklevel=2)
    if trajectory is not None and not crystals:  # trajectories alone: their last states
        last = trajectory.crystals_at(len(trajectory) - 1).to_crystals()
        crystals = tuple(c.replace(id=f"{name}-{i}") for i, c in enumerate(last))
    if trajectory is not None and not _matches(trajectory, crystals):
        trajectory = None  # stale: from another sampling run than the crystals
    if not crystals:
        return None
    table_file = run.per_structure(name)
    evaluation = pd.read_csv(table_file) if table_file.is_file() else None
    return SystemSamples(name, crystals, trajectory, evaluation)


def load_run(run_dir: str | Path) -> RunView:
    """Read a run folder's sampled systems, trajectories, LLM draws and evaluations.

    Args:
        run_dir: A run folder with at least one ``samples/<system>.jsonl`` or
            ``samples/trajectory_<system>.npz`` of a system in :data:`SYSTEMS`. A trajectory
            whose atoms or last states differ from the first sampled crystals (left from an
            earlier sampling run) is ignored.

    Returns:
        The :class:`RunView`.

    Raises:
        RunFolderError: If the folder does not exist or holds no sampled crystals (the message
            names the folder, the files looked for and the command that writes them).
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise RunFolderError(f"run folder {folder} does not exist")
    systems = {name: s for name in SYSTEMS if (s := _load_system(folder, name)) is not None}
    if not systems:
        wanted = ", ".join(f"{name}.jsonl" for name in SYSTEMS)
        raise RunFolderError(
            f"no sampled crystals in run folder {folder}: {RunFolder(folder).samples} holds "
            f"none of {wanted} (nor trajectory_<system>.npz); run notebook 06 or "
            f"`python -m flowllm_kit sample --run-dir {folder}` first"
        )
    draws = {d.draw: d for d in read_draws(RunFolder(folder).llm_samples, repair=False)}
    return RunView(folder=folder, systems=systems, llm_draws=draws)


def _llm_draw(run: RunView, system: str, index: int) -> LLMDraw | None:
    """The LLM draw that FlowLLM or FlowLLM-Types crystal ``index`` started from."""
    if system not in ("flowllm", "flowllm_types") or not run.llm_draws:
        return None
    crystal = run.system(system).crystals[index]
    if crystal.id and (found := _DRAW_IN_ID.search(crystal.id)):
        return run.llm_draws.get(int(found.group(1)))
    # Without ids: the flows start from the parsed draws in draw order (llm.llm_starts).
    parsed = [d for _, d in sorted(run.llm_draws.items()) if d.crystal is not None]
    return parsed[index] if index < len(parsed) else None


def crystal_frames(run: RunView, system: str, index: int) -> list[Frame]:
    """The states of one crystal from its start (t = 0) to the sampled crystal (t = 1).

    A crystal with a recorded trajectory has every recorded state (the last equals the sampled
    crystal: :func:`load_run` ignores a trajectory where it does not). Otherwise a FlowLLM
    crystal has two states, its LLM start crystal and the sample, and a crystal without a
    known start has only the sample.

    Args:
        run: From :func:`load_run`.
        system: A system of ``run``.
        index: The crystal's position in ``samples/<system>.jsonl``.

    Raises:
        RunFolderError: If ``run`` has no such system.
        IndexError: If the system has no crystal ``index``.
    """
    samples = run.system(system)
    if not 0 <= index < len(samples):
        raise IndexError(f"{system} has {len(samples)} crystals; no crystal {index}")
    final = samples.crystals[index]
    if index < samples.num_recorded:
        return _trajectory_crystal(samples.trajectory, index)
    draw = _llm_draw(run, system, index) if system == "flowllm" else None
    if draw is not None and draw.crystal is not None:
        return [Frame(0, 0.0, draw.crystal.replace(id=final.id)), Frame(1, 1.0, final)]
    return [Frame(0, 1.0, final)]


def frame_at(frames: Sequence[Frame], step: int | None) -> Frame:
    """State ``step`` of a crystal's ``frames``, clamped into them (None: the start), so a
    slider left further along than a newly chosen crystal's last state shows that state."""
    return frames[min(max(step or 0, 0), len(frames) - 1)]


def frame_structure(run: RunView, system: str, index: int, step: int) -> Structure:
    """The pymatgen ``Structure`` of crystal ``index`` of ``system`` at state ``step``
    (clamped into the crystal's states, see :func:`frame_at`)."""
    return frame_at(crystal_frames(run, system, index), step).crystal.to_structure()


def describe_frame(frame: Frame, num_frames: int) -> str:
    """One line for a state: its step, flow time, lattice lengths and angles."""
    a, b, c = frame.crystal.lengths
    alpha, beta, gamma = frame.crystal.angles
    return (
        f"step {frame.step} of {num_frames - 1} · t = {frame.time:.3f} · "
        f"a, b, c = {a:.3f}, {b:.3f}, {c:.3f} Å · "
        f"α, β, γ = {alpha:.2f}, {beta:.2f}, {gamma:.2f}° · V = {frame.crystal.volume:.1f} Å³"
    )


def crystal_text(run: RunView, system: str, index: int) -> CrystalText | None:
    """The LLM text crystal ``index`` of ``system`` came from, when it came from an LLM.

    FlowLLM and FlowLLM-Types crystals take the text of their LLM draw in
    ``llm_samples.jsonl`` (FlowLLM-Types keeps only its atom types). A FlowLLM crystal
    whose draw is missing or has no stored text gets its start crystal written as text with
    :func:`flowllm_kit.text.encode`. FlowMM and FlowMM-CSP crystals start from noise: None.
    """

    draw = _llm_draw(run, system, index)
    kept = " (FlowLLM-Types keeps only its atom types)" if system == "flowllm_types" else ""
    if draw is not None and draw.text:
        return CrystalText(draw.text, f"LLM draw {draw.draw}, as generated{kept}")
    if draw is not None and draw.crystal is not None:
        return CrystalText(text.encode(draw.crystal), f"LLM draw {draw.draw}, re-encoded{kept}")
    if system == "flowllm":
        start = crystal_frames(run, system, index)[0]
        if start.time == 0.0:
            return CrystalText(text.encode(start.crystal), "the start crystal, encoded")
    return None


def evaluation_row(run: RunView, system: str, index: int) -> dict[str, Any] | None:
    """The per-structure evaluation of crystal ``index`` of ``system``, or None.

    None when the system was not evaluated, when only fewer crystals were (the evaluation
    takes the first ``n``), or when row ``index`` belongs to another crystal (its formula or
    atom count differs: an evaluation of an earlier sample set). Missing values are None.
    """
    table = run.system(system).evaluation
    if table is None or index >= len(table):
        return None
    row = table.iloc[index].to_dict()
    crystal = run.system(system).crystals[index]
    if row.get("formula") != crystal.formula or row.get("num_atoms") != crystal.num_atoms:
        return None
    return {
        key: None if isinstance(value, float) and math.isnan(value) else _plain(value)
        for key, value in row.items()
    }


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python scalar (JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value
