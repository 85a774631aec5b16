"""Training: overfitting a few pairs, exact resume, skipped non-finite steps, checkpoints."""

from __future__ import annotations

import pytest
import torch

from flowllm_kit.crystal import CrystalBatch
from flowllm_kit.flow import (
    FlowSamplerConfig,
    FlowTrainer,
    PairedBase,
    TrainConfig,
    UniformBase,
    VelocityNetwork,
    load_network,
    path_loss,
    sample,
    sample_path,
    sample_times,
)
from flowllm_kit.geometry import torus


def _config(**changes) -> TrainConfig:
    options = dict(
        batch_size=4,
        max_steps=6,
        learning_rate=1e-3,
        val_every=0,
        progress=False,
        device="cpu",
        ema_decay=0.9,
    )
    return TrainConfig(**{**options, **changes})


def test_overfitting_a_few_pairs_drives_samples_to_their_targets(make_pairs):
    pairs = make_pairs(4, min_atoms=2, max_atoms=4)
    net = VelocityNetwork.from_preset("smoke", hidden_dim=64, num_frequencies=4)
    config = _config(max_steps=150, learning_rate=3e-3, min_learning_rate=1e-4, ema_decay=0.0)
    trainer = FlowTrainer(net, pairs, base=PairedBase(), config=config)
    history = trainer.fit()
    assert history[-1]["loss"] < 0.1 * history[0]["loss"]

    x_0 = CrystalBatch.from_crystals([p[0] for p in pairs])
    x_1 = CrystalBatch.from_crystals([p[1] for p in pairs])
    refined = sample(
        trainer.ema, x_0, config=FlowSamplerConfig(method="rk4", num_steps=20)
    ).crystals
    # The flow keeps each crystal's mean coordinate (v_f is mean-free), so compare up to a
    # translation: the mean-removed displacement to the target.
    before = torus.remove_mean(torus.logmap(x_0.frac_coords, x_1.frac_coords), x_1.batch_index, 4)
    after = torus.remove_mean(
        torus.logmap(refined.frac_coords, x_1.frac_coords), x_1.batch_index, 4
    )
    assert after.abs().max() < 0.02 < before.abs().max()
    length_error = (refined.lengths - x_1.lengths).abs().max()
    assert length_error < 0.1 * (x_0.lengths - x_1.lengths).abs().max()
    assert (refined.angles - x_1.angles).abs().max() < 1.0


def test_the_loss_graph_has_no_gather_whose_cpu_gradient_races(make_pairs):
    """The gradient of ``x[index]`` is an ``index_put_`` that accumulates with parallel atomic
    float additions on a multi-threaded CPU, so repeated runs can differ in the last bits (the
    demo's FlowLLM training diverged so once, under load). ``index_select`` backpropagates
    through a serial ``index_add_``. Every gather on the training loss's path must be one."""
    pairs = make_pairs(4)
    torch.manual_seed(0)
    net = VelocityNetwork.from_preset("smoke", edge_direction=True, num_atoms_embedding=True)
    x_1 = CrystalBatch.from_crystals([c1 for _, c1 in pairs])
    x_0 = PairedBase().sample(x_1, x_0=CrystalBatch.from_crystals([c0 for c0, _ in pairs]))
    x_0.frac_coords.requires_grad_(True)  # also the displacement gathers of the inputs
    loss = path_loss(net, sample_path(x_0, x_1, sample_times(4)), config=_config().loss).total

    found, stack, seen = set(), [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        found.add(type(node).__name__)
        stack.extend(child for child, _ in node.next_functions)
    assert "IndexBackward0" not in found
    assert "IndexSelectBackward0" in found  # the walk reaches the gathers


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(make_pairs, tmp_path):
    pairs = make_pairs(10)
    config = _config(max_steps=6, warmup_steps=2)

    def fresh(seed):
        torch.manual_seed(seed)  # different initial weights: the checkpoint must override them
        return VelocityNetwork.from_preset("smoke")

    uninterrupted = FlowTrainer(fresh(0), pairs, base=PairedBase(), config=config)
    uninterrupted.fit()

    first = FlowTrainer(fresh(0), pairs, base=PairedBase(), config=config, run_dir=tmp_path)
    first.fit(num_steps=4)  # crosses an epoch boundary (2 steps per epoch)
    resumed = FlowTrainer(fresh(1), pairs, base=PairedBase(), config=config)
    resumed.load_checkpoint(tmp_path / "checkpoint")
    assert resumed.step == 4
    resumed.fit()

    for model in ("network", "ema"):
        expected = getattr(uninterrupted, model).state_dict()
        for name, value in getattr(resumed, model).state_dict().items():
            assert torch.equal(value, expected[name]), f"{model}.{name} differs"
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in uninterrupted.history]


