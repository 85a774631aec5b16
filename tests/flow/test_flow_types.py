"""De novo FlowMM: atom types as analog bits, their path, loss, sampler, training and starts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.flow import (
    AtomCounts,
    FlowSamplerConfig,
    FlowTrainer,
    LossConfig,
    TrainConfig,
    Trajectory,
    UniformBase,
    VelocityNetwork,
    decode_types,
    denovo_starts,
    encode_types,
    flow_matching_loss,
    load_network,
    sample,
    sample_in_chunks,
    sample_path,
    type_noise,
)
from flowllm_kit.flow.starts import PLACEHOLDER_Z

BITS = 7


def _brute_force_nearest(analog: np.ndarray, max_z: int) -> np.ndarray:
    """The allowed element whose ±1 code is nearest in Euclidean distance, by enumeration."""
    codes = {
        z: np.array([1.0 if (z >> k) & 1 else -1.0 for k in range(analog.shape[-1])])
        for z in range(1, max_z + 1)
    }
    return np.array(
        [min(codes, key=lambda z: float(((row - codes[z]) ** 2).sum())) for row in analog]
    )


def test_every_element_round_trips_through_its_bits():
    z = torch.arange(1, 95)
    bits = encode_types(z)
    assert bits.shape == (94, BITS)
    assert set(bits.unique().tolist()) == {-1.0, 1.0}
    decoded = decode_types(bits)
    assert torch.equal(decoded.atomic_numbers, z)
    assert not decoded.off_code.any()


def test_bits_are_least_significant_first():
    # 6 = 0b0000110: bits 1 and 2 set.
    assert encode_types(torch.tensor([6])).tolist() == [[-1, 1, 1, -1, -1, -1, -1]]


def test_decoding_takes_the_nearest_allowed_code_and_flags_off_codes():
    generator = torch.Generator().manual_seed(0)
    analog = 1.5 * torch.randn(400, BITS, generator=generator)
    decoded = decode_types(analog, max_z=94)
    expected = _brute_force_nearest(analog.numpy(), 94)
    assert decoded.atomic_numbers.tolist() == expected.tolist()
    # Every atom is exactly one element in 1..94, whatever the bits.
    assert decoded.atomic_numbers.min() >= 1 and decoded.atomic_numbers.max() <= 94
    # The sign pattern spells 0 or 95..127 exactly where the atom is flagged.
    signs = (analog >= 0).long()
    by_sign = (signs * (2 ** torch.arange(BITS))).sum(-1)
    off = (by_sign == 0) | (by_sign > 94)
    assert torch.equal(decoded.off_code, off)
    assert off.any() and (~off).any()  # both cases occur in this draw


def test_codes_outside_the_bits_are_refused():
    with pytest.raises(ValueError, match="0..127"):
        encode_types(torch.tensor([128]))
    with pytest.raises(ValueError, match="max_z"):
        decode_types(torch.zeros(1, BITS), max_z=128)


def test_atom_counts_are_the_training_frequencies(make_crystals):
    crystals = [c for c in make_crystals(12, max_atoms=3)]
    counts = AtomCounts.fit(crystals)
    seen = [c.num_atoms for c in crystals]
    for n, p in zip(counts.counts, counts.probabilities, strict=True):
        assert p == pytest.approx(seen.count(n) / len(seen))
    drawn = counts.sample(2_000, rng=np.random.default_rng(0))
    assert set(drawn.tolist()) <= set(seen)
    for n, p in zip(counts.counts, counts.probabilities, strict=True):
        assert np.mean(drawn == n) == pytest.approx(p, abs=0.05)


def test_denovo_starts_take_sizes_from_training_and_no_composition(make_crystals):
    targets = make_crystals(20, max_atoms=6)
    starts = denovo_starts(targets, count=30, seed=1)
    assert [c.id for c in starts] == [f"flowmm-{k}" for k in range(30)]
    assert {c.num_atoms for c in starts} <= {c.num_atoms for c in targets}
    assert all(set(c.atomic_numbers.tolist()) == {PLACEHOLDER_Z} for c in starts)
    again = denovo_starts(targets, count=30, seed=1)
    assert all(
        np.array_equal(a.frac_coords, b.frac_coords) for a, b in zip(starts, again, strict=True)
    )


def test_the_type_path_runs_from_noise_to_the_target_bits(make_crystals):
    targets = CrystalBatch.from_crystals(make_crystals(3))
    base = UniformBase.fit(make_crystals(3))
    x_0 = base.sample(targets, generator=torch.Generator().manual_seed(0))
    a_0 = type_noise(targets.atomic_numbers.shape[0], generator=torch.Generator().manual_seed(1))
    a_1 = encode_types(targets.atomic_numbers)
    for value in (0.0, 0.3, 1.0):
        t = torch.full((3,), value)
        path = sample_path(x_0, targets, t, types_0=a_0)
        assert torch.allclose(path.a_t, (1 - value) * a_0 + value * a_1, atol=1e-6)
        assert torch.allclose(path.da_t, a_1 - a_0)


def test_a_type_flow_needs_only_equal_atom_counts(make_crystals):
    targets = CrystalBatch.from_crystals(make_crystals(2, min_atoms=3, max_atoms=3))
    other_types = targets.replace(atomic_numbers=torch.ones_like(targets.atomic_numbers))
    t = torch.zeros(2)
    with pytest.raises(ValueError, match="same atom types"):
        sample_path(other_types, targets, t)
    a_0 = torch.zeros(6, BITS)
    assert sample_path(other_types, targets, t, types_0=a_0).a_t is not None


def test_the_type_term_vanishes_at_the_target_and_is_weighted(make_crystals):
    targets = CrystalBatch.from_crystals(make_crystals(3))
    a_0 = type_noise(targets.atomic_numbers.shape[0], generator=torch.Generator().manual_seed(2))
    path = sample_path(targets, targets, torch.full((3,), 0.5), types_0=a_0)
    config = LossConfig(weight_coords=2.0, weight_lattice=1.0, weight_types=1.0)
    exact = flow_matching_loss(path.df_t, path.dl_t, path, config=config, v_a=path.da_t)
    assert float(exact.total) == pytest.approx(0.0, abs=1e-10)
    off = flow_matching_loss(path.df_t, path.dl_t, path, config=config, v_a=path.da_t + 1.0)
    assert float(off.types) == pytest.approx(1.0)
    assert float(off.total) == pytest.approx(0.25)  # weight 1 / (2 + 1 + 1)
    with pytest.raises(ValueError, match="v_a"):
        flow_matching_loss(path.df_t, path.dl_t, path, config=config)


class TypeField:
    """Constant velocities: the exact solution is ``a(1) = a(0) + push`` (likewise ``f``)."""

    type_bits = BITS
    lattice_representation = "logit"

    def __init__(self, push: torch.Tensor, shift: float = 0.1):
        self.push, self.shift = push, shift

    def velocity_with_types(self, batch, f_t, l_t, a_t, t):
        return torch.full_like(f_t, self.shift), torch.zeros_like(l_t), self.push.to(a_t)


def test_the_sampler_integrates_types_exactly_and_reads_them_back(make_crystals):
    starts = denovo_starts(make_crystals(6), count=4, seed=0)
    x_0 = CrystalBatch.from_crystals(starts)
    n = x_0.atomic_numbers.shape[0]
    a_0 = type_noise(n, generator=torch.Generator().manual_seed(3))
    wanted = torch.tensor([8, 26, 14, 1, 92] * n)[:n]
    push = encode_types(wanted) - a_0  # drives each atom's bits exactly onto its element
    config = FlowSamplerConfig(num_steps=7, record_every=1)
    result = sample(TypeField(push), x_0, config=config, types_0=a_0)
    assert torch.equal(result.crystals.atomic_numbers, wanted)
    assert result.off_code_types == 0
    expected = torch.remainder(x_0.frac_coords + 0.1, 1.0)
    assert torch.allclose(result.crystals.frac_coords, expected, atol=1e-5)
    # Every recorded state's types are the bits read back at that time.
    trajectory = result.trajectory
    for k, time in enumerate(trajectory.times.tolist()):
        state = a_0 + time * push
        assert torch.equal(trajectory.types_at(k), decode_types(state).atomic_numbers)
    assert torch.equal(trajectory.crystals_at(len(trajectory) - 1).atomic_numbers, wanted)
    assert not torch.equal(trajectory.types_at(0), wanted)


def test_the_sampler_asks_for_the_type_start_exactly_when_needed(make_crystals):
    x_0 = CrystalBatch.from_crystals(make_crystals(2))
    field = TypeField(torch.zeros(BITS))
    with pytest.raises(ValueError, match="types_0"):
        sample(field, x_0, config=FlowSamplerConfig(num_steps=2))
    network = VelocityNetwork.from_preset("smoke")  # fixed types
    with pytest.raises(ValueError, match="types_0"):
        sample(network, x_0, types_0=torch.zeros(x_0.atomic_numbers.shape[0], BITS))


def test_a_trajectory_with_types_round_trips_through_its_file(make_crystals, tmp_path):
    x_0 = CrystalBatch.from_crystals(denovo_starts(make_crystals(4), count=3, seed=0))
    a_0 = type_noise(x_0.atomic_numbers.shape[0], generator=torch.Generator().manual_seed(4))
    push = torch.randn(a_0.shape, generator=torch.Generator().manual_seed(5))
    config = FlowSamplerConfig(num_steps=4, record_every=2)
    trajectory = sample(TypeField(push), x_0, config=config, types_0=a_0).trajectory
    loaded = Trajectory.load(trajectory.save(tmp_path / "trajectory.npz"))
    assert torch.equal(loaded.atomic_numbers, trajectory.atomic_numbers)
    for k in range(len(trajectory)):
        assert torch.equal(loaded.crystals_at(k).atomic_numbers, trajectory.types_at(k))


def test_the_type_velocity_is_permutation_equivariant(make_crystals):
    torch.manual_seed(0)
    network = VelocityNetwork.from_preset("smoke", type_bits=BITS).eval()
    crystal = make_crystals(1, min_atoms=5, max_atoms=5)[0]
    batch = CrystalBatch.from_crystals([crystal])
    a_t = torch.randn(5, BITS, generator=torch.Generator().manual_seed(6))
    order = torch.tensor([3, 0, 4, 1, 2])
    permuted = batch.replace(
        atomic_numbers=batch.atomic_numbers[order], frac_coords=batch.frac_coords[order]
    )
    t = torch.tensor([0.4])
    l_t = batch.lattice_in(network.lattice_representation)
    v_f, v_l, v_a = network.velocity_with_types(batch, batch.frac_coords, l_t, a_t, t)
    p_f, p_l, p_a = network.velocity_with_types(permuted, permuted.frac_coords, l_t, a_t[order], t)
    assert torch.allclose(p_a, v_a[order], atol=1e-5)
    assert torch.allclose(p_f, v_f[order], atol=1e-5)
    assert torch.allclose(p_l, v_l, atol=1e-5)
    # The atoms' own type inputs are ignored: only the bits enter.
    other = batch.replace(atomic_numbers=torch.ones_like(batch.atomic_numbers))
    assert torch.equal(network.velocity_with_types(other, batch.frac_coords, l_t, a_t, t)[2], v_a)
    with pytest.raises(ValueError, match="velocity_with_types"):
        network.velocity(batch, batch.frac_coords, l_t, t)


def _config(**changes) -> TrainConfig:
    options = dict(
        batch_size=4, max_steps=6, learning_rate=1e-3, val_every=0, progress=False,
        device="cpu", ema_decay=0.9,
    )  # fmt: skip
    return TrainConfig(**{**options, **changes})


def _trainer(targets, seed, config, run_dir=None):
    torch.manual_seed(seed)
    network = VelocityNetwork.from_preset("smoke", type_bits=BITS)
    return FlowTrainer(
        network, [(None, c) for c in targets], base=UniformBase.fit(targets), config=config,
        run_dir=run_dir,
    )  # fmt: skip


def test_a_type_flow_resumes_exactly_and_repeats_with_its_seed(make_crystals, tmp_path):
    targets = make_crystals(10)
    config = _config()
    uninterrupted = _trainer(targets, 0, config)
    uninterrupted.fit()
    assert all("types" in record for record in uninterrupted.history)

    first = _trainer(targets, 0, config, run_dir=tmp_path)
    first.fit(num_steps=4)
    resumed = _trainer(targets, 1, config)
    resumed.load_checkpoint(tmp_path / "checkpoint")
    resumed.fit()
    for name, value in resumed.ema.state_dict().items():
        assert torch.equal(value, uninterrupted.ema.state_dict()[name]), name
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in uninterrupted.history]

    other = _trainer(targets, 0, _config(seed=1))
    other.fit()
    assert [h["loss"] for h in other.history] != [h["loss"] for h in uninterrupted.history]


def test_a_saved_type_flow_samples_the_same_crystals_again(make_crystals, tmp_path):
    targets = make_crystals(8)
    trainer = _trainer(targets, 0, _config(max_steps=3), run_dir=tmp_path)
    trainer.fit()
    network = load_network(tmp_path / "checkpoint")
    assert network.type_bits == BITS
    starts = denovo_starts(targets, count=5, seed=0)
    config = FlowSamplerConfig(num_steps=5)

    def run(seed: int, batch_size: int = 2) -> list[Crystal]:
        chunks = sample_in_chunks(network, starts, batch_size=batch_size, config=config, seed=seed)
        return list(itertools.chain.from_iterable(chunks))

    first, again, other = run(0), run(0), run(1)
    assert all(
        np.array_equal(a.atomic_numbers, b.atomic_numbers)
        for a, b in zip(first, again, strict=True)
    )
    assert [c.id for c in first] == [c.id for c in starts]
    assert all(c.atomic_numbers.min() >= 1 and c.atomic_numbers.max() <= 94 for c in first)
    assert any(
        not np.array_equal(a.atomic_numbers, b.atomic_numbers)
        for a, b in zip(first, other, strict=True)
    )
