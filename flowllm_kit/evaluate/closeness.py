"""Closeness of generated crystals to their relaxed selves (FlowMM/FlowLLM, docs/METHOD.md §9).

A generator whose crystals are already near a local minimum needs few relaxation steps, and
the relaxed crystal still matches the generated one. Per structure: does the relaxed structure
match the generated one (StructureMatcher ltol 0.3, stol 0.5, angle_tol 10), their RMS
displacement (pymatgen's, in units of (V/n)^(1/3)), the energy drop in eV/atom and the steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flowllm_kit.crystal.convert import StructureLike
from flowllm_kit.evaluate.sun import CLOSENESS_MATCHER, MatcherSettings, _prepared
from flowllm_kit.relax import RelaxResult

__all__ = ["Closeness", "closeness", "relaxed_rms"]


def relaxed_rms(
    generated: Sequence[StructureLike],
    relaxed: Sequence[StructureLike | None],
    *,
    settings: MatcherSettings = CLOSENESS_MATCHER,
) -> list[float]:
    """RMS displacement between each generated and relaxed structure (NaN: no match/crash)."""
    matcher = settings.matcher()
    out = []
    for before, after in zip(generated, relaxed, strict=True):
        if after is None:
            out.append(math.nan)
            continue
        first, second = _prepared([before, after], settings)
        if first is None or second is None:  # a cell that is not a cell matches nothing
            out.append(math.nan)
            continue
        rms = matcher.get_rms_dist(first, second)
        out.append(math.nan if rms is None else float(rms[0]))
    return out


@dataclass(frozen=True)
class Closeness:
    """Summary over relaxed structures (crashed relaxations excluded and counted).

    Attributes:
        match_rate: Fraction whose relaxed structure matches the generated one.
        rmsd: Mean RMS displacement over matched structures (normalized, see module).
        delta_energy: Mean initial minus final CHGNet energy, eV/atom.
        steps: Mean number of relaxation steps.
        num_relaxed: Structures relaxed without error.
        num_failed: Structures whose relaxation raised.
        per_structure_rms: ``(n,)`` RMS per input structure (NaN: no match or crash).
    """

    match_rate: float
    rmsd: float
    delta_energy: float
    steps: float
    num_relaxed: int
    num_failed: int
    per_structure_rms: np.ndarray


def closeness(
    generated: Sequence[StructureLike],
    results: Sequence[RelaxResult],
    *,
    settings: MatcherSettings = CLOSENESS_MATCHER,
) -> Closeness:
    """Match rate, RMSD, energy drop and steps between structures and their relaxations.

    Args:
        generated: The structures that were relaxed.
        results: Their :class:`flowllm_kit.relax.RelaxResult`, in the same order.
        settings: Matcher tolerances (default: FlowMM's closeness tolerances).

    Returns:
        A :class:`Closeness`; means are NaN when no structure enters them.
    """
    relaxed = [r.final_structure for r in results]
    rms = np.array(relaxed_rms(generated, relaxed, settings=settings))
    ok = np.array([r.error is None for r in results], dtype=bool)

    def mean(values: np.ndarray) -> float:
        return float(np.mean(values)) if len(values) else math.nan

    drops = np.array([r.initial_energy_per_atom - r.final_energy_per_atom for r in results])
    steps = np.array([r.steps for r in results], dtype=float)
    return Closeness(
        match_rate=mean(~np.isnan(rms[ok])),
        rmsd=mean(rms[ok & ~np.isnan(rms)]),
        delta_energy=mean(drops[ok]),
        steps=mean(steps[ok]),
        num_relaxed=int(ok.sum()),
        num_failed=int((~ok).sum()),
        per_structure_rms=rms,
    )
