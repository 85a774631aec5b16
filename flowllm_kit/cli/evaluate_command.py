"""``evaluate``: score every sample set of a run folder (notebook 07)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flowllm_kit import evaluate as metrics
from flowllm_kit.cli.common import CommandError, setup
from flowllm_kit.evaluate import ELEMENTAL_REFERENCE_FILE, HullReference, dataset_hull, find_systems
from flowllm_kit.evaluate.paper import beside_paper
from flowllm_kit.presets import get_preset
from flowllm_kit.run import RunFolder
from flowllm_kit.stages import (
    evaluate_systems,
    evaluation_data,
    metrics_table,
    report_settings,
)

__all__ = ["COMMANDS", "evaluate"]


def _options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``evaluate`` to its subparser."""
    parser.add_argument(
        "--systems",
        nargs="+",
        help="systems to evaluate (default: every samples/*.jsonl, llm_only)",
    )
    parser.add_argument(
        "-n", "--n-evaluate", dest="n", type=int, help="crystals per system (the preset's)"
    )
    parser.add_argument(
        "--relax-steps", type=int, help="most CHGNet FIRE steps (smoke 100, demo 250, paper 1500)"
    )
    parser.add_argument(
        "--relax-stall-steps",
        type=int,
        help="stop a relaxation whose energy has not fallen by RelaxConfig.stall_tolerance in "
        "this many steps, recorded as stalled (default: off, every unconverged crystal runs to "
        "--relax-steps)",
    )
    parser.add_argument(
        "--n-reference", type=int, help="reference crystals (smoke 40, demo 256, paper all)"
    )
    parser.add_argument(
        "--min-count", type=int, help="smallest denominator of a rate (smoke 5, else 10)"
    )
    parser.add_argument("--no-controls", action="store_true", help="skip real/perturbed controls")
    parser.add_argument("--perturbation", type=float, default=0.1, help="Å (%(default)s)")
    parser.add_argument(
        "--hull-dataset",
        default="mp_20",
        help="dataset whose val + test build the hull; 'none': no relaxation nor stability",
    )
    parser.add_argument(
        "--hull-file",
        help="a Matbench Discovery PatchedPhaseDiagram pickle (.pkl.gz), the paper's hull, used "
        "instead of --hull-dataset; a pickle runs code when loaded: trusted files only",
    )
    parser.add_argument("--processes", type=int, help="worker processes (1 smoke, else 1/core)")


def _hull(dataset: str) -> Any:
    """The hull of ``dataset``'s val + test entries (None without the elemental references)."""

    try:
        hull = dataset_hull(dataset)
    except FileNotFoundError as error:
        raise CommandError(
            f"{error}\n(or pass --hull-dataset none: no stability metrics)"
        ) from None
    if hull is None:
        print(f"no {ELEMENTAL_REFERENCE_FILE} in the data folders: stability is not computable")
    return hull


def _select(args: argparse.Namespace, run: RunFolder, n: int | None) -> dict[str, list]:
    """The generated systems to evaluate: all found, or those named by ``--systems``."""

    systems = find_systems(run, n=n)
    wanted = [name for name in args.systems or systems if name not in ("real", "perturbed")]
    missing = [name for name in wanted if name not in systems]
    if missing:
        raise CommandError(
            f"no crystals for {', '.join(missing)} in {run.samples} or "
            f"{run.llm_samples}: run `python -m flowllm_kit sample` first"
        )
    if not systems:
        print(f"no generated crystals in {run}: only the controls are evaluated")
    return {name: systems[name] for name in wanted}


def evaluate(args: argparse.Namespace) -> None:
    """Evaluate each system with ``evaluate.report`` into evaluation/ (notebook 07)."""
    import warnings

    import pandas as pd

    run = setup(args)
    warnings.filterwarnings("ignore", message="No Pauling electronegativity")  # noble gases
    n_evaluate = args.n or get_preset(args.preset).evaluation.n_evaluate
    systems = _select(args, run, n_evaluate)
    data = evaluation_data(
        args.preset, n_evaluate=n_evaluate, n_reference=args.n_reference, seed=args.seed
    )
    if not args.no_controls:
        controls = metrics.control_systems(
            data.real, perturbation=args.perturbation, seed=args.seed
        )
        systems |= {k: v for k, v in controls.items() if not args.systems or k in args.systems}
    if not systems:
        raise CommandError(
            f"nothing to evaluate: no crystals in {run.samples} or {run.llm_samples}"
            " and --no-controls; run `python -m flowllm_kit sample` first"
        )
    if args.hull_file:
        if not Path(args.hull_file).is_file():
            raise CommandError(f"--hull-file {args.hull_file}: no such file")
        hull = HullReference.from_patched_phase_diagram(args.hull_file)
    elif args.hull_dataset.lower() == "none":
        hull = None
    else:
        hull = _hull(args.hull_dataset)
    settings = report_settings(
        args.preset, relax_steps=args.relax_steps, relax_stall_steps=args.relax_stall_steps,
        min_count=args.min_count, processes=args.processes,
    )  # fmt: skip
    evaluated = evaluate_systems(run, systems, data, settings=settings, hull=hull)
    for system, result in evaluated.items():
        print(f"{system}: {result.crystals} crystals evaluated into {run.evaluation_of(system)}")
    table = beside_paper(metrics_table(evaluated))
    table.to_csv(run.metrics_beside_paper)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(2).to_string(na_rep="n/c"))


COMMANDS = {"evaluate": (evaluate, _options, "evaluate the sample sets of a run (nb 07)")}
