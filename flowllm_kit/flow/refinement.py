"""The refinement benchmark: does the flow move an approximate crystal toward the real one?

Real crystals are corrupted with known noise (:func:`corrupt`), a flow is trained on
``(corrupted, real)`` pairs with the :class:`~flowllm_kit.flow.PairedBase` (the FlowLLM setting,
with a start whose error is known), and held-out corrupted crystals are refined by the ODE.
:func:`refinement_errors` then measures how far starts and refined crystals are from the truth:

- coordinate RMS in Å, with each crystal's mean displacement (a translation) removed;
- lattice length MAE in Å and angle MAE in degrees, the latter also split by the true angle
  (60°, 90°, 120° within :data:`ANGLE_CLASS_TOLERANCE`, and every other angle), since MP-20's
  Niggli-reduced cells hold many angles exactly at 60°, 90° or 120°;
- relative volume error in %;
- the pymatgen ``StructureMatcher`` match rate (default tolerances) against the truth.

Example::

    >>> targets = load_dataset("mp_20", "test")[:300]
    >>> starts = corrupt(targets, seed=1)
    >>> refined = [c for chunk in sample_in_chunks(net, starts) for c in chunk]
    >>> refinement_errors(refined, targets).coord_rms
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.flow.base import PairedBase
from flowllm_kit.flow.config import FlowSamplerConfig, TrainConfig
from flowllm_kit.flow.network import VelocityNetwork
from flowllm_kit.flow.sampler import sample_in_chunks
from flowllm_kit.flow.train import FlowTrainer
from flowllm_kit.geometry import torus
from flowllm_kit.presets import lookup_preset

__all__ = [
    "ANGLE_CLASSES",
    "ANGLE_CLASS_TOLERANCE",
    "Corruption",
    "RefinementErrors",
    "RefinementRun",
    "angle_class",
    "corrupt",
    "default_denoise_pairs",
    "denoising_pairs",
    "refinement_errors",
    "run_refinement",
]

ANGLE_CLASSES = ("60", "90", "120", "other")
"""Classes of true lattice angles the angle error is split by."""
ANGLE_CLASS_TOLERANCE = 0.01
"""Degrees within which a true angle counts as exactly 60°, 90° or 120°."""


@dataclass(frozen=True)
class Corruption:
    """Noise that turns a real crystal into a start crystal (atom order and types kept).

    Attributes:
        coord_std: Standard deviation of Gaussian noise on fractional coordinates (wrapped).
        length_log_std: Lengths are multiplied by ``exp(N(0, length_log_std))``.
        angle_std: Standard deviation of Gaussian noise on angles, in degrees.
    """

    coord_std: float = 0.04
    length_log_std: float = 0.05
    angle_std: float = 2.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value >= 0:
                raise ValueError(f"Corruption.{name} must be >= 0, got {value}")


def corrupt(
    crystals: Sequence[Crystal], corruption: Corruption | None = None, *, seed: int = 0
) -> list[Crystal]:
    """Corrupted copies of ``crystals`` (same ids, types and atom order), reproducible by seed.

    Angles are not clamped: a start may leave [60°, 120°], as an LLM's crystal can.
    """
    corruption = corruption or Corruption()
    rng = np.random.default_rng(seed)
    out = []
    for crystal in crystals:
        coords = crystal.frac_coords + rng.normal(
            0, corruption.coord_std, crystal.frac_coords.shape
        )
        lengths = crystal.lengths * np.exp(rng.normal(0, corruption.length_log_std, 3))
        angles = crystal.angles + rng.normal(0, corruption.angle_std, 3)
        out.append(crystal.replace(frac_coords=coords % 1.0, lengths=lengths, angles=angles))
    return out


def angle_class(angles: np.ndarray) -> np.ndarray:
    """The class (an entry of :data:`ANGLE_CLASSES`) of each true angle in degrees."""
    angles = np.asarray(angles, dtype=float)
    classes = np.full(angles.shape, "other", dtype=object)
    for value in (60.0, 90.0, 120.0):
        classes[np.abs(angles - value) <= ANGLE_CLASS_TOLERANCE] = str(int(value))
    return classes


@dataclass(frozen=True)
class RefinementErrors:
    """How far crystals are from their true counterparts (means over crystals or angles).

    Attributes:
        coord_rms: Mean over crystals of the per-crystal coordinate RMS in Å (translation
            removed, measured in the true lattice).
        length_mae: Mean absolute length error in Å.
        angle_mae: Mean absolute angle error in degrees.
        angle_mae_by_class: The same per class of true angle (``nan`` for an empty class).
        angle_count_by_class: Angles in each class.
        volume_error: Mean absolute relative volume error in %.
        match_rate: Fraction of crystals ``StructureMatcher`` matches to the truth (``nan``
            when not computed).
        num_crystals: Crystals compared.
    """

    coord_rms: float
    length_mae: float
    angle_mae: float
    angle_mae_by_class: dict[str, float]
    angle_count_by_class: dict[str, int]
    volume_error: float
    match_rate: float
    num_crystals: int

    def as_row(self) -> dict[str, float]:
        """Flat ``{metric: value}`` for tables."""
        row = {
            "coord_rms": self.coord_rms,
            "length_mae": self.length_mae,
            "angle_mae": self.angle_mae,
        }
        row.update({f"angle_mae_{k}": v for k, v in self.angle_mae_by_class.items()})
        row.update(volume_error=self.volume_error, match_rate=self.match_rate)
        return row


def refinement_errors(
    crystals: Sequence[Crystal], truth: Sequence[Crystal], *, match: bool = True
) -> RefinementErrors:
    """Errors of ``crystals`` against ``truth`` (aligned atom by atom, as corrupted starts and
    their refinements are).

    Args:
        crystals: Starts or refined crystals.
        truth: The real crystals, same order, same atoms.
        match: Also compute the StructureMatcher match rate (the slow part).

    Raises:
        ValueError: if the two lists differ in length or a pair differs in atoms.
    """
    if len(crystals) != len(truth):
        raise ValueError(f"got {len(crystals)} crystals for {len(truth)} true crystals")
    for index, (crystal, real) in enumerate(zip(crystals, truth, strict=True)):
        if not np.array_equal(crystal.atomic_numbers, real.atomic_numbers):
            raise ValueError(f"crystal {index} ({real.id}) does not hold the true crystal's atoms")
    batch = CrystalBatch.from_crystals(list(crystals), dtype=torch.float64)
    true = CrystalBatch.from_crystals(list(truth), dtype=torch.float64)
    index, num = true.batch_index, true.num_crystals
    displacement = torus.remove_mean(torus.logmap(true.frac_coords, batch.frac_coords), index, num)
    cartesian = torch.einsum("ni,nij->nj", displacement, true.lattice_matrix[index])
    per_atom = cartesian.pow(2).sum(-1, keepdim=True)  # (N, 1)
    rms = (torus.scatter_mean(per_atom, index, num).squeeze(-1)).sqrt()  # (B,)

    true_angles = true.angles.numpy()
    angle_error = np.abs(batch.angles.numpy() - true_angles)
    classes = angle_class(true_angles)
    by_class, counts = {}, {}
    for name in ANGLE_CLASSES:
        mask = classes == name
        counts[name] = int(mask.sum())
        by_class[name] = float(angle_error[mask].mean()) if mask.any() else float("nan")
    volume = np.array([c.volume for c in crystals])
    true_volume = np.array([c.volume for c in truth])

    match_rate = float("nan")
    if match:
        from pymatgen.analysis.structure_matcher import StructureMatcher

        matcher = StructureMatcher()
        hits = [
            matcher.fit(c.to_structure(), r.to_structure())
            for c, r in zip(crystals, truth, strict=True)
        ]
        match_rate = float(np.mean(hits))
    return RefinementErrors(
        coord_rms=float(rms.mean()),
        length_mae=float((batch.lengths - true.lengths).abs().mean()),
        angle_mae=float(angle_error.mean()),
        angle_mae_by_class=by_class,
        angle_count_by_class=counts,
        volume_error=float(100 * np.mean(np.abs(volume / true_volume - 1))),
        match_rate=match_rate,
        num_crystals=len(truth),
    )


DENOISE_PAIRS = {"smoke": 64, "demo": 5_000, "kit": 5_000, "paper": 0}
"""Denoising pairs added to FlowLLM's LLM pairs per preset (notebook 05, ``train-flow``)."""


