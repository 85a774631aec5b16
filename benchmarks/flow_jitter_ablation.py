"""Can start jitter teach FlowLLM to separate the LLM's coincident atoms?

`flow_steps_ablation.py` finds that many of the LLM's structurally invalid crystals hold two atoms
of one element at one place, and that a noise-free flow leaves them there: the velocity network
is permutation equivariant, so the two atoms get the same velocity. Jitter on the start breaks
the tie. This script trains FlowLLM on the run's pair set twice, without and with jitter on the
starts in training (``train-flow --noise-std``), each into ``<run>/jitter/<noise>/``, then
refines the run's LLM crystals (the starts notebook 06 gave the shipped FlowLLM) with each
network, without and with the same jitter on the starts, and writes
``benchmarks/results/flow_jitter_ablation.md``::

    python benchmarks/flow_jitter_ablation.py runs/demo            # about 10 minutes on 2 cores

Structural validity needs no relaxation, so nothing here is relaxed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from flow_steps_ablation import (  # benchmarks/flow_steps_ablation.py
    coincident_ids,
    has_coincident_pair,
    still_coincident,
    validity_change,
)
from machine import commit, describe  # benchmarks/machine.py

from flowllm_kit.crystal import Crystal
from flowllm_kit.evaluate import structural_validity
from flowllm_kit.evaluate.intervals import rate_estimate
from flowllm_kit.flow import FlowSamplerConfig, sample_in_chunks
from flowllm_kit.flow.checkpoint import load_network
from flowllm_kit.llm.pairs import PairSet
from flowllm_kit.run import RunFolder
from flowllm_kit.stages import flow_starts

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder with pairs/ and LLM samples")
    parser.add_argument("--noise", type=float, default=0.02, help="jitter, fractional units")
    parser.add_argument("--max-steps", type=int, default=1500, help="training steps per flow")
    parser.add_argument("--out", type=Path, default=RESULTS / "flow_jitter_ablation.md")
    args = parser.parse_args()
    run = RunFolder(args.run_dir)
    machine = describe()
    seconds = {}
    for noise in (0.0, args.noise):
        seconds[noise] = _train(run, noise, args.max_steps)
    starts = flow_starts(run, ["flowllm"])["flowllm"]
    sampler = FlowSamplerConfig(**json.loads(run.sampler_settings.read_text()))
    before = np.asarray(structural_validity(starts), dtype=bool)
    coincident = coincident_ids(starts, before)
    pairs = PairSet.load(run.root / "pairs" / "pairs.npz")
    rows = []
    for trained in seconds:
        network = load_network(RunFolder(_folder(run, trained)).flow_checkpoint("flowllm"))
        for jitter in (0.0, args.noise):
            refined = _refine(network, _jittered(starts, jitter), sampler)
            after = np.asarray(structural_validity(refined), dtype=bool)
            still = still_coincident(refined, coincident)
            rows.append(
                f"| {trained:g} | {jitter:g} | {validity_change(before, after)} "
                f"| {still} of {len(coincident)} |"
            )
    start_rate = rate_estimate(before)
    lines = [
        "# Start jitter against coincident atoms (benchmarks/flow_jitter_ablation.py)",
        "",
        f"Measured {date.today()} at commit `{commit()}` on the run folder "
        f"`{run.root.name}`: FlowLLM trained {args.max_steps} steps on its {len(pairs.c0)} pairs "
        f"({sum(map(has_coincident_pair, pairs.c0))} of whose starts hold coincident atoms), "
        + ", ".join(f"{s / 60:.1f} min with training jitter {n:g}" for n, s in seconds.items())
        + f"; {len(starts)} LLM crystals refined by the run's sampler.",
        machine,
        "",
        f"The LLM's crystals: {start_rate.value:.1f}% [{start_rate.low:.1f}, {start_rate.high:.1f}]"
        f" structurally valid; {len(coincident)} of the {int((~before).sum())} invalid ones hold "
        "two atoms of one element less than 0.01 Å apart. Jitter is the standard deviation of the "
        "Gaussian added to every fractional coordinate of a start (in training also to its "
        "lengths, in Å: `PairedBase`).",
        "",
        "| training jitter | sampling jitter | structurally valid % | invalid made valid "
        "| valid made invalid | coincident left |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"-> {args.out}")


def _folder(run: RunFolder, noise: float) -> Path:
    return run.root / "jitter" / f"{noise:g}"


def _train(run: RunFolder, noise: float, max_steps: int) -> float:
    """Train FlowLLM on a copy of the run's pairs with ``noise`` on its starts; seconds taken."""
    folder = _folder(run, noise)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copytree(run.root / "pairs", folder / "pairs")
    command = [
        sys.executable, "-m", "flowllm_kit", "train-flow", "--preset", "demo",
        "--run-dir", str(folder), "--model", "flowllm", "--max-steps", str(max_steps),
        "--noise-std", str(noise), "--no-resume",
    ]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - began


def _jittered(starts: list[Crystal], jitter: float) -> list[Crystal]:
    rng = np.random.default_rng(0)
    moved = [c.frac_coords + jitter * rng.standard_normal(c.frac_coords.shape) for c in starts]
    return [c.replace(frac_coords=np.mod(f, 1.0)) for c, f in zip(starts, moved, strict=True)]


def _refine(network, starts: list[Crystal], sampler: FlowSamplerConfig) -> list[Crystal]:
    chunks = sample_in_chunks(network, starts, config=sampler, batch_size=256, progress=False)
    return [crystal for chunk in chunks for crystal in chunk]


if __name__ == "__main__":
    main()
