"""Every numbered notebook runs under papermill in the smoke preset, in order, into one run
folder (later notebooks read what earlier ones wrote), and the runner skips finished stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from flowllm_kit import pretrained
from flowllm_kit.notebooks import (
    find_notebooks,
    notebook_title,
    record_times,
    run_series,
    stage_times,
    summary,
)
from flowllm_kit.run import RunFolder

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = find_notebooks(NOTEBOOKS_DIR)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smoke_run")


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_preset(notebook: Path, run_dir: Path) -> None:
    timings = run_series(
        preset="smoke", run_dir=run_dir, notebooks_dir=NOTEBOOKS_DIR, only=[notebook.stem]
    )
    assert list(timings) == [notebook.stem]
    executed = json.loads((run_dir / "notebooks" / notebook.name).read_text())
    outputs = [
        out
        for cell in executed["cells"]
        if cell["cell_type"] == "code"
        for out in cell.get("outputs", [])
    ]
    assert not any(out.get("output_type") == "error" for out in outputs)
    # Papermill injected the smoke preset after the parameters cell.
    injected = [
        c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])
    ]
    assert injected and 'preset = "smoke"' in "".join(injected[0]["source"])


@pytest.mark.notebooks
def test_series_starts_from_a_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    """Notebooks 03-05 with a checkpoint (the demo's default): its LLM and flows become the run's,
    03 fine-tunes LoRA adapters on the LLM, 05 trains short runs beside the shipped flows. Like
    mp20-kit, the checkpoint holds no FlowMM-CSP: the run's is the short run's network."""
    if not (run_dir / "flow" / "flowmm_csp" / "checkpoint").is_dir():
        pytest.skip("needs the smoke series of this module (run the whole file)")
    flows = ("flowllm", "flowmm", "flowllm_types")
    checkpoint = pretrained.export(
        RunFolder(run_dir), tmp_path / "smoke-models", description="the smoke series' models",
        recipe={"preset": "smoke"}, flows=flows,
    )  # fmt: skip
    run = tmp_path / "run"
    parameters = {"checkpoint": str(checkpoint.root), "lora_steps": 20, "refine_steps": 0}
    timings = run_series(
        preset="smoke", run_dir=run, notebooks_dir=NOTEBOOKS_DIR, only=["03", "04", "05"],
        parameters=parameters,
    )  # fmt: skip
    assert len(timings) == 3
    folder = RunFolder(run)
    for model in flows:  # the run samples the checkpoint's networks; the short runs lie beside
        installed = folder.flow_checkpoint(model) / "ema.safetensors"
        shipped = checkpoint.root / "flow" / model / "checkpoint" / "ema.safetensors"
        assert installed.read_bytes() == shipped.read_bytes()
        assert (run / "short" / "flow" / model / "checkpoint" / "ema.safetensors").is_file()
    short = run / "short" / "flow" / "flowmm_csp" / "checkpoint" / "ema.safetensors"
    installed = folder.flow_checkpoint("flowmm_csp") / "ema.safetensors"
    assert installed.read_bytes() == short.read_bytes()  # trained here, the checkpoint has none
    weights = folder.llm_model / "model.safetensors"
    assert weights.read_bytes() == (checkpoint.root / "llm/model/model.safetensors").read_bytes()
    assert (run / "lora" / "llm" / "model" / "adapter_model.safetensors").is_file()
    assert folder.pairs.is_file()  # notebook 04 sampled the installed LLM
    assert json.loads(folder.installed_checkpoint.read_text())["checkpoint"] == "smoke-models"


@pytest.mark.notebooks
def test_comparison_marks_the_systems_notebook_07_left_out(run_dir: Path, tmp_path: Path) -> None:
    """Notebook 07 evaluating some systems (as the demo leaves FlowMM-CSP out): notebook 08
    saves a 'not evaluated' row without numbers for each of the others, not no row."""
    if not (run_dir / "evaluation" / "comparison.csv").is_file():
        pytest.skip("needs the smoke series of this module (run the whole file)")
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    parameters = {"system_names": ["flowllm", "llm_only"], "controls": ["real"]}
    timings = run_series(
        preset="smoke", run_dir=run, notebooks_dir=NOTEBOOKS_DIR, only=["07", "08"], redo=True,
        parameters=parameters,
    )  # fmt: skip
    assert list(timings) == ["07_evaluate", "08_compare"]
    table = pd.read_csv(RunFolder(run).comparison, index_col=["system", "source"])
    status = table.xs("this run", level="source")["status"].to_dict()
    left_out = {"flowmm", "flowmm_csp", "flowllm_types"}
    assert status == {"flowllm": "evaluated", "llm_only": "evaluated"} | dict.fromkeys(
        left_out, "not evaluated"
    )
    assert table.loc[("real", "this run (control)"), "status"] == "control"
    assert ("perturbed", "this run (control)") not in table.index
    numbers = table.drop(columns="status")
    assert numbers.loc[[(name, "this run") for name in left_out]].isna().all().all()
    assert numbers.loc[("flowllm", "this run")].notna().any()


def _write_notebook(path: Path, *sources: str) -> None:
    """A notebook with a papermill parameters cell and the given code cells."""
    cells = [
        nbformat.v4.new_code_cell(
            'preset = "demo"\nrun_dir = "."', metadata={"tags": ["parameters"]}
        ),
        *(nbformat.v4.new_code_cell(source) for source in sources),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, path)


def test_runner_skips_finished_stages_and_redoes_on_request(tmp_path: Path, capsys) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_notebook(
        notebooks / "01_count.ipynb",
        "from pathlib import Path\n"
        "counter = Path(run_dir) / 'count.txt'\n"
        "counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))",
    )
    (notebooks / "scratch.ipynb").write_text("not numbered, never run")
    run = tmp_path / "run"
    assert list(run_series(preset="smoke", run_dir=run, notebooks_dir=notebooks)) == ["01_count"]
    assert run_series(preset="smoke", run_dir=run, notebooks_dir=notebooks) == {}
    assert "[skip] 01_count.ipynb" in capsys.readouterr().out
    run_series(preset="smoke", run_dir=run, notebooks_dir=notebooks, redo=True)
    assert (run / "count.txt").read_text() == "2"


def test_runner_relays_inner_progress_and_keeps_harmless_messages_in_the_log(
    tmp_path: Path, capfd
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_notebook(
        notebooks / "01_work.ipynb",
        # Long enough (6 s) to leave a line in a log: shorter work only shows on a terminal.
        "import os, time\n"
        "from flowllm_kit.progress import progress_bar\n"
        "with progress_bar(total=12, desc='toy work', unit='steps') as bar:\n"
        "    for step in range(12):\n"
        "        time.sleep(0.5)\n"
        "        bar.update(1)\n"
        "        bar.set_postfix(loss=f'{1 / (step + 1):.3f}')\n"
        "os.write(2, b'WARNING | Kernel is running over TCP without encryption.\\n')\n"
        "os.write(2, b'something the user must see\\n')",
    )
    run = tmp_path / "run"
    run_series(preset="smoke", run_dir=run, notebooks_dir=notebooks)
    out, err = capfd.readouterr()
    assert "[run ] 01_work.ipynb (preset smoke)" in out
    assert "expected duration: not measured for this preset" in out
    assert "toy work: 12/12 steps (100%) · loss=0.083" in out and "done" in out
    assert "something the user must see" in err and "without encryption" not in err
    log = (run / "logs" / "01_work.log").read_text()
    assert "without encryption" in log and "something the user must see" in log
    work = json.loads((run / "stages" / "01_work.json").read_text())["work"]
    assert [(w["desc"], w["total"], w["unit"]) for w in work] == [("toy work", 12, "steps")]
    assert 5.0 <= work[0]["seconds"] < 60

    # The measured times become the expected times printed before the next run.
    record_times(run, preset="smoke", notebooks_dir=notebooks, note="test")
    run_series(preset="smoke", run_dir=run, notebooks_dir=notebooks, redo=True)
    out = capfd.readouterr().out
    assert "       expected about " in out and "; test)" in out
    assert "         toy work: 12 steps, " in out


def test_runner_names_the_folder_when_no_notebooks(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        find_notebooks(tmp_path)


def test_summary_lists_every_finished_stage_and_the_metrics(tmp_path: Path) -> None:
    stages = tmp_path / "stages"
    stages.mkdir()
    for name, seconds in [("02_b", 90.0), ("01_a", 30.0)]:
        (stages / f"{name}.json").write_text(json.dumps({"preset": "demo", "seconds": seconds}))
    assert stage_times(tmp_path) == {"01_a": 30.0, "02_b": 90.0}
    text = summary(tmp_path)
    assert "01_a" in text and "0.5 min" in text and "1.5 min" in text
    assert text.splitlines()[3].split() == ["total", "2.0", "min"]
    assert "Metrics" not in text
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "metrics.csv").write_text(
        "system,structural validity %,stable %\nflowllm,99.5,\nflowmm,97.25,4.0\n"
    )
    table = summary(tmp_path).split("Metrics")[1].splitlines()
    assert table[1].split() == ["system", "flowllm", "flowmm"]
    assert table[2].split() == ["structural", "validity", "%", "99.5", "97.25"]
    assert table[3].split() == ["stable", "%", "n/c", "4.0"]


def test_titles_of_the_series_drop_the_number_prefix() -> None:
    titles = [notebook_title(notebook) for notebook in NOTEBOOKS]
    assert titles[:2] == ["Generate crystals in five minutes", "Data and geometry"]
    assert all(title and not title[0].isdigit() and "·" not in title for title in titles)
