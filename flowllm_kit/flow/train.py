"""Training loop of the velocity network: AdamW, cosine schedule, gradient clipping, EMA,
validation loss, checkpoints with exact resume, progress bar.

Determinism: the crystals of step ``k`` come from a permutation seeded by ``(seed, epoch)``
and its times and base samples from a generator seeded by ``(seed, k)``, so a run resumed
from a checkpoint repeats the uninterrupted run exactly (on the CPU; on CUDA also set
``deterministic=True``, which makes scatter-adds deterministic at some cost). On the CPU this
holds with several threads because the network gathers rows with ``index_select``, whose
gradient is a serial ``index_add_``: the gradient of ``x[index]`` is an ``index_put_`` that
adds with parallel atomic float additions, so two runs can differ in the last bits when the
threads interleave differently (it happened once in the demo's 1,500 FlowLLM steps).

Example::

    >>> trainer = FlowTrainer(net, pairs, base=PairedBase(), config=train_preset("smoke"),
    ...                       val_pairs=val_pairs, run_dir="runs/flow")
    >>> history = trainer.fit()
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.distributed import all_sum, barrier, resolve_device, world
from flowllm_kit.flow import checkpoint
from flowllm_kit.flow.base import BaseDistribution
from flowllm_kit.flow.config import LossConfig, TrainConfig
from flowllm_kit.flow.loss import FlowLoss, path_loss
from flowllm_kit.flow.network import VelocityNetwork
from flowllm_kit.flow.path import PathSample, sample_path, sample_times
from flowllm_kit.flow.statistics import FlowStatistics
from flowllm_kit.flow.types import type_noise
from flowllm_kit.geometry.lattice import LatticeRepresentation
from flowllm_kit.progress import progress_bar

__all__ = ["FlowPair", "FlowTrainer", "fit_statistics", "resolve_device"]

FlowPair = tuple[Crystal | None, Crystal]
"""A training example ``(x_0, x_1)``; ``x_0`` is the LLM's crystal or ``None`` when the base
distribution does not use one."""

_STATISTICS_SEED = 12_345
_VALIDATION_SEED = 54_321


def _collate(pairs: Sequence[FlowPair]) -> tuple[CrystalBatch | None, CrystalBatch]:
    starts = [p[0] for p in pairs]
    if any(s is None for s in starts) and not all(s is None for s in starts):
        raise ValueError("either every pair or no pair must carry a start crystal x_0")
    x_0 = None if starts[0] is None else CrystalBatch.from_crystals(starts)
    return x_0, CrystalBatch.from_crystals([p[1] for p in pairs])


def fit_statistics(
    pairs: Sequence[FlowPair],
    base: BaseDistribution,
    *,
    max_pairs: int = 20_000,
    representation: LatticeRepresentation = "logit",
) -> FlowStatistics:
    """Network statistics from (up to ``max_pairs``) training pairs and base samples, with
    lattices in the flow space ``representation``."""
    x_0, x_1 = _collate(pairs[:max_pairs])
    generator = torch.Generator().manual_seed(_STATISTICS_SEED)
    x_0 = base.sample(x_1, x_0=x_0, generator=generator)
    return FlowStatistics.from_pairs(x_0, x_1, representation)


class _LossOf(torch.nn.Module):
    """The network's loss on a path sample as a module's forward, which is what
    ``DistributedDataParallel`` hooks to average gradients across processes."""

    def __init__(self, network: VelocityNetwork, config: LossConfig) -> None:
        super().__init__()
        self.network, self.config = network, config

    def forward(self, sample: PathSample) -> FlowLoss:
        return path_loss(self.network, sample, config=self.config)


class FlowTrainer:
    """Trains a :class:`VelocityNetwork` by Riemannian flow matching.

    Args:
        network: The network (moved to the configured device).
        train_pairs: Training examples.
        base: Base distribution turning each ``(x_0, x_1)`` into a start crystal.
        config: Optimization settings.
        val_pairs: Validation examples (optional).
        run_dir: Folder for checkpoints (``<run_dir>/checkpoint``); none are written if omitted.
        set_statistics: Set the network's standardization statistics from ``train_pairs``
            (turn off when they were set already, e.g. when fine-tuning).
    """

    def __init__(
        self,
        network: VelocityNetwork,
        train_pairs: Sequence[FlowPair],
        *,
        base: BaseDistribution,
        config: TrainConfig | None = None,
        val_pairs: Sequence[FlowPair] | None = None,
        run_dir: str | Path | None = None,
        set_statistics: bool = True,
    ):
        self.config = config = config or TrainConfig()
        self.device = resolve_device(config.device)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.train_pairs, self.val_pairs, self.base = list(train_pairs), val_pairs, base
        if not self.train_pairs:
            raise ValueError("FlowTrainer needs at least one training pair")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if set_statistics:
            network.set_statistics(
                fit_statistics(
                    self.train_pairs, base, representation=network.lattice_representation
                )
            )
        self.network = network.to(self.device)
        self.ema = copy.deepcopy(self.network).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            self.network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.step = 0
        self.skipped_steps = 0
        self.history: list[dict[str, float]] = []
        # Data parallel under a launcher: every process draws the whole batch's path sample
        # from the same generator and computes the loss of its own slice of the crystals;
        # DistributedDataParallel averages the gradients, so the steps are one process's.
        self.world = world()
        self._parallel: DistributedDataParallel | None = None
        if self.world.size > 1:
            if min(config.batch_size, len(self.train_pairs)) < self.world.size:
                raise ValueError(
                    f"a batch of {min(config.batch_size, len(self.train_pairs))} crystals cannot "
                    f"be split over {self.world.size} processes: raise batch_size"
                )
            on_gpu = self.device.type == "cuda"
            # Some weights take no part in a loss (a de novo flow ignores the atoms' own types):
            # DDP must look for them each step, or it waits for their gradients forever.
            self._parallel = DistributedDataParallel(
                _LossOf(self.network, config.loss), device_ids=[self.device] if on_gpu else None,
                find_unused_parameters=True,
            )  # fmt: skip

    # --- schedule and data ---------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        """Linear warm-up, then cosine decay from the peak to the minimum at ``max_steps``."""
        config = self.config
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        span = max(config.max_steps - config.warmup_steps, 1)
        progress = min((step - config.warmup_steps) / span, 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return config.min_learning_rate + (config.learning_rate - config.min_learning_rate) * cosine

    def _indices(self, step: int) -> list[int]:
        """Training examples of ``step``: consecutive slices of a per-epoch permutation."""
        size = min(self.config.batch_size, len(self.train_pairs))
        steps_per_epoch = len(self.train_pairs) // size  # the incomplete last slice is dropped
        epoch, position = divmod(step, steps_per_epoch)
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_pairs), generator=generator)
        return order[position * size : (position + 1) * size].tolist()

    def _path_sample(self, pairs: Sequence[FlowPair], generator: torch.Generator):
        x_0, x_1 = _collate(pairs)
        x_0 = self.base.sample(x_1, x_0=x_0, generator=generator).to(self.device)
        t = sample_times(x_1.num_crystals, generator=generator, device=self.device)
        types_0 = None
        if self.network.type_bits:  # a de novo flow: its types start from noise too
            noise = type_noise(
                x_1.atomic_numbers.shape[0], self.network.type_bits, generator=generator
            )
            types_0 = noise.to(self.device)
        representation = self.network.lattice_representation
        return sample_path(
            x_0, x_1.to(self.device), t, representation=representation, types_0=types_0
        )

    # --- steps ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimizer step (skipped, but counted, when the loss is not finite)."""
        config = self.config
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + 7 + 2 * self.step)
        pairs = [self.train_pairs[i] for i in self._indices(self.step)]
        self.network.train()
        sample = self._path_sample(pairs, generator)
        low_precision = config.precision == "bfloat16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=low_precision):
            loss, share = self._loss(sample)
        terms = self._batch_terms(loss, share)
        record = {"step": float(self.step), "loss": terms["loss"], "lr": 0.0}
        if not math.isfinite(terms["loss"]):
            self.skipped_steps += 1
        else:
            learning_rate = self.learning_rate(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate
            self.optimizer.zero_grad(set_to_none=True)
            # The ranks' gradients are averaged: weighting each by its share of the batch
            # (times the number of ranks) makes the average the whole batch's gradient.
            (loss.total * (share * self.world.size)).backward()
            if config.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), config.grad_clip)
                record["grad_norm"] = float(norm)
            self.optimizer.step()
            self._update_ema()
            record.update(lr=learning_rate, coords=terms["coords"], lattice=terms["lattice"])
            if loss.types is not None:
                record["types"] = terms["types"]
        self.step += 1
        self.history.append(record)
        return record

    def _loss(self, sample: PathSample) -> tuple[FlowLoss, float]:
        """The loss of this process's slice of the batch and its share of the crystals."""
        if self._parallel is None:
            return path_loss(self.network, sample, config=self.config.loss), 1.0
        size = sample.x_1.num_crystals
        begin, end = (size * r // self.world.size for r in (self.world.rank, self.world.rank + 1))
        return self._parallel(sample.crystals(begin, end)), (end - begin) / size

    def _batch_terms(self, loss: FlowLoss, share: float) -> dict[str, float]:
        """The whole batch's loss terms (the ranks' slices, weighted by their shares)."""
        values = [loss.total, loss.coords, loss.lattice, loss.types]
        names = ["loss", "coords", "lattice", "types"][: 3 if loss.types is None else 4]
        local = [float(v.detach()) * share for v in values[: len(names)]]
        return dict(zip(names, local if self.world.size == 1 else all_sum(local), strict=True))

    @torch.no_grad()
    def _update_ema(self) -> None:
        for ema_param, param in zip(self.ema.parameters(), self.network.parameters(), strict=True):
            ema_param.lerp_(param, 1.0 - self.config.ema_decay)

    @torch.no_grad()
    def validation_loss(self, *, use_ema: bool = True) -> float:
        """Mean loss over ``val_pairs`` at fixed times and base samples (same every call)."""
        if not self.val_pairs:
            raise ValueError("no validation pairs were given")
        model = self.ema if use_ema else self.network
        model.eval()
        generator = torch.Generator().manual_seed(_VALIDATION_SEED)
        total, count = 0.0, 0
        for number, begin in enumerate(range(0, len(self.val_pairs), self.config.batch_size)):
            pairs = self.val_pairs[begin : begin + self.config.batch_size]
            sample = self._path_sample(pairs, generator)  # every rank draws every batch's noise
            if number % self.world.size != self.world.rank:
                continue  # the batches are shared out over the ranks
            loss = path_loss(model, sample, config=self.config.loss)
            total, count = total + float(loss.total) * len(pairs), count + len(pairs)
        if self.world.size > 1:
            total, count = all_sum([total, count])
        return total / count

    def fit(self, num_steps: int | None = None) -> list[dict[str, float]]:
        """Train until ``max_steps`` (or for ``num_steps`` more steps), or until the validation
        loss stops falling (``patience``); returns the history.

        Validation losses (key ``val_loss``) are added every ``val_every`` steps and a
        checkpoint is written every ``checkpoint_every`` steps and at the end.
        """
        config = self.config
        end = config.max_steps
        if num_steps is not None:
            end = min(self.step + num_steps, end)
        name = f"flow training {self.run_dir.name}" if self.run_dir is not None else "flow training"
        if self.stopped_early:  # a finished run resumed: its validation loss had stopped falling
            end = self.step
        bar = progress_bar(
            total=end, initial=self.step, disable=not (config.progress and self.world.is_main),
            desc=name, unit="steps",
        )  # fmt: skip
        while self.step < end:
            record = self.train_step()
            if self.val_pairs and config.val_every and self.step % config.val_every == 0:
                record["val_loss"] = self.validation_loss()
                if self.stopped_early:
                    break
            if self.run_dir is not None and self.step % config.checkpoint_every == 0:
                self._checkpoint()
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
        bar.close()
        if self.run_dir is not None:
            self._checkpoint()
        return self.history

    @property
    def stopped_early(self) -> bool:
        """Whether the validation loss has not improved (by more than ``min_val_improvement``)
        on its best in the last ``patience`` validations: read from the history, so a resumed
        run knows it too."""
        patience = self.config.patience
        if patience is None:
            return False
        best, since = math.inf, 0
        for record in self.history:
            if "val_loss" not in record:
                continue
            if record["val_loss"] < best - self.config.min_val_improvement:
                best, since = record["val_loss"], 0
            else:
                since += 1
        return since >= patience

    def _checkpoint(self) -> None:
        """Rank 0 writes the checkpoint (every rank holds the same weights); the others wait."""
        if self.world.is_main:
            self.save_checkpoint()
        barrier()

    # --- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, folder: str | Path | None = None) -> Path:
        """Write the checkpoint (default ``<run_dir>/checkpoint``); returns its folder."""
        if folder is None:
            if self.run_dir is None:
                raise ValueError("give a folder or construct the trainer with run_dir")
            folder = self.run_dir / "checkpoint"
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint.save_tensors(folder / "model.safetensors", self.network.state_dict())
        checkpoint.save_tensors(folder / "ema.safetensors", self.ema.state_dict())
        moments, param_groups = checkpoint.optimizer_tensors(self.optimizer)
        checkpoint.save_tensors(folder / "optimizer.safetensors", moments)
        state: dict[str, Any] = {
            "step": self.step,
            "skipped_steps": self.skipped_steps,
            "network_config": checkpoint.config_dict(self.network.config),
            "train_config": checkpoint.config_dict(self.config),
            "statistics": self.network.statistics.to_dict(),
            "optimizer_param_groups": param_groups,
            "history": self.history,
        }
        (folder / checkpoint.STATE_FILE).write_text(json.dumps(state, indent=1))
        return folder

    def load_checkpoint(self, folder: str | Path) -> None:
        """Restore weights, EMA, optimizer, step and history from a checkpoint folder."""
        folder = Path(folder)
        state = checkpoint.read_state(folder)
        device = str(self.device)
        self.network.load_state_dict(load_file(str(folder / "model.safetensors"), device=device))
        self.ema.load_state_dict(load_file(str(folder / "ema.safetensors"), device=device))
        moments = load_file(str(folder / "optimizer.safetensors"), device=device)
        checkpoint.load_optimizer_state(self.optimizer, moments, state["optimizer_param_groups"])
        self.step, self.skipped_steps = state["step"], state["skipped_steps"]
        self.history = state["history"]
