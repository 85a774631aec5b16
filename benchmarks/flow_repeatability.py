"""Does training the flow twice from one seed give the same weights, bit for bit, on the CPU?

Trains the demo's velocity network on a run's FlowLLM pairs (``<run>/pairs/pairs.npz``, written
by notebook 04) twice with the demo training preset, and compares the two networks. With
``--load`` a busy loop keeps one core occupied meanwhile: thread interleavings then vary, which
is what exposes a gather whose gradient adds with parallel atomic float additions.

    FLOWLLM_KIT_DATA=/path/to/data python benchmarks/flow_repeatability.py runs/demo --load
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import time

import torch

from flowllm_kit.flow import FlowTrainer, PairedBase, VelocityNetwork, train_preset
from flowllm_kit.llm import PairSet


def _busy() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="run folder holding pairs/pairs.npz")
    parser.add_argument("--steps", type=int, default=None, help="default: the demo preset's")
    parser.add_argument("--load", action="store_true", help="keep one core busy meanwhile")
    args = parser.parse_args()

    pairs = PairSet.load(f"{args.run}/pairs/pairs.npz")
    config = dataclasses.replace(train_preset("demo"), progress=False, val_every=0, device="cpu")
    if args.steps:
        config = dataclasses.replace(config, max_steps=args.steps)
    busy = multiprocessing.Process(target=_busy, daemon=True) if args.load else None
    if busy:
        busy.start()
    runs = []
    try:
        for attempt in range(2):
            torch.manual_seed(0)
            network = VelocityNetwork.from_preset("demo")
            trainer = FlowTrainer(
                network,
                list(zip(pairs.c0, pairs.c1, strict=True)),
                base=PairedBase(),
                config=config,
            )
            start = time.perf_counter()
            trainer.fit()
            norms = [record.get("grad_norm") for record in trainer.history]
            runs.append((trainer.network.state_dict(), norms))
            seconds = time.perf_counter() - start
            print(f"run {attempt + 1}: {config.max_steps} steps in {seconds:.0f} s")
    finally:
        if busy:
            busy.terminate()
    (first, first_norms), (second, second_norms) = runs
    equal = all(torch.equal(first[name], second[name]) for name in first)
    largest = max((first[name] - second[name]).abs().max().item() for name in first)
    diverged = next(
        (step for step, (a, b) in enumerate(zip(first_norms, second_norms, strict=True)) if a != b),
        None,
    )
    print(
        f"threads {torch.get_num_threads()}, busy core: {args.load}; weights bit for bit equal: "
        f"{equal}; largest difference {largest:.3g}; first differing gradient norm: step {diverged}"
    )


if __name__ == "__main__":
    main()
