"""``evaluate``: score every sample set of a run folder (notebook 07), or any generator's
structure files with ``--structures`` (notebook 09)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flowllm_kit import evaluate as metrics
from flowllm_kit.cli.common import CommandError, setup
from flowllm_kit.distributed import world
from flowllm_kit.evaluate import ELEMENTAL_REFERENCE_FILE, HullReference, dataset_hull, find_systems
from flowllm_kit.evaluate.paper import beside_paper
from flowllm_kit.presets import configure_threads, get_preset
from flowllm_kit.run import RunFolder
from flowllm_kit.stages import (
    evaluate_structures,
    evaluate_systems,
    evaluation_data,
    intervals_table,
    metrics_table,
    relaxed_hull,
    report_settings,
    table_with_intervals,
)
from flowllm_kit.stages.structures import REJECTED_CSV

__all__ = ["COMMANDS", "evaluate", "evaluation_options", "report_settings_of", "systems_and_data"]


def evaluation_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that choose a run folder's systems and how they are relaxed (shared by
    ``evaluate`` and ``submit-array relax``, which must relax the same crystals)."""
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
    parser.add_argument("--processes", type=int, help="worker processes (1 smoke, else 1/core)")


def _options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``evaluate`` to its subparser."""
    outside = parser.add_argument_group(
        "structures from any generator (instead of a run folder's samples)"
    )
    outside.add_argument(
        "--structures",
        nargs="+",
        metavar="PATH",
        help="CIF files, folders of them, extxyz / ASE .traj files, POSCARs, pymatgen JSON or "
        "the kit's JSON-lines samples; unreadable, disordered or empty structures are listed in "
        "OUT/rejected.csv",
    )
    outside.add_argument("--out", help="report folder of --structures (required with it)")
    outside.add_argument("--name", default="structures", help="system name (%(default)s)")
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
    parser.add_argument(
        "--no-relaxed-hull",
        action="store_true",
        help="skip the hull of training crystals relaxed with CHGNet (the stability measure "
        "that tells real from generated crystals; its relaxations are cached once per split)",
    )
    evaluation_options(parser)


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


def systems_and_data(args: argparse.Namespace, run: RunFolder) -> tuple[dict[str, list], Any]:
    """The systems ``evaluate`` scores (generated ones, then the controls unless
    ``--no-controls``) and the run's :class:`~flowllm_kit.stages.EvaluationData`."""
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
    return systems, data


def _stability_hull(args: argparse.Namespace) -> HullReference | None:
    """The DFT-energy hull the options name (None: ``--hull-dataset none``)."""
    if args.hull_file:
        if not Path(args.hull_file).is_file():
            raise CommandError(f"--hull-file {args.hull_file}: no such file")
        return HullReference.from_patched_phase_diagram(args.hull_file)
    if args.hull_dataset.lower() == "none":
        return None
    return _hull(args.hull_dataset)


def report_settings_of(args: argparse.Namespace) -> Any:
    """The report settings the options of ``evaluate`` give."""
    return report_settings(
        args.preset, relax_steps=args.relax_steps, relax_stall_steps=args.relax_stall_steps,
        min_count=args.min_count, processes=args.processes, seed=args.seed,
    )  # fmt: skip


def _print_table(table: Any) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(table.to_string(na_rep="n/c"))


def evaluate_files(args: argparse.Namespace) -> None:
    """``--structures``: one report for structure files written by any generator."""
    if not args.out:
        raise CommandError("--structures needs --out DIR, the folder the report goes to")
    configure_threads(args.preset, args.threads)
    no_stability = args.hull_dataset.lower() == "none" and not args.hull_file
    try:
        result = evaluate_structures(
            args.structures, args.out, name=args.name, preset=args.preset,
            hull=_stability_hull(args), use_relaxed_hull=not (args.no_relaxed_hull or no_stability),
            settings=report_settings_of(args), n_evaluate=args.n, n_reference=args.n_reference,
            seed=args.seed,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    counts = result.inputs.counts()
    print(
        f"{counts['structures']} structures evaluated from {counts['files']} files into "
        f"{result.folder}; {counts['rejected']} rejected (listed in {REJECTED_CSV})"
    )
    for rejected in result.inputs.rejected[:20]:
        print(f"  rejected {rejected.source}: {rejected.reason}")
    if len(result.inputs.rejected) > 20:
        print(f"  ... and {len(result.inputs.rejected) - 20} more")
    intervals = intervals_table({args.name: result.report})
    _print_table(table_with_intervals(intervals).T)


def evaluate(args: argparse.Namespace) -> None:
    """Evaluate each system with ``evaluate.report`` into evaluation/ (notebook 07)."""
    import warnings

    warnings.filterwarnings("ignore", message="No Pauling electronegativity")  # noble gases
    if args.structures:
        evaluate_files(args)
        return
    if args.out:
        raise CommandError("--out is the report folder of --structures; a run folder's report "
                           "goes to its evaluation/ folder")  # fmt: skip
    run = setup(args)
    systems, data = systems_and_data(args, run)
    hull, settings = _stability_hull(args), report_settings_of(args)
    no_stability = hull is None and args.hull_dataset.lower() == "none"
    relaxed = None if args.no_relaxed_hull or no_stability else relaxed_hull(data, settings)
    evaluated = evaluate_systems(run, systems, data, settings=settings, hull=hull, relaxed=relaxed)
    for system, result in evaluated.items():
        print(f"{system}: {result.crystals} crystals evaluated into {run.evaluation_of(system)}")
    if world().is_main:
        beside_paper(metrics_table(evaluated)).to_csv(run.metrics_beside_paper)
    _print_table(table_with_intervals(intervals_table(evaluated)).T)


COMMANDS = {"evaluate": (evaluate, _options, "evaluate the sample sets of a run (nb 07)")}
