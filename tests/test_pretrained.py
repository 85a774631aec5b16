"""Shipped checkpoints and ``generate``: loading by name with every file checked against the
manifest, export and re-export, tampered and missing files named, and crystals generated from
the shipped checkpoint with exactly the composition asked for."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flowllm_kit import pretrained
from flowllm_kit.cli import main
from flowllm_kit.crystal import CrystalBatch
from flowllm_kit.flow import FlowSamplerConfig, train_preset
from flowllm_kit.llm import llm_preset
from flowllm_kit.llm.crystal_lists import read_crystal_lists
from flowllm_kit.run import RunFolder
from flowllm_kit.stages import SelectedCrystals, load_flows, select_crystals
from flowllm_kit.stages.generate import generate, parse_formula

SHIPPED = "mp20-demo"


def run_cli(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_the_shipped_checkpoint_loads_by_name_and_matches_its_manifest():
    assert SHIPPED in pretrained.available()
    checkpoint = pretrained.load(SHIPPED)
    files = checkpoint.manifest["files"]
    assert "llm/model/model.safetensors" in files and "manifest.json" not in files
    assert not any(name.endswith((".bin", ".pkl", ".pt")) for name in files)  # no pickles
    assert sum(f["bytes"] for f in files.values()) < 25e6
    assert checkpoint.flows == ("flowllm", "flowmm", "flowmm_csp", "flowllm_types")
    assert checkpoint.manifest["curves"]["flowllm"]["step"][-1] == 1499
    model, tokenizer, config = checkpoint.llm()
    assert model.num_parameters() > 0 and config.scratch is not None
    assert not checkpoint.flow("flowllm").type_bits and checkpoint.flow("flowmm").type_bits
    with pytest.raises(pretrained.CheckpointError, match="no 'cdvae' flow"):
        checkpoint.flow("cdvae")


def test_the_kit_checkpoint_is_the_kit_recipe_end_to_end():
    """mp20-kit: the kit preset's own LLM, trained from scratch by the recipe command for the
    preset's steps, and FlowLLM, FlowMM and FlowLLM-Types trained on the pairs that LLM drew;
    its manifest records where and how long each stage ran, and the metrics of each model."""
    kit, demo = pretrained.load("mp20-kit"), pretrained.load(SHIPPED)
    assert kit.flows == ("flowllm", "flowmm", "flowllm_types")
    weights = "llm/model/model.safetensors"
    assert kit.manifest["files"][weights]["sha256"] != demo.manifest["files"][weights]["sha256"]
    recipe = kit.manifest["recipe"]
    assert recipe["preset"] == "kit"
    llm = recipe["stages"]["llm"]
    assert llm["status"] == "done" and "installed_from" not in llm["result"]
    assert llm["result"]["steps"] == llm_preset("kit").finetune.max_steps
    # its own training curve (train_log.json), ending at the last step, not mp20-demo's
    curve = kit.manifest["curves"]["llm"]
    assert curve != demo.manifest["curves"]["llm"]
    assert curve["step"][-1] == llm["result"]["steps"]
    pairs = recipe["stages"]["pairs"]["result"]
    assert pairs["pairs"] == llm_preset("kit").pairs.num_pairs
    # every draw is a pair or a rejection, except accepted draws beyond the last pair needed
    assert pairs["pairs"] + sum(pairs["rejections"].values()) <= pairs["draws"]
    limit = train_preset("kit").max_steps
    for model in kit.flows:
        flow = recipe["stages"][f"flow-{model}"]
        assert flow["status"] == "done"
        # trained until the validation loss stopped falling, or to the preset's step limit
        assert flow["result"]["stopped_early"] or flow["result"]["steps"] == limit
        assert flow["result"]["train_pairs"] == llm_preset("kit").pairs.num_pairs
        assert all(a["device"] and a["seconds"] >= 0 for a in flow["attempts"])
        assert kit.manifest["flows"][model]["step"] == flow["result"]["steps"]
    systems = {row["system"] for row in kit.manifest["metrics"]["rows"]}
    assert {*kit.flows, "llm_only"} <= systems
    assert (pretrained.CHECKPOINTS / "mp20-kit" / "starts.json").is_file()  # FlowMM's sizes
    sizes = [f["bytes"] for c in (kit, demo) for f in c.manifest["files"].values()]
    assert sum(sizes) < 25e6  # every shipped checkpoint together
    assert not kit.flow("flowllm").type_bits and kit.flow("flowmm").type_bits


def test_export_then_load_keeps_every_weight(tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(pretrained.load(SHIPPED).root, run)
    again = pretrained.export(
        RunFolder(run), tmp_path / "copy", description="a copy", recipe={"preset": "demo"}
    )
    assert again.root.name == "copy" and again.manifest["recipe"] == {"preset": "demo"}
    for name in ("llm/model/model.safetensors", "flow/flowllm/checkpoint/ema.safetensors"):
        a, b = load_file(run / name), load_file(again.root / name)
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert pretrained.load(tmp_path / "copy").manifest == again.manifest  # by path too


def test_a_changed_or_missing_file_is_named_and_not_loaded(tmp_path: Path):
    folder = tmp_path / "altered"
    shutil.copytree(pretrained.load(SHIPPED).root, folder)
    weights = folder / "flow" / "flowllm" / "checkpoint" / "ema.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(pretrained.CheckpointError, match="ema.safetensors does not match"):
        pretrained.load(folder)
    weights.unlink()
    with pytest.raises(pretrained.CheckpointError, match="ema.safetensors is missing"):
        pretrained.load(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(pretrained.CheckpointError, match="no checkpoint"):
        pretrained.load(folder)
    with pytest.raises(pretrained.CheckpointError, match="mp20-demo"):  # lists the shipped ones
        pretrained.load("no-such-checkpoint")


def _tiny_checkpoint(tmp_path: Path, crystals: SelectedCrystals) -> pretrained.Pretrained:
    """A copy of the shipped checkpoint whose manifest says it was trained on ``crystals``
    (the manifest itself is not among the files it checks)."""
    folder = tmp_path / "tiny"
    shutil.copytree(pretrained.load(SHIPPED).root, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["data"] |= {"dataset": crystals.dataset, "train_count": len(crystals.train)}
    manifest["data"] |= {"train_split": crystals.train_split}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return pretrained.load(folder)


def test_install_copies_the_models_into_a_run_and_never_over_its_own(
    tmp_path: Path, data_root: Path
):
    crystals = select_crystals("smoke", max_train=12, num_eval=4)
    checkpoint = _tiny_checkpoint(tmp_path, crystals)
    run = RunFolder(tmp_path / "run")
    assert checkpoint.install(run, crystals=crystals, flows=["flowllm", "flowmm"]) == [
        "llm", "flowllm", "flowmm",
    ]  # fmt: skip
    for name in ("model/model.safetensors", "model/tokenizer.json", "llm_config.json"):
        assert (run.llm / name).read_bytes() == (checkpoint.root / "llm" / name).read_bytes()
    lists = read_crystal_lists(run.llm)
    assert [c.id for c in lists.train] == [c.id for c in crystals.train]
    assert [c.id for c in lists.evaluation] == [c.id for c in crystals.evaluation]
    batch = CrystalBatch.from_crystals(crystals.train[:3])
    t = torch.full((3,), 0.3)
    for model in ("flowllm", "flowmm"):  # the run's networks are the checkpoint's
        ours, theirs = load_flows(run, [model])[model], checkpoint.flow(model)
        for a, b in zip(ours(batch, t), theirs(batch, t), strict=True):
            assert torch.equal(a, b)
    record = json.loads(run.installed_checkpoint.read_text())
    assert record["checkpoint"] == "tiny" and record["installed"] == ["flowllm", "flowmm", "llm"]
    # Again: nothing to copy; one more flow: only that one
    assert checkpoint.install(run, crystals=crystals, flows=["flowllm"]) == []
    assert checkpoint.install(run, flows=["flowllm_types"]) == ["flowllm_types"]
    # A run's own model is never overwritten, and the error names it
    own = run.flow_checkpoint("flowmm_csp") / "ema.safetensors"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"the run's own weights")
    with pytest.raises(pretrained.CheckpointError, match="already holds its own flowmm_csp"):
        checkpoint.install(run, flows=["flowmm_csp"])
    assert own.read_bytes() == b"the run's own weights"
    # Crystals other than those the checkpoint was trained on are refused
    fewer = dataclasses.replace(crystals, train=crystals.train[:11])
    with pytest.raises(pretrained.CheckpointError, match="train the LLM from scratch"):
        checkpoint.install(RunFolder(tmp_path / "other"), crystals=fewer)
    with pytest.raises(pretrained.CheckpointError, match="no 'cdvae' flow"):
        checkpoint.install(RunFolder(tmp_path / "other"), flows=["cdvae"])


def test_parse_formula_reads_cells_and_names_bad_formulas():
    assert parse_formula("LiFePO4") == {"Li": 1, "Fe": 1, "P": 1, "O": 4}
    assert parse_formula("Li4Fe4P4O16") == {"Li": 4, "Fe": 4, "P": 4, "O": 16}
    for bad in ("Xq2", "Li0.5O", "", "Na-Cl"):
        with pytest.raises(ValueError, match="formula"):
            parse_formula(bad)


def _composition(cif: Path) -> dict[str, int]:
    """The atoms a CIF lists, read from its atom-site rows (pymatgen's reader would merge
    atoms that sit closer than its tolerance, as a structurally invalid crystal's may)."""
    rows = [line.split() for line in cif.read_text().splitlines()]
    return dict(Counter(row[0] for row in rows if len(row) == 7 and row[-1] == "1"))


def test_generate_gives_exactly_the_requested_atoms(tmp_path: Path):
    checkpoint = pretrained.load(SHIPPED)
    result = generate(
        checkpoint.run, out=tmp_path, n=2, formulas=["NaCl", "Li2Fe2P2O8"],
        sampler=FlowSamplerConfig(num_steps=3), progress=False,
    )  # fmt: skip
    summary = result.summary
    assert list(summary["requested"]) == ["NaCl", "NaCl", "Li2Fe2P2O8", "Li2Fe2P2O8"]
    assert summary["matches_request"].all()
    assert list(summary["num_atoms"]) == [2, 2, 14, 14]
    for row in summary.itertuples():
        assert _composition(tmp_path / "cif" / f"{row.id}.cif") == parse_formula(row.requested)
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["id"] for r in rows] == list(summary["id"])
    # The flow moved the LLM's atoms (FlowLLM refinement is on by default).
    llm_only = generate(
        checkpoint.run, out=tmp_path / "llm", n=2, formulas=["NaCl"], model="llm",
        progress=False,
    )  # fmt: skip
    refined, start = result.crystals[0], llm_only.crystals[0]
    assert refined.composition == start.composition
    assert not np.allclose(refined.frac_coords, start.frac_coords)


