"""The kit's GPU checks, prepared to run as one short call on a lent GPU machine.

Three parts, each writing a markdown section (and JSON numbers) into ``--out``:

- ``flow``: the velocity network on the GPU. A plain matmul's FLOP/s (fp32, TF32, bf16) as the
  ceiling; forward crystal·steps/s of each preset, of the paper preset under TF32 and bf16, and
  of the reference-style dense forward (benchmarks/bench_flow.py) with the same weights,
  checked to agree; **10,000 MP-20-sized crystals (atom counts drawn from MP-20 test)
  integrated over 250 Euler steps** with the paper preset, timed end to end; training steps/s.
- ``llm-train``: a scratch preset (``--scratch``, default ``gpu``: about 85 M parameters;
  ``--tie`` ties its embeddings) trained for a fixed wall time (or ``--max-steps``) on MP-20 val
  with the kit's ``finetune`` (``--conditioning``, default ``formula``: the formula alone or
  nothing); then how often a held-out MP-20 test formula is answered with exactly that
  composition, its reduced formula or its elements (no constrained decoding), the
  parse rate of unconditional samples and the perplexity of MP-20 test texts, each written as
  soon as it is measured.
- ``llm-speed``: the demo-sized LLM (random weights, end of sequence masked so that every row
  generates the same tokens) sampled by plain ``model.generate`` (dynamic cache) and by the
  kit's ``generate_texts`` (static cache, which transformers compiles on a GPU), at batch
  sizes 1, 16, 64 and 256.

``prepare`` runs here (it needs pymatgen): it writes MP-20 val and test crystals as JSON lines
into a folder that the GPU call carries, since the data folder does not travel.

Usage::

    python benchmarks/bench_gpu.py prepare .gpu
    python benchmarks/bench_gpu.py flow --data .gpu --out OUT
    python benchmarks/bench_gpu.py llm-train --data .gpu --out OUT --seconds 150
    python benchmarks/bench_gpu.py llm-speed --out OUT

Every part also runs on a CPU with ``--tiny`` (small sizes), which is how it is checked before
a GPU call; numbers from such a run mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flowllm_kit.crystal import CrystalBatch  # noqa: E402
from flowllm_kit.crystal.io import read_crystals, write_crystals  # noqa: E402


def device_lines() -> list[str]:
    import transformers

    lines = [
        f"- host: {platform.node()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    ]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(
            f"- GPU: {props.name}, {props.multi_processor_count} SMs, "
            f"{props.total_memory / 2**30:.0f} GiB"
        )
    else:
        lines.append("- no GPU: CPU run (numbers are not GPU numbers)")
    return lines


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds_of(fn, *, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``repeats`` calls, the device synchronized around each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def write(out: Path, name: str, lines: list[str], numbers: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{name}.json").write_text(json.dumps(numbers, indent=2, default=float))
    print("\n".join(lines), flush=True)


# --- prepare ---------------------------------------------------------------------------------
def prepare(folder: Path) -> None:
    from flowllm_kit.data import load_dataset

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("val", "test"):
        path = folder / f"mp20_{split}.jsonl"
        path.unlink(missing_ok=True)
        write_crystals(load_dataset("mp_20", split, progress=False), path)
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")


# --- flow ------------------------------------------------------------------------------------
def matmul_rate(dtype: torch.dtype, device: torch.device, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / seconds_of(lambda: a @ b, repeats=5)


def flow_part(args: argparse.Namespace) -> None:
    from bench_flow import bf16_forward, count_flops, random_crystals, reference_style_forward

    from flowllm_kit.flow import (
        FlowSamplerConfig,
        FlowTrainer,
        PairedBase,
        TrainConfig,
        VelocityNetwork,
        sample_in_chunks,
    )

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    test = read_crystals(args.data / "mp20_test.jsonl")
    counts = np.array([c.num_atoms for c in test])
    numbers: dict = {"mean_atoms": counts.mean(), "mean_squared_atoms": (counts**2).mean()}
    lines = ["## Flow stage on the GPU", "", *device_lines()]
    lines.append(
        f"- atom counts drawn from MP-20 test ({len(counts)} crystals, mean "
        f"{counts.mean():.1f}, mean square {(counts**2).mean():.0f} edges per crystal)"
    )

    n = 1024 if args.tiny else 8192
    torch.backends.cuda.matmul.allow_tf32 = False
    ceilings = {"fp32": matmul_rate(torch.float32, device, n)}
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        ceilings["tf32"] = matmul_rate(torch.float32, device, n)
        torch.backends.cuda.matmul.allow_tf32 = False
    ceilings["bf16"] = matmul_rate(torch.bfloat16, device, n)
    numbers["matmul_tflops"] = {k: v / 1e12 for k, v in ceilings.items()}
    lines.append(
        f"- plain matmul {n}x{n}x{n}: "
        + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in ceilings.items())
    )

    # Forward passes: one ODE step for a batch of crystals.
    lines += [
        "",
        "### Forward pass (one ODE step)",
        "",
        "| preset | batch | implementation | crystal·steps/s | GFLOP per crystal·step "
        "| TFLOP/s | of the matching matmul |",
        "|---|---|---|---|---|---|---|",
    ]
    numbers["forward"] = {}
    batch_of = {"smoke": 4096, "demo": 4096, "paper": 2048}
    if args.tiny:
        batch_of = {"smoke": 16, "demo": 16, "paper": 4}
    for name, size in batch_of.items():
        net = VelocityNetwork.from_preset(name).to(device).eval()
        batch = CrystalBatch.from_crystals(random_crystals(counts, size, seed=1)).to(device)
        t = torch.rand(size, device=device)
        variants = {"kit, fp32": ("fp32", partial(net, batch, t))}
        if name == "paper":
            small = CrystalBatch.from_crystals(random_crystals(counts, 64, seed=2)).to(device)
            t_small = torch.rand(64, device=device)
            with torch.inference_mode():
                for a, b in zip(
                    net(small, t_small), reference_style_forward(net, small, t_small), strict=True
                ):
                    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
            if device.type == "cuda":
                variants["kit, TF32"] = ("tf32", partial(net, batch, t))
            variants["kit, bf16 autocast"] = ("bf16", partial(bf16_forward, net, batch, t))
            dense_size = size // 4
            dense_batch = CrystalBatch.from_crystals(
                random_crystals(counts, dense_size, seed=1)
            ).to(device)
            t_dense = torch.rand(dense_size, device=device)
            variants["reference-style dense, fp32"] = (
                "fp32",
                partial(reference_style_forward, net, dense_batch, t_dense),
            )
            if device.type == "cuda":
                variants["reference-style dense, TF32"] = (
                    "tf32",
                    partial(reference_style_forward, net, dense_batch, t_dense),
                )
        for label, (precision, fn) in variants.items():
            crystals = dense_size if label.startswith("reference") else size
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            with torch.inference_mode():
                seconds = seconds_of(fn, repeats=5)
                flops = count_flops(fn)
            torch.backends.cuda.matmul.allow_tf32 = False
            rate = crystals / seconds
            numbers["forward"][f"{name}, {label}"] = rate
            lines.append(
                f"| {name} | {crystals} | {label} | {rate:,.0f} | {flops / crystals / 1e9:.3f} | "
                f"{flops / seconds / 1e12:.1f} | {flops / seconds / ceilings[precision]:.0%} |"
            )
        write(args.out, "flow", lines, numbers)
    forward = numbers["forward"]
    if device.type == "cuda":
        lines.append("")
        dense = forward["paper, reference-style dense, fp32"]
        dense_tf32 = forward["paper, reference-style dense, TF32"]
        lines.append(
            "Paper preset, kit vs reference-style dense on this GPU: "
            f"{forward['paper, kit, fp32'] / dense:.2f}x (fp32), "
            f"{forward['paper, kit, TF32'] / dense_tf32:.2f}x (TF32 both), "
            f"{forward['paper, kit, bf16 autocast'] / dense_tf32:.2f}x (kit bf16 vs dense TF32)."
        )

    # The goal: 10,000 MP-20-sized crystals, 250 Euler steps, paper preset.
    net = VelocityNetwork.from_preset("paper").to(device).eval()
    total, steps = (64, 10) if args.tiny else (10_000, 250)
    starts = random_crystals(counts, total, seed=3)
    lines += [
        "",
        f"### {total:,} crystals x {steps} Euler steps, paper preset (untrained weights)",
        "",
        "| precision | crystals per solve | wall s (incl. batching, host copies) "
        "| crystals/s | crystal·steps/s |",
        "|---|---|---|---|---|",
    ]
    numbers["generate"] = {}
    runs = [("bfloat16", False, total), ("bfloat16", False, total // 4), ("float32", True, total)]
    for precision, tf32, chunk in runs:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        config = FlowSamplerConfig(num_steps=steps, precision=precision)
        # Warm up kernels and the allocator on a short solve first.
        list(
            sample_in_chunks(
                net, starts[:256], batch_size=256, config=dataclasses.replace(config, num_steps=2)
            )
        )
        sync()
        start = time.perf_counter()
        made = [
            c
            for part in sample_in_chunks(net, starts, batch_size=chunk, config=config)
            for c in part
        ]
        sync()
        wall = time.perf_counter() - start
        torch.backends.cuda.matmul.allow_tf32 = False
        assert len(made) == total
        label = "bf16 autocast" if precision == "bfloat16" else ("TF32" if tf32 else "fp32")
        numbers["generate"][f"{label}, chunk {chunk}"] = wall
        lines.append(
            f"| {label} | {chunk:,} | {wall:.1f} | {total / wall:,.0f} | "
            f"{total * steps / wall:,.0f} |"
        )
        write(args.out, "flow", lines, numbers)  # what is done survives a time limit
        if device.type == "cuda":
            numbers["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if device.type == "cuda":
        lines.append(f"\nPeak GPU memory: {numbers['peak_memory_gib']:.1f} GiB.")

    # Training steps (AdamW, path sampling and host-side collation included).
    lines += [
        "",
        "### Training step (batch 256; collation on the host included)",
        "",
        "| preset | precision | steps/s | s per step |",
        "|---|---|---|---|",
    ]
    numbers["train"] = {}
    size = 16 if args.tiny else 256
    rng = np.random.default_rng(4)
    targets = random_crystals(counts, size, seed=4)
    pairs = [(c.replace(frac_coords=rng.random((c.num_atoms, 3))), c) for c in targets]
    for name in ("smoke", "demo", "paper"):
        for precision in ("float32", "bfloat16"):
            config = TrainConfig(
                batch_size=size,
                max_steps=100,
                progress=False,
                device=device.type,
                val_every=0,
                precision=precision,
            )
            trainer = FlowTrainer(
                VelocityNetwork.from_preset(name), pairs, base=PairedBase(), config=config
            )
            seconds = seconds_of(trainer.train_step, repeats=3 if args.tiny else 10, warmup=2)
            numbers["train"][f"{name}, {precision}"] = 1 / seconds
            lines.append(f"| {name} | {precision} | {1 / seconds:.1f} | {seconds:.3f} |")
    write(args.out, "flow", lines, numbers)


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


# --- llm-speed -------------------------------------------------------------------------------
def llm_speed_part(args: argparse.Namespace) -> None:
    from bench_llm_sampling import mask_end_of_sequence

    from flowllm_kit import llm, text

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = text.build_tokenizer()
    model = llm.scratch_model(tokenizer, config="demo", seed=0).eval()
    model = mask_end_of_sequence(model, tokenizer).to(device)  # no row ever ends early
    new_tokens = 16 if args.tiny else 128
    config = llm.LLMSamplingConfig(max_new_tokens=new_tokens)
    prompt = text.generation_prompt()
    lines = [
        "## LLM sampling speed on the GPU (demo-sized model, random weights)",
        "",
        *device_lines(),
        f"- {llm.count_parameters(model):,} parameters; {new_tokens} new tokens per row; "
        "nucleus sampling tau 0.7, P 0.9; median of 3 runs after a warm-up call (the first "
        "call's time, compilation included, is listed separately)",
        "",
        "| batch | plain generate tok/s | kit (static cache) tok/s | speed-up | kit first call s "
        "| static, compile off tok/s |",
        "|---|---|---|---|---|---|",
    ]
    numbers: dict = {}
    for batch_size in (1, 16) if args.tiny else (64, 1, 16, 256):
        inputs = tokenizer([prompt] * batch_size, return_tensors="pt").to(device)

        def plain(inputs=inputs, **options) -> None:  # noqa: ANN001, ANN003
            with torch.inference_mode():
                model.generate(
                    **inputs,
                    do_sample=True,
                    temperature=0.7,
                    top_p=0.9,
                    top_k=0,
                    max_new_tokens=new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    **options,
                )

        static_eager = partial(plain, cache_implementation="static", disable_compile=True)

        def kit(batch_size=batch_size) -> None:  # noqa: ANN001
            _, tokens = llm.generate_texts(model, tokenizer, [prompt] * batch_size, config=config)
            assert tokens == batch_size * new_tokens, tokens

        sync()
        start = time.perf_counter()
        kit()
        sync()
        first = time.perf_counter() - start
        total = batch_size * new_tokens
        rates = {
            name: total / seconds_of(fn, repeats=3)
            for name, fn in (("plain", plain), ("kit", kit), ("static_eager", static_eager))
        }
        numbers[batch_size] = {**rates, "kit_first_call_s": first}
        lines.append(
            f"| {batch_size} | {rates['plain']:,.0f} | {rates['kit']:,.0f} | "
            f"{rates['kit'] / rates['plain']:.2f}x | {first:.1f} | {rates['static_eager']:,.0f} |"
        )
        write(args.out, "llm_speed", lines, numbers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["prepare", "flow", "llm-train", "llm-speed"])
    parser.add_argument("folder", nargs="?", type=Path, help="prepare: where to write")
    parser.add_argument("--data", type=Path, default=Path(".gpu"))
    parser.add_argument("--out", type=Path, default=Path("gpu_out"))
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/gpu_llm_run"))
    parser.add_argument("--seconds", type=float, default=150.0, help="llm-train wall budget")
    parser.add_argument("--max-steps", type=int, default=None, help="llm-train: fixed steps")
    parser.add_argument("--tiny", action="store_true", help="small sizes, to check on a CPU")
    parser.add_argument("--scratch", default="gpu", help="llm-train: scratch model preset")
    parser.add_argument("--tie", action="store_true", help="llm-train: tie the embeddings")
    parser.add_argument(
        "--conditioning", default="formula", help="llm-train: prompts of the training texts"
    )
    args = parser.parse_args()
    if args.part == "prepare":
        prepare(args.folder or args.data)
    elif args.part == "flow":
        flow_part(args)
    elif args.part == "llm-train":
        llm_train_part(args)
    else:
        llm_speed_part(args)


if __name__ == "__main__":
    main()
