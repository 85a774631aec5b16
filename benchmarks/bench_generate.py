"""Wall time of the README's generation command from the shipped checkpoint.

Runs ``python -m flowllm_kit generate --formula LiFePO4 -n 8`` (and the unconditional
``-n 100``) as a user types them, three times each into fresh folders, for each shipped
checkpoint (the default one as typed, the others with ``--checkpoint``), and writes the median
wall time, the share of crystals with the requested composition and their validity to
``benchmarks/results/generate.md`` with the machine described. Usage::

    python benchmarks/bench_generate.py [--checkpoints mp20-demo mp20-kit]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
from machine import describe  # benchmarks/machine.py

from flowllm_kit import pretrained

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["--formula", "LiFePO4", "-n", "8"], ["-n", "100"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--checkpoints", nargs="+", default=pretrained.available(), help="(%(default)s)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generate.md")
    args = parser.parse_args()
    lines = [
        "# `python -m flowllm_kit generate` from the shipped checkpoint "
        "(benchmarks/bench_generate.py)",
        "",
        f"Measured {date.today().isoformat()}, the command's defaults (FlowLLM refinement, 250 "
        "Euler steps); wall time includes starting Python and loading the models; median of "
        f"{args.repeats} runs. `generate` without `--checkpoint` uses "
        f"`{pretrained.DEFAULT}`.",
        "",
        describe(),
        "",
        "| checkpoint | command | wall s (median) | with the requested composition | "
        "structurally valid | compositionally valid |",
        "|---|---|---|---|---|---|",
    ]
    for name, options in itertools.product(args.checkpoints, COMMANDS):
        if name != pretrained.DEFAULT:
            options = [*options, "--checkpoint", name]
        seconds, summary = [], None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                command = [sys.executable, "-m", "flowllm_kit", "generate", *options]
                start = time.perf_counter()
                subprocess.run([*command, "--out", folder], check=True, capture_output=True)
                seconds.append(time.perf_counter() - start)
                summary = pd.read_csv(Path(folder) / "summary.csv")
        assert summary is not None
        matches = summary["matches_request"].dropna()
        share = f"{matches.sum()}/{len(matches)}" if len(matches) else "n/a"
        lines.append(
            f"| {name} | `generate {' '.join(options)}` | "
            f"{statistics.median(seconds):.1f} | {share} | "
            f"{summary['structurally_valid'].sum()}/{len(summary)} | "
            f"{summary['compositionally_valid'].sum()}/{len(summary)} |"
        )
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