def default_denoise_pairs(preset: str, choices: str = "kit") -> int:
    """How many corrupted real crystals join FlowLLM's pairs by default: none with the
    reference's choices or in the paper preset (3.3 M LLM pairs need no help), some at kit
    scale, where the pair set holds a few hundred pairs (see notebook 05, section 3)."""
    return 0 if choices == "reference" else lookup_preset(DENOISE_PAIRS, preset)


def denoising_pairs(
    crystals: Sequence[Crystal],
    count: int,
    corruption: Corruption | None = None,
    *,
    seed: int = 0,
) -> list[tuple[Crystal, Crystal]]:
    """``count`` training pairs ``(corrupted, real)``, real crystals drawn with replacement."""
    if not crystals:
        raise ValueError("denoising_pairs needs at least one crystal")
    rng = np.random.default_rng(seed)
    targets = [crystals[i] for i in rng.integers(0, len(crystals), count)]
    return list(zip(corrupt(targets, corruption, seed=seed + 1), targets, strict=True))


@dataclass(frozen=True, eq=False)
class RefinementRun:
    """One trained variant on the refinement benchmark.

    Attributes:
        start: Errors of the corrupted test crystals.
        refined: Errors after the flow.
        refined_crystals: The refined test crystals.
        trainer: The trainer (history, EMA network).
        train_seconds: Wall time of training.
    """

    start: RefinementErrors
    refined: RefinementErrors
    refined_crystals: list[Crystal]
    trainer: FlowTrainer
    train_seconds: float

    def table(self) -> dict[str, dict[str, float]]:
        """``{"start": row, "refined": row}`` for a DataFrame."""
        return {"start": self.start.as_row(), "refined": self.refined.as_row()}


