"""The named benchmark datasets and where their CSV files can be downloaded from.

Every dataset is a folder of ``<split>.csv`` files in the CDVAE/DiffCSP layout. A source is one
public copy of that folder; the first source is canonical, later ones are fallbacks tried only
when an earlier one cannot be reached. Sizes and hashes are per source, because the copies are
not byte-identical (DiffCSP's MP-20 CSVs, for example, differ from CDVAE's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["DATASETS", "DatasetSpec", "FileCheck", "Source", "get_dataset", "register_dataset"]


@dataclass(frozen=True)
class FileCheck:
    """What a downloaded file must match; ``None`` means "not known, not checked".

    Attributes:
        size: Exact size in bytes.
        sha256: Lower-case hex SHA-256 of the file's bytes.
    """

    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Source:
    """One public copy of a dataset folder.

    Attributes:
        base_url: URL of the folder that holds ``<split>.csv`` (no trailing slash).
        checks: Split -> expected size/hash of that split's file at this source.
    """

    base_url: str
    checks: Mapping[str, FileCheck] = field(default_factory=dict)

    def url(self, split: str) -> str:
        """URL of one split's CSV file."""
        return f"{self.base_url.rstrip('/')}/{split}.csv"

    def check(self, split: str) -> FileCheck:
        """Expected size/hash of one split (empty when unknown)."""
        return self.checks.get(split, FileCheck())


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its splits and its download sources, canonical first.

    Attributes:
        name: Folder name under a data root, e.g. ``"mp_20"``.
        splits: Split names, each stored as ``<split>.csv``.
        sources: Download sources, tried in order.
        description: One line for humans.
    """

    name: str
    splits: tuple[str, ...] = ("train", "val", "test")
    sources: tuple[Source, ...] = ()
    description: str = ""


_DIFFCSP = "https://raw.githubusercontent.com/jiaor17/DiffCSP/main/data"
_CDVAE = "https://raw.githubusercontent.com/txie-93/cdvae/main/data"


def _spec(
    name: str,
    description: str,
    diffcsp_sizes: Mapping[str, int],
    cdvae_checks: Mapping[str, FileCheck] | None,
) -> DatasetSpec:
    sources = [
        Source(f"{_DIFFCSP}/{name}", {s: FileCheck(size=n) for s, n in diffcsp_sizes.items()})
    ]
    if cdvae_checks is not None:  # CDVAE has no MPTS-52
        sources.append(Source(f"{_CDVAE}/{name}", dict(cdvae_checks)))
    return DatasetSpec(name=name, sources=tuple(sources), description=description)


# Sizes of the DiffCSP copies are those its GitHub repository serves (as recorded by the data
# folder the kit is developed against). The CDVAE val/test hashes of perov_5 and carbon_24 are
# those of copies byte-identical to txie-93/cdvae (commit f857f598).
_BUILTIN = (
    _spec(
        "mp_20",
        "MP-20: 45,231 Materials Project structures with at most 20 atoms (CDVAE splits).",
        {"train": 80_920_549, "val": 26_864_684, "test": 26_846_148},
        {},
    ),
    _spec(
        "mpts_52",
        "MPTS-52: Materials Project structures with at most 52 atoms, split by time.",
        {"train": 45_705_353, "val": 9_941_357, "test": 16_358_482},
        None,
    ),
    _spec(
        "perov_5",
        "Perov-5: 18,928 cubic perovskites with 5 atoms per cell (Castelli et al. 2012).",
        {"train": 21_695_296},
        {
            "val": FileCheck(
                3_673_814, "326f401219901270374b71e2faff63df3a29a99fd26f469993b9f476b693daf2"
            ),
            "test": FileCheck(
                3_671_842, "a85878c685037f0a578257f6d4fcdde00e968dbab73c5f1e90ecef65218513f6"
            ),
        },
    ),
    _spec(
        "carbon_24",
        "Carbon-24: 10,153 carbon structures with 6 to 24 atoms (Pickard 2020).",
        {"train": 15_214_751},
        {
            "val": FileCheck(
                2_321_923, "36c00689cd63073c954a58bc6ed6e2adb7aeed5a630c994970959a1babffd50e"
            ),
            "test": FileCheck(
                2_319_350, "386b17c08816f434818d51e46687bf72ff3f92348f3ba24823e4758f1fe8a969"
            ),
        },
    ),
)

_registry: dict[str, DatasetSpec] = {spec.name: spec for spec in _BUILTIN}

DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(_registry)
"""Read-only view of every registered dataset, by name."""


def register_dataset(spec: DatasetSpec, *, replace: bool = False) -> None:
    """Make a dataset downloadable by name (e.g. a mirror or a new benchmark).

    Args:
        spec: The dataset.
        replace: Allow replacing a dataset already registered under the same name.

    Raises:
        ValueError: If the name is taken and ``replace`` is false.
    """
    if spec.name in _registry and not replace:
        raise ValueError(f"dataset {spec.name!r} is already registered; pass replace=True")
    _registry[spec.name] = spec


def get_dataset(name: str) -> DatasetSpec | None:
    """The registered dataset called ``name``, or ``None``."""
    return _registry.get(name)
