"""FlowLLM trained on the kit recipe's tens of thousands of pairs against the shipped demo FlowLLM
(500 pairs), refining the same LLM crystals.

Run it on a run folder of the kit recipe whose LLM is the shipped demo LLM, after its FlowLLM
was trained and sampled::

    python -m flowllm_kit recipe --preset kit --run-dir runs/kit --llm-from mp20-demo \
        --models flowllm
    python benchmarks/kit_pairs_comparison.py runs/kit

It refines the run's FlowLLM starts (the LLM's unconditional crystals) with the shipped
``mp20-demo`` FlowLLM and the same sampler into ``<run>/samples/flowllm_demo.jsonl``, a system
that ``python -m flowllm_kit evaluate --preset kit --run-dir runs/kit --systems flowllm
flowllm_demo llm_only`` then scores beside the kit FlowLLM and the LLM alone. It writes
``benchmarks/results/kit_pairs_comparison.md``: both flows' training (pairs, steps, validation
loss, time and device from ``<run>/recipe.json``) and the structural validity of the three sets
with how each flow moved the LLM's valid and invalid crystals (seconds; no relaxation). With
``--metrics`` it adds the evaluation's table and the differences with their intervals.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from flow_steps_ablation import (
    coincident_ids,
    refined_validity,
    still_coincident,
    validity_change,
)
from machine import commit, describe  # benchmarks/machine.py
from shipped_comparison import interval_cell

from flowllm_kit import pretrained
from flowllm_kit.crystal import read_crystals, write_crystals
from flowllm_kit.evaluate import structural_validity
from flowllm_kit.flow import FlowSamplerConfig, sample_in_chunks
from flowllm_kit.flow.checkpoint import read_state
from flowllm_kit.flow.refinement import default_denoise_pairs
from flowllm_kit.llm import llm_preset
from flowllm_kit.run import RunFolder
from flowllm_kit.stages import differences_table, flow_starts

RESULTS = Path(__file__).parent / "results"
SHIPPED = "mp20-demo"
SYSTEM = "flowllm_demo"
METRICS = [
    "structural validity %", "valid %", "closeness match %", "closeness RMSD",
    "closeness dE eV/atom", "relaxation steps", "stable (CHGNet hull) %",
    "metastable (CHGNet hull) %", "S.U.N. (CHGNet hull) %", "coverage recall %",
]  # fmt: skip
LABELS = {"flowllm": "FlowLLM, kit pairs", SYSTEM: "FlowLLM, shipped demo", "llm_only": "LLM only"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a kit recipe run with the demo LLM")
    parser.add_argument("--out", type=Path, default=RESULTS / "kit_pairs_comparison.md")
    parser.add_argument(
        "--metrics", action="store_true", help="add the evaluation's table (run evaluate first)"
    )
    parser.add_argument("--note", default="", help="how the run was made (printed with it)")
    args = parser.parse_args()
    run = RunFolder(args.run_dir)
    recipe = json.loads(run.recipe.read_text())
    installed = json.loads(run.installed_checkpoint.read_text())
    if installed["checkpoint"] != SHIPPED or "llm" not in installed["installed"]:
        raise SystemExit(f"{run.root}: its LLM is not {SHIPPED}'s, so the starts would differ")
    kit = read_crystals(run.samples_file("flowllm"))
    starts = flow_starts(run, ["flowllm"], n=len(kit))["flowllm"]
    shipped = pretrained.load(SHIPPED)
    out = run.samples_file(SYSTEM)
    if not out.is_file():
        sampler = FlowSamplerConfig(**json.loads(run.sampler_settings.read_text()))
        chunks = sample_in_chunks(
            shipped.flow("flowllm"), starts, config=sampler, batch_size=256, progress=True,
            desc="shipped FlowLLM",
        )  # fmt: skip
        for chunk in chunks:
            write_crystals(chunk, out)
    demo = read_crystals(out)
    sets = {"LLM only (the flows' starts)": starts, LABELS[SYSTEM]: demo, LABELS["flowllm"]: kit}
    lines = [
        "# FlowLLM on the kit recipe's pairs against the shipped demo FlowLLM "
        "(benchmarks/kit_pairs_comparison.py)",
        "",
        f"Measured {date.today()} at commit `{commit()}` on the run folder `{run.root.name}`: "
        f"{len(starts)} unconditional crystals of the shipped `{SHIPPED}` LLM, each refined by "
        "both flows with the same sampler "
        f"({json.loads(run.sampler_settings.read_text())['num_steps']} Euler steps).",
        describe(),
        "",
        "## The two flows",
        "",
        "| flow | LLM pairs | denoising pairs | steps | best / last validation loss | trained |",
        "|---|---|---|---|---|---|",
    ]
    shipped_state = read_state(shipped.root / "flow" / "flowllm" / "checkpoint")
    preset = shipped.manifest["recipe"]["preset"]
    lines.append(
        f"| shipped {SHIPPED} | {llm_preset(preset).pairs.num_pairs:,} (constrained decoding) | "
        f"{default_denoise_pairs(preset):,} | {shipped_state['step']:,} | no validation pairs | "
        f"the {preset} recipe |"
    )
    entry = recipe["stages"]["flow-flowllm"]
    result = entry["result"]
    where = "; ".join(
        f"{a['device']}, {a.get('seconds', 0) / 60:.1f} min" for a in entry["attempts"]
    )
    early = " (validation loss stopped falling)" if result["stopped_early"] else ""
    lines.append(
        f"| kit pairs | {recipe['stages']['pairs']['result']['pairs']:,} (rejection) | "
        f"{default_denoise_pairs('kit'):,} | "
        f"{result['steps']:,}{early} | {result['best_val_loss']:.4f} / "
        f"{result['last_val_loss']:.4f} | {where} |"
    )
    lines += _stages(recipe)
    if args.note:
        lines += ["", args.note]
    lines += _validity(sets, starts)
    if args.metrics:
        lines += _metrics(run)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {args.out}")


def _stages(recipe: dict) -> list[str]:
    """Each stage of the recipe run: where it ran, how long, what it made."""
    lines = [
        "",
        "## The recipe's stages (`<run>/recipe.json`)",
        "",
        "| stage | device | minutes | result |",
        "|---|---|---|---|",
    ]
    for name, entry in recipe["stages"].items():
        devices = sorted({a["device"] for a in entry["attempts"]})
        result = json.dumps(entry.get("result", {})).replace("|", "/")
        lines.append(f"| {name} | {'; '.join(devices)} | {entry['seconds'] / 60:.1f} | {result} |")
    return lines


def _validity(sets: dict, starts: list) -> list[str]:
    """Structural validity of each set and how each flow moved the LLM's crystals."""
    before = np.asarray(structural_validity(starts), dtype=bool)
    coincident = coincident_ids(starts, before)
    lines = [
        "",
        "## Structural validity (atoms at least 0.5 Å apart, volume at least 0.1 Å³ per atom)",
        "",
        "| crystals | structurally valid % [95%] | LLM-invalid made valid | LLM-valid made "
        "invalid | LLM crystals with a site written twice, still coincident |",
        "|---|---|---|---|---|",
    ]
    for label, crystals in sets.items():
        after = refined_validity(label, crystals, starts)
        lines.append(
            f"| {label} | {validity_change(before, after)} "
            f"| {still_coincident(crystals, coincident)} of {len(coincident)} |"
        )
    return lines


