"""Wall time of each launched stage on 1 and 2 processes of this machine (torchrun, gloo).

Builds a small run folder (the smoke preset's LLM trained briefly, a pair set), then times the
commands the README's "Scaling up" section uses, each from a fresh copy of the folder, once
with ``--nproc_per_node 1`` and once with 2 (one torch thread per process either way):

- ``sample-llm``: unconditional crystals from the LLM (continuous batching);
- ``pairs``: formula-prompted pairs (one ``generate`` call per block);
- ``train-flow``: FlowLLM's flow, data-parallel;
- ``sample``: the four flows' ODE solves;
- ``evaluate``: CHGNet relaxations and the metrics (one process relaxes in its own workers,
  one per core; launched processes split the cores between them).

Each time includes the start of the processes and of the process group (a few seconds), so
small stages gain less than the arithmetic would. Results go to
``benchmarks/results/scaling.md`` with the machine described. Usage::

    FLOWLLM_KIT_DATA=/path/to/data python benchmarks/bench_scaling.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from machine import describe  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--preset", "smoke"]
STAGES = {
    "sample-llm": ["sample-llm", "--num-samples", "960", "--max-draws", "3840",
                   "--temperature", "0.7"],
    "pairs": ["pairs", "--num-pairs", "384", "--max-draws", "1536", "--temperature", "0.7"],
    "train-flow": ["train-flow", "--model", "flowllm", "--max-steps", "400", "--batch-size", "64"],
    "sample": ["sample", "--num-steps", "400", "--batch-size", "64"],
    "evaluate": ["evaluate", "--no-relaxed-hull", "--no-controls", "-n", "128",
                 "--n-reference", "16", "--relax-steps", "100", "--systems", "flowllm"],
}  # fmt: skip
NEEDS = {
    "sample-llm": ["llm", "tokenizer"],
    "pairs": ["llm", "tokenizer"],
    "train-flow": ["pairs"],
    "sample": ["llm_samples.jsonl", "pairs", "flow"],
    "evaluate": ["llm_samples.jsonl", "samples"],
}


def kit(run: Path, argv: list[str], processes: int | None = None) -> float:
    """Seconds of ``python -m flowllm_kit ARGV`` (under torchrun when ``processes`` is set)."""
    command = [sys.executable, "-m", "flowllm_kit"]
    if processes is not None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = str(sock.getsockname()[1])
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node"]
        command += [str(processes), "--master_port", port, "-m", "flowllm_kit"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    subprocess.run([*command, *argv, *SMOKE, "--run-dir", str(run)], check=True, env=env,
                   capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def copy(run: Path, to: Path, parts: list[str]) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    to.mkdir(parents=True)
    for part in parts:
        source = run / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, to / part)
    return to


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scaling.md")
    args = parser.parse_args()
    lines = [
        "# Launched stages on 1 and 2 processes (benchmarks/bench_scaling.py)",
        "",
        f"Measured {date.today().isoformat()} with `torchrun --nproc_per_node N -m flowllm_kit "
        "STAGE --preset smoke`, each stage from a fresh copy of one run folder.",
        "",
        describe("one torch thread per process"),
        "",
        "| stage | command options | 1 process, s | 2 processes, s | speed-up |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "base"
        kit(base, ["train-llm", "--max-steps", "300", "--max-train", "4", "--num-eval", "2"])
        kit(base, STAGES["sample-llm"])
        kit(base, STAGES["pairs"])
        startup = kit(Path(folder) / "empty", ["presets", "show", "smoke"], 2)
        kit(base, ["train-flow", "--max-steps", "20", "--batch-size", "16"])
        kit(base, STAGES["sample"])
        for stage, argv in STAGES.items():
            seconds = []
            for processes in (1, 2):
                run = copy(base, Path(folder) / f"{stage}-{processes}", NEEDS[stage])
                seconds.append(kit(run, argv, processes))
                print(f"{stage}: {processes} process(es) {seconds[-1]:.1f} s", flush=True)
            options = " ".join(argv[1:])
            speedup = seconds[0] / seconds[1]
            lines.append(
                f"| {stage} | `{options}` | {seconds[0]:.1f} | {seconds[1]:.1f} | {speedup:.2f}x |"
            )
    lines += [
        "",
        f"Starting two launched processes with next to nothing to do (`presets show smoke` under "
        f"torchrun: python, torch and the kit imported, no process group) took {startup:.1f} s; "
        "every time above includes such a start.",
        "",
        "Under a launcher `evaluate` shares out only the CHGNet relaxations; the other metrics",
        "(validity, fingerprints, coverage, properties) are computed on every rank, and one",
        "process's relaxations already use one worker process per core once it has enough",
        "crystals (`relax_structures`). `train-flow` on the smoke network is mostly per-step",
        "overhead, which data parallelism adds to (an all-reduce per step).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
