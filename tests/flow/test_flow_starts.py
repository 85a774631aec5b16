"""Start crystals of FlowLLM (the LLM's parsed draws) and FlowMM (uniform-base draws)."""

from __future__ import annotations

import json

import numpy as np

from flowllm_kit.crystal.io import crystal_to_dict
from flowllm_kit.flow import TypesOnlyBase, types_only_starts, uniform_starts
from flowllm_kit.llm import llm_starts


def test_llm_starts_are_the_kept_draws_in_order(make_crystals, tmp_path):
    crystals = make_crystals(3)
    draws = [
        {"draw": 0, "text": "a", "reason": None, "crystal": crystal_to_dict(crystals[0])},
        {"draw": 1, "text": "b", "reason": "unparsable"},
        {"draw": 2, "text": "c", "reason": None, "crystal": crystal_to_dict(crystals[1])},
        {"draw": 3, "text": "d", "reason": None, "crystal": crystal_to_dict(crystals[2])},
    ]
    path = tmp_path / "llm_samples.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in draws))
    starts = llm_starts(path)
    assert [c.id for c in starts] == ["llm-0", "llm-2", "llm-3"]
    assert np.array_equal(starts[1].atomic_numbers, crystals[1].atomic_numbers)
    assert [c.id for c in llm_starts(path, n=2)] == ["llm-0", "llm-2"]
    assert llm_starts(tmp_path / "missing.jsonl") == []


def test_uniform_starts_take_atoms_from_targets(make_crystals):
    targets = make_crystals(6, seed=4)
    starts = uniform_starts(targets, count=10, seed=1)
    assert [c.id for c in starts] == [f"flowmm_csp-{k}" for k in range(10)]
    compositions = {tuple(sorted(c.atomic_numbers)) for c in targets}
    assert all(tuple(sorted(c.atomic_numbers)) in compositions for c in starts)
    again = uniform_starts(targets, count=10, seed=1)
    assert all(
        np.allclose(a.frac_coords, b.frac_coords) for a, b in zip(starts, again, strict=True)
    )


def test_types_only_starts_keep_atoms_and_draw_geometry(make_crystals):
    llm = make_crystals(5, seed=2)
    base = TypesOnlyBase.fit(make_crystals(6, seed=4), angle_low=70.0, angle_high=80.0)
    starts = types_only_starts(llm, base=base, seed=3)
    assert [c.id for c in starts] == [f"types-{c.id}" for c in llm]
    assert all(
        np.array_equal(a.atomic_numbers, b.atomic_numbers) for a, b in zip(llm, starts, strict=True)
    )
    assert all(((c.angles >= 70) & (c.angles <= 80)).all() for c in starts), "angles from base"
    pairs = zip(llm, starts, strict=True)
    moved = [not np.allclose(a.frac_coords, b.frac_coords) for a, b in pairs]
    assert all(moved), "positions drawn, not the LLM's"
    again = types_only_starts(llm, base=base, seed=3)
    assert all(np.allclose(a.lengths, b.lengths) for a, b in zip(starts, again, strict=True))
    assert types_only_starts([], base=base) == []
