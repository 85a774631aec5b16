"""``python -m flowllm_kit recipe``: every training stage of a preset in one command, each
recorded with its device and time, a finished stage skipped and an interrupted one resumed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flowllm_kit import llm, stages, text
from flowllm_kit.cli import main, recipe_command
from flowllm_kit.cli.recipe_command import RecipeRecord, recipe_stages
from flowllm_kit.crystal import read_crystals
from flowllm_kit.run import RunFolder


def run(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_recipe_refuses_unknown_stages_and_checkpoints(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["recipe", "--preset", "smoke", "--run-dir", str(tmp_path)]
    assert run(*common, "--stages", "pairs", "flow-flowmm_csp") == 2
    assert "unknown stages ['flow-flowmm_csp']" in capsys.readouterr().err
    assert run(*common, "--stages", "llm", "--llm-from", "no-such-checkpoint") == 2
    assert "--llm-from no-such-checkpoint" in capsys.readouterr().err


def test_a_running_stage_keeps_its_time_on_disk_and_a_killed_one_is_marked_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recipe_command, "HEARTBEAT_SECONDS", 0.02)
    folder = RunFolder(tmp_path)
    seen: list[dict] = []

    def work() -> dict:  # waits until the record on disk shows this attempt's time so far
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            attempt = json.loads(folder.recipe.read_text())["stages"]["llm"]["attempts"][-1]
            if attempt.get("seconds", 0) > 0:
                seen.append(attempt)
            time.sleep(0.01)
        return {"steps": 1}

    RecipeRecord(folder, "smoke").run("llm", work)
    assert seen and "interrupted" not in seen[0]
    done = json.loads(folder.recipe.read_text())["stages"]["llm"]
    assert done["status"] == "done" and done["seconds"] >= seen[0]["seconds"]

    # A process killed mid-stage leaves it "running" with the time of its last heartbeat; the
    # next run marks that attempt interrupted and counts its time in the stage's total.
    killed = json.loads(folder.recipe.read_text())
    killed["stages"]["llm"] |= {"status": "running"}
    killed["stages"]["llm"]["attempts"][-1]["seconds"] = 100.0
    folder.recipe.write_text(json.dumps(killed))
    monkeypatch.setattr(recipe_command, "HEARTBEAT_SECONDS", 60.0)
    RecipeRecord(folder, "smoke").run("llm", lambda: {"steps": 2})
    again = json.loads(folder.recipe.read_text())["stages"]["llm"]
    first, second = again["attempts"]
    assert first["interrupted"] is True and "interrupted" not in second
    assert again["seconds"] == round(100.0 + second["seconds"], 1)
    assert again["result"] == {"steps": 2}


@pytest.mark.slow
def test_recipe_records_skips_and_resumes(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = RunFolder(tmp_path / "run")
    argv = ["recipe", "--preset", "smoke", "--run-dir", str(folder.root), "--models", "flowllm"]
    assert run(*argv, "--threads", "1") == 0
    path = folder.recipe
    record = json.loads(path.read_text())
    assert record["preset"] == "smoke"
    assert list(record["stages"]) == list(recipe_stages(("flowllm",)))
    for entry in record["stages"].values():
        assert entry["status"] == "done" and len(entry["attempts"]) == 1
        assert entry["attempts"][0]["device"].startswith("CPU: ")
        assert entry["seconds"] == entry["attempts"][0]["seconds"] >= 0
    assert record["stages"]["pairs"]["result"]["pairs"] == 16  # the smoke preset's pair count
    assert record["stages"]["flow-flowllm"]["result"]["steps"] == 200  # its max_steps
    samples = folder.samples_file("flowllm")
    assert record["stages"]["samples"]["result"] == {"flowllm": 16}
    check_formula_following(folder, record["stages"]["llm-samples"]["result"], tmp_path)
    assert len(read_crystals(samples)) == 16
    first = samples.read_bytes()

    # Run again: every recorded stage is skipped.
    capsys.readouterr()
    assert run(*argv, "--threads", "1") == 0
    assert capsys.readouterr().out.count("skipped") == len(record["stages"])
    assert json.loads(path.read_text()) == record

    # A stage interrupted mid-way (recorded as running) runs again and resumes from what it
    # saved: the flow's checkpoint is at its last step, so it trains no more and the samples
    # come out the same.
    for stage in ("flow-flowllm", "samples"):
        record["stages"][stage]["status"] = "running"
    path.write_text(json.dumps(record))
    assert run(*argv, "--threads", "1") == 0
    again = json.loads(path.read_text())
    assert len(again["stages"]["flow-flowllm"]["attempts"]) == 2
    assert again["stages"]["flow-flowllm"]["result"]["steps"] == 200
    assert len(again["stages"]["llm"]["attempts"]) == 1
    assert samples.read_bytes() == first

    # --redo runs a finished stage afresh: its outputs are moved aside (kept) first, since the
    # stage would resume from them; the later stages built on them are named.
    capsys.readouterr()
    draws = folder.llm_samples.read_bytes()
    assert run(*argv, "--threads", "1", "--stages", "llm-samples", "--redo", "llm-samples") == 0
    out = capsys.readouterr().out
    (moved,) = folder.redone.iterdir()
    assert f"llm-samples: its earlier outputs moved to {moved}" in out
    assert "note that pairs, flow-flowllm, samples were built on its earlier outputs" in out
    assert (moved / folder.llm_samples.name).read_bytes() == draws
    assert (moved / folder.llm_formulas.name).is_file()
    redone = json.loads(path.read_text())["stages"]["llm-samples"]
    assert len(redone["attempts"]) == 2 and redone["status"] == "done"
    assert redone["result"]["draws"] == record["stages"]["llm-samples"]["result"]["draws"]
    assert len(llm.read_draws(folder.llm_samples)) == redone["result"]["draws"]  # drawn afresh
    assert run(*argv, "--threads", "1", "--stages", "samples", "--redo", "samples") == 0
    assert len(json.loads(path.read_text())["stages"]["samples"]["attempts"]) == 3
    assert samples.read_bytes() == first  # the same seed draws the same crystals again
    assert len(list(folder.redone.iterdir())) == 2
    # A redo that was interrupted resumes from what it wrote instead of moving it aside.
    record = json.loads(path.read_text())
    record["stages"]["samples"]["status"] = "running"
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert run(*argv, "--threads", "1", "--stages", "samples", "--redo", "samples") == 0
    assert "moved" not in capsys.readouterr().out and len(list(folder.redone.iterdir())) == 2
    # Another preset in the same folder is refused.
    assert run("recipe", "--preset", "demo", "--run-dir", str(folder.root)) == 2
    assert "records the 'smoke' recipe" in capsys.readouterr().err


def check_formula_following(folder: RunFolder, result: dict, tmp_path: Path) -> None:
    """The recipe's formula-following record matches its draws file, and the counting is right
    where the smoke LLM does follow formulas (its training ones, which it has memorised)."""
    lists = llm.read_crystal_lists(folder.llm)
    following = result["formula_following"]
    assert following["formulas"] == len(lists.evaluation)  # one answer per held-out formula
    draws = llm.read_draws(folder.llm_formulas)
    assert [d.draw for d in draws] == list(range(len(lists.evaluation)))
    assert following["parsed"] == sum(d.kept for d in draws)
    assert 0 <= following["exact"] <= following["reduced"] <= following["elements"]
    low, high = following["exact_interval"]
    assert low <= following["exact_share"] <= high

    model, tokenizer, config = stages.load_llm(folder)
    asked = lists.train[:8]
    other = RunFolder(tmp_path / "training-formulas")
    counted = stages.formula_following(other, model, tokenizer, config, asked, seed=3)
    # Recount from the saved texts: answer k is to formula k.
    answers = {d.draw: text.decode(d.text) for d in llm.read_draws(other.llm_formulas) if d.kept}
    exact = sum(answers[k].composition == asked[k].composition for k in answers)
    reduced = sum(answers[k].formula == asked[k].formula for k in answers)
    assert (counted.parsed, counted.exact, counted.reduced) == (len(answers), exact, reduced)
    assert counted.exact > 0  # it answers training formulas with their atoms
    assert str(counted).startswith(f"{exact} of 8 formulas answered with exactly")
    assert counted.as_dict()["exact_share"] == exact / 8
