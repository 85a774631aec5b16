"""One function per stage of the series, on a run folder: the notebooks, the command line and
any launcher call these, so no loop, file name or split rule exists twice.

- :mod:`~flowllm_kit.stages.llm`: choose the crystals, fine-tune the LLM, sample it, build
  the pair sets (notebooks 03-04; ``train-llm``, ``sample-llm``, ``pairs``);
- :mod:`~flowllm_kit.stages.flow`: train the flows on the pair set, sample them (notebooks
  05-06; ``train-flow``, ``sample``);
- :mod:`~flowllm_kit.stages.preset`: every setting of a named preset in one object;
- :mod:`~flowllm_kit.stages.evaluation`: the real crystals systems are scored against, the
  report settings, one report per system and the metrics table (notebook 07; ``evaluate``);
- :mod:`~flowllm_kit.stages.structures`: the same report for any generator's structure files
  (notebook 09; ``evaluate --structures``).
"""

from __future__ import annotations

from flowllm_kit.stages.evaluation import (
    EvaluatedSystem,
    EvaluationData,
    differences_table,
    evaluate_systems,
    evaluation_data,
    intervals_table,
    metrics_table,
    relaxed_hull,
    report_settings,
    table_with_intervals,
)
from flowllm_kit.stages.flow import (
    FLOW_MODELS,
    FlowRun,
    TrainedFlow,
    denoising_set,
    flow_runs,
    flow_starts,
    load_flows,
    load_pair_sets,
    record_trajectory,
    sample_flows,
    train_flows,
)
from flowllm_kit.stages.llm import (
    FormulaFollowing,
    SelectedCrystals,
    build_pair_sets,
    build_val_pairs,
    formula_following,
    load_llm,
    pair_settings,
    sample_llm,
    sampling_config,
    select_crystals,
    train_llm,
)
from flowllm_kit.stages.preset import RunPreset, run_preset
from flowllm_kit.stages.structures import EvaluatedStructures, evaluate_structures

__all__ = [
    "FLOW_MODELS",
    "EvaluatedSystem",
    "EvaluationData",
    "differences_table",
    "evaluate_systems",
    "evaluation_data",
    "intervals_table",
    "metrics_table",
    "relaxed_hull",
    "report_settings",
    "table_with_intervals",
    "EvaluatedStructures",
    "evaluate_structures",
    "run_preset",
    "FlowRun",
    "RunPreset",
    "FormulaFollowing",
    "SelectedCrystals",
    "TrainedFlow",
    "build_pair_sets",
    "build_val_pairs",
    "formula_following",
    "load_llm",
    "pair_settings",
    "sample_llm",
    "sampling_config",
    "select_crystals",
    "train_llm",
    "denoising_set",
    "flow_runs",
    "flow_starts",
    "load_flows",
    "load_pair_sets",
    "record_trajectory",
    "sample_flows",
    "train_flows",
]
