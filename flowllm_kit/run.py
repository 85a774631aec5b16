"""The run folder: where each stage of the kit reads and writes, spelt out once.

Every stage (the notebooks, the command line, the viewer, the evaluation) takes a run folder
and finds its inputs and outputs through :class:`RunFolder`, so the layout below exists in this
file only::

    <run>/
      figures/                      figures of every notebook
      tokenizer/                    the digit-splitting tokenizer (notebook 02)
      llm/                          fine-tuning: llm_config.json, checkpoints/, model/ (03)
      llm_samples.jsonl             every unconditional LLM draw, rejected ones included (04)
      llm_formulas.jsonl            the LLM's answers to held-out formulas (recipe)
      pairs/pairs.npz               the (LLM crystal, real crystal) pair set; pair_samples.jsonl
      pairs_val/pairs.npz           held-out pairs for the flows' validation loss (04)
      flow/<model>/checkpoint/      a trained flow: weights, EMA, optimizer, state.json (05)
      samples/<model>.jsonl         generated crystals of each flow model (06)
      samples/trajectory_<model>.npz  recorded ODE trajectories (06)
      samples/sampler.json          the sampler settings used
      evaluation/                   metrics.csv, relax cache, one folder per system (07, 08)
      checkpoint.json               the shipped checkpoint the models came from, if they did
      recipe.json, redone/          the recipe's record; outputs of stages it ran again
      notebooks/, stages/, logs/    the series runner: executed notebooks, finished-stage
                                    markers, kernel logs and progress events

Example::

    >>> run = RunFolder("runs/demo")
    >>> run.samples_file("flowllm")
    PosixPath('runs/demo/samples/flowllm.jsonl')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LLM_CONFIG_JSON",
    "LLM_ONLY",
    "METRICS_JSON",
    "PAIRS_FILE",
    "PER_STRUCTURE_CSV",
    "RELAX_CACHE_JSONL",
    "REPORT_SETTINGS_JSON",
    "RunFolder",
    "RunFolderError",
]

LLM_ONLY = "llm_only"  # the system name of the LLM's own crystals (no flow)

PAIRS_FILE = "pairs.npz"  # a pair set, in the folder build_pairs writes to
LLM_CONFIG_JSON = "llm_config.json"  # the LLM settings, beside its model folder

# The files of one evaluation report (flowllm_kit.evaluate.Report.save), in any folder.
METRICS_JSON = "metrics.json"
PER_STRUCTURE_CSV = "per_structure.csv"
REPORT_SETTINGS_JSON = "settings.json"
# The relaxations of a report's crystals, in the folder it is given as its cache.
RELAX_CACHE_JSONL = "relax.jsonl"


class RunFolderError(FileNotFoundError):
    """A run folder lacks what a stage needs; the message names the path, what is missing and
    the stage that writes it."""


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder (nothing is created or read until a stage does it)."""

    root: Path  # a str is turned into a Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def __fspath__(self) -> str:
        return str(self.root)

    def __str__(self) -> str:
        return str(self.root)

    # --- notebooks 01-03 -----------------------------------------------------------------
    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def llm(self) -> Path:
        """The fine-tuning run folder (checkpoints, logs, the final model)."""
        return self.root / "llm"

    @property
    def llm_model(self) -> Path:
        """The fine-tuned model (or adapters) and its tokenizer."""
        return self.llm / "model"

    @property
    def llm_config(self) -> Path:
        return self.llm / LLM_CONFIG_JSON

    # --- notebook 04 ---------------------------------------------------------------------
    @property
    def llm_samples(self) -> Path:
        """Every unconditional draw of the LLM (JSON lines, rejected draws included)."""
        return self.root / "llm_samples.jsonl"

    @property
    def llm_formulas(self) -> Path:
        """The LLM's answer to each held-out formula prompt (JSON lines, every draw)."""
        return self.root / "llm_formulas.jsonl"

    @property
    def pairs_dir(self) -> Path:
        return self.root / "pairs"

    @property
    def pairs(self) -> Path:
        """The training pair set."""
        return self.pairs_dir / PAIRS_FILE

    @property
    def val_pairs_dir(self) -> Path:
        return self.root / "pairs_val"

    @property
    def val_pairs(self) -> Path:
        """Held-out pairs for the flows' validation loss."""
        return self.val_pairs_dir / PAIRS_FILE

    # --- notebook 05 ---------------------------------------------------------------------
    @property
    def flows(self) -> Path:
        return self.root / "flow"

    def flow(self, model: str) -> Path:
        """The training folder of one flow model (``flowllm``, ``flowmm``, ...)."""
        return self.flows / model

    def flow_checkpoint(self, model: str) -> Path:
        return self.flow(model) / "checkpoint"

    # --- notebook 06 ---------------------------------------------------------------------
    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def samples_file(self, model: str) -> Path:
        """Generated crystals of one flow model (JSON lines)."""
        return self.samples / f"{model}.jsonl"

    def trajectory(self, model: str) -> Path:
        return self.samples / f"trajectory_{model}.npz"

    @property
    def sampler_settings(self) -> Path:
        return self.samples / "sampler.json"

    @property
    def validity_vs_steps(self) -> Path:
        return self.samples / "validity_vs_steps.csv"

    # --- notebooks 07-08 -----------------------------------------------------------------
    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    def evaluation_of(self, system: str) -> Path:
        """One system's report: metrics.json, per_structure.csv, settings.json, figures."""
        return self.evaluation / system

    def per_structure(self, system: str) -> Path:
        """One row per evaluated crystal of ``system``, in sample order."""
        return self.evaluation_of(system) / PER_STRUCTURE_CSV

    def report_settings(self, system: str) -> Path:
        return self.evaluation_of(system) / REPORT_SETTINGS_JSON

    @property
    def metrics(self) -> Path:
        """The metrics table of every evaluated system (one row per system)."""
        return self.evaluation / "metrics.csv"

    @property
    def metrics_intervals(self) -> Path:
        """Every system's metrics with their 95% intervals, one row per (system, metric)."""
        return self.evaluation / "metrics_intervals.csv"

    @property
    def metrics_beside_paper(self) -> Path:
        """The metrics table with the paper's rows beside it."""
        return self.evaluation / "metrics_beside_paper.csv"

    def reference_fingerprints(self, name: str) -> Path:
        """Cached fingerprints of one reference set (named by
        :attr:`flowllm_kit.stages.EvaluationData.name`)."""
        return self.evaluation / f"reference_fingerprints_{name}.npz"

    @property
    def comparison(self) -> Path:
        """Notebook 08's systems beside the paper."""
        return self.evaluation / "comparison.csv"

    @property
    def differences(self) -> Path:
        """Notebook 08's differences between systems, metric by metric, with their intervals."""
        return self.evaluation / "differences.csv"

    # --- provenance ----------------------------------------------------------------------
    @property
    def installed_checkpoint(self) -> Path:
        """Which shipped checkpoint the run's models were copied from, when they were
        (written by :meth:`flowllm_kit.pretrained.Pretrained.install`)."""
        return self.root / "checkpoint.json"

    @property
    def recipe(self) -> Path:
        """Each stage the ``recipe`` command finished: device, wall time, commit, result."""
        return self.root / "recipe.json"

    @property
    def redone(self) -> Path:
        """Where ``recipe --redo`` moves a finished stage's outputs before running it again."""
        return self.root / "redone"

    # --- the series runner ---------------------------------------------------------------
    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def stages(self) -> Path:
        return self.root / "stages"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def require(self, path: Path, what: str, written_by: str) -> Path:
        """``path`` if it exists, else a :class:`RunFolderError` naming it and its writer.

        Args:
            path: A path of this folder.
            what: What it is, for the message (``"pair set"``).
            written_by: The stage that writes it (``"notebook 04 or `python -m flowllm_kit
                pairs`"``).
        """
        if not path.exists():
            raise RunFolderError(f"no {what} at {path}: run {written_by} first")
        return path

    def sample_sets(self) -> dict[str, Path]:
        """Every set of generated crystals in the folder: each flow model's samples file and,
        when it exists, the LLM's own draws under the name :data:`LLM_ONLY`."""
        found = {path.stem: path for path in sorted(self.samples.glob("*.jsonl"))}
        if self.llm_samples.is_file():
            found[LLM_ONLY] = self.llm_samples
        return found
