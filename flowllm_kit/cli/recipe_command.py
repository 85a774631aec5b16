"""``recipe``: every training stage of a preset in one resumable command, each stage's device and
time recorded (the kit-scale recipe: ``python -m flowllm_kit recipe --preset kit``).

The stages, in order, each the stage function the notebooks and the other commands call:

- ``llm``: fine-tune the preset's LLM (notebook 03), or copy a shipped one (``--llm-from``);
- ``llm-samples``: the LLM's unconditional crystals, FlowLLM's starts (notebook 04), and its
  answers to the held-out formulas, one each (how well it follows a formula; kit target 80%);
- ``pairs``: the preset's (LLM crystal, real crystal) pairs and validation pairs (notebook 04);
- ``flow-<model>``: each flow trained on them with the preset's budget (notebook 05), until its
  validation loss stops falling where the preset sets a patience;
- ``samples``: each flow's crystals (notebook 06); ``evaluate`` scores them (notebook 07).

A stage that finished is recorded in ``<run>/recipe.json`` (when, on which device, how long,
with which kit commit) and skipped when the command runs again; one that was interrupted (its
time so far is written every minute, so a killed attempt still counts) runs again and resumes
from what it saved (the LLM's and the flows' checkpoints, the draws already in the pair and
sample files). So a recipe of hours on a CPU survives being stopped, and its record says where
each part ran: ``--stages`` runs some of them (e.g. the LLM on a GPU machine, the rest
elsewhere, in one run folder). ``--redo STAGE`` runs a finished stage afresh: its outputs move
to ``<run>/redone/`` first, since the stage would otherwise resume from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from flowllm_kit import llm, pretrained, stages
from flowllm_kit.cli.common import CommandError, setup
from flowllm_kit.distributed import barrier, world
from flowllm_kit.files import atomic_file
from flowllm_kit.flow import FlowSamplerConfig, flow_configs
from flowllm_kit.flow.train import resolve_device
from flowllm_kit.presets import get_preset
from flowllm_kit.provenance import cpu_model, source_commit
from flowllm_kit.run import RunFolder

__all__ = ["COMMANDS", "RecipeRecord", "recipe", "recipe_stages"]

FLOWS = ("flowllm", "flowmm", "flowllm_types")
"""The flows the recipe trains: the three the comparison needs (FlowMM-CSP is notebook 05's)."""
HEARTBEAT_SECONDS = 60.0
"""How often a running stage writes its attempt's seconds so far to ``recipe.json``."""
VAL_PAIRS = 512
"""Validation pairs on the held-out crystals (fewer when the preset keeps fewer training
pairs); the flows' validation loss, and so their patience, reads them."""


def recipe_stages(models: tuple[str, ...] = FLOWS) -> tuple[str, ...]:
    """The recipe's stage names, in order."""
    return ("llm", "llm-samples", "pairs", *(f"flow-{m}" for m in models), "samples")


def device_description() -> str:
    """Where this process computes: the GPU's name, or the CPU's model, cores and threads."""
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch "
        f"threads (torch {torch.__version__})"
    )


