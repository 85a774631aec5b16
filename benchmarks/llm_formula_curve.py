"""Learning curves of formula following for small scratch LLMs, one model per process.

The CPU runs of ``llm_formula.py`` showed that a demo-sized model trained from scratch needs
many thousands of steps to write the composition its prompt asks for. This script measures the
curve far enough out to see where it reaches the issue's 50%, for one architecture and recipe
per process, so that a GPU call can run several side by side.

Training is a plain loop with the kit's training texts (``render_training_text``: prompts,
translation augmentation redrawn every pass), the kit's collation (loss over prompt and crystal
tokens), AdamW with the Trainer's defaults (betas 0.9/0.999, eps 1e-8, no weight decay,
gradients clipped at norm 1), linear warmup then cosine decay, bf16 autocast on a GPU. It is the
kit's ``finetune`` objective without the Trainer's per-step host work. The cosine runs over
``--max-steps``, or else over a step count fitted to the wall-time budget from the rate of
steps 100 to 600.

At steps 500, 1,000, 2,000, 3,000, 4,000, 6,000, 8,000, 12,000, ... and at the end, one
answer per held-out MP-20 test formula (128 of them, tau 0.7, P 0.9) is compared with its
target (:func:`flowllm_kit.llm.composition_agreement`), and 64 unconditional draws are
parsed. Each evaluation is written to ``OUT/curve_NAME.jsonl`` as it lands.

Usage (MP-20 crystals as JSON lines, from ``bench_gpu.py prepare``)::

    python benchmarks/llm_formula_curve.py --name base --data .gpu --out OUT --seconds 400 \
        --width 128 --layers 4 --heads 4 --batch 16 --lr 3e-3
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from flowllm_kit import llm, text
from flowllm_kit.crystal.io import read_crystals
from flowllm_kit.llm.finetune import _collate

MILESTONES = (500, 1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 24000, 32000, 48000)


def evaluate(model, tokenizer, targets, *, tiny: bool) -> dict:  # noqa: ANN001
    """Composition agreement of formula-prompted answers and the unconditional parse rate."""
    model.eval()
    config = llm.LLMSamplingConfig(
        temperature=0.7, top_p=0.9, batch_size=128, max_new_tokens=64 if tiny else 448,
        cache="dynamic",
    )  # fmt: skip
    prompts = [text.formula_prompt(c) for c in targets]
    answered = llm.sample_crystals(
        model, tokenizer, num_crystals=len(prompts), prompts=prompts, config=config,
        max_draws=len(prompts), progress_bar=False, seed=1,
    )  # fmt: skip
    row: dict = {"asked": len(prompts), "parsed": len(answered.crystals)}
    if answered.crystals:
        agreement = llm.composition_agreement(
            answered.crystals, [targets[d] for d in answered.draws]
        )
        for key in ("exact", "reduced", "elements"):
            row[key] = round(getattr(agreement, key) * agreement.count)
    free = llm.sample_crystals(
        model, tokenizer, num_crystals=64, config=config, max_draws=64, progress_bar=False, seed=2
    )
    row["unconditional_parsed"] = len(free.crystals)
    row["unconditional_rejections"] = dict(free.rejections)
    model.train()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=400, help="training and evaluation")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--untied", action="store_true")
    parser.add_argument("--conditioning", default="formula", choices=text.CONDITIONINGS)
    parser.add_argument("--max-steps", type=int, default=None, help="cap on the planned steps")
    parser.add_argument(
        "--milestones", default=None, help="comma-separated evaluation steps (default: MILESTONES)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weights, data order, augmentation")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast on a GPU")
    parser.add_argument(
        "--trainer", action="store_true",
        help="train with the kit's finetune (the transformers Trainer) instead of the plain loop",
    )  # fmt: skip
    parser.add_argument("--group-by-length", action="store_true", help="with --trainer")
    parser.add_argument("--save", action="store_true", help="save the model into OUT")
    parser.add_argument(
        "--init",
        type=Path,
        help="continue from a saved model folder (its weights and tokenizer; --width, --layers, "
        "--heads and --untied are then ignored), e.g. a shipped checkpoint's llm/model",
    )
    parser.add_argument(
        "--formula-probability", type=float, default=0.5, help="share of formula prompts"
    )
    parser.add_argument("--tiny", action="store_true", help="CPU check of the script")
    args = parser.parse_args()
    start = time.perf_counter()
    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    train = read_crystals(args.data / "mp20_val.jsonl")
    test = read_crystals(args.data / "mp20_test.jsonl")
    rng = np.random.default_rng(0)
    targets = [test[i] for i in rng.choice(len(test), 16 if args.tiny else 128, replace=False)]
    if args.tiny:
        train = train[:256]

    tokenizer = text.build_tokenizer()
    scratch = llm.ScratchModelConfig(
        hidden_size=args.width, num_layers=args.layers, num_heads=args.heads,
        intermediate_size=4 * args.width, tie_word_embeddings=not args.untied,
    )  # fmt: skip
    if args.init is not None:
        model, tokenizer = llm.load_model(args.init)
        model = model.to(device).train()
    else:
        model = llm.scratch_model(tokenizer, config=scratch, seed=args.seed).to(device).train()
    bf16 = device == "cuda" and not args.fp32  # autocast in the plain loop
    warmup = 50
    planned = args.max_steps or 10**9

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, planned - warmup))
        return args.lr * 0.5 * (1 + math.cos(math.pi * progress))

    record = {
        "name": args.name, "width": args.width, "layers": args.layers, "heads": args.heads,
        "batch": args.batch, "lr": args.lr, "tied": not args.untied, "seed": args.seed,
        "loop": "trainer" if args.trainer else "plain", "group_by_length": args.group_by_length,
        "bf16": bf16,
        "conditioning": args.conditioning, "parameters": llm.count_parameters(model),
        "init": None if args.init is None else str(args.init),
        "formula_probability": args.formula_probability,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / f"curve_{args.name}.jsonl").open("w")

    def write(row: dict) -> None:
        log.write(json.dumps(record | row) + "\n")
        log.flush()
        print(args.name, json.dumps(row), flush=True)

    milestones = [m for m in MILESTONES if not args.tiny] or [20, 40]
    if args.milestones:
        milestones = [int(m) for m in args.milestones.split(",")]
    if args.trainer:
        train_with_trainer(args, model, tokenizer, train, targets, scratch, milestones, write)
        return
    finetune = llm.FinetuneConfig(
        conditioning=args.conditioning, formula_probability=args.formula_probability
    )
    dataset = llm.TextDataset(
        train, tokenizer, render=llm.render_training_text(finetune, tokenizer), max_length=1024,
        seed=args.seed,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, weight_decay=0.0, fused=device == "cuda"
    )
    if args.init is not None:  # where the continued model starts
        write({"step": 0, "passes": 0.0, "train_seconds": 0.0, "seconds": 0.0, "lr": 0.0}
              | evaluate(model, tokenizer, targets, tiny=args.tiny))  # fmt: skip
        model.train()
    step, epoch, losses, train_seconds = 0, 0, [], 0.0
    done = False
    while not done:
        dataset.epoch = epoch
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=args.batch, shuffle=True,
            collate_fn=_collate(tokenizer.pad_token_id), num_workers=2, drop_last=True,
            generator=torch.Generator().manual_seed(1000 * args.seed + epoch),
        )  # fmt: skip
        for batch in loader:
            tick = time.perf_counter()
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            step += 1
            if step % 100 == 0:
                losses = [torch.stack(losses).mean()]
            train_seconds += time.perf_counter() - tick
            if step == 100:
                probe_start = train_seconds  # after start-up and the first loader workers
            if step == 600 and not args.max_steps:
                # Fit the cosine to the time left: training at the rate of steps 100-600,
                # plus ~15 s per evaluation to come.
                rate = 500 / (train_seconds - probe_start)
                left = args.seconds - (time.perf_counter() - start) - 15 * 6
                planned = step + int(0.85 * rate * max(left, 0))
                record["planned_steps"] = planned
            elapsed = time.perf_counter() - start
            last = step >= planned or elapsed > args.seconds - 20
            if step in milestones or last:
                row = {
                    "step": step, "passes": round(step * args.batch / len(train), 2),
                    "train_seconds": round(train_seconds, 1), "seconds": round(elapsed, 1),
                    "lr": lr_at(step), "train_loss": round(float(losses[-1]), 4),
                }  # fmt: skip
                row |= evaluate(model, tokenizer, targets, tiny=args.tiny)
                write(row)
            if last:
                done = True
                break
        epoch += 1
    if args.save:
        model.save_pretrained(args.out / f"model_{args.name}", safe_serialization=True)


def train_with_trainer(args, model, tokenizer, train, targets, scratch, milestones, write):  # noqa: ANN001
    """The same curve through :func:`flowllm_kit.llm.finetune`, as notebook 03 trains: the
    Trainer's optimizer, schedule, data order (length-grouped if asked) and precision."""
    from transformers import TrainerCallback

    if not args.max_steps:
        raise SystemExit("--trainer needs --max-steps")
    start = time.perf_counter()
    config = llm.LLMConfig(
        scratch=scratch,
        finetune=llm.FinetuneConfig(
            max_steps=args.max_steps, batch_size=args.batch, learning_rate=args.lr,
            warmup_steps=50, save_steps=10**9, logging_steps=50, seed=args.seed,
            group_by_length=args.group_by_length, conditioning=args.conditioning,
            precision="fp32" if args.fp32 else "auto",
        ),
    )  # fmt: skip
    losses: list[float] = []

    class Curve(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN202
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

        def on_step_end(self, _args, state, control, **kwargs):  # noqa: ANN001, ANN202
            elapsed = time.perf_counter() - start
            step = state.global_step
            last = step >= args.max_steps or elapsed > args.seconds - 20
            if step in milestones or last:
                row = {
                    "step": step, "passes": round(step * args.batch / len(train), 2),
                    "seconds": round(elapsed, 1), "train_loss": losses[-1] if losses else None,
                }  # fmt: skip
                write(row | evaluate(model, tokenizer, targets, tiny=args.tiny))
            if last:
                control.should_training_stop = True

    run_dir = Path("/tmp") / f"curve_run_{args.name}"
    llm.finetune(
        model, tokenizer, train, run_dir=run_dir, config=config, callbacks=[Curve()],
        progress_bar=False,
    )  # fmt: skip
    if args.save:
        model.save_pretrained(args.out / f"model_{args.name}", safe_serialization=True)


if __name__ == "__main__":
    main()