def test_de_novo_flowmm_and_flowllm_types_from_the_checkpoint(tmp_path: Path):
    checkpoint = pretrained.load(SHIPPED)
    sizes = json.loads((checkpoint.root / "starts.json").read_text())["atom_counts"]["counts"]
    denovo = generate(
        checkpoint.run, out=tmp_path / "flowmm", n=6, model="flowmm",
        sampler=FlowSamplerConfig(num_steps=3), progress=False, seed=1,
    )  # fmt: skip
    assert len(denovo.crystals) == 6 and denovo.num_draws == 0  # no LLM draws
    assert all(c.num_atoms in sizes for c in denovo.crystals)
    assert all(1 <= z <= 94 for c in denovo.crystals for z in c.atomic_numbers)
    assert len({z for c in denovo.crystals for z in c.atomic_numbers}) > 1  # types were generated
    types = generate(
        checkpoint.run, out=tmp_path / "types", n=2, formulas=["KBr"], model="flowllm_types",
        sampler=FlowSamplerConfig(num_steps=3), progress=False,
    )  # fmt: skip
    assert types.summary["matches_request"].all()  # the LLM's atom types are kept
    assert [c.id for c in types.crystals] == ["types-000-0", "types-000-1"]
    with pytest.raises(ValueError, match="no formulas"):
        generate(checkpoint.run, out=tmp_path / "x", n=1, formulas=["KBr"], model="flowmm")


