"""The refinement benchmark: corrupted real crystals -> flow -> error before and after.

Targets are MP-20 crystals; starts are the same crystals (atom order kept) with fractional
coordinates + N(0, coord_std), lengths x exp(N(0, length_log_std)), angles + N(0, angle_std)
(:mod:`flowllm_kit.flow.refinement`). Each variant of the flow is trained with the same budget
(demo network, demo training preset, the given number of steps of 64 crystals) on
``--train-pairs`` such pairs drawn with replacement from MP-20 val, then refines ``--test``
corrupted MP-20 test crystals (EMA weights, Euler, ``--ode-steps`` steps). Results go to
``benchmarks/results/refinement.json`` (one entry per variant and budget, kept between runs, so
an interrupted run resumes) and ``benchmarks/results/refinement.md`` (tables, machine).

Variants are cumulative: each adds one change to the one before, so the table shows what each
change contributed; ``reference`` is the kit's flow before the changes (the reference code's
choices).

Usage::

    python benchmarks/refinement.py                       # every variant, 1,500 steps
    python benchmarks/refinement.py --steps 4000 --variants reference kit
    python benchmarks/refinement.py --steps 100 --train-pairs 500 --test 30 --out /tmp/r  # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from flowllm_kit.data import load_dataset
from flowllm_kit.flow import (
    FlowSamplerConfig,
    LossConfig,
    NetworkConfig,
    VelocityNetwork,
    network_preset,
    reference_loss,
    reference_network,
    train_preset,
)
from flowllm_kit.flow.refinement import (
    ANGLE_CLASSES,
    Corruption,
    corrupt,
    refinement_errors,
    run_refinement,
)

ROOT = Path(__file__).resolve().parents[1]

# Cumulative variants: (name, what it adds, network changes, loss changes).
VARIANTS: list[tuple[str, str, dict, dict]] = [
    (
        "reference",
        "the reference's choices: logit angles, lengths in Å, unit direction, raw lattice loss",
        {"smooth_direction": False, "lattice_representation": "logit", "edge_distances": 0},
        {"lattice_error": "raw"},
    ),
    (
        "+smooth direction",
        "continuous, permutation-equivariant direction feature",
        {"smooth_direction": True},
        {},
    ),
    (
        "+log lattice",
        "log lengths, angles linear in degrees",
        {"lattice_representation": "log"},
        {},
    ),
    (
        "+standardized lattice loss",
        "lattice error divided by each component's target-velocity std",
        {},
        {"lattice_error": "standardized"},
    ),
    (
        "+distances",
        "16 Gaussian radial basis functions of the minimum-image distance in Å on every edge",
        {"edge_distances": 16},
        {},
    ),
    (
        "+edge lattice head",
        "pairs propose lattice changes along the lattice vectors their bonds lie on",
        {"edge_lattice_head": True},
        {},
    ),
    (
        "+edge coordinate head",
        "atoms move along their bonds by learned amounts (EGNN-style)",
        {"edge_coordinate_head": True},
        {},
    ),
    (
        "+angle features",
        "sin/cos(2 pi k angle / 30°), k = 1..4, of the current angles beside the z-scored lattice",
        {"angle_features": 4},
        {},
    ),
    (
        "+standardized coordinate loss 1:1",
        "coordinate error divided by the coordinate scale too, loss weights 1 : 1",
        {},
        {"coord_error": "standardized", "weight_coords": 1.0, "weight_lattice": 1.0},
    ),
    (
        "+length ratios",
        "log(a/b), log(b/c), log(a/c) (times 10) beside the z-scored lattice",
        {"length_ratios": True},
        {},
    ),
    (
        "+lattice weight 3",
        "loss weights 1 : 3 (coordinates : lattice), both standardized",
        {},
        {"weight_lattice": 3.0},
    ),
]


KIT = "kit (demo preset)"
"""The demo presets as they are: the network and loss the kit ships (see flow/config.py)."""


def variant_configs(name: str) -> tuple[NetworkConfig, LossConfig]:
    """Network and loss of a variant: the kit's presets for :data:`KIT`, else the reference's
    choices on the demo network's shape with the changes accumulated up to ``name``."""
    if name == KIT:
        return network_preset("demo"), train_preset("demo").loss
    network = dataclasses.asdict(reference_network(network_preset("demo")))
    loss = dataclasses.asdict(reference_loss(LossConfig()))
    for variant, _, net_changes, loss_changes in VARIANTS:
        network.update(net_changes)
        loss.update(loss_changes)
        if variant == name:
            return NetworkConfig(**network), LossConfig(**loss)
    raise ValueError(f"unknown variant {name!r}; choose from {[v[0] for v in VARIANTS]}, {KIT}")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def run_variant(name, steps, train, targets, corruption, args) -> dict:
    network_config, loss = variant_configs(name)
    network = VelocityNetwork(network_config)
    config = dataclasses.replace(
        train_preset("demo"),
        max_steps=steps,
        val_every=0,
        progress=args.progress,
        seed=args.seed,
        loss=loss,
    )
    run = run_refinement(
        network,
        train,
        targets,
        config=config,
        num_pairs=args.train_pairs,
        corruption=corruption,
        sampler=FlowSamplerConfig(method="euler", num_steps=args.ode_steps),
        seed=args.seed,
    )
    history = run.trainer.history[-100:]
    return {
        "variant": name,
        "steps": steps,
        "network": dataclasses.asdict(network_config),
        "loss": dataclasses.asdict(loss),
        "train_seconds": run.train_seconds,
        "final_loss_mean_last_100": float(np.mean([h["loss"] for h in history])),
        "start": run.start.as_row(),
        "errors": run.refined.as_row(),
        "angle_counts": run.refined.angle_count_by_class,
    }


