"""CHGNet structure relaxation, batched with torch-sim (docs/METHOD.md §9: FIRE, fmax 0.1,
1500 steps).

:func:`relax_structures` relaxes many structures at once: CHGNet wrapped as a torch-sim model
(:class:`CHGNetModel`), torch-sim's ASE-flavoured FIRE with a Fréchet cell filter, in-flight
batches in single-threaded worker processes, and a resumable JSON-lines cache.
:func:`relax_structures_reference` is CHGNet's own ``StructOptimizer``, one structure at a time,
kept to validate the batched path. This is the kit's one relaxation engine: evaluation
(:func:`flowllm_kit.evaluate.report`) relaxes through it too.

Energies are CHGNet's, uncorrected: they sit on the MP2020-corrected scale of the Materials
Project hulls in :mod:`flowllm_kit.evaluate.hull` (see :mod:`flowllm_kit.evaluate.report`).

Example::

    >>> from flowllm_kit.relax import RelaxConfig, relax_structures
    >>> results = relax_structures(structures, config=RelaxConfig(), cache_path="relax.jsonl")
    ... # doctest: +SKIP
    >>> results[0].final_energy_per_atom, results[0].steps, results[0].converged  # doctest: +SKIP
"""

from __future__ import annotations

from flowllm_kit.relax.batched import filtered_max_force, relax_in_batches
from flowllm_kit.relax.cache import RelaxCache, relax_key
from flowllm_kit.relax.chgnet_model import CHGNetModel, load_chgnet
from flowllm_kit.relax.config import RelaxConfig
from flowllm_kit.relax.perturb import perturb_structure
from flowllm_kit.relax.reference import relax_structures_reference
from flowllm_kit.relax.relax import relax_structures
from flowllm_kit.relax.result import RelaxResult
from flowllm_kit.relax.sharded import merge_relax_shards, relax_sharded, relax_share

__all__ = [
    "CHGNetModel",
    "RelaxCache",
    "RelaxConfig",
    "RelaxResult",
    "merge_relax_shards",
    "relax_share",
    "relax_sharded",
    "filtered_max_force",
    "load_chgnet",
    "perturb_structure",
    "relax_in_batches",
    "relax_key",
    "relax_structures",
    "relax_structures_reference",
]
