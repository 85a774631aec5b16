"""Named presets: ``smoke`` (CI, seconds to minutes), ``demo`` (2-core CPU, tens of minutes),
``kit`` (the kit-scale recipe: hours of CPU, minutes of GPU), ``paper`` (GPU, paper scale).

A preset is an instance of the components' config dataclasses, not a bag of constants. Each
stage adds its config here as it lands; notebooks and the command line read them through
:func:`get_preset`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

__all__ = [
    "DataConfig",
    "EvaluationConfig",
    "Preset",
    "PRESET_NAMES",
    "PresetName",
    "configure_threads",
    "get_preset",
    "lookup_preset",
]

PresetName = Literal["smoke", "demo", "kit", "paper"]
PRESET_NAMES: tuple[PresetName, ...] = ("smoke", "demo", "kit", "paper")
"""Every preset, smallest first (the command lines' ``--preset`` choices)."""
T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    """Which data a run trains on and evaluates against."""

    dataset: str
    """Registered dataset name (mp_20, perov_5, ...) or a folder of CDVAE-format CSVs."""
    train_split: str
    """Split the models train on. No train split exists on the kit's CI machines, so the CPU
    presets train on MP-20 val and evaluate on MP-20 test (see docs/ARCHITECTURE.md)."""
    eval_split: str
    """Split generated crystals are compared with."""
    max_crystals: int | None = None
    """Cap on crystals loaded per split (None: all); keeps the smoke preset fast."""


@dataclass(frozen=True)
class EvaluationConfig:
    """How many crystals the evaluation looks at. How they are scored (relaxation budget,
    smallest counted denominator, worker processes) is the evaluation's own preset,
    :func:`flowllm_kit.evaluate.report_preset`."""

    n_evaluate: int | None
    """Crystals evaluated per system (None: all)."""
    n_reference: int | None
    """Eval-split crystals for coverage and property distances (None: all)."""
    systems: tuple[str, ...] | None = None
    """The run's systems notebook 07 evaluates, in this order (None: every one it holds)."""
    controls: tuple[str, ...] = ("real", "perturbed")
    """The controls evaluated beside them (:func:`flowllm_kit.evaluate.control_systems`)."""


@dataclass(frozen=True)
class Preset:
    """All settings of one named preset."""

    name: PresetName
    data: DataConfig
    evaluation: EvaluationConfig
    num_samples: int = 10_000
    """Crystals each generator draws for evaluation (the paper: 10,000)."""
    checkpoint: str | None = None
    """The shipped checkpoint (:mod:`flowllm_kit.pretrained`) whose LLM and flows the notebook
    series samples and evaluates; notebooks 03 and 05 then show short training runs instead of
    training the run's models (``from_scratch=True`` trains them). None: train everything."""
    threads: int | None = None
    """Torch CPU threads (None: torch's default). The smoke preset uses one: its matrices are
    tiny, and on a small shared CPU threads that spin-wait on each other made its training
    steps 10-20x slower."""


# make demo samples and evaluates the shipped mp20-kit models (the kit recipe's: training them
# took about 4.5 hours here, 2.6 of them the LLM's; mp20-demo, an hour's training, is
# `-p checkpoint mp20-demo`); its time goes to the evaluation, where relaxation
# dominates: 200 crystals per system at up to 250 FIRE steps (measured stage times:
# notebooks/stage_times.json). It evaluates the four systems the paper's claims compare and
# the real yardstick; FlowMM-CSP and the perturbed control would add about 5 minutes
# (notebook 07 evaluates them too with `-p system_names all -p controls '["real", "perturbed"]'`
# through `python -m flowllm_kit.notebooks run`).
_DEMO = Preset(
    name="demo",
    data=DataConfig(dataset="mp_20", train_split="val", eval_split="test"),
    evaluation=EvaluationConfig(
        n_evaluate=200,
        n_reference=256,
        systems=("flowllm", "llm_only", "flowmm", "flowllm_types"),
        controls=("real",),
    ),
    num_samples=250,  # 200 evaluated; benchmarks/shipped_comparison.py draws 500
    checkpoint="mp20-kit",
)


_PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        data=DataConfig(
            dataset="mp_20_subset", train_split="train", eval_split="test", max_crystals=200
        ),
        evaluation=EvaluationConfig(n_evaluate=16, n_reference=40),
        num_samples=16,
        threads=1,
    ),
    "demo": _DEMO,
    # The kit-scale recipe (python -m flowllm_kit recipe --preset kit): the demo's data, tens of
    # thousands of LLM/real pairs and flows trained until their validation loss stops falling;
    # 500 crystals per system evaluated, the size of the comparison in the README.
    "kit": dataclasses.replace(
        _DEMO,
        name="kit",
        evaluation=dataclasses.replace(_DEMO.evaluation, n_evaluate=500),
        num_samples=600,
        checkpoint=None,
    ),
    "paper": Preset(
        name="paper",
        data=DataConfig(dataset="mp_20", train_split="train", eval_split="test"),
        evaluation=EvaluationConfig(n_evaluate=None, n_reference=None),
    ),
}


def lookup_preset(table: Mapping[str, T], name: str, *, what: str = "preset") -> T:
    """``table[name]``, or a ValueError naming ``name`` and the choices.

    Every component's ``*_preset(name)`` function goes through this, so a misspelt preset
    gives the same message everywhere.
    """
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(table)}")
    return table[name]


def get_preset(name: PresetName) -> Preset:
    """The preset called ``name``.

    Raises:
        ValueError: If ``name`` is not one of :data:`PRESET_NAMES`.
    """
    return lookup_preset(_PRESETS, name)


def configure_threads(preset: PresetName, threads: int | None = None) -> int:
    """Set torch's CPU threads: ``threads`` if given, else the preset's, else torch's default.

    Returns:
        The number of threads now in use.
    """
    import torch

    chosen = threads or get_preset(preset).threads
    if chosen:
        torch.set_num_threads(chosen)
    return torch.get_num_threads()
