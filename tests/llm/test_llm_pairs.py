"""Pair set: optimal per-element alignment on the torus, storage, formula-conditioned drawing."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from flowllm_kit import text
from flowllm_kit.crystal import Crystal
from flowllm_kit.llm import PairConfig, PairSet, align_atoms, build_pairs, read_draws
from flowllm_kit.llm.pairs import squared_torus_distances


def _random_crystal(rng: np.random.Generator, counts: dict[int, int]) -> Crystal:
    numbers = np.repeat(list(counts), list(counts.values()))
    return Crystal(
        atomic_numbers=rng.permutation(numbers),
        frac_coords=rng.uniform(size=(len(numbers), 3)),
        lengths=rng.uniform(3, 6, size=3),
        angles=[90, 90, 90],
    )


def _cost(c0: Crystal, c1: Crystal, order: np.ndarray) -> float:
    return float(np.trace(squared_torus_distances(c0.frac_coords[order], c1.frac_coords)))


@pytest.mark.parametrize("seed", range(5))
def test_a_permuted_copy_aligns_back(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c1 = _random_crystal(rng, {8: 6, 26: 4, 3: 1})
    permutation = rng.permutation(c1.num_atoms)
    shift = rng.normal(0, 0.002, size=(c1.num_atoms, 3))  # far below the atoms' spacing
    c0 = c1.replace(
        atomic_numbers=c1.atomic_numbers[permutation],
        frac_coords=c1.frac_coords[permutation] + shift[permutation],
    )
    order = align_atoms(c0, c1)
    np.testing.assert_array_equal(permutation[order], np.arange(c1.num_atoms))
    np.testing.assert_array_equal(c0.atomic_numbers[order], c1.atomic_numbers)


@pytest.mark.parametrize("seed", range(8))
def test_alignment_is_optimal_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    counts = {14: int(rng.integers(1, 5)), 8: int(rng.integers(1, 5))}
    c0, c1 = _random_crystal(rng, counts), _random_crystal(rng, counts)
    best = np.inf
    in0 = {z: np.flatnonzero(c0.atomic_numbers == z) for z in counts}
    in1 = {z: np.flatnonzero(c1.atomic_numbers == z) for z in counts}
    for perms in itertools.product(*(itertools.permutations(in0[z]) for z in counts)):
        order = np.empty(c1.num_atoms, dtype=np.int64)
        for z, perm in zip(counts, perms, strict=True):
            order[in1[z]] = perm
        best = min(best, _cost(c0, c1, order))
    assert _cost(c0, c1, align_atoms(c0, c1)) == pytest.approx(best, abs=1e-12)


def test_alignment_uses_the_short_way_round_the_torus() -> None:
    c1 = Crystal(
        atomic_numbers=[8, 8], frac_coords=[[0.02, 0.5, 0.5], [0.40, 0.5, 0.5]],
        lengths=[4, 4, 4], angles=[90, 90, 90],
    )  # fmt: skip
    c0 = c1.replace(frac_coords=[[0.35, 0.5, 0.5], [0.98, 0.5, 0.5]])  # 0.98 is near 0.02
    np.testing.assert_array_equal(align_atoms(c0, c1), [1, 0])


def test_different_compositions_cannot_be_aligned(small_crystals) -> None:
    with pytest.raises(ValueError, match="compositions differ"):
        align_atoms(small_crystals[0], small_crystals[1])


def test_pair_set_round_trips_through_npz(small_crystals, tmp_path: Path) -> None:
    pairs = PairSet(
        c0=[c.replace(frac_coords=c.frac_coords + 0.01) for c in small_crystals],
        c1=list(small_crystals),
        target_indices=np.array([0, 1, 2]),
        num_draws=5,
        rejections={"composition_mismatch": 2},
    )
    loaded = PairSet.load(pairs.save(tmp_path / "pairs.npz"))
    for a, b in zip(loaded.c0 + loaded.c1, pairs.c0 + pairs.c1, strict=True):
        np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
        np.testing.assert_allclose(a.frac_coords, b.frac_coords)
        np.testing.assert_allclose(a.lengths, b.lengths)
    assert loaded.num_draws == 5 and loaded.rejections == {"composition_mismatch": 2}
    assert loaded.acceptance_rate == pytest.approx(3 / 5)
    assert loaded.mean_distance == pytest.approx(np.sqrt(3 * 0.01**2), rel=1e-6)
    noisy = pairs.with_noise(0.02, rng=0)
    assert noisy.c1 is pairs.c1
    moved = [squared_torus_distances(a.frac_coords, b.frac_coords).diagonal()
             for a, b in zip(noisy.c0, pairs.c0, strict=True)]  # fmt: skip
    assert np.sqrt(np.concatenate(moved).mean() / 3) == pytest.approx(0.02, rel=0.5)


def test_empty_pair_set_saves_and_loads_its_counts(tmp_path: Path) -> None:
    empty = PairSet(c0=[], c1=[], target_indices=np.zeros(0, dtype=np.int64), num_draws=7,
                    rejections={"composition_mismatch": 7})  # fmt: skip
    loaded = PairSet.load(empty.save(tmp_path / "pairs.npz"))
    assert loaded.c0 == [] and loaded.c1 == []
    assert loaded.num_draws == 7 and loaded.acceptance_rate == 0.0


def _oracle(crystals: list[Crystal], seed: int = 0):  # noqa: ANN202
    """Answers a formula prompt with the crystal of that formula, atoms shuffled; for MgF2 it
    answers with one F too few every other time (a composition mismatch)."""
    rng = np.random.default_rng(seed)
    by_formula = {c.formula: c for c in crystals}
    asked: list[str] = []

    def respond(prompt: str) -> str:
        formula = re.search(r"The chemical formula is (\w+)\.", prompt).group(1)
        asked.append(formula)
        crystal = by_formula[formula]
        if formula == "MgF2" and asked.count(formula) % 2:
            crystal = crystal.replace(atomic_numbers=[12, 9], frac_coords=crystal.frac_coords[:2])
        return text.encode(crystal, permute=True, rng=rng)

    return respond, asked


def test_build_pairs_keeps_matching_compositions_aligned_and_resumes(
    scripted_model, tokenizer, small_crystals, tmp_path: Path
) -> None:
    respond, asked = _oracle(small_crystals)
    model = scripted_model(respond)
    config = PairConfig(num_pairs=8)
    pairs = build_pairs(
        model, tokenizer, small_crystals, run_dir=tmp_path, config=config, batch_size=4,
        progress_bar=False,
    )  # fmt: skip
    assert len(pairs.c0) == 8
    mismatches = (asked.count("MgF2") + 1) // 2
    assert pairs.rejections == ({"composition_mismatch": mismatches} if mismatches else {})
    assert pairs.acceptance_rate == pytest.approx(1 - mismatches / len(asked))
    for c0, c1, target in zip(pairs.c0, pairs.c1, pairs.target_indices, strict=True):
        assert c1 is small_crystals[target]
        np.testing.assert_array_equal(c0.atomic_numbers, c1.atomic_numbers)
    assert pairs.mean_distance < 0.005  # the text's rounding only (two decimals)
    assert len(set(pairs.target_indices.tolist())) > 1  # targets drawn with replacement

    # More pairs later: the samples file is read back and drawing continues after it.
    drawn = len(read_draws(tmp_path / "pair_samples.jsonl"))
    more = build_pairs(
        scripted_model(_oracle(small_crystals, seed=1)[0]), tokenizer, small_crystals,
        run_dir=tmp_path, config=PairConfig(num_pairs=12), batch_size=4, progress_bar=False,
    )  # fmt: skip
    assert len(more.c0) == 12
    assert more.target_indices[:8].tolist() == pairs.target_indices.tolist()
    assert len(read_draws(tmp_path / "pair_samples.jsonl")) > drawn
    assert len(PairSet.load(tmp_path / "pairs.npz").c0) == 12
