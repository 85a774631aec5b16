"""``train-llm``, ``sample-llm`` and ``pairs``: the LLM stage (notebooks 03 and 04)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from flowllm_kit.cli.common import CommandError, require, setup
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
    from transformers import AutoTokenizer

    from flowllm_kit import llm, text
    from flowllm_kit.data import load_dataset
    from flowllm_kit.presets import get_preset

    run = setup(args)
    config = llm.llm_preset(args.preset)
    data = get_preset(args.preset).data
    dataset = args.dataset or data.dataset
    limit = args.max_atoms or config.finetune.max_atoms or 10**9
    max_train = args.max_train or config.finetune.max_train_crystals or data.max_crystals
    num_eval = args.num_eval or config.finetune.max_eval_crystals
    train = [c for c in load_dataset(dataset, data.train_split) if c.num_atoms <= limit]
    evals = [c for c in load_dataset(dataset, data.eval_split) if c.num_atoms <= limit]
    train, evals = train[:max_train], evals[:num_eval]
    llm_dir = run.llm
    llm.write_crystal_lists(
        llm_dir, dataset=dataset, train_split=data.train_split, train=train,
        eval_split=data.eval_split, evaluation=evals,
    )  # fmt: skip

    changes = {"epochs": args.epochs, "learning_rate": args.learning_rate, "seed": args.seed}
    changes["max_steps"] = args.max_steps
    changes = {key: value for key, value in changes.items() if value is not None}
    config = config.replace(finetune=dataclasses.replace(config.finetune, **changes))
    tokenizer_dir = run.tokenizer  # notebook 02 writes it; built and saved when missing
    if tokenizer_dir.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        tokenizer = text.build_tokenizer()
        tokenizer.save_pretrained(tokenizer_dir)
    model, tokenizer = llm.build_model(config, tokenizer=tokenizer)
    print(f"{dataset}: {len(train)} training, {len(evals)} evaluation crystals; ", end="")
    print(f"{llm.count_parameters(model):,} parameters")
    result = llm.finetune(
        model,
        tokenizer,
        train,
        eval=evals,
        run_dir=llm_dir,
        config=config,
        resume=not args.no_resume,
    )
    eval_loss = "n/a" if result.eval_loss is None else f"{result.eval_loss:.3f}"
    print(f"{result.global_step} steps, training loss {result.train_loss:.3f}, ", end="")
    print(f"evaluation loss {eval_loss}; model saved to {result.model_dir}")


def _load_llm(args: argparse.Namespace, run: RunFolder) -> tuple[Any, Any, Any]:
    """The model, tokenizer and :class:`LLMConfig` that train-llm saved in ``run/llm``."""
    from flowllm_kit import llm

    model_dir = require(run.llm_model, "model", "train-llm", args)
    config_file = require(run.llm_config, "LLM settings", "train-llm", args)
    model, tokenizer = llm.load_model(model_dir)
    return model, tokenizer, llm.LLMConfig.from_dict(json.loads(config_file.read_text()))


def _sample_llm_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``sample-llm`` to its subparser."""
    parser.add_argument("--num-samples", type=int, help="crystals to keep (the preset's)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (the run's)")
    parser.add_argument("--top-p", type=float, help="nucleus sampling threshold (the run's)")
    parser.add_argument("--max-draws", type=int, help="stop after this many draws (20 x kept)")


def sample_llm(args: argparse.Namespace) -> None:
    """Draw unconditional crystals from the LLM into llm_samples.jsonl (notebook 04, sec. 2)."""
    from flowllm_kit import llm
    from flowllm_kit.presets import get_preset

    run = setup(args)
    model, tokenizer, config = _load_llm(args, run)
    num = args.num_samples or get_preset(args.preset).num_samples
    sampling = dataclasses.replace(
        config.sampling,
        temperature=args.temperature or config.sampling.temperature,
        top_p=args.top_p or config.sampling.top_p,
    )
    path = run.llm_samples
    result = llm.sample_crystals(
        model, tokenizer, num_crystals=num, config=sampling, path=path, max_draws=args.max_draws,
        seed=args.seed,
    )  # fmt: skip
    print(f"{len(result.crystals)} crystals from {result.num_draws} draws ", end="")
    print(f"(parse rate {result.acceptance_rate:.1%}) in {path}")


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


def _crystal_lists(args: argparse.Namespace, run: RunFolder) -> tuple[list, list]:
    """The training and evaluation crystals train-llm listed in ``run/llm/crystals.json``."""
    from flowllm_kit.llm import CRYSTAL_LISTS_FILE, read_crystal_lists

    path = require(run.llm / CRYSTAL_LISTS_FILE, "crystal lists", "train-llm", args)
    lists = read_crystal_lists(path.parent)
    return lists.train, lists.evaluation


def pairs(args: argparse.Namespace) -> None:
    """Build the (LLM crystal, real crystal) pair set into pairs/ (notebook 04, section 4)."""
    from flowllm_kit import llm

    run = setup(args)
    model, tokenizer, config = _load_llm(args, run)
    train, evals = _crystal_lists(args, run)
    max_draws = args.max_draws or config.pairs.max_draws
    num_pairs = args.num_pairs or config.pairs.num_pairs
    pair_config = dataclasses.replace(
        config.pairs,
        num_pairs=num_pairs,
        max_draws=max_draws,
        temperature=args.temperature or config.pairs.temperature,
        top_p=args.top_p or config.pairs.top_p,
    )
    options = {"batch_size": config.sampling.batch_size}
    options["max_new_tokens"] = config.sampling.max_new_tokens
    result = llm.build_pairs(
        model, tokenizer, train, run_dir=run.pairs_dir, config=pair_config, seed=args.seed,
        **options,
    )  # fmt: skip
    print(f"{len(result.c0)} pairs from {result.num_draws} draws in {run.pairs}")
    if args.num_val_pairs < 0:
        raise CommandError(f"--num-val-pairs must be >= 0, got {args.num_val_pairs}")
    if args.num_val_pairs:
        n = args.num_val_pairs
        val_config = dataclasses.replace(pair_config, num_pairs=n, max_draws=20 * n)
        val = llm.build_pairs(
            model, tokenizer, evals, run_dir=run.val_pairs_dir, config=val_config,
            seed=args.seed + 2, **options,
        )  # fmt: skip
        print(f"{len(val.c0)} validation pairs in {run.val_pairs}")


COMMANDS = {
    "train-llm": (train_llm, _train_llm_options, "fine-tune the LLM on crystal texts (nb 03)"),
    "sample-llm": (sample_llm, _sample_llm_options, "sample crystals from the LLM (nb 04)"),
    "pairs": (pairs, _pairs_options, "build the LLM/real crystal pair set (nb 04)"),
}
