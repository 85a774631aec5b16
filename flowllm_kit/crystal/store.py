"""One on-disk format for batches of crystals: the data cache, the pair set and the flow's
trajectories all write it.

A file is an ``.npz`` of plain arrays, read without pickle. Each named batch of crystals is
five arrays, ``<name>.atomic_numbers`` ``(N,)``, ``<name>.frac_coords`` ``(N, 3)``,
``<name>.lengths`` and ``<name>.angles`` ``(B, 3)`` (Å, degrees), ``<name>.num_atoms`` ``(B,)``;
other arrays keep their own names; ``meta`` holds UTF-8 JSON: the format's name and version, the
file's kind (``"pair set"``, ``"trajectory"``, ...) and whatever the writer adds. A file of
another kind, of another version, or written before this format existed is refused with an
error that names it.

Example::

    >>> write_crystal_file("pairs.npz", "pair set", {"c0": PackedCrystals.from_crystals(c0)})
    >>> stored = read_crystal_file("pairs.npz", "pair set")
    >>> stored.batches["c0"].to_crystals()
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowllm_kit.crystal.batch import CrystalBatch
from flowllm_kit.crystal.crystal import Crystal
from flowllm_kit.files import atomic_file

__all__ = [
    "FORMAT",
    "VERSION",
    "CrystalFile",
    "CrystalFileError",
    "PackedCrystals",
    "read_crystal_file",
    "write_crystal_file",
]

FORMAT = "flowllm-kit crystals"
VERSION = 1
_FIELDS = ("atomic_numbers", "frac_coords", "lengths", "angles", "num_atoms")


class CrystalFileError(ValueError):
    """A file is not a crystal file of the kind asked for; the message names it and why."""


@dataclass(frozen=True, eq=False)
class PackedCrystals:
    """``B`` crystals as flat NumPy arrays (``N`` atoms in all), the form they are stored in."""

    atomic_numbers: np.ndarray  # (N,)
    frac_coords: np.ndarray  # (N, 3)
    lengths: np.ndarray  # (B, 3) Å
    angles: np.ndarray  # (B, 3) degrees
    num_atoms: np.ndarray  # (B,)

    def __post_init__(self) -> None:
        crystals, atoms = len(self.num_atoms), int(np.sum(self.num_atoms))
        expected = {
            "atomic_numbers": (atoms,),
            "frac_coords": (atoms, 3),
            "lengths": (crystals, 3),
            "angles": (crystals, 3),
        }
        for name, shape in expected.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(
                    f"{name} has shape {np.shape(getattr(self, name))}, expected {shape} for "
                    f"{crystals} crystals of {atoms} atoms"
                )

    def __len__(self) -> int:
        return len(self.num_atoms)

    @classmethod
    def from_crystals(cls, crystals: Sequence[Crystal]) -> PackedCrystals:
        """Pack crystals (any number, none included)."""
        return cls(
            atomic_numbers=np.concatenate(
                [np.zeros(0, np.int64), *(c.atomic_numbers for c in crystals)]
            ).astype(np.int64),
            frac_coords=np.concatenate([np.zeros((0, 3)), *(c.frac_coords for c in crystals)]),
            lengths=np.array([c.lengths for c in crystals], dtype=float).reshape(-1, 3),
            angles=np.array([c.angles for c in crystals], dtype=float).reshape(-1, 3),
            num_atoms=np.array([c.num_atoms for c in crystals], dtype=np.int64),
        )

    def to_crystals(self, ids: Sequence[str | None] | None = None) -> list[Crystal]:
        """The crystals, with ``ids`` when given."""
        ends = np.cumsum(self.num_atoms)
        starts = ends - self.num_atoms
        names = list(ids) if ids is not None else [None] * len(self)
        return [
            Crystal(
                atomic_numbers=self.atomic_numbers[s:e],
                frac_coords=self.frac_coords[s:e],
                lengths=self.lengths[i],
                angles=self.angles[i],
                id=names[i],
            )
            for i, (s, e) in enumerate(zip(starts, ends, strict=True))
        ]

    @classmethod
    def from_batch(cls, batch: CrystalBatch) -> PackedCrystals:
        arrays = {name: getattr(batch, name).detach().cpu().numpy() for name in _FIELDS}
        return cls(**arrays)

    def to_batch(self) -> CrystalBatch:
        """A :class:`CrystalBatch` on the CPU (float64 geometry, as stored)."""
        return CrystalBatch(
            **{
                name: torch.from_numpy(np.ascontiguousarray(getattr(self, name)))
                for name in _FIELDS
            }
        )


@dataclass(frozen=True)
class CrystalFile:
    """What :func:`read_crystal_file` returns."""

    kind: str
    batches: dict[str, PackedCrystals]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def write_crystal_file(
    path: str | Path,
    kind: str,
    batches: Mapping[str, PackedCrystals],
    *,
    arrays: Mapping[str, np.ndarray] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write batches of crystals, extra arrays and JSON metadata to ``path``, atomically (a
    temporary file in the same folder, then renamed: a reader sees the whole file or none)."""
    path = Path(path)
    contents: dict[str, np.ndarray] = {}
    for name, packed in batches.items():
        for part in _FIELDS:
            contents[f"{name}.{part}"] = np.asarray(getattr(packed, part))
    for name, values in (arrays or {}).items():
        if name == "meta" or any(name.startswith(f"{batch}.") for batch in batches):
            raise ValueError(f"array name {name!r} is taken by the format")
        contents[name] = np.asarray(values)
    record = {"format": FORMAT, "version": VERSION, "kind": kind, "batches": list(batches)}
    record |= dict(meta or {})
    contents["meta"] = np.frombuffer(json.dumps(record).encode("utf-8"), dtype=np.uint8)
    with atomic_file(path) as sink:  # a file object: numpy adds no ".npz"
        np.savez(sink, **contents)
    return path


def read_crystal_file(path: str | Path, kind: str) -> CrystalFile:
    """Read a file written by :func:`write_crystal_file`.

    Raises:
        FileNotFoundError: If there is no such file.
        CrystalFileError: If the file is not a crystal file of this ``kind`` and version (for
            instance one written by an earlier version of the kit), or is damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {kind} file at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise CrystalFileError(f"{path}: not a readable {kind} file ({error})") from None
    if "meta" not in contents:
        raise CrystalFileError(
            f"{path}: a {kind} file written by an earlier version of flowllm-kit (before the "
            f"{FORMAT!r} format); write it again with this version"
        )
    try:
        record = json.loads(contents.pop("meta").tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CrystalFileError(f"{path}: unreadable metadata ({error})") from None
    found = (record.get("format"), record.get("version"), record.get("kind"))
    if found != (FORMAT, VERSION, kind):
        raise CrystalFileError(
            f"{path}: expected a {kind} file ({FORMAT!r} version {VERSION}), found format "
            f"{found[0]!r} version {found[1]!r} kind {found[2]!r}"
        )
    batches = {}
    for name in record["batches"]:
        try:
            parts = {part: contents.pop(f"{name}.{part}") for part in _FIELDS}
            batches[name] = PackedCrystals(**parts)
        except (KeyError, ValueError) as error:
            raise CrystalFileError(f"{path}: batch {name!r} is damaged ({error})") from None
    meta = {k: v for k, v in record.items() if k not in ("format", "version", "kind", "batches")}
    return CrystalFile(kind=kind, batches=batches, arrays=contents, meta=meta)
