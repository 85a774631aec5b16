"""Reference relaxation: CHGNet's own ``StructOptimizer``, one structure at a time.

Slow, but it is the code path CHGNet users know (ASE FIRE + ``FrechetCellFilter`` around the
CHGNet calculator), so the batched relaxer is validated against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from flowllm_kit.crystal.convert import as_structures
from flowllm_kit.progress import progress_bar
from flowllm_kit.relax.chgnet_model import resolve_device
from flowllm_kit.relax.config import RelaxConfig
from flowllm_kit.relax.local import single_threaded
from flowllm_kit.relax.result import RelaxResult

if TYPE_CHECKING:
    from chgnet.model import StructOptimizer
    from pymatgen.core import Structure

    from flowllm_kit.crystal import Crystal

__all__ = ["relax_structures_reference"]


def relax_structures_reference(
    structures: Sequence[Structure | Crystal],
    *,
    config: RelaxConfig | None = None,
    progress: bool = True,
) -> list[RelaxResult]:
    """Relax structures one at a time with ``chgnet.model.StructOptimizer``.

    Uses a freshly loaded CHGNet (stock settings: nothing frozen, magnetic moments predicted), so
    its timings are what a CHGNet user gets. A structure that raises is recorded with ``error``.

    Args:
        structures: Ordered periodic structures (pymatgen, or kit :class:`Crystal`).
        config: Settings; batch and worker fields are ignored.

    Raises:
        ValueError: If ``config.stall_steps`` is set (StructOptimizer cannot stop that way).
        progress: Show a progress bar.

    Returns:
        A :class:`RelaxResult` per input, in input order.
    """
    from chgnet.model import CHGNet, StructOptimizer

    config = config or RelaxConfig()
    if config.stall_steps is not None:
        raise ValueError(
            "relax_structures_reference runs StructOptimizer, which has no stall test: "
            f"use a RelaxConfig with stall_steps=None (got {config.stall_steps})"
        )
    device = str(resolve_device(config.device))
    chgnet = CHGNet.load(model_name=config.model_name, use_device=device, verbose=False)
    optimizer = StructOptimizer(
        model=chgnet, optimizer_class=config.optimizer, use_device=device, on_isolated_atoms="error"
    )
    results = []
    with single_threaded(device == "cpu"):
        for structure in progress_bar(
            as_structures(structures), desc="StructOptimizer", unit="crystals", disable=not progress
        ):
            results.append(_relax_one(optimizer, structure, config))
    return results


def _relax_one(
    optimizer: StructOptimizer, structure: Structure, config: RelaxConfig
) -> RelaxResult:
    """One ``StructOptimizer.relax`` call, its trajectory turned into a :class:`RelaxResult`."""
    try:
        out = optimizer.relax(
            structure,
            fmax=config.fmax,
            steps=config.max_steps,
            relax_cell=config.relax_cell,
            ase_filter="FrechetCellFilter",
            verbose=False,
            assign_magmoms=False,
        )
    except Exception as exc:  # noqa: BLE001 (any failure is recorded, not raised)
        return RelaxResult.failure(f"StructOptimizer: {type(exc).__name__}: {exc}")
    trajectory = out["trajectory"]
    num_atoms = len(structure)
    # The observer records the start, every step, and once more after the run: steps = len - 2.
    steps = len(trajectory.energies) - 2
    final = out["final_structure"]
    return RelaxResult(
        initial_energy_per_atom=float(trajectory.energies[0]) / num_atoms,
        final_energy_per_atom=float(trajectory.energies[-1]) / num_atoms,
        final_structure=final,
        steps=steps,
        # ASE stops early only on convergence; at exactly max_steps, test the final forces.
        converged=steps < config.max_steps or _converged(optimizer, final, config),
    )


def _converged(optimizer: StructOptimizer, structure: Structure, config: RelaxConfig) -> bool:
    """Whether ASE's convergence test (through the same filter) passes at ``structure``."""
    import numpy as np
    from ase.filters import FrechetCellFilter
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = optimizer.calculator
    optimizable = FrechetCellFilter(atoms) if config.relax_cell else atoms
    forces = optimizable.get_forces()
    return bool(np.sqrt((forces**2).sum(axis=1)).max() < config.fmax)
