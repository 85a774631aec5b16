"""Start crystals of the flows that come from a base distribution: uniform draws with the atom
types of training crystals (FlowMM), the LLM's atom types with uniform geometry
(FlowLLM-Types). FlowLLM starts at the LLM's own crystals (:func:`flowllm_kit.llm.llm_starts`).

:func:`flowllm_kit.stages.flow_starts` puts them together for notebook 06 and
``python -m flowllm_kit sample``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.flow.base import TypesOnlyBase, UniformBase

__all__ = ["types_only_starts", "uniform_starts"]


def uniform_starts(targets: Sequence[Crystal], *, count: int, seed: int = 0) -> list[Crystal]:
    """FlowMM's start crystals: atom types of training targets, geometry from the uniform base.

    ``count`` targets are drawn with replacement; each start keeps its target's atom types and
    counts and draws its lattice and positions from the :class:`UniformBase` fitted to all
    ``targets``, the base FlowMM was trained with.

    Args:
        targets: Training targets, e.g. the ``c1`` crystals of the pair set.
        count: Start crystals to draw.
        seed: Seed of the target picks and of the base draws.

    Returns:
        The crystals, with ids ``flowmm-<k>``.
    """
    targets = list(targets)
    picks = np.random.default_rng(seed).integers(len(targets), size=count)
    templates = CrystalBatch.from_crystals([targets[i] for i in picks])
    generator = torch.Generator().manual_seed(seed)
    drawn = UniformBase.fit(targets).sample(templates, generator=generator).to_crystals()
    return [c.replace(id=f"flowmm-{k}") for k, c in enumerate(drawn)]


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
