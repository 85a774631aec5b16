"""Trained models shipped inside the package, loaded by name and checked before use.

A checkpoint is a small run folder (the files the generation and sampling stages read) plus a
``manifest.json``: what it is, the recipe and data it was trained on, the commit, its training
curves and the metrics it reached, and the sha256 and size of every file. :func:`load` checks
every file against the manifest before anything is read, so a damaged or altered file is
named rather than loaded::

    >>> from flowllm_kit import pretrained
    >>> pretrained.available()  # doctest: +SKIP
    ['mp20-demo']
    >>> checkpoint = pretrained.load("mp20-demo")  # doctest: +SKIP
    >>> model, tokenizer, config = checkpoint.llm()  # doctest: +SKIP

:func:`export` writes such a folder from a run folder; only weights in safetensors, JSON and the
tokenizer's JSON files go in (no pickles, such as the Trainer's ``training_args.bin``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from flowllm_kit.data.cache import file_sha256
from flowllm_kit.llm.crystal_lists import write_crystal_lists
from flowllm_kit.provenance import source_commit
from flowllm_kit.run import LLM_CONFIG_JSON, RunFolder
from flowllm_kit.stages import SelectedCrystals, load_flows, load_llm
from flowllm_kit.stages.generate import STARTS_JSON, start_statistics

__all__ = [
    "CHECKPOINTS",
    "DEFAULT",
    "MANIFEST",
    "CheckpointError",
    "Pretrained",
    "available",
    "export",
    "load",
    "verify",
]

CHECKPOINTS = Path(__file__).parent / "checkpoints"
"""Where the shipped checkpoints live: one folder per name."""

MANIFEST = "manifest.json"
_LLM_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_CURVE_POINTS = 200  # points kept of each training curve
# The checkpoint ``generate`` uses when none is named (benchmarks/results/generate.md times it).
DEFAULT = "mp20-kit"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not match its manifest."""


@dataclass(frozen=True)
class Pretrained:
    """A verified checkpoint: its folder (laid out as a run folder) and its manifest."""

    root: Path
    manifest: dict[str, Any]

    @property
    def run(self) -> RunFolder:
        return RunFolder(self.root)

    @property
    def flows(self) -> tuple[str, ...]:
        """The flow models it holds."""
        return tuple(self.manifest["flows"])

    def llm(self) -> tuple[Any, Any, Any]:
        """``(model, tokenizer, LLMConfig)``."""
        return load_llm(self.run)

    def flow(self, model: str = "flowllm", *, device: str = "cpu") -> Any:
        """The trained network (EMA weights) of ``model``."""
        if model not in self.flows:
            raise CheckpointError(f"{self.root.name} holds no {model!r} flow; it has {self.flows}")
        return load_flows(self.run, [model], device=device)[model]

    def install(
        self,
        run: RunFolder,
        *,
        crystals: SelectedCrystals | None = None,
        flows: Sequence[str] = (),
    ) -> list[str]:
        """Copy the LLM (when ``crystals`` are given) and ``flows`` into a run folder, where
        the stages then find them as if trained there (``make demo`` starts from them).

        Installing again what is already there does nothing; a run folder's own, different
        model is never overwritten.

        Args:
            run: The run folder.
            crystals: The run's training and held-out crystals (``stages.select_crystals``),
                written as the LLM's crystal lists, which the pair stage reads. They must be
                the crystals the checkpoint was trained on (same dataset, split and count).
            flows: Flow models to install (their EMA weights and settings).

        Returns:
            The parts copied (``"llm"``, flow names); those already there are left out.

        Raises:
            CheckpointError: If ``crystals`` are not the checkpoint's training crystals, a flow
                is not in the checkpoint, or the run folder holds a different model already.
        """
        copies: dict[str, list[tuple[Path, Path]]] = {}
        if crystals is not None:
            data = self.manifest.get("data", {})
            given = {"dataset": crystals.dataset, "train_split": crystals.train_split}
            given["train_count"] = len(crystals.train)
            trained = {key: data.get(key) for key in given}
            if given != trained:
                raise CheckpointError(
                    f"{self.root.name} was trained on {trained}; this run selects {given}: "
                    "train the LLM from scratch instead"
                )
            files = [self.root / "llm" / LLM_CONFIG_JSON]
            files += sorted((self.root / "llm" / "model").iterdir())
            copies["llm"] = [(f, run.llm / f.relative_to(self.root / "llm")) for f in files]
        for model in flows:
            if model not in self.flows:
                raise CheckpointError(f"{self.root.name} holds no {model!r} flow: {self.flows}")
            source = self.root / "flow" / model / "checkpoint"
            copies[model] = [(f, run.flow_checkpoint(model) / f.name) for f in source.iterdir()]
        installed = []
        for part, pairs in copies.items():
            there = [
                target.is_file() and file_sha256(target) == file_sha256(f) for f, target in pairs
            ]
            if all(there):
                continue
            weights = [t for f, t in pairs if f.suffix == ".safetensors" and t.exists()]
            if any(weights):
                raise CheckpointError(
                    f"{run.root} already holds its own {part} ({weights[0]}); install "
                    f"{self.root.name} into a new run folder, or delete that model first"
                )
            for source, target in pairs:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, target)
            installed.append(part)
        if crystals is not None and "llm" in installed:
            write_crystal_lists(
                run.llm, dataset=crystals.dataset, train_split=crystals.train_split,
                train=crystals.train, eval_split=crystals.eval_split,
                evaluation=crystals.evaluation,
            )  # fmt: skip
        record = run.installed_checkpoint
        done = json.loads(record.read_text())["installed"] if record.is_file() else []
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(
            json.dumps(
                {
                    "checkpoint": self.root.name,
                    "manifest_sha256": file_sha256(self.root / MANIFEST),
                    "trained_at_commit": self.manifest.get("trained_at_commit"),
                    "installed": sorted({*done, *installed, *(p for p in copies)}),
                },
                indent=1,
            )
        )
        return installed


