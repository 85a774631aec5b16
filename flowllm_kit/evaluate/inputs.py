"""Any generator's structure files read as kit crystals for evaluation, with every structure that
could not be used listed by source and reason: nothing is dropped silently.

Formats: ``.cif`` (every data block, pymatgen ``CifParser`` one block at a time); ``POSCAR*``,
``CONTCAR*``, ``.vasp``, ``.poscar`` (pymatgen ``Poscar``); ``.extxyz``, ``.xyz``, ``.traj`` (every
frame, ``ase.io.iread``); ``.json`` (a pymatgen ``Structure`` dict, or a list of them); ``.jsonl``
(kit crystal records, LLM draw records or pymatgen ``Structure`` dicts, one a line).

Sources, also the ids of the crystals: the file's path as found (a folder joined with the path
below it); ``<path>#<k>`` for the k-th structure (0-based) of a CIF, extxyz, trajectory or JSON
list holding more than one; ``<path>#line<n>`` for line n (1-based) of a JSON-lines file, always.

Reasons are ``<kind>`` or ``<kind>: <details>``: ``unreadable: <parser message>``, ``empty: no
atoms`` (or ``: file is empty``, ``: no structures in file``), ``disordered: partial
occupancies``, ``unsupported species: <symbols>``, ``no periodic cell``, ``invalid cell``
(non-finite coordinates or lattice, volume <= 0), ``unsupported format: <suffix>``, ``rejected by
the LLM parser: <recorded reason>``, ``conversion failed: <message>``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowllm_kit.crystal.crystal import Crystal
from flowllm_kit.crystal.io import crystal_from_dict
from flowllm_kit.llm.draws import LLMDraw

if TYPE_CHECKING:
    import pandas as pd
    from ase import Atoms
    from pymatgen.core import Structure

__all__ = ["SUPPORTED_NAMES", "SUPPORTED_SUFFIXES", "Rejected", "StructureInputs",
           "read_structure_inputs"]  # fmt: skip

_FORMATS = {
    ".cif": "cif", ".vasp": "poscar", ".poscar": "poscar", ".extxyz": "extxyz",
    ".xyz": "extxyz", ".traj": "traj", ".json": "json", ".jsonl": "jsonl",
}  # fmt: skip
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_FORMATS)
"""File suffixes read (compared in lower case)."""
SUPPORTED_NAMES: tuple[str, ...] = ("POSCAR", "CONTCAR")
"""File-name prefixes read as VASP structures whatever their suffix (compared in upper case)."""

EMPTY = "empty: no atoms"
DISORDERED = "disordered: partial occupancies"
NO_CELL = "no periodic cell"
INVALID_CELL = "invalid cell"
_MAX_Z = 118  # the kit's Crystal holds atomic numbers 1..118
_MIN_VOLUME = 1e-6  # Å^3; a cell this small is degenerate


@dataclass(frozen=True)
class Rejected:
    """A file or structure that could not be used, and why."""

    source: str  # the file, with '#<k>' or '#line<n>' for one structure of many
    reason: str  # '<kind>' or '<kind>: <details>'

    @property
    def kind(self) -> str:
        """The reason without its details, e.g. ``'unreadable'``."""
        return self.reason.split(":", 1)[0]


@dataclass
class StructureInputs:
    """What :func:`read_structure_inputs` read: crystals (ids are their sources) and rejections."""

    crystals: list[Crystal]
    rejected: list[Rejected]
    files: int  # files read or tried
    skipped: list[str] = field(default_factory=list)  # files in folders of unsupported formats

    def counts(self) -> dict[str, int]:
        """Files, skipped files, structures, rejected, and ``rejected: <kind>`` per reason kind."""
        counts = {"files": self.files, "skipped files": len(self.skipped),
                  "structures": len(self.crystals), "rejected": len(self.rejected)}  # fmt: skip
        kinds = Counter(rejected.kind for rejected in self.rejected)
        counts.update({f"rejected: {kind}": n for kind, n in sorted(kinds.items())})
        return counts

    def rejected_table(self) -> pd.DataFrame:
        """One row per rejection, columns ``source`` and ``reason``."""
        import pandas as pd

        rows = [(r.source, r.reason) for r in self.rejected]
        return pd.DataFrame(rows, columns=["source", "reason"])


def read_structure_inputs(paths: Sequence[str | Path]) -> StructureInputs:
    """Read structure files and folders into kit crystals, listing every rejected structure.

    Args:
        paths: Files and folders; a folder is searched recursively. A file given twice (or also
            found in a folder given) is read once.

    Returns:
        The crystals (in file order, then block, frame or line order) and the rejections.

    Raises:
        FileNotFoundError: If a path does not exist (naming it).
        ValueError: If no path is given, or a folder holds no supported file (naming it).
    """
    files, skipped = _collect([paths] if isinstance(paths, str | Path) else list(paths))
    outcomes = [outcome for path in files for outcome in _read_file(path)]
    crystals = [crystal for _, crystal in outcomes if isinstance(crystal, Crystal)]
    rejected = [Rejected(source, why) for source, why in outcomes if isinstance(why, str)]
    return StructureInputs(crystals, rejected, files=len(files), skipped=skipped)


# --- finding the files -------------------------------------------------------------------------
def _format(path: Path) -> str | None:
    """The reader for a file: by suffix, else by a VASP name; None if unsupported."""
    vasp = "poscar" if path.name.upper().startswith(SUPPORTED_NAMES) else None
    return _FORMATS.get(path.suffix.lower(), vasp)


def _collect(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Files to read (each folder's in sorted order), and the folders' skipped files."""
    if not paths:
        raise ValueError("no structure files or folders given")
    files: list[Path] = []
    skipped: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if not path.is_dir():  # a file named directly is read, or rejected, whatever its name
            files.append(path)
            continue
        found = sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )  # fmt: skip
        readable = [p for p in found if _format(p) is not None]
        if not readable:
            raise ValueError(
                f"no supported structure files in {path} ({len(found)} other files; reads "
                f"{', '.join(SUPPORTED_SUFFIXES)}, {'*, '.join(SUPPORTED_NAMES)}*)"
            )
        files.extend(readable)
        skipped.extend(str(p) for p in found if _format(p) is None)
    unique = {p.resolve(): p for p in reversed(files)}  # the first occurrence wins
    return [p for p in files if unique[p.resolve()] is p], skipped


