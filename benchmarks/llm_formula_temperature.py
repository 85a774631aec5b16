"""How well a trained run's LLM follows its prompt's formula at several sampling temperatures.

Reads ``<run_dir>/llm`` (notebook 03) and prompts the model with the formulas of the first ``-n``
held-out crystals and of the first ``-n`` training crystals listed in ``llm/crystals.json``, one
answer each (continuous batching, as notebook 04), at every (temperature, top-p) given. Prints a
markdown table: parsed answers over draws, then the share of parsed answers with exactly the
target's atoms, its reduced formula and its elements (``llm.composition_agreement``), and how many
distinct (formula, rounded lattice lengths) the answers hold, a rough guard against a low
temperature buying agreement with copies.

    FLOWLLM_KIT_DATA=/path/to/data python benchmarks/llm_formula_temperature.py runs/demo \\
        --settings 0.7,0.9 0.5,0.9 0.3,0.9 0.001,1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from flowllm_kit import llm, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder with llm/ from notebook 03")
    parser.add_argument("-n", type=int, default=256, help="formulas per split (256)")
    parser.add_argument(
        "--settings", nargs="+", default=["0.7,0.9", "0.5,0.9", "0.3,0.9"],
        help="temperature,top_p pairs",
    )  # fmt: skip
    parser.add_argument("--training", action="store_true", help="also the training formulas")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    llm_dir = args.run_dir / "llm"
    model, tokenizer = llm.load_model(llm_dir / "model")
    config = llm.LLMConfig.from_dict(json.loads((llm_dir / "llm_config.json").read_text()))
    lists = llm.read_crystal_lists(llm_dir)
    splits = [("held-out", lists.evaluation[: args.n])]
    if args.training:
        splits.append(("training", lists.train[: args.n]))
    print(
        f"{args.run_dir}: {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; seed {args.seed}\n"
    )
    print("| formulas | τ | P | parsed / draws | exact | reduced | elements | distinct | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, crystals in splits:
        prompts = [text.formula_prompt(c) for c in crystals]
        for setting in args.settings:
            temperature, top_p = map(float, setting.split(","))
            sampling = dataclasses.replace(config.sampling, temperature=temperature, top_p=top_p)
            start = time.perf_counter()
            out = llm.sample_crystals(
                model, tokenizer, num_crystals=len(prompts), prompts=prompts, config=sampling,
                max_draws=4 * len(prompts), seed=args.seed,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            targets = [crystals[draw % len(crystals)] for draw in out.draws]
            agreement = llm.composition_agreement(out.crystals, targets)
            distinct = len({(c.formula, tuple(c.lengths.round(1))) for c in out.crystals})
            print(
                f"| {name} ({len(crystals)}) | {temperature:g} | {top_p:g} | "
                f"{len(out.crystals)} / {out.num_draws} | {agreement.exact:.1%} | "
                f"{agreement.reduced:.1%} | {agreement.elements:.1%} | {distinct} | "
                f"{seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
