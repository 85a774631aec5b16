"""Integrate the learned ODE from start crystals to generated crystals (docs/METHOD.md §5, §8).

The velocity field is periodic in the coordinates, so the ODE is solved in the universal
cover (unwrapped coordinates in R^(N x 3)) with any torchdiffeq solver and wrapped once at the
end; lattices move in the unconstrained 6-d space and are mapped back to lengths and angles. A
flow that generates atom types also moves their analog bits (:mod:`flowllm_kit.flow.types`)
from ``types_0`` and reads them back as elements at ``t = 1`` (and at every recorded state).

Example::

    >>> result = sample(net, x_0, config=FlowSamplerConfig(method="rk4", num_steps=50))
    >>> result.crystals.to_crystals()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torchdiffeq import odeint

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.crystal.store import PackedCrystals, read_crystal_file, write_crystal_file
from flowllm_kit.distributed import World
from flowllm_kit.flow.config import FlowSamplerConfig
from flowllm_kit.flow.loss import VelocityField
from flowllm_kit.flow.types import decode_types, type_noise
from flowllm_kit.geometry import lattice, torus
from flowllm_kit.progress import progress_bar

__all__ = ["FlowSamples", "Trajectory", "chunk_type_starts", "sample", "sample_in_chunks"]


TRAJECTORY_KIND = "trajectory"  # the kind of its crystal file


@dataclass(frozen=True, eq=False)
class Trajectory:
    """States recorded along the ODE solve.

    Attributes:
        times: ``(T,)`` recorded times (0 and 1 included).
        frac_coords: ``(T, N, 3)`` coordinates, wrapped into [0, 1).
        lattice: ``(T, B, 6)`` lattice in the flow's space.
        template: The start batch (atom types and counts).
        representation: The lattice space of ``lattice`` (``"logit"`` or ``"log"``).
        atomic_numbers: ``(T, N)`` the atom types read at each recorded state, for a flow that
            generates them (None: the template's types throughout).
    """

    times: Tensor
    frac_coords: Tensor
    lattice: Tensor
    template: CrystalBatch
    representation: lattice.LatticeRepresentation = "logit"
    atomic_numbers: Tensor | None = None

    def __len__(self) -> int:
        return self.times.shape[0]

    def types_at(self, index: int) -> Tensor:
        """``(N,)`` atom types at recorded time ``times[index]``."""
        if self.atomic_numbers is None:
            return self.template.atomic_numbers
        return self.atomic_numbers[index]

    def crystals_at(self, index: int) -> CrystalBatch:
        """The batch at recorded time ``times[index]``."""
        lengths, angles = lattice.unconstrained_to_lattice(self.lattice[index], self.representation)
        return self.template.replace(
            atomic_numbers=self.types_at(index),
            frac_coords=self.frac_coords[index],
            lengths=lengths,
            angles=angles,
        )

    def save(self, path: str | Path) -> Path:
        """Write the trajectory as a crystal file (:mod:`flowllm_kit.crystal.store`): the start
        batch, the recorded times, coordinates and lattices, and the lattice space."""
        arrays = {"times": self.times, "frac_coords": self.frac_coords, "lattice": self.lattice}
        if self.atomic_numbers is not None:
            arrays["atomic_numbers"] = self.atomic_numbers
        return write_crystal_file(
            path,
            TRAJECTORY_KIND,
            {"start": PackedCrystals.from_batch(self.template)},
            arrays={key: value.detach().cpu().numpy() for key, value in arrays.items()},
            meta={"representation": self.representation},
        )

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        """Read a file written by :meth:`save` (on the CPU).

        Raises:
            CrystalFileError: If the file is not a trajectory of this format, e.g. one written
                by an earlier version of the kit (sample again to write it anew).
        """
        stored = read_crystal_file(path, TRAJECTORY_KIND)
        arrays = {key: torch.from_numpy(value) for key, value in stored.arrays.items()}
        return cls(
            arrays["times"],
            arrays["frac_coords"],
            arrays["lattice"],
            stored.batches["start"].to_batch(),
            stored.meta["representation"],
            arrays.get("atomic_numbers"),
        )


@dataclass(frozen=True, eq=False)
class FlowSamples:
    """Output of :func:`sample`.

    Attributes:
        crystals: The generated batch (coordinates wrapped, angles from the bijection).
        trajectory: Recorded states when ``record_every`` was set, else ``None``.
        num_evaluations: Velocity-field evaluations used.
        off_code_types: Atoms whose generated type bits spelt no allowed element and were read
            as the nearest one (flows that generate types; 0 otherwise).
    """

    crystals: CrystalBatch
    trajectory: Trajectory | None
    num_evaluations: int
    off_code_types: int = 0


def _anti_annealing(t: Tensor, config: FlowSamplerConfig) -> Tensor:
    """The coordinate speed-up ``1 + s * max(0, t - b)``."""
    return 1.0 + config.anti_annealing_scale * (t - config.anti_annealing_start).clamp(min=0)


def _output_times(config: FlowSamplerConfig, grid: Tensor) -> Tensor:
    if config.record_every is None:
        return grid[[0, -1]]
    keep = list(range(0, config.num_steps, config.record_every)) + [config.num_steps]
    return grid[keep]


@torch.no_grad()
def sample(
    model: VelocityField,
    x_0: CrystalBatch,
    *,
    config: FlowSamplerConfig | None = None,
    types_0: Tensor | None = None,
) -> FlowSamples:
    """Integrate ``dc/dt = v(t, c)`` from ``t = 0`` (``x_0``) to ``t = 1``.

    Args:
        model: The velocity field (a :class:`~flowllm_kit.flow.VelocityNetwork` or any object
            with its ``velocity`` method). Crystals of different sizes may share a batch.
        x_0: Start crystals, on the model's device. For a model that generates atom types
            (``model.type_bits > 0``) only their sizes and geometry are read.
        config: Solver, steps, anti-annealing and trajectory recording.
        types_0: ``(N, type_bits)`` start of the type bits, required by (and only by) a model
            that generates atom types (:func:`~flowllm_kit.flow.types.type_noise`).

    Returns:
        The generated crystals, the trajectory if requested, and the evaluation count. For
        dopri5 the trajectory is recorded on the same time grid as the fixed-step solvers.
    """
    config = config or FlowSamplerConfig()
    if isinstance(model, torch.nn.Module):
        model.eval()
    bits = getattr(model, "type_bits", 0)
    if bool(bits) != (types_0 is not None):
        raise ValueError(
            "types_0 is required by a model that generates atom types and only by one "
            f"(this model's type_bits: {bits}; types_0 given: {types_0 is not None})"
        )
    num_crystals = x_0.num_crystals
    low_precision = config.precision == "bfloat16"
    evaluations = 0

    def rhs(t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        nonlocal evaluations
        evaluations += 1
        f_t, l_t = state[:2]
        times = t.reshape(1).expand(num_crystals)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=low_precision):
            if bits:
                v_f, v_l, v_a = model.velocity_with_types(  # type: ignore[attr-defined]
                    x_0, f_t, l_t, state[2], times
                )
            else:
                v_f, v_l = model.velocity(x_0, f_t, l_t, times)
        velocity = ((v_f * _anti_annealing(t, config)).to(f_t.dtype), v_l.to(l_t.dtype))
        return (*velocity, v_a.to(state[2].dtype)) if bits else velocity

    dtype, device = x_0.frac_coords.dtype, x_0.device
    grid = torch.linspace(0.0, 1.0, config.num_steps + 1, dtype=dtype, device=device)
    times = _output_times(config, grid)
    # The model says which lattice space its velocities live in (stand-ins default to "logit").
    representation = getattr(model, "lattice_representation", "logit")
    state: tuple[Tensor, ...] = (x_0.frac_coords, x_0.lattice_in(representation))
    if types_0 is not None:
        state = (*state, types_0.to(device, dtype))
    if config.method == "dopri5":
        options = {}
        tolerances = {"rtol": config.rtol, "atol": config.atol}
    else:
        options = {"grid_constructor": lambda func, y0, t: grid}
        tolerances = {}
    # The solver's own arithmetic (torchdiffeq combines Runge-Kutta stages with matmuls) must
    # stay float32, so autocast is enabled only inside the velocity call. The disabled outer
    # region keeps autocast's cache of bfloat16 weight copies alive across steps (it is
    # cleared when the outermost autocast region exits), so the weights are cast once.
    with torch.autocast(device.type, enabled=False):
        paths = odeint(rhs, state, times, method=config.method, options=options, **tolerances)
    f_path, l_path = paths[:2]

    lengths, angles = lattice.unconstrained_to_lattice(l_path[-1], representation)
    crystals = x_0.replace(frac_coords=torus.wrap(f_path[-1]), lengths=lengths, angles=angles)
    types_path, off_code = None, 0
    if bits:
        final = decode_types(paths[2][-1])
        crystals = crystals.replace(atomic_numbers=final.atomic_numbers)
        off_code = int(final.off_code.sum())
    trajectory = None
    if config.record_every is not None:
        if bits:  # the types read at every recorded state, (T, N)
            types_path = torch.stack([decode_types(a).atomic_numbers for a in paths[2][:-1]])
            types_path = torch.cat([types_path, final.atomic_numbers.unsqueeze(0)])
        trajectory = Trajectory(
            times=times,
            frac_coords=torus.wrap(f_path),
            lattice=l_path,
            template=x_0,
            representation=representation,
            atomic_numbers=types_path,
        )
    return FlowSamples(
        crystals=crystals, trajectory=trajectory, num_evaluations=evaluations,
        off_code_types=off_code,
    )  # fmt: skip


def chunk_type_starts(
    starts: Sequence[Crystal], *, batch_size: int, bits: int, seed: int
) -> Iterator[Tensor]:
    """The type bits' start (``(atoms, bits)``, on the CPU) of each batch of ``batch_size``
    start crystals that :func:`sample_in_chunks` solves for a model that generates atom types:
    drawn batch after batch from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for begin in range(0, len(starts), batch_size):
        atoms = sum(c.num_atoms for c in starts[begin : begin + batch_size])
        yield type_noise(atoms, bits, generator=generator)


def sample_in_chunks(
    model: VelocityField,
    starts: Sequence[Crystal],
    *,
    batch_size: int = 1024,
    config: FlowSamplerConfig | None = None,
    device: torch.device | str | None = None,
    desc: str = "flow sampling",
    progress: bool = False,
    seed: int = 0,
    shard: World | None = None,
) -> Iterator[list[Crystal]]:
    """Refine many start crystals batch by batch, yielding each batch's results as soon as it
    is done, so a caller can append them to a file and lose nothing if interrupted.

    Args:
        model: The velocity field.
        starts: Start crystals (e.g. parsed LLM samples), any sizes.
        batch_size: Crystals per ODE solve.
        config: Sampler options (trajectories are not kept).
        device: Where to integrate (default: the model's device, else the CPU).
        desc: Label of the progress (crystals done), which the series runner shows in its
            terminal whatever ``progress`` says.
        progress: Also show a progress bar here.
        seed: Seeds the type bits' start, for a model that generates atom types (drawn batch
            after batch from one generator: the same seed and batch size give the same
            crystals).
        shard: Solve only this process's batches: batch ``k`` when ``k mod shard.size`` is
            ``shard.rank`` (the type bits are still drawn for every batch, so each batch gets
            the noise it gets in one process, and the crystals do not depend on the number of
            processes). None: every batch.

    Yields:
        Lists of generated crystals, in the order of ``starts`` (ids kept).
    """
    if device is None and isinstance(model, torch.nn.Module):
        device = next(model.parameters()).device
    bits = getattr(model, "type_bits", 0)
    type_starts = chunk_type_starts(starts, batch_size=batch_size, bits=bits, seed=seed)
    with progress_bar(total=len(starts), desc=desc, unit="crystals", disable=not progress) as bar:
        for number, begin in enumerate(range(0, len(starts), batch_size)):
            noise = next(type_starts) if bits else None
            if shard is not None and number % shard.size != shard.rank:
                continue
            chunk = CrystalBatch.from_crystals(starts[begin : begin + batch_size]).to(device)
            types_0 = None if noise is None else noise.to(chunk.device)
            crystals = sample(model, chunk, config=config, types_0=types_0).crystals.to_crystals()
            bar.update(len(crystals))
            yield crystals