def available() -> list[str]:
    """The names of the shipped checkpoints."""
    if not CHECKPOINTS.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / MANIFEST).is_file())


def verify(folder: str | Path) -> dict[str, Any]:
    """Check every file a checkpoint's manifest lists (size and sha256); returns the manifest.

    Raises:
        CheckpointError: Naming the first file that is missing or differs, or a folder without
            a manifest.
    """
    folder = Path(folder)
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise CheckpointError(f"{folder} holds no {MANIFEST}: not a flowllm-kit checkpoint")
    manifest = json.loads(manifest_file.read_text())
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder.name}: {name} is missing")
        if path.stat().st_size != expected["bytes"] or file_sha256(path) != expected["sha256"]:
            raise CheckpointError(
                f"{folder.name}: {name} does not match its manifest (sha256 or size differ): "
                "the file is damaged or was changed; reinstall the package or re-export it"
            )
    return manifest


def load(name: str | Path) -> Pretrained:
    """A shipped checkpoint by name (see :func:`available`), or any checkpoint folder by path,
    verified against its manifest.

    Raises:
        CheckpointError: If there is no such checkpoint, or a file does not match.
    """
    folder = CHECKPOINTS / str(name)
    if not (folder / MANIFEST).is_file():
        folder = Path(name)
    if not (folder / MANIFEST).is_file():
        raise CheckpointError(
            f"no checkpoint {str(name)!r}: the shipped ones are {available()}, or give the path "
            "of a folder written by flowllm_kit.pretrained.export"
        )
    return Pretrained(folder, verify(folder))


