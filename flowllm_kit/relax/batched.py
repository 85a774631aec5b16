"""Batched FIRE relaxation with torch-sim: many structures step together, finished ones leave.

The optimizer is torch-sim's FIRE in ASE's flavour (``md_flavor="ase_fire"``) with a Fréchet
cell filter: the algorithm CHGNet's ``StructOptimizer`` runs through ASE (FIRE +
``FrechetCellFilter``) but for one detail (torch-sim decays FIRE's mixing factor just before
mixing, ASE just after), so the two take the same or nearly the same steps to the same minimum.
torch-sim's own ``optimize`` runner counts steps for the whole batch only, so this loop keeps its
own per-structure step counts: after every step it checks each structure, retires those that
converged, failed, ran out of steps or stalled (``RelaxConfig.stall_steps``), and refills the
batch from the queue (in-flight batching).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch_sim as ts
from torch_sim.state import concatenate_states

from flowllm_kit.crystal.convert import structure_from_cell
from flowllm_kit.relax.result import RelaxResult

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from torch_sim.models.interface import ModelInterface
    from torch_sim.state import SimState

    from flowllm_kit.relax.config import RelaxConfig

__all__ = ["filtered_max_force", "relax_in_batches"]

# ASE's FIRE defaults (torch-sim's too), spelled out because _start_at_rest relies on them.
_DT_START = 0.1  # first time step
_F_DEC = 0.5  # time-step factor after an uphill step


def filtered_max_force(state: SimState) -> torch.Tensor:
    """Per structure, the largest force the optimizer sees, as ASE's convergence test does.

    With a cell filter that is the largest of the atom forces mapped through the deformation
    gradient (``f @ F``) and the rows of the cell forces; without one, the largest atom force.

    Returns:
        ``(B,)`` largest force norm in eV/Å.
    """
    forces = state.forces  # (N, 3)
    if hasattr(state, "cell_forces"):
        deform = state.deform_grad()[state.system_idx]  # (N, 3, 3)
        forces = torch.bmm(forces.unsqueeze(1), deform).squeeze(1)  # (N, 3)
    norms = forces.norm(dim=1)  # (N,)
    largest = torch.zeros(state.n_systems, dtype=norms.dtype, device=norms.device)
    largest = largest.scatter_reduce(0, state.system_idx, norms, reduce="amax")  # (B,)
    if hasattr(state, "cell_forces"):
        largest = torch.maximum(largest, state.cell_forces.norm(dim=2).amax(dim=1))
    return largest


def relax_in_batches(
    structures: Sequence[Structure],
    *,
    model: ModelInterface,
    config: RelaxConfig,
    on_result: Callable[[int, RelaxResult], None],
) -> None:
    """Relax ``structures`` in in-flight batches, reporting each result as soon as it is final.

    Args:
        structures: The inputs (ordered, periodic pymatgen structures).
        model: torch-sim model giving ``energy`` (B,), ``forces`` (N, 3) and ``stress``
            (B, 3, 3); failed structures may come back as NaN, with reasons in ``model.errors``.
        config: Optimizer settings and batch limits.
        on_result: Called with (index into ``structures``, result) once per structure.
    """
    fire = ts.optimizers.frechet_cell_fire if config.relax_cell else ts.optimizers.fire
    init, step = fire(model=model, md_flavor="ase_fire", dt_start=_DT_START, f_dec=_F_DEC)

    queue = deque(range(len(structures)))
    state: SimState | None = None
    ids: list[int] = []  # input index of each structure in the batch
    steps: list[int] = []  # optimizer steps taken by each
    initial: list[float] = []  # its initial energy per atom
    lowest: list[float] = []  # its lowest energy per atom that counted as progress
    idle: list[int] = []  # steps since that energy was reached
    messages: dict[int, str] = {}  # input index -> last error message from the model

    def remember_errors(batch_ids: list[int]) -> None:
        for position, message in getattr(model, "errors", {}).items():
            messages[batch_ids[position]] = message

    while queue or ids:
        new = _take(queue, structures, config, num_structures=len(ids), num_atoms=_atoms(state))
        if new:
            fresh = ts.io.structures_to_state(
                [structures[i] for i in new], model.device, model.dtype
            )
            new_state, kept, crashed = _isolating_crashes(init, fresh)
            if not crashed:  # after a fallback, model.errors describes the last single call
                remember_errors(new)
            for b, message in crashed.items():
                on_result(new[b], RelaxResult.failure(message))
            if new_state is not None:
                _start_at_rest(new_state)
                state = new_state if state is None else concatenate_states([state, new_state])
                ids += [new[b] for b in kept]
                steps += [0] * len(kept)
                initial += _per_atom(new_state).tolist()
                lowest += [math.inf] * len(kept)
                idle += [0] * len(kept)
            if state is None:
                continue

        energies = _per_atom(state)  # (B,)
        largest = filtered_max_force(state)  # (B,)
        finite = torch.isfinite(energies) & torch.isfinite(largest)
        if state.forces.numel():
            finite &= _all_finite_per_system(state)
        finished = []
        for b, index in enumerate(ids):
            converged = bool(finite[b]) and float(largest[b]) < config.fmax
            if float(energies[b]) < lowest[b] - config.stall_tolerance:
                lowest[b], idle[b] = float(energies[b]), 0
            stalled = config.stall_steps is not None and idle[b] >= config.stall_steps
            if not bool(finite[b]):
                reason = messages.get(index, "non-finite energy, forces or stress from the model")
                on_result(
                    index,
                    RelaxResult.failure(reason, steps=steps[b], initial_energy_per_atom=initial[b]),
                )
            elif converged or stalled or steps[b] >= config.max_steps:
                final = _structure(state, b, structures[index])
                result = RelaxResult(
                    initial[b], float(energies[b]), final, steps[b], converged,
                    stalled=stalled and not converged and steps[b] < config.max_steps,
                )  # fmt: skip
                on_result(index, result)
            else:
                continue
            finished.append(b)

        if finished:
            keep = [b for b in range(len(ids)) if b not in set(finished)]
            state = state[keep] if keep else None
            ids, steps, initial, lowest, idle = (
                [seq[b] for b in keep] for seq in (ids, steps, initial, lowest, idle)
            )
            if queue:
                continue  # refill before stepping
        if state is None:
            continue
        state, kept, crashed = _isolating_crashes(step, state)
        if not crashed:
            remember_errors(ids)
        for b, message in crashed.items():
            failure = RelaxResult.failure(
                message, initial_energy_per_atom=initial[b], steps=steps[b]
            )
            on_result(ids[b], failure)
        ids, initial, lowest = ([seq[b] for b in kept] for seq in (ids, initial, lowest))
        steps = [steps[b] + 1 for b in kept]
        idle = [idle[b] + 1 for b in kept]


def _isolating_crashes(
    update: Callable[[SimState], SimState], state: SimState
) -> tuple[SimState | None, list[int], dict[int, str]]:
    """``update(state)``; if that raises, structure by structure, so only the culprits drop out.

    The per-structure fallback gives the same result as the batched call, since no FIRE quantity
    is shared between structures.

    Returns:
        The updated state of the structures that did not raise (None if all did), their
        positions in ``state``, and for each structure that raised its position and the error.
    """
    backup = state.clone()  # the update works in place; keep its input for the fallback
    try:
        return update(state), list(range(backup.n_systems)), {}
    except Exception as exc:  # noqa: BLE001 (a structure's failure, isolated below)
        if backup.n_systems == 1:
            return None, [], {0: f"relaxer: {type(exc).__name__}: {exc}"}
    parts, kept, crashed = [], [], {}
    for b in range(backup.n_systems):
        part, _, error = _isolating_crashes(update, backup[[b]])
        if part is None:
            crashed[b] = error[0]
        else:
            parts.append(part)
            kept.append(b)
    return (concatenate_states(parts) if parts else None), kept, crashed


def _start_at_rest(state: SimState) -> None:
    """Make freshly initialised structures safe to join a batch that is already running.

    torch-sim marks a new structure by NaN velocities, and while any structure in the batch has
    them its FIRE step skips velocity mixing and time-step updates for the whole batch: a
    structure joining mid-flight would change the others' trajectories. Starting at rest with
    the time step divided by ``_F_DEC`` is equivalent and local: the first step sees zero power,
    so it halves the time step back and resets alpha and the step counter, which is exactly
    ASE's first FIRE step.
    """
    state.velocities = torch.zeros_like(state.positions)
    if hasattr(state, "cell_velocities"):
        state.cell_velocities = torch.zeros_like(state.cell_positions)
    state.dt = state.dt / _F_DEC


def _take(
    queue: deque[int],
    structures: Sequence[Structure],
    config: RelaxConfig,
    *,
    num_structures: int,
    num_atoms: int,
) -> list[int]:
    """Pop queued structures while the batch limits allow (an empty batch always takes one)."""
    taken: list[int] = []
    while queue and num_structures + len(taken) < config.max_structures_per_batch:
        size = len(structures[queue[0]])
        if num_atoms + size > config.max_atoms_per_batch and (num_structures or taken):
            break
        taken.append(queue.popleft())
        num_atoms += size
    return taken


def _atoms(state: SimState | None) -> int:
    return 0 if state is None else state.n_atoms


def _per_atom(state: SimState) -> torch.Tensor:
    """``(B,)`` energy per atom."""
    return state.energy / state.n_atoms_per_system.to(state.energy.dtype)


def _all_finite_per_system(state: SimState) -> torch.Tensor:
    """``(B,)`` whether every force (and the stress) of a structure is finite."""
    bad_atoms = (~torch.isfinite(state.forces)).any(dim=1).to(torch.int64)  # (N,)
    bad = torch.zeros(state.n_systems, dtype=torch.int64, device=bad_atoms.device)
    bad = bad.index_add(0, state.system_idx, bad_atoms)  # (B,)
    ok = bad == 0
    if hasattr(state, "stress"):
        ok &= torch.isfinite(state.stress).flatten(1).all(dim=1)
    return ok


def _structure(state: SimState, b: int, original: Structure) -> Structure:
    """Structure ``b`` of the batch as pymatgen, species from the input, wrapped into the cell."""
    mask = state.system_idx == b
    cell = state.row_vector_cell[b].detach().cpu().numpy()  # (3, 3)
    positions = state.positions[mask].detach().cpu().numpy()  # (n, 3)
    return structure_from_cell(cell, original.species, positions, cartesian=True, to_unit_cell=True)
