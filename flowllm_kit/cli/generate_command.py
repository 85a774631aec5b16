"""``generate``: crystals from a shipped checkpoint (or any run folder) in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowllm_kit import pretrained
from flowllm_kit.cli.common import CommandError, setup
from flowllm_kit.flow import FlowSamplerConfig
from flowllm_kit.relax import RelaxConfig
from flowllm_kit.run import RunFolder, RunFolderError
from flowllm_kit.stages.generate import GENERATORS, parse_formula
from flowllm_kit.stages.generate import generate as generate_crystals

__all__ = ["COMMANDS", "export_checkpoint", "generate", "read_formula_file"]


def _options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``generate`` to its subparser."""
    parser.add_argument(
        "--checkpoint",
        help=f"a shipped checkpoint {pretrained.available()} or a checkpoint folder (default: "
        f"{pretrained.DEFAULT}; --run-dir takes a run folder's models instead)",
    )
    parser.add_argument("-n", type=int, default=8, help="crystals (per formula) (%(default)s)")
    parser.add_argument(
        "--formula", nargs="+", default=[], help="compositions, e.g. LiFePO4 (exact atoms)"
    )
    parser.add_argument("--formula-file", help="a file with one formula per line (# comments)")
    parser.add_argument("--out", default="generated", help="output folder (%(default)s)")
    parser.add_argument(
        "--model",
        choices=GENERATORS,
        default="flowllm",
        help="flowllm: the LLM's crystals refined by the flow; llm: the LLM alone; "
        "flowllm_types: the LLM's atom types, geometry from the flow; flowmm: de novo FlowMM "
        "(no formulas) (%(default)s)",
    )
    parser.add_argument("--no-refine", action="store_true", help="the same as --model llm")
    parser.add_argument("--num-steps", type=int, help="flow ODE steps (the checkpoint's: 250)")
    parser.add_argument("--temperature", type=float, help="LLM sampling temperature (the run's)")
    parser.add_argument("--top-p", type=float, help="nucleus threshold (the run's)")
    parser.add_argument(
        "--relax", action="store_true", help="also relax each crystal with CHGNet (energy)"
    )
    parser.add_argument("--relax-steps", type=int, default=250, help="FIRE steps (%(default)s)")


def read_formula_file(path: str | Path) -> list[str]:
    """The formulas of a file, one per line; blank lines and ``#`` comments are skipped.

    Raises:
        CommandError: Naming the file (and line) that is missing or holds a bad formula.
    """
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"--formula-file {path}: no such file")
    formulas = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        formula = line.split("#", 1)[0].strip()
        if not formula:
            continue
        try:
            parse_formula(formula)
        except ValueError as error:
            raise CommandError(f"{path}, line {number}: {error}") from None
        formulas.append(formula)
    if not formulas:
        raise CommandError(f"--formula-file {path} holds no formula")
    return formulas


def _run(args: argparse.Namespace) -> RunFolder:
    if args.run_dir:
        return RunFolder(args.run_dir)
    if not args.checkpoint and not pretrained.available():
        raise CommandError("no checkpoint is shipped with this install: give --run-dir")
    try:
        checkpoint = pretrained.load(args.checkpoint or pretrained.DEFAULT)
    except pretrained.CheckpointError as error:
        raise CommandError(str(error)) from None
    print(f"checkpoint {checkpoint.root.name}: {checkpoint.manifest['description']}")
    return checkpoint.run


def generate(args: argparse.Namespace) -> None:
    """Generate crystals (for formulas, with exactly their atoms) as CIFs and a summary."""
    setup(args)
    formulas = list(args.formula)
    for formula in formulas:
        try:
            parse_formula(formula)
        except ValueError as error:
            raise CommandError(f"--formula: {error}") from None
    if args.formula_file:
        formulas += read_formula_file(args.formula_file)
    if args.n < 1:
        raise CommandError(f"-n must be >= 1, got {args.n}")
    run = _run(args)
    sampler = None if args.num_steps is None else FlowSamplerConfig(num_steps=args.num_steps)
    relax = RelaxConfig(max_steps=args.relax_steps) if args.relax else None
    try:
        result = generate_crystals(
            run, out=args.out, n=args.n, formulas=formulas or None,
            model="llm" if args.no_refine else args.model,
            sampler=sampler, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
            relax=relax,
        )  # fmt: skip
    except (RunFolderError, ValueError) as error:
        raise CommandError(str(error)) from None
    summary = result.summary
    print(f"{len(summary)} crystals from {result.num_draws} LLM draws in {result.folder}/cif/")
    if len(summary):
        valid = summary["structurally_valid"] & summary["compositionally_valid"]
        print(
            f"structurally valid {summary['structurally_valid'].mean():.0%}, compositionally "
            f"valid {summary['compositionally_valid'].mean():.0%}, both {valid.mean():.0%}"
        )
    if formulas and len(summary):
        print(f"with the requested composition: {summary['matches_request'].mean():.0%}")
    if result.rejections:
        print("LLM draws rejected: " + ", ".join(f"{k} {v}" for k, v in result.rejections.items()))
    print(f"summary: {result.folder / 'summary.csv'}")


def _export_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``export-checkpoint`` to its subparser."""
    parser.add_argument("out", help="the checkpoint folder to write (its name names it)")
    parser.add_argument("--description", required=True, help="what the models are")
    parser.add_argument(
        "--flows", nargs="+", default=["flowllm"], help="flow models to include (%(default)s)"
    )
    parser.add_argument("--trained-at", help="commit the models were trained at (default: HEAD)")


def export_checkpoint(args: argparse.Namespace) -> None:
    """Write a run folder's LLM and flows as a checkpoint (manifest: sha256, curves, metrics)."""
    import json

    import pandas as pd

    run = setup(args)
    for path, what in [(run.llm_model, "LLM"), *((run.flow_checkpoint(m), m) for m in args.flows)]:
        if not path.exists():
            raise CommandError(f"no {what} at {path}: train it first")
    metrics = {}
    if run.metrics_intervals.is_file():
        table = pd.read_csv(run.metrics_intervals)
        keep = table[table["system"].isin([*args.flows, "llm_only", "real"])]
        metrics = {
            "source": f"{run.metrics_intervals.relative_to(run.root)} of the run",
            "rows": json.loads(keep.to_json(orient="records")),
        }
    config = json.loads(run.llm_config.read_text())
    recipe = {"preset": args.preset, "llm_finetune": config.get("finetune")}
    if run.recipe.is_file():  # the recipe command's record: each stage's device and time
        recipe["stages"] = json.loads(run.recipe.read_text())["stages"]
    checkpoint = pretrained.export(
        run, args.out, description=args.description, recipe=recipe, flows=args.flows,
        metrics=metrics, trained_at=args.trained_at,
    )  # fmt: skip
    size = sum(f["bytes"] for f in checkpoint.manifest["files"].values())
    print(f"checkpoint {checkpoint.root} ({size / 1e6:.1f} MB), verified")


COMMANDS = {
    "generate": (generate, _options, "generate crystals from a trained FlowLLM"),
    "export-checkpoint": (export_checkpoint, _export_options, "a run's models as a checkpoint"),
}