def extra_flags(args) -> str:
    """The command-line flags of ``args`` that differ from their defaults (steps and variants
    aside), so a results file names how to rerun it."""
    defaults = vars(build_parser().parse_args([]))
    flags = ""
    for name, value in vars(args).items():
        if name not in ("steps", "variants", "progress", "redo") and value != defaults[name]:
            flags += f" --{name.replace('_', '-')} {value}"
    return flags


def percent(after: float, before: float) -> str:
    if before == 0:  # e.g. coordinates when --coord-std is 0
        return "n/a"
    return f"{100 * (after / before - 1):+.0f}%"


def markdown(results: dict, args) -> str:
    start = results["start"]
    lines = [
        "# Refinement benchmark",
        "",
        "Written by `benchmarks/refinement.py` (the command below); do not edit by hand.",
        "",
        f"Machine: {results['machine']}.",
        "",
        f"Setting: corruption coord_std {args.coord_std}, length_log_std {args.length_log_std}, "
        f"angle_std {args.angle_std}°; {args.train_pairs:,} training pairs drawn from MP-20 val; "
        f"{args.test} corrupted MP-20 test crystals refined with Euler, {args.ode_steps} steps, "
        "EMA weights; demo network (hidden 128, 3 layers) and demo training preset (batches of "
        "64, LR 1e-3 cosine, EMA 0.995), the number of steps in the table. Angle classes by the "
        f"true angle: {', '.join(f'{k}: {v}' for k, v in start['angle_counts'].items())} angles.",
        "",
        "Changes in % are against the start (the corrupted crystals).",
        "",
    ]
    header = (
        "| variant | steps | coord RMS Å | length MAE Å | angle MAE ° | "
        + " | ".join(f"angle {k}" for k in ANGLE_CLASSES)
        + " | volume err % | match % | train s |"
    )
    lines += [header, "|" + "---|" * (header.count("|") - 1)]

    def row(name, steps, e, seconds):
        cells = [
            name,
            str(steps),
            f"{e['coord_rms']:.3f}"
            + ("" if name == "(start)" else f" ({percent(e['coord_rms'], start['coord_rms'])})"),
            f"{e['length_mae']:.3f}"
            + ("" if name == "(start)" else f" ({percent(e['length_mae'], start['length_mae'])})"),
            f"{e['angle_mae']:.2f}"
            + ("" if name == "(start)" else f" ({percent(e['angle_mae'], start['angle_mae'])})"),
        ]
        cells += [f"{e[f'angle_mae_{k}']:.2f}" for k in ANGLE_CLASSES]
        cells += [f"{e['volume_error']:.1f}", f"{100 * e['match_rate']:.1f}", seconds]
        return "| " + " | ".join(cells) + " |"

    lines.append(row("(start)", "-", start, "-"))
    order = [v[0] for v in VARIANTS] + [KIT]
    entries = sorted(
        results["runs"].values(), key=lambda r: (r["steps"], order.index(r["variant"]))
    )
    for entry in entries:
        lines.append(
            row(entry["variant"], entry["steps"], entry["errors"], f"{entry['train_seconds']:.0f}")
        )
    lines += ["", "Variants (each adds to the one above):", ""]
    lines += [f"- `{name}`: {text}." for name, text, _, _ in VARIANTS]
    lines.append(f"- `{KIT}`: the network and loss of the demo presets, as shipped.")
    lines += [
        "",
        "One seed per row: differences of a few percent between rows are within what a second "
        "seed could change (not measured). Every row is rerun, with the settings above, by "
        f'`python benchmarks/refinement.py --steps STEPS --variants "VARIANT"{extra_flags(args)}`; '
        "rows already in the results file are kept (`--redo` reruns them).",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1500])
    parser.add_argument("--variants", nargs="+", default=[v[0] for v in VARIANTS] + [KIT])
    parser.add_argument("--train-pairs", type=int, default=20_000)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--ode-steps", type=int, default=50)
    parser.add_argument("--coord-std", type=float, default=0.04)
    parser.add_argument("--length-log-std", type=float, default=0.05)
    parser.add_argument("--angle-std", type=float, default=2.0)
    parser.add_argument("--dataset", default="mp_20")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--progress", action="store_true", help="show training progress bars")
    parser.add_argument("--redo", action="store_true", help="rerun entries already in the JSON")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "refinement"))
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")

    corruption = Corruption(args.coord_std, args.length_log_std, args.angle_std)
    train = load_dataset(args.dataset, "val", progress=False)
    test = load_dataset(args.dataset, "test", progress=False)
    targets = [test[i] for i in np.random.default_rng(args.seed + 2).permutation(len(test))]
    targets = targets[: args.test]
    starts = corrupt(targets, corruption, seed=args.seed + 3)  # as run_refinement draws them

    setting = {k: getattr(args, k) for k in ("train_pairs", "test", "ode_steps", "dataset", "seed")}
    setting.update(dataclasses.asdict(corruption))
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    if results.get("setting") != setting:
        results = {"setting": setting, "runs": {}}
    start_errors = refinement_errors(starts, targets)
    results["start"] = {**start_errors.as_row(), "angle_counts": start_errors.angle_count_by_class}
    results["machine"] = machine()
    for steps in args.steps:
        for name in args.variants:
            key = f"{name} @ {steps}"
            if key in results["runs"] and not args.redo:
                print(f"{key}: done already")
                continue
            entry = run_variant(name, steps, train, targets, corruption, args)
            results["runs"][key] = entry
            json_path.write_text(json.dumps(results, indent=1))
            md_path.write_text(markdown(results, args))
            e = entry["errors"]
            print(
                f"{key}: coord {e['coord_rms']:.3f} length {e['length_mae']:.3f} "
                f"angle {e['angle_mae']:.2f} match {e['match_rate']:.2f} "
                f"({entry['train_seconds']:.0f} s)",
                flush=True,
            )
    json_path.write_text(json.dumps(results, indent=1))
    md_path.write_text(markdown(results, args))
    print(f"wrote {md_path}")


if __name__ == "__main__":
    main()
