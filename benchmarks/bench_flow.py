"""Benchmark the flow stage on this machine and write ``benchmarks/results/flow.md``.

Measures, for each network preset, on random crystals with MP-20's atom counts (read from
``$FLOWLLM_KIT_DATA/mp_20/test.csv`` when present, else uniform 1-20):

- forward throughput in crystal·steps/s (one ODE step = one forward pass per crystal), and
  the achieved FLOP/s as a fraction of a plain fp32 matmul's FLOP/s measured in the same run;
- the same for a *reference-style* dense forward with the same weights (the 2,313-wide edge
  concatenation built on every edge of every layer, sinusoids recomputed per layer), the
  structure of the FlowMM/FlowLLM CSPNet; it is checked to give the same output;
- bfloat16 autocast throughput and how far its samples land from float32 ones;
- sampler crystals/s at 50 and 250 Euler steps (from a timed short solve) and training
  steps/s.

Usage: ``python benchmarks/bench_flow.py [--threads N] [--out PATH]`` (a few minutes on a
loaded 2-core machine; one thread by default, see ``main``).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from machine import data_root  # benchmarks/machine.py
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from flowllm_kit.crystal import Crystal, CrystalBatch
from flowllm_kit.flow import (
    FlowSamplerConfig,
    FlowTrainer,
    PairedBase,
    TrainConfig,
    VelocityNetwork,
    fully_connected_graph,
    sample,
)
from flowllm_kit.flow.graph import (
    displacement_features,
    distance_features,
    minimum_image_distance,
    smooth_direction,
    unit_direction,
)
from flowllm_kit.flow.layers import time_embedding
from flowllm_kit.geometry import lattice, torus

ROOT = Path(__file__).resolve().parents[1]
BATCH = {"smoke": 256, "demo": 256, "paper": 64}  # crystals per timed forward
# crystal·steps/s of the reference network of FlowMM/FlowLLM (CSPNet subclass, paper config) on
# MP-20 test batches, measured on the kit's 2 idle CPU cores (figure given in the issue).
REFERENCE_ANCHOR = 50


def atom_counts() -> tuple[np.ndarray, str]:
    path = data_root() / "mp_20" / "test.csv"
    if not path.exists():
        return np.arange(1, 21), "uniform 1-20 (MP-20 test.csv not found)"
    import pandas as pd

    counts = []
    for cif in pd.read_csv(path, usecols=["cif"]).cif:
        formula = re.search(r"_chemical_formula_sum\s+'?([^'\n]*)'?", cif).group(1)
        counts.append(sum(int(m[2] or 1) for m in re.findall(r"(([A-Z][a-z]?)(\d*))", formula)))
    return np.array(counts), f"MP-20 test split ({len(counts)} crystals)"


def random_crystals(counts: np.ndarray, size: int, seed: int = 0) -> list[Crystal]:
    """``size`` crystals of random atoms and cells, atom counts drawn from ``counts``."""
    rng = np.random.default_rng(seed)
    return [
        Crystal(
            atomic_numbers=rng.integers(1, 90, n),
            frac_coords=rng.random((n, 3)),
            lengths=rng.uniform(3, 8, 3),
            angles=rng.uniform(70, 110, 3),
        )
        for n in rng.choice(counts, size)
    ]


def random_batch(counts: np.ndarray, size: int, seed: int = 0) -> CrystalBatch:
    return CrystalBatch.from_crystals(random_crystals(counts, size, seed))


def timed(fn, *, repeats: int, warmup: int = 1) -> float:
    """Best wall time of ``repeats`` calls (best-of resists load from other processes)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_flops_per_second(dtype: torch.dtype) -> float:
    a, b = torch.randn(4096, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    return 2 * 4096 * 1024 * 1024 / timed(lambda: a @ b, repeats=5)


def reference_style_forward(net: VelocityNetwork, batch: CrystalBatch, t: torch.Tensor):
    """The same function as ``net``, computed the way the reference CSPNet does: per layer,
    sinusoids of every directed edge's displacement and the full concatenated edge input."""
    config = net.config
    graph = fully_connected_graph(batch.num_atoms)
    receivers, senders, edge_crystal = graph.receivers, graph.senders, graph.edge_crystal
    f_t, l_t = batch.frac_coords, batch.lattice_in(net.lattice_representation)
    time_features = time_embedding(t, config.time_dim)[graph.atom_crystal]
    h = net.node_init(torch.cat([net.atom_embedding(batch.atomic_numbers), time_features], -1))
    crystal = torch.cat(
        [(l_t - net.lattice_mean) / net.lattice_std, net.num_atoms_embedding(batch.num_atoms)], -1
    )
    lengths, angles = lattice.unconstrained_to_lattice(l_t, net.lattice_representation)
    matrix = lattice.params_to_matrix(lengths, angles)
    for layer in net.layers:
        weight, bias = layer.edge_input.dense_weight()
        hn = layer.norm(h)
        displacement = torus.logmap(f_t[receivers], f_t[senders])  # (E, 3), every layer
        sines, cosines = displacement_features(displacement, config.num_frequencies)
        parts = [hn[receivers], hn[senders], crystal[edge_crystal], sines, cosines]
        if config.edge_direction:
            form = smooth_direction if config.smooth_direction else unit_direction
            parts.append(form(displacement, matrix[edge_crystal]))
        if config.edge_distances:
            distance = minimum_image_distance(displacement, matrix[edge_crystal])
            parts.append(distance_features(distance, config.edge_distances, config.distance_cutoff))
        edge_input = torch.cat(parts, -1)  # (E, 2313 [+ distances]) for the paper preset
        messages = F.silu(layer.edge_output(F.silu(F.linear(edge_input, weight, bias))))
        pooled = torus.scatter_mean(messages, receivers, h.shape[0])
        h = h + layer.node_mlp(torch.cat([hn, pooled], -1))
    h = net.final_norm(h)
    v_f = torus.remove_mean(net.coord_head(h) * net.coord_scale, graph.atom_crystal, len(batch))
    pooled = torus.scatter_mean(h, graph.atom_crystal, len(batch))
    return v_f, net.lattice_head(pooled) * net.velocity_std + net.velocity_mean


def bf16_forward(net: VelocityNetwork, batch: CrystalBatch, t: torch.Tensor):
    with torch.autocast(t.device.type, dtype=torch.bfloat16):
        return net(batch, t)


def machine() -> list[str]:
    model = platform.processor() or "unknown"
    if Path("/proc/cpuinfo").exists():
        found = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        model = found.group(1) if found else model
    return [
        f"- CPU: {model}, {os.cpu_count()} logical cores; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads",
        f"- load average at start (1/5/15 min): {' / '.join(f'{x:.1f}' for x in os.getloadavg())}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # One thread by default: on a shared 2-core machine, two intra-op threads spin-waiting for
    # each other while other processes run made small ops several times slower, not faster.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "flow.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    load = os.getloadavg()
    lines = ["# Flow stage benchmark", "", *machine()]
    counts, source = atom_counts()
    lines.append(f"- atom counts drawn from {source}; mean {counts.mean():.1f} atoms")
    fp32, bf16 = matmul_flops_per_second(torch.float32), matmul_flops_per_second(torch.bfloat16)
    lines += [
        f"- plain matmul (4096x1024 @ 1024x1024): fp32 {fp32 / 1e9:.0f} GFLOP/s, "
        f"bf16 {bf16 / 1e9:.0f} GFLOP/s",
        "",
    ]

    lines += [
        "## Forward pass (one ODE step)",
        "",
        "| preset | params | batch | implementation | crystal·steps/s | GFLOP per "
        "crystal·step | GFLOP/s | of fp32 matmul |",
        "|---|---|---|---|---|---|---|---|",
    ]
    speeds = {}
    for name in ("smoke", "demo", "paper"):
        net = VelocityNetwork.from_preset(name).eval()
        batch, size = random_batch(counts, BATCH[name]), BATCH[name]
        t = torch.rand(size)
        with torch.inference_mode():
            ours, dense = net(batch, t), reference_style_forward(net, batch, t)
            for a, b in zip(ours, dense, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
            variants = {
                "kit (factorized), fp32": partial(net, batch, t),
                "reference-style dense, fp32": partial(reference_style_forward, net, batch, t),
            }
            if name == "paper":
                variants["kit (factorized), bf16 autocast"] = partial(bf16_forward, net, batch, t)
            for label, fn in variants.items():
                seconds = timed(fn, repeats=2 if name == "paper" else 3)
                flops = count_flops(fn)
                speeds[name, label] = size / seconds
                lines.append(
                    f"| {name} | {net.num_parameters() / 1e6:.2f} M | {size} | {label} | "
                    f"{size / seconds:,.0f} | {flops / size / 1e9:.3f} | "
                    f"{flops / seconds / 1e9:.0f} | {flops / seconds / fp32:.0%} |"
                )
    ratio = (
        speeds["paper", "kit (factorized), fp32"] / speeds["paper", "reference-style dense, fp32"]
    )
    ratio_bf16 = (
        speeds["paper", "kit (factorized), bf16 autocast"]
        / speeds["paper", "reference-style dense, fp32"]
    )
    lines += [
        "",
        f"Paper preset, kit vs reference-style in this run: **{ratio:.2f}x** (fp32), "
        f"**{ratio_bf16:.2f}x** (bf16 autocast). Anchor for the real reference code on these "
        f"2 cores (idle): ~{REFERENCE_ANCHOR} crystal·steps/s, so the kit's paper preset runs at "
        f"**{speeds['paper', 'kit (factorized), fp32'] / REFERENCE_ANCHOR:.1f}x** it in fp32 and "
        f"{speeds['paper', 'kit (factorized), bf16 autocast'] / REFERENCE_ANCHOR:.1f}x in bf16 "
        "(compare only runs on idle cores with 2 threads, the anchor's conditions).",
        "",
    ]

    lines += [
        "## Sampler (Euler; per-step cost timed on a 5-step solve)",
        "",
        "| preset | precision | batch | s per step | crystals/s at 50 steps | at 250 steps |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("smoke", "demo", "paper"):
        net = VelocityNetwork.from_preset(name)
        batch = random_batch(counts, BATCH[name], seed=1)
        precisions = ("float32", "bfloat16") if name == "paper" else ("float32",)
        for precision in precisions:
            config = FlowSamplerConfig(num_steps=5, precision=precision)
            per_step = timed(partial(sample, net, batch, config=config), repeats=1) / 5
            lines.append(
                f"| {name} | {precision} | {len(batch)} | {per_step:.3f} | "
                f"{len(batch) / (50 * per_step):,.1f} | {len(batch) / (250 * per_step):,.1f} |"
            )
    net = VelocityNetwork.from_preset("paper")
    batch = random_batch(counts, 32, seed=2)
    full = sample(net, batch, config=FlowSamplerConfig(num_steps=20)).crystals
    low = sample(net, batch, config=FlowSamplerConfig(num_steps=20, precision="bfloat16")).crystals
    gap = torus.logmap(full.frac_coords, low.frac_coords).abs()
    moved = torus.logmap(batch.frac_coords, full.frac_coords).abs().mean()
    lines += [
        "",
        f"bf16 vs fp32 samples (paper preset, untrained weights, 20 steps): mean |Δf| "
        f"{gap.mean():.1e} ({gap.mean() / moved:.1%} of the mean distance moved), max "
        f"{gap.max():.1e}; max |Δlength| "
        f"{(full.lengths - low.lengths).abs().max():.1e} Å.",
        "",
    ]

    lines += [
        "## Training (AdamW step incl. data collation, path sampling, backward)",
        "",
        "| preset | precision | batch | steps/s | s per step |",
        "|---|---|---|---|---|",
    ]
    for name in ("smoke", "demo", "paper"):
        size = 256 if name != "paper" else 64
        rng = np.random.default_rng(3)
        starts = random_batch(counts, size, seed=3).to_crystals()
        targets = [c.replace(frac_coords=rng.random((c.num_atoms, 3))) for c in starts]
        pairs = list(zip(starts, targets, strict=True))
        precisions = ("float32", "bfloat16") if name == "paper" else ("float32",)
        for precision in precisions:
            config = TrainConfig(
                batch_size=size,
                max_steps=100,
                progress=False,
                device="cpu",
                val_every=0,
                precision=precision,
            )
            trainer = FlowTrainer(
                VelocityNetwork.from_preset(name), pairs, base=PairedBase(), config=config
            )
            seconds = timed(trainer.train_step, repeats=2 if name == "paper" else 3)
            lines.append(f"| {name} | {precision} | {size} | {1 / seconds:.2f} | {seconds:.2f} |")
    lines += [
        "",
        "Reference anchor: a batch-256 training step of the real reference code takes "
        "~17 s on these 2 cores (scale the paper row by 4 for batch 256).",
        "",
        f"- load average at end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"benchmark wall time {time.perf_counter() - started:.0f} s",
        "",
        "## Notes",
        "",
        "- crystal·step: one velocity evaluation for one crystal; sampling N crystals with S "
        "Euler steps costs N·S crystal·steps. Times are the best of a few repeats.",
        "- reference-style dense: the kit's weights run the way the reference CSPNet runs "
        "(full concatenated edge input per edge and layer, sinusoids recomputed per layer); "
        "its output is asserted equal to the kit's, so the ratio is the gain of the "
        "factorization at equal implementation quality. The real reference code (not runnable "
        "here) is not this dense re-implementation; the ~50 crystal·steps/s anchor is the "
        "only direct number for it.",
        "- FLOPs: torch.utils.flop_counter (matmuls). The fp32 FLOP ratio kit/dense on the "
        "paper preset is the exact-function limit of the factorization; bf16 autocast "
        "(fp32 accumulation, ODE state and weights in fp32) goes beyond it.",
        f"- {torch.get_num_threads()} torch thread(s), load average at start {load[0]:.1f}: "
        + (
            "the cores were otherwise idle, the conditions of the ~50 crystal·steps/s anchor."
            if load[0] < 1.0
            else "the cores were shared with other jobs; with 2 threads spin-waiting on each "
            "other, small ops were several times slower, so such runs use 1 thread. The ~50 "
            "crystal·steps/s anchor was measured on 2 idle cores."
        ),
        "- GPU: benchmarks/bench_gpu.py measures it (results in benchmarks/results/gpu.md).",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
