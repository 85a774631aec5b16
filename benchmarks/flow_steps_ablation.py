"""Ablation of the flow's training budget: FlowLLM trained 200 steps against the shipped 1,500.

With a shipped checkpoint (``make demo``), notebook 05 trains short runs of every flow beside the
shipped networks (``<run>/short/flow/<model>``). This script refines the run's LLM crystals,
the same starts notebook 06 gave the shipped FlowLLM, with the short FlowLLM network and the
same sampler, into ``<run>/samples/flowllm_<steps>_steps.jsonl``: a system that the next
evaluation scores beside the others (``benchmarks/shipped_comparison.py`` lists it)::

    python benchmarks/flow_steps_ablation.py runs/demo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flowllm_kit.crystal import write_crystals
from flowllm_kit.flow import FlowSamplerConfig, sample_in_chunks
from flowllm_kit.flow.checkpoint import load_network, read_state
from flowllm_kit.run import RunFolder
from flowllm_kit.stages import flow_starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder made from a checkpoint")
    parser.add_argument("--model", default="flowllm", choices=["flowllm", "flowllm_types"])
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


if __name__ == "__main__":
    main()
