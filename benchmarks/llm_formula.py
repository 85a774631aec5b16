"""How a scratch LLM learns to follow the formula of its prompt, on this CPU.

FlowLLM prompts the LLM with a target's formula and keeps the answer only if it has that
composition. A model trained from scratch learns the text format long before it reads the
formula; this script measures where it stands, in two ways:

- **Teacher-forced element losses** on 64 MP-20 val (training) and 64 MP-20 test (held-out)
  crystals, with the formula prompt and with the unconditional prompt: the mean loss (nats) of
  the atoms' element tokens, of the *first* element token (copying the formula's first element)
  and of the *switch* tokens, the element lines that differ from the one before (which element
  comes next, and when). The gap between the two prompts is what the formula is worth.
- **Sampled answers** to the same 64 + 64 formula prompts (tau 0.9, P 0.95 and tau 0.7, P 0.9,
  one draw each, continuous batching), compared with their targets by
  :func:`flowllm_kit.llm.composition_agreement`.

Usage::

    python benchmarks/llm_formula.py train --out DIR --steps 3000 --tie --conditioning formula \
        [--init MODEL_DIR] [--learning-rate 3e-3] [--batch-size 16] [--layers 4] \
        [--save-every 500]
    python benchmarks/llm_formula.py evaluate DIR/model DIR/checkpoints/checkpoint-500 ...

``train`` fine-tunes a model of the demo preset's width (128): 4 blocks unless ``--layers``,
embeddings untied unless ``--tie`` (the demo preset itself now has 2 blocks, tied), on all of
MP-20 val with the kit's ``finetune`` (batch 16 unless ``--batch-size``, cosine schedule,
checkpoints every ``--save-every`` steps); ``evaluate`` prints one JSON line per model folder
or checkpoint. Results: ``results/llm_formula.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from flowllm_kit import llm, text
from flowllm_kit.data import load_dataset


def train(args: argparse.Namespace) -> None:
    tokenizer = text.build_tokenizer()
    config = llm.llm_preset("demo")
    scratch = dataclasses.replace(
        config.scratch, tie_word_embeddings=args.tie, num_layers=args.layers
    )
    finetune = dataclasses.replace(
        config.finetune,
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=min(50, args.steps // 10),
        conditioning=args.conditioning,
        eval_steps=args.save_every,
        save_steps=args.save_every,
        save_total_limit=None,
        max_eval_crystals=64,
    )
    config = config.replace(scratch=scratch, finetune=finetune)
    if args.init:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.init)
    else:
        model = llm.scratch_model(tokenizer, config=scratch, seed=0)
    start = time.perf_counter()
    result = llm.finetune(
        model,
        tokenizer,
        load_dataset("mp_20", "val"),
        run_dir=args.out,
        config=config,
        eval=load_dataset("mp_20", "test")[:64],
    )
    print(
        f"{result.global_step} steps in {time.perf_counter() - start:.0f} s; "
        f"eval loss {result.eval_loss:.3f}; model in {result.model_dir}"
    )


def element_losses(model, tokenizer, crystals, *, conditioned: bool) -> dict[str, float]:  # noqa: ANN001
    """Mean teacher-forced loss of all, first and switching element tokens of the answers."""
    symbols = {e for c in crystals for e in c.elements}
    element_ids = set(tokenizer.convert_tokens_to_ids(sorted(symbols)))
    losses: dict[str, list[float]] = {"element": [], "first": [], "switch": []}
    for crystal in crystals:
        formula = text.crystal_attributes(crystal)["formula"]
        prompt = (
            text.generation_prompt(formula=formula) if conditioned else text.generation_prompt()
        )
        ids = tokenizer(prompt + text.encode(crystal), return_tensors="pt")["input_ids"]
        start = len(tokenizer(prompt)["input_ids"]) - 1  # the first answer token's logits
        with torch.no_grad():
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:].tolist()
        previous = None
        for i in range(start, len(targets)):
            if targets[i] not in element_ids:
                continue
            loss = -float(log_probs[i, targets[i]])
            losses["element"].append(loss)
            if previous is None:
                losses["first"].append(loss)
            elif targets[i] != previous:
                losses["switch"].append(loss)
            previous = targets[i]
    return {name: round(float(np.mean(values)), 3) for name, values in losses.items()}


def evaluate(args: argparse.Namespace) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = text.build_tokenizer()
    rng = np.random.default_rng(0)
    splits = {}
    for split in ("val", "test"):
        crystals = load_dataset("mp_20", split)
        splits[split] = [crystals[i] for i in rng.choice(len(crystals), 64, replace=False)]
    for path in args.models:
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        row: dict[str, object] = {"model": str(path)}
        for split, crystals in splits.items():
            for conditioned in (True, False):
                key = f"{split} {'formula' if conditioned else 'unconditional'} prompt"
                row[key] = element_losses(model, tokenizer, crystals, conditioned=conditioned)
            prompts = [text.formula_prompt(c) for c in crystals]
            for temperature, top_p in ((0.9, 0.95), (0.7, 0.9)):
                config = llm.LLMSamplingConfig(
                    temperature=temperature, top_p=top_p, batch_size=32, continuous=True
                )
                result = llm.sample_crystals(
                    model, tokenizer, num_crystals=len(prompts), prompts=prompts, config=config,
                    max_draws=len(prompts), progress_bar=False, seed=1,
                )  # fmt: skip
                parsed = len(result.crystals)
                entry: dict[str, object] = {"parsed": f"{parsed}/{len(prompts)}"}
                if parsed:
                    targets = [crystals[d] for d in result.draws]
                    agreement = llm.composition_agreement(result.crystals, targets)
                    entry |= {
                        k: round(v * parsed) for k, v in dataclasses.asdict(agreement).items()
                    }
                    entry.pop("count")
                row[f"{split} sampled tau {temperature}"] = entry
        print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parts = parser.add_subparsers(dest="part", required=True)
    trainer = parts.add_parser("train")
    trainer.add_argument("--out", type=Path, required=True)
    trainer.add_argument("--steps", type=int, default=3000)
    trainer.add_argument("--learning-rate", type=float, default=3e-3)
    trainer.add_argument("--batch-size", type=int, default=16)
    trainer.add_argument("--layers", type=int, default=4, help="decoder blocks (demo preset: 2)")
    trainer.add_argument("--tie", action="store_true", help="tie input and output embeddings")
    trainer.add_argument("--conditioning", default="formula", choices=text.CONDITIONINGS)
    trainer.add_argument("--init", type=Path, default=None, help="start from these weights")
    trainer.add_argument("--save-every", type=int, default=500)
    trainer.add_argument("--threads", type=int, default=2)
    evaluator = parts.add_parser("evaluate")
    evaluator.add_argument("models", type=Path, nargs="+")
    evaluator.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train(args) if args.part == "train" else evaluate(args)


if __name__ == "__main__":
    main()
