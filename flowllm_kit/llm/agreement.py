"""How far formula-prompted samples follow their prompts: exact composition, reduced formula,
set of elements (notebook 04 and the formula-following benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flowllm_kit.crystal import Crystal

__all__ = ["CompositionAgreement", "composition_agreement"]


@dataclass(frozen=True)
class CompositionAgreement:
    """How far formula-conditioned samples follow their prompts, three ways, strictest first."""

    exact: float  # share with the target's atoms per element (what a FlowLLM pair needs)
    reduced: float  # share with the target's reduced formula (what the prompt states)
    elements: float  # share with the target's set of elements, whatever the counts
    count: int  # samples compared


def composition_agreement(
    written: Sequence[Crystal], requested: Sequence[Crystal]
) -> CompositionAgreement:
    """Compare each written crystal's composition with the one its prompt asked for.

    The prompt gives the reduced formula only, so a sample can state it with another number of
    formula units than the target has: ``reduced`` counts it, ``exact`` does not.

    Args:
        written: The samples.
        requested: The crystal whose formula prompted each sample, in the same order.

    Raises:
        ValueError: If the two sequences differ in length or are empty.
    """
    if len(written) != len(requested) or not written:
        raise ValueError(
            f"need as many requested crystals as written ones, at least one; got "
            f"{len(written)} written and {len(requested)} requested"
        )
    pairs = list(zip(written, requested, strict=True))
    return CompositionAgreement(
        exact=sum(w.composition == r.composition for w, r in pairs) / len(pairs),
        reduced=sum(w.formula == r.formula for w, r in pairs) / len(pairs),
        elements=sum(set(w.composition) == set(r.composition) for w, r in pairs) / len(pairs),
        count=len(pairs),
    )
