"""One object holding every setting of a named preset: the data, the LLM (model, fine-tuning,
sampling, pair set), the flow's network, training and sampler, the evaluation's sizes and its
scoring (with the relaxation), each once.

Each component keeps its own config dataclass and its own preset table beside its code
(:func:`flowllm_kit.presets.get_preset`, :func:`flowllm_kit.llm.llm_preset`,
:func:`flowllm_kit.flow.flow_configs`, :func:`flowllm_kit.evaluate.report_preset`); this module
puts them together, so a preset can be read, printed and compared whole::

    python -m flowllm_kit presets show demo
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from flowllm_kit.evaluate import ReportSettings, report_preset
from flowllm_kit.flow import FlowSamplerConfig, NetworkConfig, TrainConfig, flow_configs
from flowllm_kit.llm import LLMConfig, llm_preset
from flowllm_kit.presets import DataConfig, EvaluationConfig, PresetName, get_preset

__all__ = ["RunPreset", "run_preset"]


@dataclass(frozen=True)
class RunPreset:
    """Every setting of one named preset, one config per component."""

    name: str
    data: DataConfig  # what the models train on and are evaluated against
    llm: LLMConfig  # the model, its fine-tuning, its sampling and the pair set
    network: NetworkConfig  # the flow's velocity network
    training: TrainConfig  # the flow's training, its loss included
    sampler: FlowSamplerConfig  # how the flow's ODE is integrated
    num_samples: int  # crystals each generator draws for the evaluation
    evaluation: EvaluationConfig  # how many crystals are evaluated
    report: ReportSettings  # how they are scored, the CHGNet relaxation included
    threads: int | None  # torch CPU threads (None: torch's default)

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON-ready nested dictionaries, in the order of the stages."""
        parts = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {
            name: value.to_dict() if hasattr(value, "to_dict") else _plain(value)
            for name, value in parts.items()
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def run_preset(name: PresetName, *, flow_choices: str = "kit") -> RunPreset:
    """The preset called ``name`` (``smoke``, ``demo``, ``paper``), whole.

    Args:
        name: The preset.
        flow_choices: ``kit`` (the presets' network and loss) or ``reference`` (the reference
            code's), as in notebook 05.

    Raises:
        ValueError: If ``name`` is not a preset.
    """
    base = get_preset(name)
    network, training = flow_configs(name, choices=flow_choices)
    return RunPreset(
        name=name,
        data=base.data,
        llm=llm_preset(name),
        network=network,
        training=training,
        sampler=FlowSamplerConfig(),
        num_samples=base.num_samples,
        evaluation=base.evaluation,
        report=report_preset(name),
        threads=base.threads,
    )
