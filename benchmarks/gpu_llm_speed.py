"""The ``llm-speed`` part of the GPU checks (benchmarks/bench_gpu.py): ``model.generate``
against the kit's ``generate_texts`` at several batch sizes."""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


from gpu_common import device_lines, seconds_of, sync, write  # noqa: E402


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
