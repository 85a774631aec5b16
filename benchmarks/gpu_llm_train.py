"""The ``llm-train`` part of the GPU checks (benchmarks/bench_gpu.py): a scratch LLM trained for
a fixed wall time, then its formula following, parse rate and perplexity."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_common import device_lines, seconds_of, write  # noqa: E402

from flowllm_kit.crystal.io import read_crystals  # noqa: E402


# --- llm-train -------------------------------------------------------------------------------
def llm_train_part(args: argparse.Namespace) -> None:
    from transformers import TrainerCallback

    from flowllm_kit import llm, text

    device = "cuda" if torch.cuda.is_available() else "cpu"
    train = read_crystals(args.data / "mp20_val.jsonl")
    test = read_crystals(args.data / "mp20_test.jsonl")
    rng = np.random.default_rng(0)
    held_out = [test[i] for i in rng.choice(len(test), 512, replace=False)]
    preset = "smoke" if args.tiny else args.scratch
    scratch = dataclasses.replace(llm.SCRATCH_PRESETS[preset], tie_word_embeddings=args.tie)
    batch_size = 8 if args.tiny else 64
    if args.tiny:
        train = train[:64]
    tokenizer = text.build_tokenizer()
    model = llm.scratch_model(tokenizer, config=scratch, seed=0)
    parameters = llm.count_parameters(model)

    # Probe a step's time on real batches, then size max_steps (and so the cosine schedule)
    # to fit the wall-time budget.
    probe = llm.TextDataset(
        train,
        tokenizer,
        render=llm.render_training_text(llm.FinetuneConfig(), tokenizer),
        max_length=1024,
    )
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = [probe[i]["input_ids"] for i in range(batch_size)]
    length = max(map(len, ids))
    batch = torch.full((batch_size, length), tokenizer.pad_token_id)
    for row, x in enumerate(ids):
        batch[row, : len(x)] = torch.tensor(x)
    batch = batch.to(device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    probe_seconds = seconds_of(step, repeats=5, warmup=2)
    model = llm.scratch_model(tokenizer, config=scratch, seed=0)  # fresh weights
    # Trainer overhead (collation, logging, length grouping) on top of the bare step.
    max_steps = args.max_steps or max(20, int(args.seconds / (probe_seconds * 1.25)))
    config = llm.LLMConfig(
        scratch=scratch,
        finetune=llm.FinetuneConfig(
            max_steps=max_steps,
            batch_size=batch_size,
            learning_rate=6e-4,
            warmup_steps=100,
            eval_steps=10**9,
            save_steps=10**9,
            logging_steps=50,
            max_eval_crystals=256,
            group_by_length=True,
            conditioning=args.conditioning,
        ),
    )

    class WallClock(TrainerCallback):
        """Stops training once 1.2x the budget has passed (a safety net only)."""

        def __init__(self) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
            if time.perf_counter() - self.start > 1.2 * args_budget:
                control.should_training_stop = True
            return control

    args_budget = args.seconds
    start = time.perf_counter()
    result = llm.finetune(
        model,
        tokenizer,
        train,
        run_dir=args.run_dir,
        config=config,
        eval=held_out[:256],
        callbacks=[WallClock()],
        progress_bar=False,
    )
    train_seconds = time.perf_counter() - start
    model = model.to(device).eval()

    numbers = {
        "parameters": parameters,
        "probe_step_seconds": probe_seconds,
        "max_steps": max_steps,
        "steps_done": result.global_step,
        "train_seconds": train_seconds,
        "train_loss": result.train_loss,
        "eval_loss": result.eval_loss,
        "log": [r for r in result.log_history if "loss" in r or "eval_loss" in r],
    }
    lines = [
        "## A larger scratch LLM trained on the GPU",
        "",
        *device_lines(),
        f"- model: `{preset}` scratch preset, {parameters / 1e6:.1f} M parameters, "
        f"embeddings {'tied' if args.tie else 'untied'}; trained on MP-20 val ({len(train):,} "
        f"crystals, conditioning `{args.conditioning}`), batch "
        f"{batch_size}, lr 6e-4 cosine over {max_steps} steps, bf16 where supported",
        f"- {result.global_step} steps ({result.global_step * batch_size / len(train):.1f} "
        f"passes) in {train_seconds:.0f} s; train loss {result.train_loss:.3f}, eval loss "
        f"{result.eval_loss:.3f} (256 MP-20 test crystals)",
    ]
    write(args.out, "llm_train", lines, numbers)  # each measurement is kept as it lands
    sampling = llm.LLMSamplingConfig(batch_size=256, max_new_tokens=448)

    targets = held_out[:256] if not args.tiny else held_out[:16]
    prompts = [text.formula_prompt(c) for c in targets]
    pair_sampling = dataclasses.replace(sampling, temperature=0.9, top_p=0.99)
    conditioned = llm.sample_crystals(
        model,
        tokenizer,
        num_crystals=len(targets),
        prompts=prompts,
        config=pair_sampling,
        max_draws=len(targets),
        progress_bar=False,
        seed=2,
    )
    requested = [targets[d % len(targets)] for d in conditioned.draws]
    # None when nothing parsed: no rate to give, rather than a 0% of nothing.
    agreement = llm.composition_agreement(conditioned.crystals, requested) if requested else None
    matched = round(agreement.exact * agreement.count) if agreement else 0
    training_formulas = {c.formula for c in train}
    numbers.update(
        conditioned_draws=conditioned.num_draws,
        conditioned_parsed=len(conditioned.crystals),
        composition_matches=matched,
        composition_match_of_draws=matched / conditioned.num_draws,
        held_out_formulas_in_training=sum(t.formula in training_formulas for t in targets),
        conditioned_seconds=conditioned.seconds,
        agreement_of_parsed=dataclasses.asdict(agreement) if agreement else None,
    )
    lines.append(
        f"- formula-conditioned on {len(targets)} held-out MP-20 test formulas "
        f"({numbers['held_out_formulas_in_training']} of them also occur in MP-20 val), tau "
        f"0.9, P 0.99, one draw each: {len(conditioned.crystals)} parsed, **{matched} "
        f"({matched / conditioned.num_draws:.1%} of draws) with exactly the requested "
        f"composition**"
        + (
            f"; of the parsed, {agreement.reduced:.1%} have the requested reduced formula and "
            f"{agreement.elements:.1%} its elements"
            if agreement
            else ""
        )
    )
    write(args.out, "llm_train", lines, numbers)
    samples = args.out / "llm_train_samples.jsonl"
    samples.unlink(missing_ok=True)
    with samples.open("w") as handle:
        for c, t in zip(conditioned.crystals, requested, strict=True):
            handle.write(json.dumps({"requested": t.formula, "written": c.formula}) + "\n")

    n = 32 if args.tiny else 256
    free = llm.sample_crystals(
        model, tokenizer, num_crystals=n, config=sampling, max_draws=n, progress_bar=False, seed=1
    )
    numbers.update(
        unconditional_parse_rate=free.acceptance_rate,
        unconditional_draws=free.num_draws,
        unconditional_rejections=dict(free.rejections),
        unconditional_tokens_per_s=free.tokens_per_second,
        unconditional_crystals_per_s=free.crystals_per_second,
        mean_atoms_unconditional=float(np.mean([c.num_atoms for c in free.crystals])),
    )
    lines.append(
        f"- unconditional, tau 0.7, P 0.9: {len(free.crystals)} of {free.num_draws} draws "
        f"parsed ({free.acceptance_rate:.1%}); rejections {dict(free.rejections)}; "
        f"{free.tokens_per_second:,.0f} tokens/s, {free.crystals_per_second:.1f} crystals/s "
        f"(batch 256, static cache)"
    )
    write(args.out, "llm_train", lines, numbers)

    # The same draws with continuous batching (not measured on a GPU before), rows as above.
    streamed = llm.sample_crystals(
        model, tokenizer, num_crystals=n, config=dataclasses.replace(sampling, continuous=True),
        max_draws=n, progress_bar=False, seed=1,
    )  # fmt: skip
    numbers.update(
        continuous_crystals_per_s=streamed.crystals_per_second,
        continuous_parse_rate=streamed.acceptance_rate,
    )
    lines.append(
        f"- the same with continuous batching (256 rows): {streamed.crystals_per_second:.1f} "
        f"crystals/s ({streamed.acceptance_rate:.1%} parsed)"
    )
    write(args.out, "llm_train", lines, numbers)

    texts = [text.encode(c) for c in held_out]
    ppl = text.perplexity(texts, model=model, tokenizer=tokenizer, batch_size=64)
    numbers.update(
        test_perplexity_median=float(np.median(ppl)), test_perplexity_mean=float(np.mean(ppl))
    )
    lines.append(
        f"- perplexity of 512 MP-20 test texts (unconditional prompt): median "
        f"{np.median(ppl):.2f}, mean {np.mean(ppl):.2f}"
    )
    write(args.out, "llm_train", lines, numbers)