def run_refinement(
    network: VelocityNetwork,
    train_crystals: Sequence[Crystal],
    test_crystals: Sequence[Crystal],
    *,
    config: TrainConfig,
    num_pairs: int = 20_000,
    corruption: Corruption | None = None,
    sampler: FlowSamplerConfig | None = None,
    seed: int = 0,
    match: bool = True,
) -> RefinementRun:
    """Train ``network`` on corrupted ``train_crystals`` and refine corrupted ``test_crystals``.

    Args:
        network: A fresh network (its statistics are fitted to the pairs).
        train_crystals: Real crystals the training pairs are drawn from.
        test_crystals: Held-out real crystals (the truth).
        config: Training settings (steps, batch, learning rate, ...).
        num_pairs: Training pairs drawn with replacement.
        corruption: Noise scales (default :class:`Corruption`).
        sampler: ODE settings (default: Euler, 50 steps).
        seed: Seeds the pairs (``seed``) and the test corruption (``seed + 3``).
        match: Compute StructureMatcher match rates.
    """
    pairs = denoising_pairs(train_crystals, num_pairs, corruption, seed=seed)
    starts = corrupt(test_crystals, corruption, seed=seed + 3)
    trainer = FlowTrainer(network, pairs, base=PairedBase(), config=config)
    begin = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - begin
    sampler = sampler or FlowSamplerConfig(method="euler", num_steps=50)
    refined = [c for chunk in sample_in_chunks(trainer.ema, starts, config=sampler) for c in chunk]
    return RefinementRun(
        start=refinement_errors(starts, test_crystals, match=match),
        refined=refinement_errors(refined, test_crystals, match=match),
        refined_crystals=refined,
        trainer=trainer,
        train_seconds=seconds,
    )
