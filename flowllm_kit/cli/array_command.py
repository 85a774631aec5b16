"""``submit-array`` and ``merge-array``: LLM sampling and the evaluation's CHGNet relaxations as
job arrays through submitit (SLURM on a cluster, local processes elsewhere), then one merge.

Usage::

    python -m flowllm_kit submit-array sample-llm --preset paper --tasks 64 --max-draws 20000 \\
        --partition gpu --gpus-per-task 1 --wait
    python -m flowllm_kit merge-array sample-llm --preset paper --num-samples 10000
    python -m flowllm_kit submit-array relax --preset paper --tasks 32 --cpus-per-task 8
    python -m flowllm_kit merge-array relax --preset paper
    python -m flowllm_kit evaluate --preset paper      # finds every relaxation in the cache
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from flowllm_kit.cli.common import CommandError, require, setup
from flowllm_kit.cli.evaluate_command import (
    evaluation_options,
    report_settings_of,
    systems_and_data,
)
from flowllm_kit.llm.sample import DRAWS_PER_CRYSTAL
from flowllm_kit.presets import get_preset
from flowllm_kit.stages import arrays

__all__ = ["COMMANDS", "merge_array", "submit_array"]

STAGES = ("sample-llm", "relax")


def _stage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "stage",
        choices=STAGES,
        help="sample-llm: the LLM's unconditional draws; relax: the CHGNet relaxations of the "
        "crystals evaluate scores",
    )


def _sampling_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sample-llm")
    group.add_argument("--num-samples", type=int, help="crystals to keep (the preset's)")
    group.add_argument(
        "--max-draws", type=int, help=f"draws over all tasks ({DRAWS_PER_CRYSTAL} x kept)"
    )
    group.add_argument("--temperature", type=float, help="sampling temperature (the run's)")
    group.add_argument("--top-p", type=float, help="nucleus sampling threshold (the run's)")


def _submit_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``submit-array`` to its subparser."""
    _stage_option(parser)
    parser.add_argument("--tasks", type=int, default=8, help="array tasks (%(default)s)")
    parser.add_argument(
        "--cluster",
        choices=("slurm", "local", "debug"),
        help="submitit executor (default: SLURM where sbatch exists, else local processes)",
    )
    parser.add_argument("--partition", help="SLURM partition")
    parser.add_argument("--timeout-min", type=int, default=240, help="per task (%(default)s)")
    parser.add_argument("--gpus-per-task", type=int, default=0, help="(%(default)s)")
    parser.add_argument("--cpus-per-task", type=int, default=1, help="(%(default)s)")
    parser.add_argument("--parallel", type=int, help="most tasks running at once (all)")
    parser.add_argument("--wait", action="store_true", help="wait for the tasks and report them")
    _sampling_options(parser)
    evaluation_options(parser.add_argument_group("relax (the options of evaluate)"))


def _merge_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``merge-array`` to its subparser."""
    _stage_option(parser)
    parser.add_argument("--num-samples", type=int, help="sample-llm: crystals (the preset's)")


def _call(function: Callable[..., int], kwargs: dict[str, Any], task: int) -> int:
    """One array task: ``function(**kwargs, task=task)`` (module level, so it pickles)."""
    return function(**kwargs, task=task)


def submit_array(args: argparse.Namespace) -> None:
    """Submit one stage as a job array (submitit); merge-array then collects its files."""
    import submitit

    run = setup(args)
    if args.tasks < 1:
        raise CommandError(f"--tasks must be >= 1, got {args.tasks}")
    common: dict[str, Any] = {"run_dir": str(run.root), "num_tasks": args.tasks}
    if args.stage == "sample-llm":
        require(run.llm_model, "model", "train-llm", args)
        num_samples = args.num_samples or get_preset(args.preset).num_samples
        task = arrays.llm_sample_task
        common |= {
            "max_draws": args.max_draws or DRAWS_PER_CRYSTAL * num_samples, "seed": args.seed,
            "temperature": args.temperature, "top_p": args.top_p,
        }  # fmt: skip
    else:
        systems, data = systems_and_data(args, run)
        structures = arrays.evaluation_relaxations(systems, data)
        task = arrays.relax_task
        common |= {"structures": structures, "settings": report_settings_of(args)}
    executor = submitit.AutoExecutor(folder=run.root / "arrays" / args.stage, cluster=args.cluster)
    executor.update_parameters(
        name=f"flowllm-{args.stage}", timeout_min=args.timeout_min, tasks_per_node=1,
        gpus_per_node=args.gpus_per_task, cpus_per_task=args.cpus_per_task,
        slurm_partition=args.partition, slurm_array_parallelism=args.parallel or args.tasks,
    )  # fmt: skip
    jobs = executor.map_array(functools.partial(_call, task, common), range(args.tasks))
    print(f"submitted {len(jobs)} tasks of {args.stage} (job {jobs[0].job_id.split('_')[0]});")
    print(f"logs in {run.root / 'arrays' / args.stage}")
    if args.wait:
        done = [job.result() for job in jobs]
        what = "draws" if args.stage == "sample-llm" else "relaxations"
        print(f"the tasks wrote {sum(done)} {what} ({', '.join(map(str, done))})")
    merge = f"python -m flowllm_kit merge-array {args.stage} --preset {args.preset}"
    print(f"when they have finished: {merge} --run-dir {run.root}")


def merge_array(args: argparse.Namespace) -> None:
    """Merge the files an array's tasks wrote into the run folder."""
    run = setup(args)
    try:
        if args.stage == "sample-llm":
            num_samples = args.num_samples or get_preset(args.preset).num_samples
            result = arrays.merge_llm_samples(run, num_samples=num_samples)
            print(f"{len(result.crystals)} crystals from {result.num_draws} draws ", end="")
            print(f"(parse rate {result.acceptance_rate:.1%}) in {run.llm_samples}")
        else:
            added = arrays.merge_relaxations(run)
            print(f"{added} relaxations added to the cache in {run.evaluation}")
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None


COMMANDS = {
    "submit-array": (submit_array, _submit_options, "submit sampling or relaxation as a job array"),
    "merge-array": (merge_array, _merge_options, "merge the files of a job array's tasks"),
}