def test_same_seed_same_run_other_seed_other_run(make_pairs):
    pairs = make_pairs(8)

    def run(seed):
        torch.manual_seed(0)
        trainer = FlowTrainer(
            VelocityNetwork.from_preset("smoke"),
            pairs,
            base=UniformBase(),
            config=_config(seed=seed),
        )
        return [h["loss"] for h in trainer.fit()]

    assert run(3) == run(3) != run(4)


def test_non_finite_loss_skips_the_step(make_pairs):
    pairs = make_pairs(4)
    net = VelocityNetwork.from_preset("smoke")
    net.coord_scale.fill_(float("inf"))  # v_f becomes inf - inf = nan
    trainer = FlowTrainer(
        net, pairs, base=PairedBase(), config=_config(max_steps=2), set_statistics=False
    )
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer.fit()
    assert trainer.skipped_steps == 2 and trainer.step == 2
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name])


def test_validation_checkpoint_and_load_network(make_pairs, tmp_path):
    pairs = make_pairs(12)
    config = _config(max_steps=4, val_every=2, checkpoint_every=2)
    trainer = FlowTrainer(
        VelocityNetwork.from_preset("smoke"),
        pairs[:8],
        base=PairedBase(),
        config=config,
        val_pairs=pairs[8:],
        run_dir=tmp_path,
    )
    history = trainer.fit()
    assert [h["step"] for h in history if "val_loss" in h] == [1.0, 3.0]
    assert trainer.validation_loss() == trainer.validation_loss()  # fixed t and base draws
    loaded = load_network(tmp_path / "checkpoint")
    x = CrystalBatch.from_crystals([p[1] for p in pairs[8:]])
    t = torch.rand(4)
    for expected, got in zip(trainer.ema(x, t), loaded(x, t), strict=True):
        torch.testing.assert_close(got, expected)
    assert loaded.statistics.coord_scale == pytest.approx(trainer.network.statistics.coord_scale)


def test_cosine_schedule(make_pairs):
    config = _config(max_steps=100, warmup_steps=10, learning_rate=1e-3, min_learning_rate=1e-5)
    trainer = FlowTrainer(
        VelocityNetwork.from_preset("smoke"), make_pairs(4), base=PairedBase(), config=config
    )
    assert trainer.learning_rate(0) == pytest.approx(1e-4)
    assert trainer.learning_rate(10) == pytest.approx(1e-3)
    assert trainer.learning_rate(55) == pytest.approx((1e-3 + 1e-5) / 2)
    assert trainer.learning_rate(100) == pytest.approx(1e-5)


def test_bfloat16_training_step_updates_float32_weights(make_pairs):
    net = VelocityNetwork.from_preset("smoke")
    trainer = FlowTrainer(
        net, make_pairs(4), base=PairedBase(), config=_config(max_steps=2, precision="bfloat16")
    )
    before = net.layers[0].edge_output.weight.clone()
    history = trainer.fit()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert net.layers[0].edge_output.weight.dtype == torch.float32
    assert not torch.equal(net.layers[0].edge_output.weight, before)


def test_training_stops_once_the_validation_loss_stops_falling(make_pairs, tmp_path):
    pairs = make_pairs(12)

    def trainer(**changes):
        torch.manual_seed(0)
        config = _config(max_steps=12, val_every=2, checkpoint_every=100, **changes)
        return FlowTrainer(
            VelocityNetwork.from_preset("smoke"), pairs[:8], base=PairedBase(), config=config,
            val_pairs=pairs[8:], run_dir=tmp_path / str(changes),
        )  # fmt: skip

    full = trainer()
    full.fit()
    losses = [h["val_loss"] for h in full.history if "val_loss" in h]
    assert full.step == 12 and len(losses) == 6 and not full.stopped_early
    # An improvement of more than any loss can make never comes: the first validation is the
    # best, and two more without improvement end the run at step 6.
    stopped = trainer(patience=2, min_val_improvement=1e9)
    stopped.fit()
    assert stopped.step == 6 and stopped.stopped_early
    assert [h["loss"] for h in stopped.history] == [h["loss"] for h in full.history[:6]]
    # Stopping by the rule itself, computed here from the full run's validation losses.
    best, since, stop = float("inf"), 0, None
    for number, loss in enumerate(losses, start=1):
        best, since = (loss, 0) if loss < best else (best, since + 1)
        if since >= 1 and stop is None:
            stop = 2 * number
    ruled = trainer(patience=1)
    ruled.fit()
    assert ruled.step == (stop or 12)
    # Resumed from its checkpoint, a stopped run trains no further.
    resumed = trainer(patience=2, min_val_improvement=1e9)
    resumed.load_checkpoint(
        tmp_path / str({"patience": 2, "min_val_improvement": 1e9}) / "checkpoint"
    )
    resumed.fit()
    assert resumed.step == 6
    with pytest.raises(ValueError, match="patience"):
        _config(patience=2, val_every=0)
