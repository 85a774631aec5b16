"""The ``flow`` part of the GPU checks (benchmarks/bench_gpu.py): the velocity network's
throughput, 10,000 paper-sized crystals integrated end to end, and training steps/s."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_common import device_lines, seconds_of, sync, write  # noqa: E402

from flowllm_kit.crystal import CrystalBatch  # noqa: E402
from flowllm_kit.crystal.io import read_crystals  # noqa: E402


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
