"""How often an LLM answers a held-out formula with exactly that composition, the kit recipe's
measure (``stages.formula_following``, recorded by ``recipe``'s ``llm-samples`` stage).

Each source is a shipped checkpoint's name, a run folder with ``llm/`` (notebook 03 or
``recipe``), or one of its Trainer checkpoints (``<run>/llm/checkpoints/checkpoint-N``: a
model's curve while it trains). Every LLM answers the same prompts: one draw per formula of the
preset's held-out crystals (MP-20 test, the first 128 of the demo and kit presets), at the LLM's
own sampling settings (tau 0.7, P 0.9 for demo and kit), no constrained decoding, seed 1 as in
the recipe. An answer that does not parse counts as a miss. Appends a table to
``benchmarks/results/llm_formula_following.md`` with the machine described. Usage::

    FLOWLLM_KIT_DATA=/path/to/data python benchmarks/llm_formula_following.py \\
        mp20-demo runs/kit-v2 --preset kit
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

from machine import commit, describe  # benchmarks/machine.py

from flowllm_kit import llm, pretrained, stages
from flowllm_kit.run import RunFolder

ROOT = Path(__file__).resolve().parents[1]


def load(source: str) -> tuple:
    """``(model, tokenizer, LLMConfig)`` of a checkpoint name, a run folder, or a Trainer
    checkpoint inside one (``<run>/llm/checkpoints/checkpoint-N``, a model still training)."""
    if source in pretrained.available():
        return pretrained.load(source).llm()
    folder = Path(source)
    if (folder / "llm").is_dir():
        return stages.load_llm(RunFolder(folder))
    run = RunFolder(folder.parents[2]) if len(folder.parents) > 2 else None
    if run is None or not (folder / "config.json").is_file() or not run.llm_config.is_file():
        raise SystemExit(
            f"{source}: not a shipped checkpoint, a run folder with llm/, or a Trainer "
            "checkpoint in <run>/llm/checkpoints/"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run.tokenizer))
    config = llm.LLMConfig.from_dict(json.loads(run.llm_config.read_text()))
    return model, tokenizer, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="checkpoint names or run folders")
    parser.add_argument("--preset", default="kit", help="whose held-out crystals (%(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/llm_formula_following.md"
    )
    args = parser.parse_args()
    held_out = stages.select_crystals(args.preset).evaluation
    lines = [
        f"## {date.today().isoformat()}, commit {commit()}: {len(held_out)} held-out formulas "
        f"of the {args.preset} preset, one answer each, seed {args.seed}",
        "",
        describe(),
        "",
        "| LLM | τ | P | parsed | exact atoms | reduced formula | elements | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source in args.sources:
        model, tokenizer, config = load(source)
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            result = stages.formula_following(
                RunFolder(folder), model, tokenizer, config, held_out, seed=args.seed
            )
            seconds = time.perf_counter() - start
        low, high = result.exact_interval
        n = result.formulas
        lines.append(
            f"| {source} | {result.temperature:g} | {result.top_p:g} | {result.parsed}/{n} | "
            f"**{result.exact}/{n} ({result.exact_share:.0%} [{low:.0%}, {high:.0%}])** | "
            f"{result.reduced}/{n} | {result.elements}/{n} | {seconds:.0f} |"
        )
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.is_file()
    with args.out.open("a") as sink:
        if new:
            sink.write(
                "# Formula following of the kit's LLMs (benchmarks/llm_formula_following.py)\n\n"
                "The kit recipe's target: 80% of answers to held-out formulas with exactly the "
                "requested composition, without constrained decoding. Intervals: 95% Wilson.\n\n"
            )
        sink.write("\n".join(lines) + "\n\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
