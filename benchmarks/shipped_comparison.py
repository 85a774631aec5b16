"""The shipped models compared at N crystals per system, with intervals.

Run it on a run folder where the notebook series sampled a shipped checkpoint's models with
at least ``-n`` crystals per system (``make demo`` draws 250; the results file's run drew 500)::

    python -m flowllm_kit.notebooks run --preset demo --run-dir runs/demo500 \
        --only 00 01 02 03 04 05 06 -p num_samples 500
    python benchmarks/shipped_comparison.py runs/demo500 -n 500

It evaluates the run's systems at ``-n`` crystals each with ``python -m flowllm_kit evaluate
--preset demo`` (relaxations already in the run's cache are not repeated), then writes
``benchmarks/results/shipped_comparison.csv`` (every metric of every system with its 95%
interval) and ``shipped_comparison.md``: the table, the differences the paper's claims are
about with their intervals, the checkpoint, the date, the machine and the commit. Notebook 08
reads the CSV.

A checkpoint exported from a recipe run folder (``export-checkpoint``) is compared in the folder
it was exported from: ``--checkpoint`` names it, and the script first checks that the run's LLM
and flow weights are that checkpoint's, byte for byte (sha256 against its manifest)::

    python benchmarks/shipped_comparison.py runs/kit -n 500 --preset kit --checkpoint mp20-kit \
        --out benchmarks/results/kit_comparison
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
from machine import commit, describe  # benchmarks/machine.py

from flowllm_kit import pretrained
from flowllm_kit.data.cache import file_sha256
from flowllm_kit.run import RunFolder
from flowllm_kit.stages import differences_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SYSTEMS = {
    "flowllm": "FlowLLM",
    "llm_only": "LLM only",
    "flowmm": "FlowMM (de novo)",
    "flowllm_types": "FlowLLM-Types",
    "flowmm_csp": "FlowMM-CSP",
    "flowllm_200_steps": "FlowLLM, flow 200 steps",  # benchmarks/flow_steps_ablation.py
    "real": "real (test)",
    "perturbed": "perturbed real",
}
METRICS = [
    "structural validity %", "compositional validity %", "valid %", "closeness match %",
    "closeness RMSD", "closeness dE eV/atom", "relaxation steps", "stable %", "metastable %",
    "S.U.N. %", "stable (CHGNet hull) %", "metastable (CHGNet hull) %",
    "S.U.N. (CHGNet hull) %", "metastable S.U.N. (CHGNet hull) %", "coverage recall %",
    "coverage precision %", "wdist density", "wdist N_el", "unique %", "novel %",
]  # fmt: skip
# The paper's claims: FlowLLM ahead of LLM only on validity and closeness to the relaxed state,
# ahead of FlowMM on stability and S.U.N.; FlowLLM-Types is its ablation.
CLAIMS = {
    ("flowllm", "llm_only"): [
        "structural validity %", "compositional validity %", "closeness match %",
        "closeness RMSD", "closeness dE eV/atom", "relaxation steps", "stable (CHGNet hull) %",
        "metastable (CHGNet hull) %", "S.U.N. (CHGNet hull) %", "stable %", "coverage recall %",
    ],
    ("flowllm", "flowmm"): [
        "stable (CHGNet hull) %", "metastable (CHGNet hull) %", "S.U.N. (CHGNet hull) %",
        "metastable S.U.N. (CHGNet hull) %", "stable %", "S.U.N. %",
    ],
    ("flowllm", "flowllm_types"): [
        "structural validity %", "closeness match %", "metastable (CHGNet hull) %",
        "metastable S.U.N. (CHGNet hull) %",
    ],
    ("real", "flowllm"): ["stable (CHGNet hull) %", "metastable (CHGNet hull) %"],
    # The ablation of the flow's budget: 1,500 training steps against 200
    ("flowllm", "flowllm_200_steps"): [
        "structural validity %", "closeness match %", "closeness RMSD", "closeness dE eV/atom",
        "metastable (CHGNet hull) %",
    ],
}  # fmt: skip


def interval_cell(value: float, low: float, high: float) -> str:
    """A table cell: the value with its 95% interval, or "n/c" where it was not computed."""
    if pd.isna(value):
        return "n/c"
    digits = 1 if abs(value) >= 10 else 2 if abs(value) >= 0.1 else 3
    if pd.isna(low):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def provenance(run: RunFolder, checkpoint: str | None) -> tuple[str, str, str]:
    """The checkpoint whose models ``run`` holds, the commit they were trained at, and what
    sampled them.

    Without ``checkpoint``: the one the notebooks installed into the run. With it: the one
    exported from the run, after checking that each of its weight files (the LLM's and every
    flow's) has the sha256 of the run's own file; the script stops where one differs.
    """
    if checkpoint is None:
        if not run.installed_checkpoint.is_file():
            sys.exit(f"{run.installed_checkpoint} is missing: the run's models are not a "
                     "checkpoint's (name the one exported from it with --checkpoint)")  # fmt: skip
        installed = json.loads(run.installed_checkpoint.read_text())
        return (
            installed["checkpoint"],
            installed["trained_at_commit"],
            ("notebooks 04 and 06 of `make demo`"),
        )
    manifest = pretrained.load(checkpoint).manifest
    weights = {"llm/model/model.safetensors": run.llm_model / "model.safetensors"}
    for model in manifest["flows"]:
        weights[f"flow/{model}/checkpoint/ema.safetensors"] = (
            run.flow_checkpoint(model) / "ema.safetensors"
        )
    for inside, path in weights.items():
        if not path.is_file() or file_sha256(path) != manifest["files"][inside]["sha256"]:
            sys.exit(f"{path} is not {checkpoint}'s {inside}: that checkpoint was not exported "
                     f"from {run.root}")  # fmt: skip
    return (
        checkpoint,
        manifest["trained_at_commit"],
        (
            "the `recipe` command's `llm-samples` and `samples` stages, whose weights are the "
            f"checkpoint's (sha256 of the LLM and of {', '.join(manifest['flows'])} checked)"
        ),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder sampled from a checkpoint")
    parser.add_argument("-n", type=int, default=500, help="crystals per system (%(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "shipped_comparison")
    parser.add_argument(
        "--systems", nargs="+", default=["flowllm", "llm_only", "flowmm", "flowllm_types", "real"],
        help="systems to evaluate, controls included (%(default)s)",
    )  # fmt: skip
    parser.add_argument("--skip-evaluate", action="store_true", help="only write the tables")
    parser.add_argument("--preset", default="demo", help="evaluation settings (%(default)s)")
    parser.add_argument(
        "--checkpoint",
        help="the checkpoint exported from this run folder (its weights are checked against the "
        "run's); default: the checkpoint the notebooks installed into it",
    )
    args = parser.parse_args()
    run = RunFolder(args.run_dir)
    name, trained_at, sampled_by = provenance(run, args.checkpoint)
    seconds = None
    machine = describe()
    if not args.skip_evaluate:
        start = time.perf_counter()
        command = [sys.executable, "-m", "flowllm_kit", "evaluate", "--preset", args.preset]
        command += ["--run-dir", str(run), "-n", str(args.n), "--systems", *args.systems]
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
    table = pd.read_csv(run.metrics_intervals)
    table = table[table["system"].isin(SYSTEMS)]
    table.to_csv(args.out.with_suffix(".csv"), index=False)  # every metric; the table: METRICS
    counts = table.groupby("system")["n"].max()
    table = table[table["metric"].isin(METRICS)]

    systems = [s for s in SYSTEMS if s in set(table["system"])]
    wide = {
        (row.metric, row.system): interval_cell(row.value, row.low, row.high)
        for row in table.itertuples(index=False)
    }
    lines = [
        f"# The shipped `{name}` models at {args.n} crystals per system "
        "(benchmarks/shipped_comparison.py)",
        "",
        f"Evaluated {date.today().isoformat()} at commit `{commit()}` on the run folder "
        f"`{run.root.name}`; the models are checkpoint `{name}` (trained at `{trained_at}`), "
        f"sampled by {sampled_by}.",
        f"Trained on MP-20 val, evaluated against MP-20 test, `{args.preset}` evaluation settings "
        "(CHGNet, FIRE up to 250 steps, fmax 0.1 eV/Å).",
        "Every cell is `value [95% interval]`: Wilson for rates, the bootstrap over the crystals "
        "for means and distances.",
        machine,
    ]
    if seconds is not None:
        lines.append(f"- evaluation wall time: {seconds / 60:.1f} min (cached relaxations reused)")
    lines += ["", "| metric | " + " | ".join(SYSTEMS[s] for s in systems) + " |"]
    lines.append("|---" * (len(systems) + 1) + "|")
    for metric in METRICS:
        cells = [wide.get((metric, s), "—") for s in systems]
        if any(c != "—" for c in cells):
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    lines.append("| crystals | " + " | ".join(str(int(counts[s])) for s in systems) + " |")
    lines += [
        "",
        "Rates of closeness and stability count the crystals that were relaxed (the "
        "structurally valid ones), so their denominators are smaller than the crystal count.",
        "",
        "## The paper's claims: differences with 95% intervals (Newcombe for rates, in points)",
        "",
        "| first − second | metric | difference | excludes 0 |",
        "|---|---|---|---|",
    ]
    full = pd.read_csv(run.metrics_intervals)
    for (first, second), metrics in CLAIMS.items():
        for row in differences_table(full, [(first, second)], metrics).itertuples(index=False):
            cell = interval_cell(row.difference, row.low, row.high)
            mark = "yes" if row.excludes_zero else "no"
            lines.append(
                f"| {SYSTEMS[first]} − {SYSTEMS[second]} | {row.metric} | {cell} | {mark} |"
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