# --- reading one file ---------------------------------------------------------------------------
_Item = Any  # a pymatgen Structure, an ASE Atoms, a JSON record, or a reason (str)


def _read_file(path: Path) -> list[tuple[str, Crystal | str]]:
    """(source, crystal or reason) for every structure of one file."""
    fmt = _format(path)
    if fmt is None:
        return [(str(path), f"unsupported format: {path.suffix or path.name}")]
    if path.stat().st_size == 0:
        return [(str(path), "empty: file is empty")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            items = _READERS[fmt](path)
        except Exception as error:
            items = [("", f"unreadable: {_one_line(error)}")]
        items = items or [("", "empty: no structures in file")]
        return [(f"{path}{label}", _convert(f"{path}{label}", item)) for label, item in items]


def _numbered(items: list[_Item]) -> list[tuple[str, _Item]]:
    """Label items ``#k`` when a file holds several, nothing when it holds one."""
    return [("", items[0])] if len(items) == 1 else [(f"#{k}", x) for k, x in enumerate(items)]


def _one_line(message: object) -> str:
    """A message (or an exception's) on one line, cut to about 200 characters."""
    if isinstance(message, BaseException) and not str(message):
        message = type(message).__name__
    text = " ".join(str(message).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _read_cif(path: Path) -> list[tuple[str, _Item]]:
    """Every data block of a CIF file, parsed alone so that one bad block loses only itself."""
    text = path.read_text(errors="replace")
    blocks = ["data_" + b for b in re.split(r"^\s*data_", "x\n" + text, flags=re.MULTILINE)[1:]]
    if not blocks:
        return [("", "unreadable: no CIF data block (data_...) found")]
    return _numbered([_parse_cif_block(block) for block in blocks])


def _parse_cif_block(text: str) -> Structure | str:
    """One CIF data block as a structure, or why it gave none (with the parser's messages)."""
    from pymatgen.io.cif import CifBlock, CifParser

    text = _drop_empty_loops(text)
    parser = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            keys = ("_atom_site_fract_x", "_atom_site_cartn_x")  # no atom sites: no atoms
            if not any(k.lower() in keys and v for k, v in CifBlock.from_str(text).data.items()):
                return EMPTY
            parser = CifParser.from_str(text)
            return parser.parse_structures(primitive=False, on_error="ignore")[0]
        except Exception as error:
            notes = parser.warnings if parser is not None and parser.warnings else []
            notes = notes or [str(w.message) for w in caught] or [_one_line(error)]
    notes = [re.sub(r"No structure parsed for section \d+ in CIF\.\s*", "", n) for n in notes]
    return f"unreadable: no structure parsed ({_one_line('; '.join(notes))})"


def _drop_empty_loops(text: str) -> str:
    """The CIF text without loops that have column names but no values (pymatgen's CIF writer
    makes them for a structure without atoms, and its reader fails on them)."""
    lines, kept, i = text.splitlines(), [], 0
    while i < len(lines):
        j = i + 1
        if lines[i].strip().lower() == "loop_":  # skip its column names (and blank lines)
            while j < len(lines) and len(lines[j].split()) < 2 and lines[j].strip()[:1] in "_":
                j += 1
            if j == len(lines) or lines[j].strip().lower().startswith(("loop_", "data_", "_")):
                i = j  # no values: drop the loop
                continue
        kept.append(lines[i])
        i += 1
    return "\n".join(kept) + "\n"


def _read_poscar(path: Path) -> list[tuple[str, _Item]]:
    from pymatgen.io.vasp import Poscar

    return [("", Poscar.from_file(path, check_for_potcar=False).structure)]


def _read_ase(path: Path, fmt: str) -> list[tuple[str, _Item]]:
    """Every frame, read with ASE; a frame that fails ends the file with its reason."""
    from ase.io import iread

    frames: list[_Item] = []
    try:
        frames.extend(iread(path, index=":", format=fmt))
    except Exception as error:
        frames.append(f"unreadable: {_one_line(error)} (this frame and any after it)")
    return _numbered(frames)


def _read_json(path: Path) -> list[tuple[str, _Item]]:
    data = json.loads(path.read_text())
    return _numbered(data if isinstance(data, list) else [data])


def _read_jsonl(path: Path) -> list[tuple[str, _Item]]:
    """Every non-blank line; a line that is not JSON becomes its reason."""
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    items: list[tuple[str, _Item]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            cut = " (last line, cut off)" if number == len(lines) and text[-1] != "\n" else ""
            item = f"unreadable: not JSON ({error.msg}, column {error.colno}){cut}"
        items.append((f"#line{number}", item))
    return items


_READERS: dict[str, Callable[[Path], list[tuple[str, _Item]]]] = {
    "cif": _read_cif, "poscar": _read_poscar, "extxyz": partial(_read_ase, fmt="extxyz"),
    "traj": partial(_read_ase, fmt="traj"), "json": _read_json, "jsonl": _read_jsonl,
}  # fmt: skip


# --- checks and conversion ----------------------------------------------------------------------
def _convert(source: str, item: _Item) -> Crystal | str:
    """The checked crystal of a read item, or why there is none."""
    from ase import Atoms
    from pymatgen.core import Structure

    if isinstance(item, str):
        return item
    try:
        if isinstance(item, Structure):
            return _structure_problem(item) or Crystal.from_structure(item, id=source)
        if isinstance(item, Atoms):
            return _atoms_problem(item) or Crystal.from_ase(item, id=source)
        if isinstance(item, Mapping):
            return _from_record(source, item)
        return f"unreadable: not a structure record ({type(item).__name__})"
    except Exception as error:
        return f"conversion failed: {_one_line(error)}"


def _cell_problem(lattice: np.ndarray, coords: np.ndarray) -> str | None:
    """``invalid cell`` for non-finite values or a cell of no volume."""
    finite = np.all(np.isfinite(lattice)) and np.all(np.isfinite(coords))
    return None if finite and abs(np.linalg.det(lattice)) > _MIN_VOLUME else INVALID_CELL


def _species_problem(numbers: list[int], symbols: list[str]) -> str | None:
    bad = sorted({s for z, s in zip(numbers, symbols, strict=True) if not 1 <= z <= _MAX_Z})
    return f"unsupported species: {', '.join(bad)}" if bad else None


def _structure_problem(structure: Structure) -> str | None:
    """Why a pymatgen structure cannot be a kit crystal (None if it can)."""
    from pymatgen.core import DummySpecies

    if len(structure) == 0:
        return EMPTY
    if not structure.is_ordered:
        return DISORDERED
    species = [site.specie for site in structure]  # Species with oxidation states count by Z
    numbers = [0 if isinstance(sp, DummySpecies) else int(sp.Z) for sp in species]
    problem = _species_problem(numbers, [str(sp) for sp in species])
    return problem or _cell_problem(structure.lattice.matrix, structure.frac_coords)


def _atoms_problem(atoms: Atoms) -> str | None:
    """Why an ASE frame cannot be a kit crystal (None if it can)."""
    from ase.data import chemical_symbols

    if len(atoms) == 0:
        return EMPTY
    cell = np.asarray(atoms.cell.array, dtype=float)
    if not np.all(atoms.pbc) or (np.all(np.isfinite(cell)) and atoms.cell.rank < 3):
        return NO_CELL
    numbers = atoms.numbers.tolist()
    names = [chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z) for z in numbers]
    return _species_problem(numbers, names) or _cell_problem(cell, atoms.positions)


def _crystal_problem(crystal: Crystal) -> str | None:
    """``invalid cell`` for a kit crystal whose lengths and angles make no cell."""
    return None if np.isfinite(crystal.volume) and crystal.volume > _MIN_VOLUME else INVALID_CELL


def _record_problem(record: Any) -> str | None:
    """Which check a kit crystal record refused by ``crystal_from_dict`` fails (None: other)."""
    keys = ("atomic_numbers", "frac_coords", "lengths", "angles")
    if not isinstance(record, Mapping) or any(key not in record for key in keys):
        return None
    try:
        numbers = np.asarray(record["atomic_numbers"], dtype=float).ravel()
        if numbers.size == 0:
            return EMPTY
        ints = [int(z) if float(z).is_integer() else 0 for z in numbers]
        problem = _species_problem(ints, [f"Z={z:g}" for z in numbers])
        values = [np.asarray(record[key], dtype=float).ravel() for key in keys[1:]]
        return problem or (None if np.all(np.isfinite(np.concatenate(values))) else INVALID_CELL)
    except (TypeError, ValueError):
        return None


def _from_record(source: str, record: Mapping[str, Any]) -> Crystal | str:
    """A JSON record: kit crystal, LLM draw, or pymatgen structure."""
    if "atomic_numbers" in record:
        try:
            crystal = crystal_from_dict(record, id=source)
        except Exception as error:
            return _record_problem(record) or f"unreadable: {_one_line(error)}"
        return _crystal_problem(crystal) or crystal
    if "draw" in record:
        return _from_draw(source, record)
    if "sites" in record:
        from pymatgen.core import Structure

        try:
            structure = Structure.from_dict(record) if "lattice" in record else NO_CELL
        except Exception as error:
            return f"unreadable: {_one_line(error)}"
        return _convert(source, structure)
    return f"unreadable: not a structure record (keys: {_one_line(', '.join(map(str, record)))})"


def _from_draw(source: str, record: Mapping[str, Any]) -> Crystal | str:
    """An LLM draw record: its crystal, or the reason the LLM's parser recorded."""
    try:
        draw = LLMDraw.from_dict(dict(record))
    except Exception as error:
        problem = _record_problem(record.get("crystal"))
        return problem or f"unreadable: draw record: {_one_line(error)}"
    if not draw.kept:
        return f"rejected by the LLM parser: {_one_line(draw.reason)}"
    if draw.crystal is None:
        return "rejected by the LLM parser: kept, but no crystal recorded"
    crystal = draw.crystal.replace(id=source)
    return _crystal_problem(crystal) or crystal
