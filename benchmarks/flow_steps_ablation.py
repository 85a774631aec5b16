"""Ablation of the flow's training budget: FlowLLM trained 200 steps against the shipped 1,500.

With a shipped checkpoint (``make demo``), notebook 05 trains short runs of every flow beside the
shipped networks (``<run>/short/flow/<model>``). This script refines the run's LLM crystals,
the same starts notebook 06 gave the shipped FlowLLM, with the short FlowLLM network and the
same sampler, into ``<run>/samples/flowllm_<steps>_steps.jsonl``: a system that the next
evaluation scores beside the others (``benchmarks/shipped_comparison.py`` lists it)::

    python benchmarks/flow_steps_ablation.py runs/demo

It also writes ``benchmarks/results/flow_steps_ablation.md``: the structural validity of the LLM's
crystals, of the shipped FlowLLM's refinements of them and of the short FlowLLM's, with how many
of the LLM's invalid crystals each flow made valid and how many valid ones it broke (structural
validity needs no relaxation, so this part takes seconds), and how many of the invalid ones hold
two atoms of one element at one place, which no noise-free flow can separate.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np
from machine import commit, describe  # benchmarks/machine.py

from flowllm_kit.crystal import read_crystals, write_crystals
from flowllm_kit.crystal.convert import as_structures
from flowllm_kit.evaluate import structural_validity
from flowllm_kit.evaluate.intervals import rate_estimate
from flowllm_kit.flow import FlowSamplerConfig, sample_in_chunks
from flowllm_kit.flow.checkpoint import load_network, read_state
from flowllm_kit.run import RunFolder
from flowllm_kit.stages import flow_starts

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder made from a checkpoint")
    parser.add_argument("--model", default="flowllm", choices=["flowllm", "flowllm_types"])
    parser.add_argument("--out", type=Path, default=RESULTS / "flow_steps_ablation.md")
    args = parser.parse_args()
    run = RunFolder(args.run_dir)
    short = RunFolder(run.root / "short").flow_checkpoint(args.model)
    steps = read_state(short)["step"]
    network = load_network(short)
    sampler = FlowSamplerConfig(**json.loads(run.sampler_settings.read_text()))
    starts = flow_starts(run, [args.model])[args.model]
    out = run.samples_file(f"{args.model}_{steps}_steps")
    out.unlink(missing_ok=True)
    chunks = sample_in_chunks(
        network, starts, config=sampler, batch_size=256, desc=f"{args.model} {steps}", progress=True
    )
    for chunk in chunks:
        write_crystals(chunk, out)
    print(f"{len(starts)} crystals of {args.model} trained {steps} steps -> {out}")
    shipped_steps = read_state(run.flow_checkpoint(args.model))["step"]
    shipped = read_crystals(run.samples_file(args.model))
    sets = {
        "LLM alone (the flow's starts)": starts,
        f"{args.model}, shipped ({shipped_steps} steps)": shipped,
        f"{args.model}, short ({steps} steps)": read_crystals(out),
    }
    args.out.write_text(_validity_report(run, sets, starts))
    print(f"-> {args.out}")


def _validity_report(run: RunFolder, sets: dict, starts: list) -> str:
    """Structural validity of each set, and how each flow moved the LLM's valid/invalid ones."""
    before = np.asarray(structural_validity(starts), dtype=bool)
    lines = [
        "# Does the flow repair the LLM's invalid crystals? (benchmarks/flow_steps_ablation.py)",
        "",
        f"Measured {date.today()} at commit `{commit()}` on the run folder "
        f"`{run.root.name}`: {len(starts)} LLM crystals, refined by the same sampler.",
        describe(),
        "",
        "| crystals | structurally valid % | LLM-invalid made valid | LLM-valid made invalid |",
        "|---|---|---|---|",
    ]
    for label, crystals in sets.items():
        lines.append(
            f"| {label} | {validity_change(before, refined_validity(label, crystals, starts))} |"
        )
    invalid = [c for c, ok in zip(starts, before, strict=True) if not ok]
    coincident = coincident_ids(starts, before)
    lines += [
        "",
        "## Why invalid starts stay invalid: coincident atoms",
        "",
        f"{len(coincident)} of the LLM's {len(invalid)} structurally invalid crystals hold two "
        f"atoms of the same element less than {COINCIDENT} Å apart (the LLM wrote one site twice). "
        "The velocity network is permutation equivariant, so two atoms of one element at one place "
        "get the same velocity, and an ODE sampler without noise moves them together: no flow, "
        "however trained, separates them. How many are still coincident after each flow:",
        "",
        "| crystals | still coincident |",
        "|---|---|",
    ]
    for label, crystals in list(sets.items())[1:]:
        lines.append(f"| {label} | {still_coincident(crystals, coincident)} of {len(coincident)} |")
    return "\n".join(lines) + "\n"


def refined_validity(label: str, crystals: list, starts: list) -> np.ndarray:
    """Structural validity of ``crystals``, which must be the refinements of ``starts``, in
    their order (``label`` names them in the error)."""
    if [c.id for c in crystals] != [c.id for c in starts]:
        raise ValueError(f"{label}: not the refinements of the run's LLM crystals, in order")
    return np.asarray(structural_validity(crystals), dtype=bool)


def coincident_ids(starts: list, valid: np.ndarray) -> list[str]:
    """The ids of the invalid starts that hold two atoms of one element at one place."""
    return [c.id for c, ok in zip(starts, valid, strict=True) if not ok and has_coincident_pair(c)]


def validity_change(before: np.ndarray, after: np.ndarray) -> str:
    """Table cells: the valid rate after a flow with its Wilson interval, how many of the invalid
    starts it made valid and how many valid ones it broke."""
    rate = rate_estimate(after)
    return (
        f"{rate.value:.1f} [{rate.low:.1f}, {rate.high:.1f}] "
        f"| {int((~before & after).sum())} of {int((~before).sum())} "
        f"| {int((before & ~after).sum())} of {int(before.sum())}"
    )


COINCIDENT = 0.01  # Å


def has_coincident_pair(crystal) -> bool:
    """Whether two atoms of the same element lie within :data:`COINCIDENT` Å (periodic images)."""
    (structure,) = as_structures([crystal])
    distances = structure.distance_matrix
    np.fill_diagonal(distances, np.inf)
    same = crystal.atomic_numbers[:, None] == crystal.atomic_numbers[None, :]
    return bool(((distances < COINCIDENT) & same).any())


def still_coincident(crystals: list, ids: list[str]) -> int:
    """How many of the crystals with these ids still hold a coincident pair."""
    by_id = {c.id: c for c in crystals}
    return sum(has_coincident_pair(by_id[i]) for i in ids)


if __name__ == "__main__":
    main()
