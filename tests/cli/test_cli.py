"""The command line ``python -m flowllm_kit``: help texts, missing-input errors, and the whole
chain train-llm -> sample-llm -> pairs -> train-flow -> sample -> evaluate in the smoke preset
on a tiny budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowllm_kit.cli import main

COMMAND_OPTIONS = {
    "train-llm": ["--epochs", "--learning-rate", "--max-steps", "--max-train", "--no-resume"],
    "sample-llm": ["--num-samples", "--temperature", "--top-p", "--max-draws"],
    "pairs": ["--num-pairs", "--max-draws", "--num-val-pairs", "--temperature"],
    "train-flow": [
        "--model",
        "--max-steps",
        "--batch-size",
        "--network",
        "--noise-std",
        "--flow-choices",
        "--denoise-pairs",
        "--patience",
    ],
    "sample": [
        "--model",
        "--num-steps",
        "--method",
        "--anti-annealing-scale",
        "--anti-annealing-start",
        "--n-samples",
    ],
    "evaluate": [
        "--systems",
        "--n-evaluate",
        "--relax-steps",
        "--hull-dataset",
        "--hull-file",
        "--no-controls",
    ],
    "view": ["RUN_DIR", "--host", "--port", "--system", "--debug"],
    "generate": ["--checkpoint", "--formula", "--formula-file", "--no-refine", "--relax"],
    "export-checkpoint": ["--description", "--flows", "--trained-at"],
    "submit-array": ["--tasks", "--cluster", "--partition", "--gpus-per-task", "--max-draws"],
    "merge-array": ["--num-samples"],
    "recipe": ["--stages", "--redo", "--llm-from", "--models"],
}
COMMON_OPTIONS = ["--preset", "--run-dir", "--seed", "--threads"]


def run(*argv: str) -> int:
    """``main(argv)``, with an argparse exit turned into its return code."""
    try:
        return main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--help") == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMAND_OPTIONS)


@pytest.mark.parametrize("command", sorted(COMMAND_OPTIONS))
def test_command_help_mentions_its_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(command, "--help") == 0
    out = capsys.readouterr().out
    for option in COMMAND_OPTIONS[command] + COMMON_OPTIONS:
        assert option in out, f"{command} --help does not mention {option}"


def test_module_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowllm_kit", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "train-flow" in done.stdout


def test_unknown_command_and_bad_option_are_usage_errors() -> None:
    assert run("frobnicate") == 2
    assert run("sample", "--method", "leapfrog") == 2


@pytest.mark.parametrize(
    ("command", "missing", "writer"),
    [
        ("sample-llm", "llm/model", "train-llm"),
        ("pairs", "llm/model", "train-llm"),
        ("train-flow", "pairs/pairs.npz", "pairs"),
        ("sample", "flow/flowllm/checkpoint", "train-flow"),
    ],
)
def test_missing_input_names_the_path_and_the_command(
    command: str, missing: str, writer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(command, "--preset", "smoke", "--run-dir", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / missing) in err
    assert f"python -m flowllm_kit {writer} --preset smoke --run-dir {tmp_path}" in err


def test_evaluate_with_nothing_to_evaluate_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data_root: Path
) -> None:
    assert run("evaluate", "--preset", "smoke", "--run-dir", str(tmp_path), "--no-controls") == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "samples") in err and "python -m flowllm_kit sample" in err
    assert run("evaluate", "--preset", "smoke", "--run-dir", str(tmp_path), "--systems", "x") == 2
    assert "no crystals for x" in capsys.readouterr().err


def test_evaluate_names_a_missing_hull_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data_root: Path
) -> None:
    missing = tmp_path / "2023-02-07-ppd-mp.pkl.gz"
    common = ["--preset", "smoke", "--run-dir", str(tmp_path), "--hull-file", str(missing)]
    assert run("evaluate", *common) == 2
    assert f"--hull-file {missing}: no such file" in capsys.readouterr().err


def test_empty_pair_set_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flowllm_kit.llm import PairSet

    (tmp_path / "pairs").mkdir()
    PairSet([], [], [], num_draws=4).save(tmp_path / "pairs" / "pairs.npz")
    assert run("train-flow", "--preset", "smoke", "--run-dir", str(tmp_path)) == 2
    assert "is empty" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_chain_end_to_end(data_root: Path, tmp_path: Path) -> None:
    """train-llm -> sample-llm -> pairs -> train-flow -> sample -> evaluate, seconds each."""
    common = ["--preset", "smoke", "--run-dir", str(tmp_path)]
    # 300 steps on 4 crystals: enough for the tiny model to write their compositions back.
    assert (
        run("train-llm", *common, "--max-steps", "300", "--max-train", "4", "--num-eval", "2") == 0
    )
    assert (tmp_path / "llm" / "model" / "config.json").is_file()
    assert (tmp_path / "tokenizer").is_dir()
    lists = json.loads((tmp_path / "llm" / "crystals.json").read_text())
    assert len(lists["train_ids"]) == 4 and lists["dataset"] == "mp_20_subset"

    sampling = ["--max-draws", "16", "--temperature", "0.3"]
    assert run("sample-llm", *common, "--num-samples", "2", *sampling) == 0
    assert (tmp_path / "llm_samples.jsonl").is_file()
    assert run("pairs", *common, "--num-pairs", "2", *sampling) == 0
    from flowllm_kit.llm import PairSet

    pairs = PairSet.load(tmp_path / "pairs" / "pairs.npz")
    assert len(pairs.c0) == 2

    assert run("train-flow", *common, "--max-steps", "3", "--batch-size", "2") == 0
    for model in ("flowllm", "flowmm", "flowmm_csp", "flowllm_types"):
        state = json.loads((tmp_path / "flow" / model / "checkpoint" / "state.json").read_text())
        assert state["step"] == 3
        assert state["network_config"]["type_bits"] == (7 if model == "flowmm" else 0), model
    assert run("sample", *common, "--num-steps", "2", "--anti-annealing-scale", "5") == 0
    from flowllm_kit.crystal import read_crystals
    from flowllm_kit.llm import read_draws

    records = read_draws(tmp_path / "llm_samples.jsonl")
    kept = [f"llm-{r.draw}" for r in records if r.kept]
    refined = read_crystals(tmp_path / "samples" / "flowllm.jsonl")
    assert [c.id for c in refined] == kept and len(kept) >= 2
    denovo = read_crystals(tmp_path / "samples" / "flowmm.jsonl")
    assert [c.id for c in denovo] == [f"flowmm-{k}" for k in range(len(refined))]
    csp = read_crystals(tmp_path / "samples" / "flowmm_csp.jsonl")
    assert [c.id for c in csp] == [f"flowmm_csp-{k}" for k in range(len(refined))]
    training = {c.formula for c in pairs.c1}
    assert {c.formula for c in csp} <= training  # FlowMM-CSP keeps training compositions
    types = read_crystals(tmp_path / "samples" / "flowllm_types.jsonl")
    assert [c.id for c in types] == [f"types-{i}" for i in kept]
    sampler = json.loads((tmp_path / "samples" / "sampler.json").read_text())
    assert sampler["num_steps"] == 2 and sampler["anti_annealing_scale"] == 5

    evaluate = ["--hull-dataset", "none", "--no-controls", "--n-reference", "4", "-n", "2"]
    assert run("evaluate", *common, *evaluate, "--systems", "flowllm", "llm_only") == 0
    metrics = (tmp_path / "evaluation" / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in metrics[1:]] == ["flowllm", "llm_only"]
    assert (tmp_path / "evaluation" / "flowllm" / "metrics.json").is_file()