def _metrics(run: RunFolder) -> list[str]:
    """The evaluation's metrics of the three systems and the differences the paper claims."""
    table = pd.read_csv(run.metrics_intervals)
    table = table[table["system"].isin(LABELS) & table["metric"].isin(METRICS)]
    systems = [s for s in LABELS if s in set(table["system"])]
    cells = {
        (row.metric, row.system): interval_cell(row.value, row.low, row.high)
        for row in table.itertuples(index=False)
    }
    lines = [
        "",
        "## The evaluation (`python -m flowllm_kit evaluate --preset kit`), value [95% interval]",
        "",
        "| metric | " + " | ".join(LABELS[s] for s in systems) + " |",
        "|---" * (len(systems) + 1) + "|",
    ]
    for metric in METRICS:
        row = [cells.get((metric, s), "—") for s in systems]
        lines.append(f"| {metric} | " + " | ".join(row) + " |")
    full = pd.read_csv(run.metrics_intervals)
    lines += [
        "",
        "| first − second | metric | difference [95%] | excludes 0 |",
        "|---|---|---|---|",
    ]
    for pair in (("flowllm", "llm_only"), (SYSTEM, "llm_only"), ("flowllm", SYSTEM)):
        if not set(pair) <= set(systems):
            continue
        for row in differences_table(full, [pair], METRICS).itertuples(index=False):
            mark = "yes" if row.excludes_zero else "no"
            difference = interval_cell(row.difference, row.low, row.high)
            lines.append(
                f"| {LABELS[pair[0]]} − {LABELS[pair[1]]} | {row.metric} | {difference} | {mark} |"
            )
    return lines


if __name__ == "__main__":
    main()
