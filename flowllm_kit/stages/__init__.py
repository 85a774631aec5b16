"""One function per stage of the series, on a run folder: the notebooks, the command line and
any launcher call these, so no loop, file name or split rule exists twice.

- :mod:`~flowllm_kit.stages.flow`: train the flows on the pair set, sample them.
"""

from __future__ import annotations

from flowllm_kit.stages.flow import (
    FLOW_MODELS,
    FlowRun,
    TrainedFlow,
    denoising_set,
    flow_runs,
    flow_starts,
    load_flows,
    load_pair_sets,
    sample_flows,
    train_flows,
)

__all__ = [
    "FLOW_MODELS",
    "FlowRun",
    "TrainedFlow",
    "denoising_set",
    "flow_runs",
    "flow_starts",
    "load_flows",
    "load_pair_sets",
    "sample_flows",
    "train_flows",
]
