"""Start crystals of the flows that come from a base distribution: crystal sizes drawn from the
training distribution with uniform geometry (FlowMM, de novo: it generates the atom types),
uniform draws with the atom types of training crystals (FlowMM-CSP), the LLM's atom types with
uniform geometry (FlowLLM-Types). FlowLLM starts at the LLM's own crystals
(:func:`flowllm_kit.llm.llm_starts`).

:func:`flowllm_kit.stages.flow_starts` puts them together for notebook 06 and
``python -m flowllm_kit sample``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.flow.base import TypesOnlyBase, UniformBase
from flowllm_kit.flow.types import AtomCounts

PLACEHOLDER_Z = 1
"""The atom type :func:`denovo_starts` writes into its crystals (hydrogen): a flow that
generates the types never reads it."""

__all__ = [
    "PLACEHOLDER_Z",
    "denovo_starts",
    "denovo_starts_from",
    "types_only_starts",
    "uniform_starts",
]


def denovo_starts(targets: Sequence[Crystal], *, count: int, seed: int = 0) -> list[Crystal]:
    """De novo FlowMM's start crystals: sizes and geometry, no composition.

    Each start's atom count is drawn from the counts of the training ``targets``
    (:class:`~flowllm_kit.flow.types.AtomCounts`), its lattice and positions from the
    :class:`UniformBase` fitted to them. Its atom types are :data:`PLACEHOLDER_Z`: the flow
    generates the types from noise of its own (:func:`~flowllm_kit.flow.sample` with
    ``types_0``), so no training composition enters.

    Args:
        targets: Training targets, e.g. the ``c1`` crystals of the pair set.
        count: Start crystals to draw.
        seed: Seed of the counts and of the base draws.

    Returns:
        The crystals, with ids ``flowmm-<k>``.
    """
    targets = list(targets)
    return denovo_starts_from(
        AtomCounts.fit(targets), UniformBase.fit(targets), count=count, seed=seed
    )


def denovo_starts_from(
    sizes: AtomCounts, base: UniformBase, *, count: int, seed: int = 0
) -> list[Crystal]:
    """:func:`denovo_starts` from the two things it fits to the targets: the distribution of
    atoms per cell and the uniform base (what a shipped checkpoint stores instead of the
    training crystals)."""
    drawn = sizes.sample(count, rng=np.random.default_rng(seed))
    templates = CrystalBatch.from_crystals(
        [
            Crystal(np.full(n, PLACEHOLDER_Z), np.zeros((n, 3)), np.ones(3), np.full(3, 90.0))
            for n in drawn
        ]
    )
    return _uniform_geometry(base, templates, seed=seed, prefix="flowmm")


def uniform_starts(targets: Sequence[Crystal], *, count: int, seed: int = 0) -> list[Crystal]:
    """FlowMM-CSP's start crystals: atom types of training targets, geometry from the uniform
    base (crystal structure prediction on training compositions).

    ``count`` targets are drawn with replacement; each start keeps its target's atom types and
    counts and draws its lattice and positions from the :class:`UniformBase` fitted to all
    ``targets``, the base FlowMM was trained with.

    Args:
        targets: Training targets, e.g. the ``c1`` crystals of the pair set.
        count: Start crystals to draw.
        seed: Seed of the target picks and of the base draws.

    Returns:
        The crystals, with ids ``flowmm_csp-<k>``.
    """
    targets = list(targets)
    picks = np.random.default_rng(seed).integers(len(targets), size=count)
    templates = CrystalBatch.from_crystals([targets[i] for i in picks])
    return _uniform_geometry(UniformBase.fit(targets), templates, seed=seed, prefix="flowmm_csp")


def _uniform_geometry(
    base: UniformBase, templates: CrystalBatch, *, seed: int, prefix: str
) -> list[Crystal]:
    """``templates`` with lattices and positions drawn from ``base``, with ids
    ``<prefix>-<k>``."""
    generator = torch.Generator().manual_seed(seed)
    drawn = base.sample(templates, generator=generator).to_crystals()
    return [c.replace(id=f"{prefix}-{k}") for k, c in enumerate(drawn)]


def types_only_starts(
    llm_crystals: Sequence[Crystal], *, base: TypesOnlyBase, seed: int = 0
) -> list[Crystal]:
    """FlowLLM-Types' start crystals: each LLM crystal's atom types and counts, uniform geometry.

    Args:
        llm_crystals: The LLM's parsed crystals (see :func:`flowllm_kit.llm.llm_starts`).
        base: The base FlowLLM-Types was trained with (:class:`TypesOnlyBase` fitted to the
            training targets); it draws the lattice and the positions.
        seed: Seed of the base draws.

    Returns:
        The crystals, one per LLM crystal in order, with ids ``types-<id of the LLM crystal>``.
    """
    llm_crystals = list(llm_crystals)
    if not llm_crystals:
        return []
    batch = CrystalBatch.from_crystals(llm_crystals)
    generator = torch.Generator().manual_seed(seed)
    drawn = base.sample(batch, x_0=batch, generator=generator).to_crystals()
    return [c.replace(id=f"types-{llm.id}") for llm, c in zip(llm_crystals, drawn, strict=True)]