class RecipeRecord:
    """``<run>/recipe.json``: the preset and, per finished stage, its attempts' devices and
    seconds. Written after every stage, so an interrupted recipe keeps what finished."""

    def __init__(self, run: RunFolder, preset: str) -> None:
        self.path = run.recipe
        self.data: dict[str, Any] = {"preset": preset, "stages": {}}
        if self.path.is_file():
            self.data = json.loads(self.path.read_text())
            if self.data.get("preset") != preset:
                raise CommandError(
                    f"{self.path} records the {self.data.get('preset')!r} recipe, not {preset!r}:"
                    " give another --run-dir"
                )

    def done(self, stage: str) -> bool:
        return self.data["stages"].get(stage, {}).get("status") == "done"

    def run(self, stage: str, work: Callable[[], dict[str, Any]]) -> None:
        """Run ``work`` (which returns what to record of its result) and record it.

        While ``work`` runs, the attempt's seconds so far are written every
        :data:`HEARTBEAT_SECONDS`, so an attempt that is killed (a session's end, a preempted
        job) keeps its time to within that, and the stage's total counts it. The next run of
        the stage marks such an attempt ``interrupted``.
        """
        entry = self.data["stages"].setdefault(stage, {"attempts": []})
        if entry.get("status") == "running" and entry["attempts"]:
            entry["attempts"][-1]["interrupted"] = True
        entry["status"] = "running"
        started = datetime.datetime.now(datetime.UTC)
        attempt = {"started": started.isoformat(timespec="seconds")}
        attempt |= {"device": device_description(), "commit": source_commit() or "unknown"}
        entry["attempts"].append(attempt)
        self._write()
        tick = time.perf_counter()
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(HEARTBEAT_SECONDS):
                attempt["seconds"] = round(time.perf_counter() - tick, 1)
                self._write()

        beating = threading.Thread(target=heartbeat, name=f"recipe {stage}", daemon=True)
        beating.start()
        try:
            result = work()
        finally:
            stop.set()
            beating.join()
        attempt["seconds"] = round(time.perf_counter() - tick, 1)
        entry |= {"status": "done", "result": result}
        entry["seconds"] = round(sum(a.get("seconds", 0.0) for a in entry["attempts"]), 1)
        self._write()

    def _write(self) -> None:
        # Whole or not at all: a recipe stopped mid-write keeps its last record. Under a
        # launcher every process runs the stages, and rank 0 alone keeps the record.
        if world().is_main:
            with atomic_file(self.path) as sink:
                sink.write(json.dumps(self.data, indent=1).encode())


def stage_outputs(run: RunFolder, stage: str) -> list[Path]:
    """The files and folders the recipe's ``stage`` writes (what ``--redo`` moves aside)."""
    if stage.startswith("flow-"):
        return [run.flow(stage.removeprefix("flow-"))]
    return {
        "llm": [run.llm, run.installed_checkpoint],
        "llm-samples": [run.llm_samples, run.llm_formulas],
        "pairs": [run.pairs_dir, run.val_pairs_dir],
        "samples": [run.samples],
    }[stage]


def move_aside(run: RunFolder, stage: str) -> Path | None:
    """Move the outputs of a finished ``stage`` into ``run.redone/<time>-<stage>/`` (kept, not
    deleted), so that running it again computes them afresh instead of resuming from them.
    Returns that folder, or None when the stage had written nothing."""
    found = [path for path in stage_outputs(run, stage) if path.exists()]
    if not found:
        return None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    target = run.redone / f"{stamp}-{stage}"
    for path in found:
        destination = target / path.relative_to(run.root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, destination)
    return target


