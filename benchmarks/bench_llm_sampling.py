"""Sampling speed of the demo-sized LLM on this machine: the kit's sampler vs plain generate.

For batch sizes 1, 16 and 64, the same model completes the unconditional prompt with
nucleus sampling (tau 0.7, P 0.9) for a fixed number of new tokens, once through a plain
``model.generate(...)`` call (transformers' defaults: dynamic KV cache) and once through
:func:`flowllm_kit.llm.generate_texts` (static KV cache, EOS-aware token counting). A random
model never stops on its own, so end of sequence is masked out (bias -1e4) and every row
generates exactly ``--new-tokens`` tokens. Each rate is the best of ``--repeats`` interleaved
runs (on a shared CPU, other processes only ever slow a run down); crystals/s is then
estimated as tokens/s divided by the mean token length of real MP-20 completions (crystal
text + end of sequence).

With ``--model <run>/llm/model`` the script also draws real crystals from a trained model with
:func:`flowllm_kit.llm.sample_crystals` at each batch size, in batches (dynamic cache, as a
plain ``generate`` call; static cache, the kit's default) and with continuous batching
(``LLMSamplingConfig(continuous=True)``), and reports measured crystals/s.

Usage::

    python benchmarks/bench_llm_sampling.py [--new-tokens 128] [--batch-sizes 1 16 64]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch
from machine import data_root  # benchmarks/machine.py

from flowllm_kit import llm, text
from flowllm_kit.crystal import Crystal


def mean_completion_tokens(tokenizer, limit: int = 60) -> float:
    """Mean tokens of crystal text + end of sequence over some MP-20 crystals."""
    from pymatgen.core import Structure

    csv.field_size_limit(1 << 27)
    with (data_root() / "mp_20_subset" / "val.csv").open() as handle:
        rows = [row for _, row in zip(range(limit), csv.DictReader(handle), strict=False)]
    lengths = []
    for row in rows:
        crystal = Crystal.from_structure(Structure.from_str(row["cif"], fmt="cif"))
        lengths.append(
            len(tokenizer(text.encode(crystal), add_special_tokens=False)["input_ids"]) + 1
        )
    return sum(lengths) / len(lengths)


def mask_end_of_sequence(model, tokenizer):  # noqa: ANN001, ANN201
    """``model`` with an output bias of -1e4 on end of sequence: the same matmul, but no row
    ever stops early, so every row generates exactly ``max_new_tokens``."""
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tokenizer.eos_token_id] = -1e4
    model.lm_head = head.to(model.lm_head.weight.device)
    return model


def time_call(call) -> float:  # noqa: ANN001
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many, interleaved")
    parser.add_argument("--model", type=Path, default=None, help="trained model folder")
    parser.add_argument("--num-crystals", type=int, default=128, help="per --model run")
    parser.add_argument("--skip-random", action="store_true", help="only the --model runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tokenizer = text.build_tokenizer()
    model = llm.scratch_model(tokenizer, config="demo", seed=0).eval()
    model = mask_end_of_sequence(model, tokenizer)
    tokens_per_crystal = mean_completion_tokens(tokenizer)
    prompt = text.generation_prompt()
    config = llm.LLMSamplingConfig(max_new_tokens=args.new_tokens)
    print(f"# demo model: {llm.count_parameters(model):,} parameters, {platform.processor()}")
    print(f"# {args.threads} threads, {args.new_tokens} new tokens per row, "
          f"MP-20 completion: {tokens_per_crystal:.0f} tokens on average")  # fmt: skip
    print("| batch | plain generate tok/s | kit tok/s | speed-up | plain crystals/s (est.) "
          "| kit crystals/s (est.) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for batch_size in [] if args.skip_random else args.batch_sizes:
        inputs = tokenizer([prompt] * batch_size, return_tensors="pt")

        def plain(inputs=inputs) -> None:  # noqa: ANN001
            with torch.inference_mode():
                model.generate(
                    **inputs, do_sample=True, temperature=0.7, top_p=0.9,
                    max_new_tokens=args.new_tokens, pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip

        def kit(batch_size=batch_size) -> None:  # noqa: ANN001
            texts, tokens = llm.generate_texts(
                model, tokenizer, [prompt] * batch_size, config=config
            )
            assert tokens == batch_size * args.new_tokens

        llm.generate_texts(model, tokenizer, [prompt], config=config.__class__(max_new_tokens=4))
        total = batch_size * args.new_tokens
        # Interleaved repeats, best of each: other processes on a shared CPU only slow runs down.
        plain_seconds, kit_seconds = [], []
        for _ in range(args.repeats):
            plain_seconds.append(time_call(plain))
            kit_seconds.append(time_call(kit))
        plain_rate = total / min(plain_seconds)
        kit_rate = total / min(kit_seconds)
        print(
            f"| {batch_size} | {plain_rate:,.0f} | {kit_rate:,.0f} | {kit_rate / plain_rate:.2f}x "
            f"| {plain_rate / tokens_per_crystal:.1f} | {kit_rate / tokens_per_crystal:.1f} |",
            flush=True,
        )
    if args.model is not None:
        trained, trained_tokenizer = llm.load_model(args.model)
        run_config = args.model.parent / "llm_config.json"  # <run>/llm/: its sampling settings
        sampling = (
            llm.LLMConfig.from_dict(json.loads(run_config.read_text())).sampling
            if run_config.is_file()
            else llm.LLMSamplingConfig()
        )
        print(f"\nsampling settings: {sampling}")
        print(f"\ntrained model {args.model}, {args.num_crystals} crystals per run:\n")
        print("| batch | sampler | crystals/s | tokens/s | draws | acceptance | wall s |")
        print("|---|---|---|---|---|---|---|")
        modes = {
            "batches, dynamic cache (plain generate)": {"cache": "dynamic"},
            "batches, static cache (kit default)": {"cache": "static"},
            "continuous batching": {"continuous": True},
        }
        for batch_size in args.batch_sizes:
            for label, options in modes.items():
                config = dataclasses.replace(sampling, batch_size=batch_size, **options)
                result = llm.sample_crystals(
                    trained, trained_tokenizer, num_crystals=args.num_crystals, config=config,
                    progress_bar=False, seed=0,
                )  # fmt: skip
                rate = result.num_tokens / result.seconds
                print(
                    f"| {batch_size} | {label} | {result.crystals_per_second:.1f} | {rate:,.0f} "
                    f"| {result.num_draws} | {result.acceptance_rate:.1%} | "
                    f"{result.seconds:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
