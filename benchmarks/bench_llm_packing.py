"""One training step of the demo LLM on random batches of 16 MP-20 val texts: padded against packed.

Builds the demo preset's scratch model (untrained) and its training texts, then times 25 steps
(forward, backward, AdamW) per collate, keeping the last 20: padded to each batch's longest text
(``finetune._collate``) and packed into rows of each length given (``finetune._packed_collate``).
Prints the mean step, texts per second and the share of the batch tensor that is padding.

    FLOWLLM_KIT_DATA=/path/to/data python benchmarks/bench_llm_packing.py 512 768 1024
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from flowllm_kit.data import load_dataset
from flowllm_kit.llm import build_model, llm_preset
from flowllm_kit.llm.finetune import TextDataset, _collate, _packed_collate, render_training_text
from flowllm_kit.text import build_tokenizer


def main() -> None:
    torch.set_num_threads(2)
    config = llm_preset("demo")
    model, tokenizer = build_model(config, tokenizer=build_tokenizer())
    dataset = TextDataset(
        load_dataset("mp_20", "val"), tokenizer,
        render=render_training_text(config.finetune, tokenizer), max_length=1024,
    )  # fmt: skip
    lengths = np.array([len(dataset[i]["input_ids"]) for i in range(0, len(dataset), 7)])
    print(
        f"text tokens: mean {lengths.mean():.0f}, max {lengths.max()}, "
        f"p90 {np.percentile(lengths, 90):.0f}"
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    model.train()
    collates = [("padded", _collate(tokenizer.pad_token_id))] + [
        (f"packed {n}", _packed_collate(tokenizer.pad_token_id, n)) for n in map(int, sys.argv[1:])
    ]
    for name, collate in collates:
        times, tokens, cells = [], 0, 0
        for step in range(25):
            batch = collate([dataset[int(i)] for i in rng.integers(len(dataset), size=16)])
            start = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step >= 5:  # warm-up
                times.append(time.perf_counter() - start)
                cells += batch["input_ids"].numel()
                tokens += int((batch["labels"] != -100).sum())
        print(
            f"{name}: {np.mean(times) * 1000:.0f} ms/step, {16 / np.mean(times):.0f} texts/s, "
            f"padding {1 - tokens / cells:.0%} of cells",
            flush=True,
        )


if __name__ == "__main__":
    main()
