"""The pair set that trains the flow: (LLM crystal c0, real crystal c1), atoms aligned.

Algorithm 1, step 2 of FlowLLM (docs/METHOD.md §4): draw targets c1 from the training crystals
with replacement, prompt the LLM with each target's formula, and keep the sample c0 when its
composition equals the target's (same atoms, same count). The flow needs atom i of c0 to be
atom i of c1, so c0's atoms are then reordered: per element, the optimal assignment
(Hungarian algorithm) under the squared torus distance ``sum_k logmap(f0, f1)_k**2``.

Drawing goes through :func:`flowllm_kit.llm.sample_crystals` with a samples file, so an
interrupted build resumes; the finished set is a crystal file (:mod:`flowllm_kit.crystal.store`,
plain arrays, no pickle)::

    pairs = build_pairs(model, tokenizer, train_crystals, num_pairs=1000, run_dir="run/pairs")
    pairs.acceptance_rate, pairs.mean_distance
    pairs = PairSet.load("run/pairs/pairs.npz")
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from flowllm_kit.crystal import Crystal
from flowllm_kit.crystal.store import PackedCrystals, read_crystal_file, write_crystal_file
from flowllm_kit.distributed import barrier, world
from flowllm_kit.geometry.torus import logmap
from flowllm_kit.llm.config import LLMSamplingConfig, PairConfig
from flowllm_kit.llm.sample import sample_crystals
from flowllm_kit.run import PAIRS_FILE
from flowllm_kit.text import formula_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["PairSet", "align_atoms", "build_pairs", "squared_torus_distances"]


def squared_torus_distances(f0: np.ndarray, f1: np.ndarray) -> np.ndarray:
    """Squared torus distance between every atom of ``f0`` and every atom of ``f1``.

    Args:
        f0: ``(n, 3)`` fractional coordinates.
        f1: ``(m, 3)`` fractional coordinates.

    Returns:
        ``(n, m)`` matrix of ``sum_k logmap(f0_i, f1_j)_k ** 2``.
    """
    u = logmap(torch.tensor(f0)[:, None, :], torch.tensor(f1)[None, :, :])  # (n, m, 3)
    return (u**2).sum(dim=-1).numpy()


def align_atoms(c0: Crystal, c1: Crystal) -> np.ndarray:
    """The order of ``c0``'s atoms that best matches ``c1`` atom by atom.

    Within each element, atoms are assigned by minimum total squared torus distance; atoms
    of different elements are never matched.

    Args:
        c0: The crystal to reorder (e.g. the LLM's sample).
        c1: The reference (e.g. the training crystal); same composition as ``c0``.

    Returns:
        ``(n,)`` permutation ``order`` such that atom ``order[i]`` of ``c0`` goes with atom
        ``i`` of ``c1``: ``c0.atomic_numbers[order] == c1.atomic_numbers``.

    Raises:
        ValueError: If the compositions differ.
    """
    if sorted(c0.atomic_numbers.tolist()) != sorted(c1.atomic_numbers.tolist()):
        raise ValueError(f"compositions differ: {c0.composition} vs {c1.composition}")
    order = np.empty(c1.num_atoms, dtype=np.int64)
    for z in np.unique(c1.atomic_numbers):
        in0 = np.flatnonzero(c0.atomic_numbers == z)
        in1 = np.flatnonzero(c1.atomic_numbers == z)
        cost = squared_torus_distances(c0.frac_coords[in0], c1.frac_coords[in1])  # (k, k)
        rows, cols = linear_sum_assignment(cost)
        order[in1[cols]] = in0[rows]
    return order


def _rms_distance(c0: Crystal, c1: Crystal) -> float:
    u = logmap(torch.tensor(c0.frac_coords), torch.tensor(c1.frac_coords))  # (n, 3)
    return float((u**2).sum(dim=-1).mean().sqrt())


PAIR_SET_KIND = "pair set"  # the kind of its crystal file


@dataclass(frozen=True)
class PairSet:
    """Aligned pairs: ``c0[i]`` (LLM) has the atoms of ``c1[i]`` (target) in the same order."""

    c0: list[Crystal]  # LLM crystals, atoms reordered to match c1
    c1: list[Crystal]  # target crystals from the training list
    target_indices: np.ndarray  # (P,) index of each c1 in the training list
    num_draws: int = 0  # samples drawn to get these pairs
    rejections: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def acceptance_rate(self) -> float:
        """Accepted samples / samples drawn (a batch may accept a few more than were kept)."""
        return (self.num_draws - sum(self.rejections.values())) / max(self.num_draws, 1)

    @property
    def distances(self) -> np.ndarray:
        """``(P,)`` root-mean-square per-atom torus distance between aligned c0 and c1."""
        return np.array([_rms_distance(a, b) for a, b in zip(self.c0, self.c1, strict=True)])

    @property
    def mean_distance(self) -> float:
        """Mean of :attr:`distances` (fractional units; 0.433 for unrelated uniform points)."""
        return float(self.distances.mean()) if self.c0 else float("nan")

    def with_noise(self, std: float, *, rng: np.random.Generator | int | None = None) -> PairSet:
        """A copy with Gaussian noise of ``std`` on c0's fractional coordinates (wrapped)."""
        generator = np.random.default_rng(rng)
        noisy = [
            c.replace(frac_coords=c.frac_coords + generator.normal(0.0, std, c.frac_coords.shape))
            for c in self.c0
        ]
        return PairSet(noisy, self.c1, self.target_indices, self.num_draws, self.rejections)

    def save(self, path: str | Path) -> Path:
        """Write the pair set as a crystal file (:mod:`flowllm_kit.crystal.store`), atomically.
        An empty set is saved too, so the counts of what was rejected survive."""
        return write_crystal_file(
            path,
            PAIR_SET_KIND,
            {
                "c0": PackedCrystals.from_crystals(self.c0),
                "c1": PackedCrystals.from_crystals(self.c1),
            },
            arrays={"target_indices": np.asarray(self.target_indices, dtype=np.int64)},
            meta={"num_draws": self.num_draws, "rejections": dict(self.rejections)},
        )

    @classmethod
    def load(cls, path: str | Path) -> PairSet:
        """Read a file written by :meth:`save`.

        Raises:
            CrystalFileError: If the file is not a pair set of this format, e.g. one written by
                an earlier version of the kit (``build_pairs`` writes it again from the draws
                it kept, without drawing anew).
        """
        stored = read_crystal_file(path, PAIR_SET_KIND)
        c0, c1 = (stored.batches[name].to_crystals() for name in ("c0", "c1"))
        targets = stored.arrays["target_indices"].copy()
        return cls(c0, c1, targets, int(stored.meta["num_draws"]), dict(stored.meta["rejections"]))


def build_pairs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Sequence[Crystal],
    *,
    run_dir: str | Path,
    config: PairConfig = PairConfig(),  # noqa: B008 (frozen dataclass)
    batch_size: int = 64,
    max_new_tokens: int = 512,
    continuous: bool = False,
    seed: int = 0,
    progress_bar: bool = True,
    sharded: bool | None = None,
) -> PairSet:
    """Build (or resume building) the formula-conditioned pair set.

    Draw ``k`` targets training crystal ``rng(seed, k).integers(len(train))`` (with
    replacement, reproducible on resume), is prompted with its formula, and is kept if the
    sample's composition equals the target's; otherwise it is rejected as
    ``composition_mismatch`` (or a parse reason). Drawing stops at ``config.num_pairs`` pairs
    or ``config.max_draws`` draws. With ``config.constrain_composition`` the element lines are
    held to the target's composition while decoding (:mod:`flowllm_kit.llm.constrain`), so
    only parse errors reject a draw; the acceptance rate then no longer measures how well the
    model follows its prompt.

    Args:
        model: The fine-tuned LLM.
        tokenizer: Its tokenizer.
        train: Training crystals c1.
        run_dir: Folder for ``pair_samples.jsonl`` (every draw; resumable) and ``pairs.npz``.
        config: Pair count, sampling temperature / top-p (paper: 0.9 / 0.99), noise.
        batch_size: Prompts per generate call.
        max_new_tokens: Longest sample.
        continuous: Refill a batch's rows as their texts end (continuous batching: 2-3x the
            draws per second of padded batches on the CPU, benchmarks/results/llm_sampling.md).
            Not with ``config.constrain_composition``, which decodes in padded batches.
        seed: Seed of target choice and sampling.
        progress_bar: Show a progress bar.
        sharded: Draw over the launcher's processes (:mod:`flowllm_kit.llm.sharded`); None:
            whenever a launcher started this process. Rank 0 writes ``pairs.npz``.

    Returns:
        The aligned :class:`PairSet` (with ``config.noise_std`` noise on c0, if set); also
        saved, noise-free, to ``run_dir/pairs.npz``.
    """

    if not train:
        raise ValueError("build_pairs needs at least one training crystal")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    def target_of(draw: int) -> int:
        return int(np.random.default_rng([seed, draw]).integers(len(train)))

    def prompt(draw: int) -> str:
        return formula_prompt(train[target_of(draw)])

    def accept(crystal: Crystal, draw: int) -> str | None:
        same = Counter(crystal.atomic_numbers.tolist()) == Counter(
            train[target_of(draw)].atomic_numbers.tolist()
        )
        return None if same else "composition_mismatch"

    sampling = LLMSamplingConfig(
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        continuous=continuous,
    )
    result = sample_crystals(
        model,
        tokenizer,
        num_crystals=config.num_pairs,
        prompts=prompt,
        config=sampling,
        path=run_dir / "pair_samples.jsonl",
        accept=accept,
        compositions=(
            (lambda draw: train[target_of(draw)].composition)
            if config.constrain_composition
            else None
        ),
        max_draws=config.max_draws,  # None: sample_crystals' DRAWS_PER_CRYSTAL per pair
        seed=seed,
        progress_bar=progress_bar,
        desc=f"pairs ({run_dir.name})",
        sharded=sharded,
    )
    targets = np.array([target_of(draw) for draw in result.draws], dtype=np.int64)
    c1 = [train[i] for i in targets]
    c0 = []
    for sample, target in zip(result.crystals, c1, strict=True):
        order = align_atoms(sample, target)
        c0.append(
            sample.replace(
                atomic_numbers=sample.atomic_numbers[order], frac_coords=sample.frac_coords[order]
            )
        )
    pairs = PairSet(c0, c1, targets, result.num_draws, dict(result.rejections))
    if world().is_main:
        pairs.save(run_dir / PAIRS_FILE)
    barrier()
    return pairs.with_noise(config.noise_std, rng=seed) if config.noise_std > 0 else pairs
