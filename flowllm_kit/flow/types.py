"""Atom types as a continuous flow state: FlowMM's analog bits (docs/METHOD.md §5).

A de novo flow generates the atom types together with the geometry. Following FlowMM, each
atomic number ``z`` is written in binary with ``bits`` digits, each digit as -1 or +1 (analog
bits, Chen et al. 2022); these ``(N, bits)`` values flow along straight lines from Gaussian
noise, like the lattice, and are read back at ``t = 1``::

    a_t = (1 - t) a_0 + t a_1,   da_t = a_1 - a_0,   a_0 ~ N(0, 1),   a_1 = bits(z)

Reading back: FlowMM takes the sign of each bit. Seven bits hold 0..127, not all of them
elements, so the kit reads each atom as the element whose code is nearest (in squared
distance) to its bits. Where the signs spell an element this is the same answer; elsewhere it
is the most likely element under Gaussian noise on the bits, and the number of atoms so read is
reported (:func:`decode_types`). Every atom comes out as exactly one element.

Example::

    >>> a_1 = encode_types(torch.tensor([8, 26]))        # O, Fe -> (2, 7) in {-1, +1}
    >>> decode_types(a_1).atomic_numbers
    tensor([ 8, 26])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from flowllm_kit.crystal import Crystal

__all__ = [
    "DEFAULT_TYPE_BITS",
    "MAX_GENERATED_Z",
    "AtomCounts",
    "DecodedTypes",
    "decode_types",
    "encode_types",
    "type_noise",
]

DEFAULT_TYPE_BITS = 7  # FlowMM: floor(log2(100)) + 1 bits, codes 0..127
MAX_GENERATED_Z = 94  # elements a generated atom may be (H..Pu): what CHGNet and MP-20 cover


def encode_types(
    atomic_numbers: Tensor, bits: int = DEFAULT_TYPE_BITS, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``(N, bits)`` analog bits (-1 or +1) of ``(N,)`` atomic numbers: bit k of the number in
    column k, least significant first, as FlowMM orders them.

    Raises:
        ValueError: If an atomic number does not fit in ``bits`` binary digits.
    """
    atomic_numbers = atomic_numbers.long()
    if atomic_numbers.numel() and (
        int(atomic_numbers.min()) < 0 or int(atomic_numbers.max()) >= 2**bits
    ):
        raise ValueError(
            f"atomic numbers must lie in 0..{2**bits - 1} to be written with {bits} bits, got "
            f"{int(atomic_numbers.min())}..{int(atomic_numbers.max())}"
        )
    digits = (atomic_numbers.unsqueeze(-1) >> torch.arange(bits, device=atomic_numbers.device)) & 1
    return (2 * digits - 1).to(dtype)


@dataclass(frozen=True, eq=False)
class DecodedTypes:
    """Atom types read from analog bits.

    Attributes:
        atomic_numbers: ``(N,)`` long, each in 1 .. ``max_z``.
        off_code: ``(N,)`` bool: the signs of the atom's bits spelt no allowed element, so the
            nearest allowed code was taken.
    """

    atomic_numbers: Tensor
    off_code: Tensor


def decode_types(analog: Tensor, *, max_z: int = MAX_GENERATED_Z) -> DecodedTypes:
    """Each atom's element: the allowed code (1 .. ``max_z``) nearest to its ``(N, bits)``
    analog bits (see the module notes).

    Raises:
        ValueError: If ``max_z`` does not fit in the bits.
    """
    bits = analog.shape[-1]
    if not 1 <= max_z < 2**bits:
        raise ValueError(f"max_z must lie in 1..{2**bits - 1} for {bits} bits, got {max_z}")
    allowed = torch.arange(1, max_z + 1, device=analog.device)
    codes = encode_types(allowed, bits, dtype=analog.dtype)  # (Z, bits), z = 1..max_z
    # ||a - c||^2 = ||a||^2 - 2 a.c + bits: the nearest code has the largest a.c.
    nearest = (analog @ codes.T).argmax(dim=-1) + 1
    signs = torch.where(analog >= 0, 1, 0)
    by_sign = (signs << torch.arange(bits, device=analog.device)).sum(-1)
    return DecodedTypes(atomic_numbers=nearest.long(), off_code=(by_sign != nearest))


def type_noise(
    num_atoms: int, bits: int = DEFAULT_TYPE_BITS, *, generator: torch.Generator | None = None
) -> Tensor:
    """``(num_atoms, bits)`` draws of the type flow's base, N(0, 1) (FlowMM's), on the CPU."""
    return torch.randn(num_atoms, bits, generator=generator)


@dataclass(frozen=True)
class AtomCounts:
    """The distribution of atoms per cell that a de novo flow draws its crystal sizes from:
    the empirical one of the training crystals, as FlowMM draws them.

    Attributes:
        counts: The atom counts seen.
        probabilities: How often each was seen (sums to 1).
    """

    counts: tuple[int, ...]
    probabilities: tuple[float, ...]

    @classmethod
    def fit(cls, crystals: Sequence[Crystal]) -> AtomCounts:
        """The counts of ``crystals`` and their frequencies.

        Raises:
            ValueError: If ``crystals`` is empty.
        """
        if not crystals:
            raise ValueError("AtomCounts.fit needs at least one crystal")
        values, seen = np.unique([c.num_atoms for c in crystals], return_counts=True)
        return cls(tuple(int(v) for v in values), tuple((seen / seen.sum()).tolist()))

    def sample(self, count: int, *, rng: np.random.Generator) -> np.ndarray:
        """``(count,)`` atom counts drawn from the distribution."""
        return rng.choice(np.array(self.counts), size=count, p=np.array(self.probabilities))