def _options(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``recipe`` to its subparser."""
    parser.add_argument(
        "--stages",
        nargs="+",
        metavar="STAGE",
        help=f"run only these stages ({', '.join(recipe_stages())}); default: all, in order",
    )
    parser.add_argument(
        "--redo",
        nargs="+",
        default=[],
        metavar="STAGE",
        help="run these again though recorded; their outputs move to <run>/redone/ first (a "
        "redo that was interrupted resumes instead)",
    )
    parser.add_argument(
        "--llm-from",
        metavar="CHECKPOINT",
        help="copy the LLM of a shipped checkpoint (e.g. mp20-demo) instead of training one",
    )
    parser.add_argument(
        "--models", nargs="+", choices=FLOWS, default=list(FLOWS), help="flows to train"
    )


def recipe(args: argparse.Namespace) -> None:
    """Run the preset's training stages into the run folder, resuming, recording each."""

    run = setup(args)
    preset = get_preset(args.preset)
    names = recipe_stages(tuple(args.models))
    unknown = sorted((set(args.stages or ()) | set(args.redo)) - set(names))
    if unknown:
        raise CommandError(f"unknown stages {unknown}; the recipe's are {', '.join(names)}")
    record = RecipeRecord(run, args.preset)
    config = llm.llm_preset(args.preset)
    crystals = stages.select_crystals(args.preset)

    def train_or_install() -> dict[str, Any]:
        if args.llm_from:
            try:
                pretrained.load(args.llm_from).install(run, crystals=crystals)
            except pretrained.CheckpointError as error:
                raise CommandError(f"--llm-from {args.llm_from}: {error}") from error
            return {"installed_from": args.llm_from}
        result = stages.train_llm(run, config, crystals)
        return {"steps": result.global_step, "eval_loss": result.eval_loss}

    def llm_samples() -> dict[str, Any]:
        model, tokenizer, saved = stages.load_llm(run)
        result = stages.sample_llm(
            run, model, tokenizer, saved, num_samples=preset.num_samples, seed=args.seed
        )
        following = stages.formula_following(
            run, model, tokenizer, saved, crystals.evaluation, seed=args.seed + 1
        )
        print(f"formula following (held-out): {following}")
        return {
            "parsed": len(result.crystals), "draws": result.num_draws,
            "formula_following": following.as_dict(),
        }  # fmt: skip

    def pairs() -> dict[str, Any]:
        model, tokenizer, saved = stages.load_llm(run)
        # The preset's pair set, whichever LLM settings the run's model was saved with.
        train, val = stages.build_pair_sets(
            run, model, tokenizer, saved, crystals.train, crystals.evaluation,
            pairs=config.pairs, num_val_pairs=min(VAL_PAIRS, config.pairs.num_pairs),
            seed=args.seed,
        )  # fmt: skip
        return {
            "pairs": len(train.c0), "draws": train.num_draws, "rejections": train.rejections,
            "val_pairs": len(val.c0) if val is not None else 0,
        }  # fmt: skip

    def flow(model: str) -> Callable[[], dict[str, Any]]:
        def train() -> dict[str, Any]:
            pair_set, val_pairs = stages.load_pair_sets(run)
            network, training = flow_configs(args.preset)
            training = dataclasses.replace(training, seed=args.seed)
            denoise = stages.denoising_set(preset=args.preset, seed=args.seed)
            trained = stages.train_flows(
                run, stages.flow_runs(pair_set, val_pairs, denoise=denoise),
                network=network, config=training, models=[model], seed=args.seed,
            )[model]  # fmt: skip
            history = trained.trainer.history
            val = [h["val_loss"] for h in history if "val_loss" in h]
            return {
                "steps": trained.trainer.step,
                "stopped_early": trained.trainer.stopped_early,
                "best_val_loss": min(val) if val else None,
                "last_val_loss": val[-1] if val else None,
                "train_pairs": len(pair_set.c0),
            }

        return train

    def samples() -> dict[str, Any]:
        starts = stages.flow_starts(run, list(args.models), n=preset.num_samples, seed=args.seed)
        networks = stages.load_flows(run, list(args.models), device=resolve_device("auto"))
        made = stages.sample_flows(
            run, networks, starts, sampler=FlowSamplerConfig(), seed=args.seed
        )
        return {name: len(crystals) for name, crystals in made.items()}

    work: dict[str, Callable[[], dict[str, Any]]] = {
        "llm": train_or_install, "llm-samples": llm_samples, "pairs": pairs,
        **{f"flow-{m}": flow(m) for m in args.models}, "samples": samples,
    }  # fmt: skip
    for name in names:
        if args.stages and name not in args.stages:
            continue
        if record.done(name) and name not in args.redo:
            print(f"{name}: done ({record.data['stages'][name]['seconds']:.0f} s), skipped")
            continue
        if record.done(name):  # redo: the stage functions resume from files, so clear them
            if world().is_main and (moved := move_aside(run, name)) is not None:
                print(f"{name}: its earlier outputs moved to {moved}")
            barrier()
            later = [n for n in names[names.index(name) + 1 :] if record.done(n)]
            if later and not set(later) <= set(args.redo):
                print(f"{name}: note that {', '.join(later)} were built on its earlier outputs")
        print(f"{name}: running on {device_description()}")
        record.run(name, work[name])
        entry = record.data["stages"][name]
        print(f"{name}: done in {entry['seconds']:.0f} s: {json.dumps(entry['result'])}")
    print(
        f"recorded in {record.path}; score the samples with `python -m flowllm_kit evaluate ",
        end="",
    )
    print(f"--preset {args.preset} --run-dir {run.root}`")


COMMANDS = {"recipe": (recipe, _options, "run a preset's training stages, resumably (kit)")}
