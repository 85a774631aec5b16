from __future__ import annotations

import importlib
import itertools
import time

import numpy as np
import pytest
from matminer.featurizers.site import CrystalNNFingerprint

from flowllm_kit.crystal import Crystal
from flowllm_kit.evaluate import COVERAGE_CUTOFFS, Fingerprints, coverage, fingerprints


def _random_fingerprints(rng: np.random.Generator, n: int) -> Fingerprints:
    # structure fingerprints in [0, 1]; composition features with very different scales
    scales = rng.uniform(0.1, 100.0, 132)
    return Fingerprints(
        structure=rng.uniform(0, 0.5, (n, 61)),
        composition=rng.normal(0, 1, (n, 132)) * scales,
    )


def _loop_coverage(gen: Fingerprints, ref: Fingerprints, s_cut: float, c_cut: float):
    """Pair-by-pair reading of the definition (the scaling mean cancels in differences)."""
    comp = ref.composition
    std = comp.std(axis=0)
    covered_ref, precise_gen = set(), set()
    for i, j in itertools.product(range(len(gen)), range(len(ref))):
        d_struct = np.sqrt(np.sum((gen.structure[i] - ref.structure[j]) ** 2))
        d_comp = np.sqrt(np.sum(((gen.composition[i] - comp[j]) / std) ** 2))
        if d_struct <= s_cut and d_comp <= c_cut:
            covered_ref.add(j)
            precise_gen.add(i)
    return len(covered_ref) / len(ref), len(precise_gen) / len(gen)


def test_matches_pairwise_loop_on_random_fingerprints():
    rng = np.random.default_rng(0)
    ref = _random_fingerprints(rng, 30)
    # generated: noisy copies of some reference rows plus unrelated rows
    noisy = Fingerprints(
        structure=ref.structure[:20] + rng.normal(0, 0.05, (20, 61)),
        composition=ref.composition[:20] * rng.normal(1, 0.02, (20, 132)),
    )
    other = _random_fingerprints(rng, 10)
    gen = Fingerprints(
        np.concatenate([noisy.structure, other.structure]),
        np.concatenate([noisy.composition, other.composition]),
    )
    s_cut, c_cut = 0.5, 4.0
    result = coverage(gen, ref, structure_cutoff=s_cut, composition_cutoff=c_cut)
    recall, precision = _loop_coverage(gen, ref, s_cut, c_cut)
    assert 0 < recall < 1 and 0 < precision < 1
    assert result.recall == pytest.approx(recall)
    assert result.precision == pytest.approx(precision)


def test_failed_fingerprints_count_against_precision_only():
    rng = np.random.default_rng(1)
    ref = _random_fingerprints(rng, 5)
    broken = ref.structure.copy()
    broken[0] = np.nan
    gen = Fingerprints(broken, ref.composition)
    result = coverage(gen, ref)
    assert result.precision == pytest.approx(4 / 5)
    assert result.recall == pytest.approx(4 / 5)
    assert result.num_generated == 5 and result.num_reference == 5
    assert (result.structure_cutoff, result.composition_cutoff) == COVERAGE_CUTOFFS["mp_20"]
    carbon = coverage(gen, ref, dataset="carbon_24")
    assert (carbon.structure_cutoff, carbon.composition_cutoff) == (0.2, 4.0)


def test_rock_salt_sites_are_octahedral(rock_salt):
    prints = fingerprints([rock_salt(), Crystal.from_structure(rock_salt(cation="K"))])
    labels = CrystalNNFingerprint.from_preset("ops").feature_labels()
    octahedral = labels.index("octahedral CN_6")
    assert prints.structure.shape == (2, 61)
    assert prints.composition.shape == (2, 132)
    assert prints.structure[:, octahedral] == pytest.approx([1.0, 1.0], abs=0.05)
    assert prints.ok.all()


def test_worker_processes_agree_and_self_coverage_is_full(mp20_subset_test, tmp_path):
    _, structures = mp20_subset_test
    few = structures[:8]
    serial = fingerprints(few, processes=1)
    parallel = fingerprints(few, processes=2)
    np.testing.assert_allclose(parallel.structure, serial.structure)
    np.testing.assert_allclose(parallel.composition, serial.composition)
    result = coverage(parallel, serial)
    assert (result.recall, result.precision) == (1.0, 1.0)
    loaded = Fingerprints.load(serial.save(tmp_path / "fp.npz"))
    np.testing.assert_array_equal(loaded.structure, serial.structure)


class _SlowOnPotassium:
    """A site featurizer that stalls on potassium compounds (like CrystalNN on some generated
    crystals) and is instant otherwise."""

    def featurize(self, structure, index):  # noqa: ANN001, ANN201
        if "K" in structure.composition:
            time.sleep(30)
        return np.zeros(61)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_structure_past_the_time_limit_gets_no_fingerprint(rock_salt, monkeypatch, processes):
    module = importlib.import_module("flowllm_kit.evaluate.coverage")  # not the function
    module._featurizers()  # load the real composition featurizer first
    monkeypatch.setattr(module, "_FEATURIZERS", (_SlowOnPotassium(), module._FEATURIZERS[1]))
    structures = [rock_salt(cation="K")] + [rock_salt()] * 7  # 8: the pool path when 2
    prints = fingerprints(structures, processes=processes, start_method="fork", time_limit=0.5)
    assert prints.ok.tolist() == [False] + [True] * 7  # given up after 0.5 s, not 8 x 30 s
    assert np.isfinite(prints.composition).all()  # its composition features still count


def test_structurally_invalid_crystals_get_no_site_fingerprint(rock_salt):
    squeezed = Crystal(
        atomic_numbers=[11, 17],
        frac_coords=[[0.0, 0.0, 0.0], [0.05, 0.0, 0.0]],  # 0.28 Å apart
        lengths=[5.64, 5.64, 5.64],
        angles=[90, 90, 90],
    )
    prints = fingerprints([rock_salt(), squeezed], processes=1)
    assert prints.ok.tolist() == [True, False]
    assert np.isfinite(prints.composition).all()
    assert fingerprints([squeezed], processes=1, skip_invalid=False).ok.tolist() == [True]
