"""``train-llm``, ``sample-llm`` and ``pairs``: the LLM stage (notebooks 03 and 04)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from flowllm_kit import llm, stages
from flowllm_kit.cli.common import CommandError, add_sharded_option, require, setup
from flowllm_kit.llm import CRYSTAL_LISTS_FILE, read_crystal_lists
from flowllm_kit.presets import get_preset
from flowllm_kit.run import RunFolder

__all__ = ["COMMANDS", "pairs", "sample_llm", "train_llm"]


def _train_llm_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``train-llm`` to its subparser."""
    parser.add_argument("--dataset", help="dataset name or CSV folder (default: the preset's)")
    parser.add_argument(
        "--max-atoms", type=int, help="largest crystal in atoms (default: the LLM preset's)"
    )
    parser.add_argument("--max-train", type=int, help="training crystals (default: the preset's)")
    parser.add_argument("--num-eval", type=int, help="evaluation crystals (default: the preset's)")
    parser.add_argument("--epochs", type=float, help="epochs (default: the preset's)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate")
    parser.add_argument("--no-resume", action="store_true", help="ignore earlier checkpoints")


def train_llm(args: argparse.Namespace) -> None:
    """Fine-tune the preset's LLM on the training crystals (notebook 03); save it to llm/."""

    run = setup(args)
    config = llm.llm_preset(args.preset)
    crystals = stages.select_crystals(
        args.preset, dataset=args.dataset, max_atoms=args.max_atoms, max_train=args.max_train,
        num_eval=args.num_eval,
    )  # fmt: skip
    changes = {"epochs": args.epochs, "learning_rate": args.learning_rate, "seed": args.seed}
    changes["max_steps"] = args.max_steps
    changes = {key: value for key, value in changes.items() if value is not None}
    config = config.replace(finetune=dataclasses.replace(config.finetune, **changes))
    print(f"{crystals.dataset}: {len(crystals.train)} training, ", end="")
    print(f"{len(crystals.evaluation)} evaluation crystals")
    result = stages.train_llm(run, config, crystals, resume=not args.no_resume)
    eval_loss = "n/a" if result.eval_loss is None else f"{result.eval_loss:.3f}"
    print(f"{result.global_step} steps, training loss {result.train_loss:.3f}, ", end="")
    print(f"evaluation loss {eval_loss}; model saved to {result.model_dir}")


def _load_llm(args: argparse.Namespace, run: RunFolder) -> tuple[Any, Any, Any]:
    """The model, tokenizer and :class:`LLMConfig` that train-llm saved in ``run/llm``."""

    require(run.llm_model, "model", "train-llm", args)
    require(run.llm_config, "LLM settings", "train-llm", args)
    return stages.load_llm(run)


def _sample_llm_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``sample-llm`` to its subparser."""
    parser.add_argument("--num-samples", type=int, help="crystals to keep (the preset's)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (the run's)")
    parser.add_argument("--top-p", type=float, help="nucleus sampling threshold (the run's)")
    parser.add_argument("--max-draws", type=int, help="stop after this many draws (20 x kept)")
    add_sharded_option(parser)


def sample_llm(args: argparse.Namespace) -> None:
    """Draw unconditional crystals from the LLM into llm_samples.jsonl (notebook 04, sec. 2)."""

    run = setup(args)
    model, tokenizer, config = _load_llm(args, run)
    num_samples = args.num_samples or get_preset(args.preset).num_samples
    result = stages.sample_llm(
        run, model, tokenizer, config, num_samples=num_samples,
        temperature=args.temperature, top_p=args.top_p, max_draws=args.max_draws, seed=args.seed,
        sharded=args.sharded or None,
    )  # fmt: skip
    print(f"{len(result.crystals)} crystals from {result.num_draws} draws ", end="")
    print(f"(parse rate {result.acceptance_rate:.1%}) in {run.llm_samples}")


def _pairs_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``pairs`` to its subparser."""
    parser.add_argument("--num-pairs", type=int, help="pairs to keep (the LLM preset's)")
    parser.add_argument(
        "--max-draws", type=int, help="stop after this many draws (default: the preset's)"
    )
    parser.add_argument("--temperature", type=float, help="sampling temperature (the run's: 0.9)")
    parser.add_argument("--top-p", type=float, help="nucleus threshold (the run's: 0.99)")
    parser.add_argument(
        "--num-val-pairs",
        type=int,
        default=0,
        help="validation pairs on the held-out crystals, into pairs_val/ (0: none)",
    )
    add_sharded_option(parser)


def _crystal_lists(args: argparse.Namespace, run: RunFolder) -> tuple[list, list]:
    """The training and evaluation crystals train-llm listed in ``run/llm/crystals.json``."""

    path = require(run.llm / CRYSTAL_LISTS_FILE, "crystal lists", "train-llm", args)
    lists = read_crystal_lists(path.parent)
    return lists.train, lists.evaluation


def pairs(args: argparse.Namespace) -> None:
    """Build the (LLM crystal, real crystal) pair set into pairs/ (notebook 04, section 4)."""

    run = setup(args)
    model, tokenizer, config = _load_llm(args, run)
    train, evals = _crystal_lists(args, run)
    if args.num_val_pairs < 0:
        raise CommandError(f"--num-val-pairs must be >= 0, got {args.num_val_pairs}")
    settings = stages.pair_settings(
        config, num_pairs=args.num_pairs, max_draws=args.max_draws,
        temperature=args.temperature, top_p=args.top_p,
    )  # fmt: skip
    result, val = stages.build_pair_sets(
        run, model, tokenizer, config, train, evals, pairs=settings,
        num_val_pairs=args.num_val_pairs, seed=args.seed, sharded=args.sharded or None,
    )  # fmt: skip
    print(f"{len(result.c0)} pairs from {result.num_draws} draws in {run.pairs}")
    if val is not None:
        print(f"{len(val.c0)} validation pairs in {run.val_pairs}")


COMMANDS = {
    "train-llm": (train_llm, _train_llm_options, "fine-tune the LLM on crystal texts (nb 03)"),
    "sample-llm": (sample_llm, _sample_llm_options, "sample crystals from the LLM (nb 04)"),
    "pairs": (pairs, _pairs_options, "build the LLM/real crystal pair set (nb 04)"),
}
