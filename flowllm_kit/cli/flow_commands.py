"""``train-flow`` and ``sample``: the flow stage (notebooks 05 and 06)."""

from __future__ import annotations

import argparse
import dataclasses

from flowllm_kit.cli.common import PRESETS, require, setup
from flowllm_kit.flow import FlowSamplerConfig, flow_configs
from flowllm_kit.flow.train import resolve_device
from flowllm_kit.stages import (
    denoising_set,
    flow_runs,
    flow_starts,
    load_flows,
    load_pair_sets,
    sample_flows,
    train_flows,
)
from flowllm_kit.stages.flow import FLOW_MODELS

__all__ = ["COMMANDS", "sample", "train_flow"]

MODELS = FLOW_MODELS
GROUPS = {"both": ("flowllm", "flowmm"), "all": MODELS}


def _models(choice: str) -> tuple[str, ...]:
    """The models named by ``--model`` (``both``: FlowLLM, FlowMM; ``all``: FlowMM-CSP and
    FlowLLM-Types too)."""
    return GROUPS.get(choice, (choice,))


def _train_flow_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``train-flow`` to its subparser."""
    parser.add_argument(
        "--model", choices=(*MODELS, *GROUPS), default="all", help="which model(s) (%(default)s)"
    )
    parser.add_argument("--network", choices=PRESETS, help="network preset (default: --preset)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps per model (the preset's)")
    parser.add_argument("--batch-size", type=int, help="crystals per step (the preset's)")
    parser.add_argument(
        "--noise-std", type=float, default=0.0, help="jitter on FlowLLM's starts (%(default)s)"
    )
    parser.add_argument(
        "--flow-choices",
        choices=("kit", "reference"),
        default="kit",
        help="the presets' network and loss, or the reference code's (%(default)s)",
    )
    parser.add_argument(
        "--denoise-pairs",
        type=int,
        help="corrupted real crystals added to FlowLLM's pairs (the preset's: notebook 05)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        help="stop after this many validations without a lower validation loss (needs "
        "pairs --num-val-pairs; default: the preset's, else train to --max-steps)",
    )
    parser.add_argument("--no-resume", action="store_true", help="ignore earlier checkpoints")


def train_flow(args: argparse.Namespace) -> None:
    """Train FlowLLM, FlowMM, FlowMM-CSP and/or FlowLLM-Types on the pair set into flow/<model>/
    (nb 05)."""

    run = setup(args)
    require(run.pairs, "pair set", "pairs", args)
    pairs, val_pairs = load_pair_sets(run)
    network_config, config = flow_configs(
        args.preset, network=args.network, choices=args.flow_choices
    )
    denoise = denoising_set(
        preset=args.preset, choices=args.flow_choices, count=args.denoise_pairs, seed=args.seed
    )
    config = dataclasses.replace(
        config,
        max_steps=args.max_steps or config.max_steps,
        batch_size=args.batch_size or config.batch_size,
        seed=args.seed,
        patience=config.patience if args.patience is None else args.patience,
    )
    trained = train_flows(
        run, flow_runs(pairs, val_pairs, denoise=denoise, noise_std=args.noise_std),
        network=network_config, config=config, models=_models(args.model), seed=args.seed,
        resume=not args.no_resume,
    )  # fmt: skip
    for name, flow in trained.items():
        history = flow.trainer.history
        loss = history[-1]["loss"] if history else float("nan")
        stopped = " (validation loss stopped falling)" if flow.trainer.stopped_early else ""
        print(f"{name}: step {flow.trainer.step}{stopped}, last loss {loss:.4f}; ", end="")
        print(f"in {run.flow(name)}")


def _sample_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``sample`` to its subparser."""
    parser.add_argument(
        "--model", choices=(*MODELS, *GROUPS), default="all", help="which model(s) (%(default)s)"
    )
    parser.add_argument("--n-samples", type=int, help="crystals per model (every LLM crystal)")
    parser.add_argument("--num-steps", type=int, default=250, help="ODE steps (%(default)s)")
    parser.add_argument(
        "--method",
        choices=("euler", "midpoint", "rk4", "dopri5"),
        default="euler",
        help="ODE solver (%(default)s; dopri5 is adaptive and ignores --num-steps)",
    )
    parser.add_argument(
        "--anti-annealing-scale", type=float, default=0.0, help="s (%(default)s; paper: 5)"
    )
    parser.add_argument("--anti-annealing-start", type=float, default=0.0, help="b (%(default)s)")
    parser.add_argument(
        "--batch-size", type=int, default=256, help="crystals per ODE solve (%(default)s)"
    )


def sample(args: argparse.Namespace) -> None:
    """Integrate the trained flow(s) into samples/<model>.jsonl (notebook 06, section 2)."""

    run = setup(args)
    models = _models(args.model)
    for name in models:
        require(run.flow_checkpoint(name), f"{name} checkpoint", "train-flow", args)
    if {"flowllm", "flowllm_types"} & set(models) or args.n_samples is None:
        require(run.llm_samples, "LLM samples", "sample-llm", args)
    if {"flowmm", "flowmm_csp", "flowllm_types"} & set(models):
        require(run.pairs, "pair set", "pairs", args)
    starts = flow_starts(run, models, n=args.n_samples, seed=args.seed)
    sampler = FlowSamplerConfig(
        method=args.method,
        num_steps=args.num_steps,
        anti_annealing_scale=args.anti_annealing_scale,
        anti_annealing_start=args.anti_annealing_start,
    )
    networks = load_flows(run, models, device=resolve_device("auto"))
    generated = sample_flows(
        run, networks, starts, sampler=sampler, batch_size=args.batch_size, seed=args.seed
    )
    for name, crystals in generated.items():
        print(f"{name}: {len(crystals)} crystals in {run.samples_file(name)}")


COMMANDS = {
    "train-flow": (train_flow, _train_flow_options, "train the flows on the pairs (nb 05)"),
    "sample": (sample, _sample_options, "sample crystals with the trained flow(s) (nb 06)"),
}
