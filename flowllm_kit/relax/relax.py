"""The kit's one relaxation entry point: :func:`relax_structures` relaxes in this process
(:mod:`flowllm_kit.relax.local`) or, under a launcher, shares the structures out over its
processes (:mod:`flowllm_kit.relax.sharded`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flowllm_kit.distributed import world
from flowllm_kit.relax.config import RelaxConfig
from flowllm_kit.relax.local import relax_locally
from flowllm_kit.relax.result import RelaxResult
from flowllm_kit.relax.sharded import relax_sharded

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from torch_sim.models.interface import ModelInterface

    from flowllm_kit.crystal import Crystal

__all__ = ["relax_structures"]


def relax_structures(
    structures: Sequence[Structure | Crystal],
    *,
    config: RelaxConfig | None = None,
    cache_path: str | Path | None = None,
    progress: bool = True,
    desc: str = "CHGNet relax",
    model: ModelInterface | None = None,
    sharded: bool | None = None,
) -> list[RelaxResult]:
    """Relax structures with CHGNet, many at a time, and return one result per input.

    Structures already in the cache are not relaxed again, and identical inputs are relaxed
    once. A structure that breaks the relaxer comes back with ``error`` set; the others go on.
    On CPU the work is split over ``config.num_workers`` spawned processes (one per core by
    default), so a script calling this needs the usual ``if __name__ == "__main__":`` guard;
    small jobs, a CUDA device or a given ``model`` run in this process, with one torch thread
    on CPU.

    Args:
        structures: Ordered periodic structures (pymatgen, or kit :class:`Crystal`).
        config: Settings (default :class:`RelaxConfig`, the docs/METHOD.md §9 values).
        cache_path: JSON-lines file of finished results; read first, appended as results come.
        progress: Show a progress bar over the structures still to relax.
        desc: The bar's label (also on the series runner's terminal, whatever ``progress``).
        model: A torch-sim model to use instead of CHGNet (tests pass stand-ins); it runs in
            this process.
        sharded: Share the structures out over the launcher's processes, which must all make
            this call (:mod:`flowllm_kit.relax.sharded`; needs ``cache_path``); None: when a
            launcher started several processes and no ``model`` is given.

    Returns:
        A :class:`RelaxResult` per input, in input order.

    Example::

        >>> results = relax_structures(structures, cache_path="relax.jsonl")  # doctest: +SKIP
        >>> [r.final_energy_per_atom for r in results]  # doctest: +SKIP
    """

    config = config or RelaxConfig()
    if sharded if sharded is not None else (world().size > 1 and model is None):
        return relax_sharded(
            structures, config=config, cache_path=cache_path, progress=progress, desc=desc
        )
    return relax_locally(
        structures, config=config, cache_path=cache_path, progress=progress, desc=desc,
        model=model,
    )  # fmt: skip