def test_generate_command_writes_cifs_and_names_bad_formula_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    formulas = tmp_path / "formulas.txt"
    formulas.write_text("# my targets\nGaAs\n\nKBr  # a salt\n")
    out = tmp_path / "out"
    assert run_cli("generate", "--formula-file", str(formulas), "-n", "1", "--num-steps", "2",
                   "--out", str(out)) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"checkpoint {pretrained.DEFAULT}: " in printed  # the default, named on screen
    assert "with the requested composition: 100%" in printed
    assert sorted(p.name for p in (out / "cif").iterdir()) == ["000-0.cif", "001-0.cif"]
    formulas.write_text("GaAs\nGa1.5As\n")
    assert run_cli("generate", "--formula-file", str(formulas), "--out", str(out)) == 2
    assert "formulas.txt, line 2" in capsys.readouterr().err
    assert run_cli("generate", "--checkpoint", "nope", "--out", str(out)) == 2
    assert "no checkpoint 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_from_a_clean_install_in_one_command(tmp_path: Path):
    """The README's first generation command, as a user types it (fewer ODE steps)."""
    done = subprocess.run(
        [sys.executable, "-m", "flowllm_kit", "generate", "--formula", "LiFePO4", "-n", "8",
         "--num-steps", "20", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    cifs = sorted((tmp_path / "cif").glob("*.cif"))
    assert len(cifs) == 8
    assert all(_composition(c) == {"Li": 1, "Fe": 1, "P": 1, "O": 4} for c in cifs)
