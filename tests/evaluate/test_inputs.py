"""Reading any generator's structure files for evaluation (flowllm_kit.evaluate.inputs)."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import write as ase_write
from pymatgen.core import DummySpecies, Lattice, Species, Structure
from pymatgen.io.cif import CifWriter

from flowllm_kit.crystal import Crystal, write_crystals
from flowllm_kit.evaluate.inputs import Rejected, StructureInputs, read_structure_inputs
from flowllm_kit.llm.draws import LLMDraw


def _rock_salt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def _triclinic() -> Structure:
    lattice = Lattice.from_parameters(3.1, 4.2, 5.3, 80, 95, 110)
    coords = [[0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [0.9, 0.05, 0.45], [0.33, 0.77, 0.12]]
    return Structure(lattice, ["O", "Li", "Fe", "O"], coords)


STRUCTURES = [_rock_salt(), _triclinic()]


def _cif(structure: Structure) -> str:
    return str(CifWriter(structure))


def _assert_same(crystal: Crystal, structure: Structure, tol: float = 1e-5) -> None:
    """Same lattice parameters, and every site matched by one of the same element (any order)."""
    np.testing.assert_allclose(crystal.lengths, structure.lattice.abc, atol=tol)
    np.testing.assert_allclose(crystal.angles, structure.lattice.angles, atol=tol)
    assert sorted(crystal.atomic_numbers.tolist()) == sorted(s.specie.Z for s in structure)
    unmatched = list(range(len(structure)))
    for z, frac in zip(crystal.atomic_numbers, crystal.frac_coords, strict=True):
        for i in unmatched:
            delta = (frac - structure[i].frac_coords + 0.5) % 1.0 - 0.5
            if z == structure[i].specie.Z and np.all(np.abs(delta) < tol):
                unmatched.remove(i)
                break
        else:
            raise AssertionError(f"site {z} at {frac} of {crystal.id} has no match")


# --- round trips: each writer writes both structures and returns the ids they should get -----
def _write_cif(folder: Path) -> list[str]:
    (folder / "s.cif").write_text("".join(_cif(s) for s in STRUCTURES))
    return [f"{folder}/s.cif#0", f"{folder}/s.cif#1"]


def _write_poscar(folder: Path) -> list[str]:
    STRUCTURES[0].to(filename=str(folder / "POSCAR"), fmt="poscar")
    STRUCTURES[1].to(filename=str(folder / "b.vasp"), fmt="poscar")
    return [f"{folder}/POSCAR", f"{folder}/b.vasp"]


def _write_extxyz(folder: Path) -> list[str]:
    ase_write(folder / "s.extxyz", [s.to_ase_atoms() for s in STRUCTURES], format="extxyz")
    return [f"{folder}/s.extxyz#0", f"{folder}/s.extxyz#1"]


def _write_traj(folder: Path) -> list[str]:
    ase_write(folder / "s.traj", [s.to_ase_atoms() for s in STRUCTURES], format="traj")
    return [f"{folder}/s.traj#0", f"{folder}/s.traj#1"]


def _write_json(folder: Path) -> list[str]:
    for name, structure in zip("ab", STRUCTURES, strict=True):
        (folder / f"{name}.json").write_text(json.dumps(structure.as_dict()))
    return [f"{folder}/a.json", f"{folder}/b.json"]


def _write_jsonl(folder: Path) -> list[str]:
    write_crystals([Crystal.from_structure(s, id="x") for s in STRUCTURES], folder / "s.jsonl")
    return [f"{folder}/s.jsonl#line1", f"{folder}/s.jsonl#line2"]


@pytest.mark.parametrize(
    "write",
    [_write_cif, _write_poscar, _write_extxyz, _write_traj, _write_json, _write_jsonl],
    ids=["cif", "poscar", "extxyz", "traj", "json", "jsonl"],
)
def test_round_trip(tmp_path: Path, write: Callable[[Path], list[str]]) -> None:
    ids = write(tmp_path)
    inputs = read_structure_inputs([tmp_path])
    assert inputs.rejected == []
    assert [c.id for c in inputs.crystals] == ids
    for crystal, structure in zip(inputs.crystals, STRUCTURES, strict=True):
        _assert_same(crystal, structure)


# --- a folder of good and bad files ------------------------------------------------------------
def _mixed_folder(folder: Path) -> None:
    good, disordered = _rock_salt(), Structure(Lattice.cubic(4.0), ["O"], [[0, 0, 0]])
    disordered.replace(0, {"Fe": 0.5, "Co": 0.5})
    (folder / "good.cif").write_text(_cif(good))
    good.to(filename=str(folder / "POSCAR"), fmt="poscar")
    (folder / "garbage.cif").write_text("this is not a crystal\n")
    (folder / "disordered.cif").write_text(_cif(disordered))
    (folder / "zero_atoms.cif").write_text(_cif(Structure(Lattice.cubic(4.0), [], [])))
    (folder / "blank.cif").write_text("")
    molecule = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    sub = folder / "sub"
    sub.mkdir()
    ase_write(sub / "frames.extxyz", [good.to_ase_atoms(), molecule], format="extxyz")
    lines = [
        json.dumps({"atomic_numbers": [11, 17], "frac_coords": [[0, 0, 0], [0.5, 0.5, 0.5]],
                    "lengths": [4.0, 4.0, 4.0], "angles": [60.0, 60.0, 60.0]}),
        '{"atomic_numbers": [11, 17], "frac_coo',
        json.dumps(LLMDraw(draw=7, text="4.1 4.1 4.1\n...", reason="bad_lattice").to_dict()),
        json.dumps(LLMDraw(draw=8, text="...", reason=None,
                           crystal=Crystal.from_structure(good)).to_dict()),
    ]  # fmt: skip
    (sub / "samples.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "notes.txt").write_text("not a structure\n")
    (folder / ".hidden.cif").write_text("ignored\n")


def test_mixed_folder_lists_every_rejection(tmp_path: Path) -> None:
    _mixed_folder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs = read_structure_inputs([tmp_path])
    assert [str(w.message) for w in caught] == []  # the parsers' warnings are kept in
    sub = f"{tmp_path}/sub"
    assert [c.id for c in inputs.crystals] == [
        f"{tmp_path}/POSCAR",
        f"{tmp_path}/good.cif",
        f"{sub}/frames.extxyz#0",
        f"{sub}/samples.jsonl#line1",
        f"{sub}/samples.jsonl#line4",
    ]
    for crystal in [inputs.crystals[i] for i in (0, 1, 2, 4)]:
        _assert_same(crystal, _rock_salt())
    kinds = {r.source: r.kind for r in inputs.rejected}
    assert len(kinds) == len(inputs.rejected)  # each listed once
    assert kinds == {
        f"{tmp_path}/blank.cif": "empty",
        f"{tmp_path}/disordered.cif": "disordered",
        f"{tmp_path}/garbage.cif": "unreadable",
        f"{tmp_path}/zero_atoms.cif": "empty",
        f"{sub}/frames.extxyz#1": "no periodic cell",
        f"{sub}/samples.jsonl#line2": "unreadable",
        f"{sub}/samples.jsonl#line3": "rejected by the LLM parser",
    }
    reasons = {r.source: r.reason for r in inputs.rejected}
    assert reasons[f"{sub}/samples.jsonl#line3"] == "rejected by the LLM parser: bad_lattice"
    assert reasons[f"{tmp_path}/disordered.cif"] == "disordered: partial occupancies"
    assert reasons[f"{tmp_path}/zero_atoms.cif"] == "empty: no atoms"
    assert reasons[f"{sub}/frames.extxyz#1"] == "no periodic cell"
    counts = inputs.counts()
    assert counts["files"] == 8 and counts["skipped files"] == 1
    assert inputs.skipped == [f"{tmp_path}/notes.txt"]
    assert counts["structures"] + counts["rejected"] == 5 + 7
    assert counts["rejected: empty"] == 2 and counts["rejected: unreadable"] == 2
    assert sum(n for k, n in counts.items() if k.startswith("rejected: ")) == counts["rejected"]
    table = inputs.rejected_table()
    assert list(table.columns) == ["source", "reason"] and len(table) == 7


def test_one_bad_cif_block_keeps_the_others(tmp_path: Path) -> None:
    broken = "data_broken\nloop_\n _atom_site_label\n _atom_site_fract_x\n Na1 0.0\n"
    path = tmp_path / "many.cif"
    path.write_text(_cif(STRUCTURES[0]) + broken + _cif(STRUCTURES[1]))
    inputs = read_structure_inputs([path])
    assert [c.id for c in inputs.crystals] == [f"{path}#0", f"{path}#2"]
    assert [r.source for r in inputs.rejected] == [f"{path}#1"]
    assert inputs.rejected[0].reason.startswith("unreadable: no structure parsed (")


def test_vasp_names_xyz_and_a_broken_frame(tmp_path: Path) -> None:
    for name in ["CONTCAR_relaxed", "c.poscar"]:
        STRUCTURES[1].to(filename=str(tmp_path / name), fmt="poscar")
    ase_write(tmp_path / "d.xyz", [s.to_ase_atoms() for s in STRUCTURES], format="extxyz")
    text = (tmp_path / "d.xyz").read_text()
    (tmp_path / "e.extxyz").write_text(text + "3\nPBC broken frame\nNa 0 0\n")
    inputs = read_structure_inputs([tmp_path])
    assert [c.id for c in inputs.crystals] == [
        f"{tmp_path}/CONTCAR_relaxed", f"{tmp_path}/c.poscar", f"{tmp_path}/d.xyz#0",
        f"{tmp_path}/d.xyz#1", f"{tmp_path}/e.extxyz#0", f"{tmp_path}/e.extxyz#1",
    ]  # fmt: skip
    expected = STRUCTURES[1:] * 2 + STRUCTURES * 2
    for crystal, structure in zip(inputs.crystals, expected, strict=True):
        _assert_same(crystal, structure)
    assert [r.source for r in inputs.rejected] == [f"{tmp_path}/e.extxyz#2"]
    assert inputs.rejected[0].reason.startswith("unreadable: ")


def test_species_and_cell_checks(tmp_path: Path) -> None:
    cubic = Lattice.cubic(4.0)
    oxidised = Structure(cubic, [Species("Na", 1), Species("Cl", -1)], [[0, 0, 0], [0.5] * 3])
    dummy = Structure(cubic, ["Na", DummySpecies("X")], [[0, 0, 0], [0.5] * 3])
    (tmp_path / "a_oxidised.json").write_text(json.dumps(oxidised.as_dict()))
    (tmp_path / "b_dummy.json").write_text(json.dumps(dummy.as_dict()))
    flat = {"atomic_numbers": [1], "frac_coords": [[0, 0, 0]], "lengths": [1, 1, 1]}
    records = [
        {**flat, "angles": [10, 10, 170]},  # no such cell
        {**flat, "angles": [90, 90, 90], "atomic_numbers": [0]},
        {**flat, "angles": [90, 90, 90], "lengths": [1, float("nan"), 1]},
        {"atomic_numbers": [], "frac_coords": [], "lengths": [1, 1, 1], "angles": [90, 90, 90]},
        {"something": "else"},
    ]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    inputs = read_structure_inputs([tmp_path])
    assert [c.id for c in inputs.crystals] == [f"{tmp_path}/a_oxidised.json"]
    assert inputs.crystals[0].atomic_numbers.tolist() == [11, 17]
    assert [r.reason for r in inputs.rejected] == [
        "unsupported species: X0+",
        "invalid cell",
        "unsupported species: Z=0",
        "invalid cell",
        "empty: no atoms",
        "unreadable: not a structure record (keys: something)",
    ]


def test_order_and_ids_name_the_file(tmp_path: Path) -> None:
    for name in ["b.cif", "a/z.cif", "a.cif", "a/b/c.cif"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(_cif(STRUCTURES[0]))
    single = tmp_path / "single.extxyz"
    ase_write(single, STRUCTURES[1].to_ase_atoms(), format="extxyz")
    inputs = read_structure_inputs([single, tmp_path / "a", tmp_path / "b.cif", tmp_path])
    assert [c.id for c in inputs.crystals] == [
        str(single),
        f"{tmp_path}/a/b/c.cif",
        f"{tmp_path}/a/z.cif",
        f"{tmp_path}/b.cif",
        f"{tmp_path}/a.cif",  # the folder's other files were read already
    ]
    assert inputs.files == 5


def test_unsupported_file_named_directly_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    inputs = read_structure_inputs([path])
    assert inputs.rejected == [Rejected(str(path), "unsupported format: .txt")]
    assert inputs.counts() == {
        "files": 1, "skipped files": 0, "structures": 0, "rejected": 1,
        "rejected: unsupported format": 1,
    }  # fmt: skip


def test_missing_path_and_empty_folders_raise(tmp_path: Path) -> None:
    missing = tmp_path / "typo.cif"
    with pytest.raises(FileNotFoundError, match="typo.cif"):
        read_structure_inputs([missing])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=re.escape(str(empty))):
        read_structure_inputs([empty])
    (empty / "readme.txt").write_text("no structures\n")
    with pytest.raises(ValueError, match=re.escape(str(empty))):
        read_structure_inputs([empty])


def test_rejected_table_without_rejections() -> None:
    table = StructureInputs(crystals=[], rejected=[], files=0).rejected_table()
    assert list(table.columns) == ["source", "reason"] and table.empty