def _curve(history: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, list]:
    """Every ``len / _CURVE_POINTS``-th record's ``step`` and ``keys`` (where present)."""
    every = max(1, len(history) // _CURVE_POINTS)
    kept = [r for i, r in enumerate(history) if i % every == 0 or i == len(history) - 1]
    return {key: [r.get(key) for r in kept] for key in ("step", *keys)}


def _installed_llm(run: RunFolder) -> Pretrained | None:
    """The checkpoint whose LLM was installed into ``run`` (:meth:`Pretrained.install`), if
    it is still available: its training curve is the run's LLM's."""
    if not run.installed_checkpoint.is_file():
        return None
    installed = json.loads(run.installed_checkpoint.read_text())
    if "llm" not in installed.get("installed", []):
        return None
    try:
        return load(installed["checkpoint"])
    except CheckpointError:
        return None


def export(
    run: RunFolder,
    folder: str | Path,
    *,
    description: str,
    recipe: Mapping[str, Any],
    flows: Sequence[str] = ("flowllm",),
    metrics: Mapping[str, Any] | None = None,
    trained_at: str | None = None,
) -> Pretrained:
    """Write a checkpoint of ``run``'s LLM and ``flows`` into ``folder`` (made afresh).

    Args:
        run: A run folder with a fine-tuned LLM and trained flows.
        folder: The checkpoint folder (its name is the checkpoint's name).
        description: What the models are, in a sentence or two.
        recipe: How they were trained (preset, overrides, steps), stored as given.
        flows: The flow models to include (their EMA weights and settings).
        metrics: Metrics the models reached, stored as given (with their source).
        trained_at: The commit the models were trained at (default: the current commit).

    Returns:
        The checkpoint, verified.
    """
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "llm" / "model").mkdir(parents=True)
    for name in _LLM_FILES:
        if (run.llm_model / name).is_file():
            shutil.copy(run.llm_model / name, folder / "llm" / "model" / name)
    shutil.copy(run.llm_config, folder / "llm" / LLM_CONFIG_JSON)
    curves: dict[str, Any] = {}
    log = run.llm / "train_log.json"
    if log.is_file():
        curves["llm"] = _curve(json.loads(log.read_text()), ("loss", "eval_loss"))
    elif (installed_from := _installed_llm(run)) is not None:  # e.g. recipe --llm-from
        curves["llm"] = installed_from.manifest["curves"].get("llm", {})
    flow_settings = {}
    for model in flows:
        source = run.flow_checkpoint(model)
        target = folder / "flow" / model / "checkpoint"
        target.mkdir(parents=True)
        shutil.copy(source / "ema.safetensors", target / "ema.safetensors")
        state = json.loads((source / "state.json").read_text())
        history = state.pop("history", [])
        state.pop("optimizer_param_groups", None)
        (target / "state.json").write_text(json.dumps(state, indent=1))
        curves[model] = _curve(history, ("loss", "val_loss", "coords", "lattice", "types"))
        flow_settings[model] = {"step": state["step"], "network": state["network_config"]}
    if run.sampler_settings.is_file():
        (folder / "samples").mkdir()
        shutil.copy(run.sampler_settings, folder / "samples" / run.sampler_settings.name)
    if {"flowmm", "flowllm_types"} & set(flows):
        # What their starts are drawn from, fitted to the training targets: the distribution of
        # atoms per cell and the uniform base (statistics, not the crystals).
        sizes, base = start_statistics(run)
        (folder / STARTS_JSON).write_text(
            json.dumps({"atom_counts": asdict(sizes), "uniform_base": asdict(base)}, indent=1)
        )
    files = {
        str(p.relative_to(folder)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    lists = run.llm / "crystals.json"
    data = {}
    if lists.is_file():
        listed = json.loads(lists.read_text())
        data = {k: v for k, v in listed.items() if not k.endswith("_ids")}
        data |= {
            k.replace("_ids", "_count"): len(v) for k, v in listed.items() if k.endswith("_ids")
        }
    manifest = {
        "name": folder.name,
        "description": description,
        "exported": date.today().isoformat(),
        "trained_at_commit": trained_at or source_commit(),
        "recipe": dict(recipe),
        "data": data,
        "flows": flow_settings,
        "curves": curves,
        "metrics": dict(metrics or {}),
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return load(folder)
