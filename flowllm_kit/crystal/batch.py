"""Many crystals as flat tensors, the form every model in the kit consumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowllm_kit.crystal.crystal import Crystal
from flowllm_kit.geometry import lattice

__all__ = ["CrystalBatch"]


@dataclass(frozen=True, eq=False)
class CrystalBatch:
    """``B`` crystals with ``N`` atoms in total, stored flat.

    Immutable: change it with :meth:`replace` (``batch.replace(frac_coords=f_t)``).

    Attributes:
        atomic_numbers: ``(N,)`` long.
        frac_coords: ``(N, 3)`` fractional coordinates in [0, 1).
        lengths: ``(B, 3)`` lattice lengths in Å.
        angles: ``(B, 3)`` lattice angles in degrees.
        num_atoms: ``(B,)`` long, atoms per crystal; sums to ``N``.
        ids: ``B`` identifiers (``None`` where a crystal has none).

    Example::

        >>> batch = CrystalBatch.from_crystals(crystals)
        >>> batch.batch_index            # crystal of each atom, (N,)
        >>> batch.to_crystals()[0] ...   # back to Crystal objects
    """

    atomic_numbers: Tensor
    frac_coords: Tensor
    lengths: Tensor
    angles: Tensor
    num_atoms: Tensor
    ids: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        n_atoms, n_crystals = self.atomic_numbers.shape[0], self.num_atoms.shape[0]
        if self.frac_coords.shape != (n_atoms, 3):
            raise ValueError(
                f"frac_coords must be ({n_atoms}, 3), got {tuple(self.frac_coords.shape)}"
            )
        for name in ("lengths", "angles"):
            shape = tuple(getattr(self, name).shape)
            if shape != (n_crystals, 3):
                raise ValueError(f"{name} must be ({n_crystals}, 3), got {shape}")
        if int(self.num_atoms.sum()) != n_atoms:
            raise ValueError(f"num_atoms sums to {int(self.num_atoms.sum())}, expected {n_atoms}")
        if not self.ids:
            object.__setattr__(self, "ids", (None,) * n_crystals)
        elif len(self.ids) != n_crystals:
            raise ValueError(f"ids must have {n_crystals} entries, got {len(self.ids)}")

    @classmethod
    def from_crystals(
        cls, crystals: Sequence[Crystal], *, dtype: torch.dtype = torch.float32
    ) -> CrystalBatch:
        """Collate crystals into one batch (the order is kept)."""
        if len(crystals) == 0:
            raise ValueError("cannot batch an empty list of crystals")
        return cls(
            atomic_numbers=torch.from_numpy(np.concatenate([c.atomic_numbers for c in crystals])),
            frac_coords=torch.from_numpy(np.concatenate([c.frac_coords for c in crystals])).to(
                dtype
            ),
            lengths=torch.from_numpy(np.stack([c.lengths for c in crystals])).to(dtype),
            angles=torch.from_numpy(np.stack([c.angles for c in crystals])).to(dtype),
            num_atoms=torch.tensor([c.num_atoms for c in crystals], dtype=torch.long),
            ids=tuple(c.id for c in crystals),
        )

    def to_crystals(self) -> list[Crystal]:
        """Split back into :class:`Crystal` objects (on the CPU, float64)."""
        sizes = self.num_atoms.tolist()
        numbers = self.atomic_numbers.cpu().split(sizes)
        coords = self.frac_coords.detach().cpu().double().split(sizes)
        lengths = self.lengths.detach().cpu().double()
        angles = self.angles.detach().cpu().double()
        return [
            Crystal(
                atomic_numbers=numbers[i].numpy(),
                frac_coords=coords[i].numpy(),
                lengths=lengths[i].numpy(),
                angles=angles[i].numpy(),
                id=self.ids[i],
            )
            for i in range(len(sizes))
        ]

    # --- derived -------------------------------------------------------------------------
    @property
    def num_crystals(self) -> int:
        return self.num_atoms.shape[0]

    @property
    def device(self) -> torch.device:
        return self.frac_coords.device

    @cached_property
    def batch_index(self) -> Tensor:
        """``(N,)`` long: the crystal each atom belongs to."""
        return torch.repeat_interleave(
            torch.arange(self.num_crystals, device=self.num_atoms.device), self.num_atoms
        )

    @cached_property
    def offsets(self) -> Tensor:
        """``(B + 1,)`` long: crystal ``i``'s atoms are rows ``offsets[i]:offsets[i+1]``."""
        return torch.nn.functional.pad(torch.cumsum(self.num_atoms, 0), (1, 0))

    @property
    def lattice_matrix(self) -> Tensor:
        """``(B, 3, 3)``, rows are lattice vectors."""
        return lattice.params_to_matrix(self.lengths, self.angles)

    @property
    def lattice_unconstrained(self) -> Tensor:
        """``(B, 6)``: the reference's ``"logit"`` lattice space (lengths, bijected angles)."""
        return lattice.lattice_to_unconstrained(self.lengths, self.angles)

    def lattice_in(self, representation: lattice.LatticeRepresentation) -> Tensor:
        """``(B, 6)``: the lattice in the flow space ``representation`` (``"logit"``, ``"log"``)."""
        return lattice.lattice_to_unconstrained(self.lengths, self.angles, representation)

    # --- changes -------------------------------------------------------------------------
    def replace(self, **changes: Any) -> CrystalBatch:
        """A copy with some fields changed (derived, cached values are recomputed)."""
        return dataclasses.replace(self, **changes)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> CrystalBatch:
        """Move float tensors to ``device``/``dtype`` and integer tensors to ``device``."""
        return self.replace(
            atomic_numbers=self.atomic_numbers.to(device),
            frac_coords=self.frac_coords.to(device, dtype),
            lengths=self.lengths.to(device, dtype),
            angles=self.angles.to(device, dtype),
            num_atoms=self.num_atoms.to(device),
        )

    def __len__(self) -> int:
        return self.num_crystals

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> CrystalBatch:
        """Select crystals (an int, a slice, a list of indices or a boolean mask)."""
        if isinstance(index, int):
            index = [index]
        selected = torch.arange(self.num_crystals)[index]
        sizes = self.num_atoms.cpu()
        offsets = self.offsets.cpu()
        atom_rows = torch.cat(
            [torch.arange(offsets[i], offsets[i] + sizes[i]) for i in selected.tolist()]
        ).to(self.device)
        selected = selected.to(self.num_atoms.device)
        return CrystalBatch(
            atomic_numbers=self.atomic_numbers[atom_rows],
            frac_coords=self.frac_coords[atom_rows],
            lengths=self.lengths[selected],
            angles=self.angles[selected],
            num_atoms=self.num_atoms[selected],
            ids=tuple(self.ids[i] for i in selected.tolist()),
        )

    def __repr__(self) -> str:
        n_atoms = self.atomic_numbers.shape[0]
        return f"CrystalBatch({self.num_crystals} crystals, {n_atoms} atoms, device={self.device})"
