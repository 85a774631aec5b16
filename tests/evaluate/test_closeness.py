from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from flowllm_kit.evaluate import RelaxResult, closeness, relaxed_rms


def _cscl(shift: float = 0.0) -> Structure:
    """CsCl-type cell (a = 4 Å); the Cl atom moved by ``shift`` Å along x."""
    return Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.5 + shift / 4.0, 0.5, 0.5]])


def _result(relaxed: Structure | None, initial: float, final: float, steps: int) -> RelaxResult:
    if relaxed is None:
        return RelaxResult.failure("relaxer: RuntimeError: boom")
    return RelaxResult(initial, final, relaxed, steps, converged=True)


def test_rms_by_hand():
    # one of two atoms moved by d: the best overlay moves each by d/2, so the RMS
    # displacement is d/2, reported in units of (V/n)^(1/3) = (64/2)^(1/3) Å
    d = 0.2
    (rms,) = relaxed_rms([_cscl()], [_cscl(shift=d)])
    assert rms == pytest.approx((d / 2) / (64 / 2) ** (1 / 3), rel=1e-3)


def test_summary_counts_matches_crashes_and_energy():
    # a layered cell with c/a = 3: no cubic cell matches it within ltol 0.3
    layered = Structure(Lattice.tetragonal(3.0, 9.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.3]])
    generated = [_cscl(), _cscl(), _cscl(), _cscl()]
    results = [
        _result(_cscl(shift=0.0), -3.0, -3.1, 10),
        _result(_cscl(shift=0.2), -3.0, -3.3, 20),
        _result(layered, -3.0, -3.5, 60),  # relaxed into another structure: no match
        _result(None, math.nan, math.nan, 0),  # crashed
    ]
    summary = closeness(generated, results)
    assert summary.num_relaxed == 3 and summary.num_failed == 1
    assert summary.match_rate == pytest.approx(2 / 3)
    assert summary.delta_energy == pytest.approx((0.1 + 0.3 + 0.5) / 3)
    assert summary.steps == pytest.approx(30.0)
    expected_rms = np.mean([0.0, 0.1 / 32 ** (1 / 3)])
    assert summary.rmsd == pytest.approx(expected_rms, rel=1e-3, abs=1e-9)
    assert np.isnan(summary.per_structure_rms[2:]).all()
