"""``train-flow`` and ``sample``: the flow stage (notebooks 05 and 06)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from flowllm_kit.cli.common import PRESETS, CommandError, require, setup
from flowllm_kit.run import RunFolder

__all__ = ["COMMANDS", "sample", "train_flow"]

MODELS = ("flowllm", "flowmm", "flowllm_types")
GROUPS = {"both": ("flowllm", "flowmm"), "all": MODELS}


def _models(choice: str) -> tuple[str, ...]:
    """The models named by ``--model`` (``both``: FlowLLM, FlowMM; ``all``: FlowLLM-Types too)."""
    return GROUPS.get(choice, (choice,))


def _load_pairs(args: argparse.Namespace, run: RunFolder) -> Any:
    """The :class:`~flowllm_kit.llm.PairSet` in ``run/pairs``; an error if missing or empty."""
    from flowllm_kit.llm import PairSet

    pairs = PairSet.load(require(run.pairs, "pair set", "pairs", args))
    if not pairs.c1:
        raise CommandError(
            f"the pair set {run.pairs} is empty: the LLM matched no training "
            "composition; train it longer or run `pairs` with a larger --max-draws"
        )
    return pairs


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
    parser.add_argument("--no-resume", action="store_true", help="ignore earlier checkpoints")


def train_flow(args: argparse.Namespace) -> None:
    """Train FlowLLM, FlowMM and/or FlowLLM-Types on the pair set into flow/<model>/ (nb 05)."""
    import torch

    from flowllm_kit.data import load_dataset
    from flowllm_kit.flow import (
        FlowTrainer,
        PairedBase,
        TypesOnlyBase,
        UniformBase,
        VelocityNetwork,
        flow_configs,
    )
    from flowllm_kit.flow.refinement import default_denoise_pairs, denoising_pairs
    from flowllm_kit.llm import PairSet
    from flowllm_kit.presets import get_preset

    run = setup(args)
    pairs = _load_pairs(args, run)
    val_file = run.val_pairs
    val = PairSet.load(val_file) if val_file.exists() else None
    val_c0, val_c1 = (val.c0, val.c1) if val else ([], [])
    network_config, config = flow_configs(
        args.preset, network=args.network, choices=args.flow_choices
    )
    denoise = []
    count = args.denoise_pairs
    if count is None:
        count = default_denoise_pairs(args.preset, args.flow_choices)
    if count:
        data = get_preset(args.preset).data
        real = load_dataset(data.dataset, data.train_split, progress=False)[: data.max_crystals]
        denoise = denoising_pairs(real, count, seed=args.seed)
    config = dataclasses.replace(
        config,
        max_steps=args.max_steps or config.max_steps,
        batch_size=args.batch_size or config.batch_size,
        seed=args.seed,
    )
    # model -> (base, training pairs, validation pairs). FlowMM ignores c0; FlowLLM-Types takes
    # only c0's atom types, which equal c1's atom by atom (the pairs are composition-matched).
    runs = {
        "flowllm": (
            PairedBase(noise_std=args.noise_std),
            list(zip(pairs.c0, pairs.c1, strict=True)) + denoise,
            list(zip(val_c0, val_c1, strict=True)),
        ),
        "flowmm": (
            UniformBase.fit(pairs.c1),
            [(None, c) for c in pairs.c1],
            [(None, c) for c in val_c1],
        ),
        "flowllm_types": (
            TypesOnlyBase.fit(pairs.c1),
            list(zip(pairs.c0, pairs.c1, strict=True)),
            list(zip(val_c0, val_c1, strict=True)),
        ),
    }
    for name in _models(args.model):
        base, train, validation = runs[name]
        torch.manual_seed(args.seed)  # the same initial weights for every model
        network, folder = VelocityNetwork(network_config), run.flow(name)
        trainer = FlowTrainer(
            network, train, base=base, config=config, val_pairs=validation, run_dir=folder
        )
        if not args.no_resume and (folder / "checkpoint" / "state.json").exists():
            trainer.load_checkpoint(folder / "checkpoint")
        trainer.fit()
        loss = trainer.history[-1]["loss"] if trainer.history else float("nan")
        print(f"{name}: step {trainer.step}, last loss {loss:.4f}; checkpoint in {folder}")


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


def _starts(args: argparse.Namespace, run: RunFolder, models: tuple[str, ...]) -> dict[str, list]:
    """Start crystals of each model: parsed LLM samples, FlowMM's uniform-base draws, and the
    LLM's atom types with uniform-base geometry (FlowLLM-Types)."""
    from flowllm_kit.flow import TypesOnlyBase, llm_starts, types_only_starts, uniform_starts

    llm_file = run.llm_samples
    starts: dict[str, list] = {}
    count = args.n_samples
    if "flowllm" in models or "flowllm_types" in models or count is None:
        kept = llm_starts(require(llm_file, "LLM samples", "sample-llm", args), n=args.n_samples)
        if not kept:
            raise CommandError(f"no parsed crystal in {llm_file}: run `sample-llm` again")
        starts["flowllm"] = kept
        count = len(kept)
    if "flowmm" in models:
        starts["flowmm"] = uniform_starts(_load_pairs(args, run).c1, count=count, seed=args.seed)
    if "flowllm_types" in models:
        base = TypesOnlyBase.fit(_load_pairs(args, run).c1)  # the base it was trained with
        starts["flowllm_types"] = types_only_starts(starts["flowllm"], base=base, seed=args.seed)
    return {name: starts[name] for name in models}


def sample(args: argparse.Namespace) -> None:
    """Integrate the trained flow(s) into samples/<model>.jsonl (notebook 06, section 2)."""
    from flowllm_kit.crystal import write_crystals
    from flowllm_kit.flow import SamplerConfig, load_network, sample_in_chunks
    from flowllm_kit.flow.train import resolve_device

    run = setup(args)
    models = _models(args.model)
    checkpoints = {
        name: require(run.flow_checkpoint(name), f"{name} checkpoint", "train-flow", args)
        for name in models
    }
    starts = _starts(args, run, models)
    device = resolve_device("auto")
    sampler = SamplerConfig(
        method=args.method,
        num_steps=args.num_steps,
        anti_annealing_scale=args.anti_annealing_scale,
        anti_annealing_start=args.anti_annealing_start,
    )
    run.samples.mkdir(parents=True, exist_ok=True)
    run.sampler_settings.write_text(json.dumps(dataclasses.asdict(sampler), indent=1))
    for name, crystals in starts.items():
        network = load_network(checkpoints[name], device=device)
        path = run.samples_file(name)
        path.unlink(missing_ok=True)  # start afresh: write_crystals appends
        chunks = sample_in_chunks(network, crystals, config=sampler, batch_size=args.batch_size)
        for chunk in chunks:
            write_crystals(chunk, path)
        print(f"{name}: {len(crystals)} crystals in {path}")


COMMANDS = {
    "train-flow": (train_flow, _train_flow_options, "train the flows on the pairs (nb 05)"),
    "sample": (sample, _sample_options, "sample crystals with the trained flow(s) (nb 06)"),
}
