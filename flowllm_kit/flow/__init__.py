"""The flow stage: a GNN velocity field trained by Riemannian flow matching, and an ODE
sampler that refines start crystals (from an LLM or a simple base distribution).

Typical use::

    from flowllm_kit.flow import (FlowTrainer, PairedBase, FlowSamplerConfig, VelocityNetwork,
                                  sample, train_preset)

    net = VelocityNetwork.from_preset("smoke")
    FlowTrainer(net, pairs, base=PairedBase(), config=train_preset("smoke")).fit()
    refined = sample(net, x_0, config=FlowSamplerConfig(num_steps=50)).crystals

Modules: :mod:`~.config` (dataclasses, presets), :mod:`~.graph` and :mod:`~.layers` (building
blocks), :mod:`~.network`, :mod:`~.path`, :mod:`~.loss`, :mod:`~.base`, :mod:`~.sampler`,
:mod:`~.train`, :mod:`~.types` (atom types as analog bits, for the de novo flow),
:mod:`~.checkpoint`, :mod:`~.refinement` (the refinement benchmark: corrupted
real crystals in, errors before and after the flow out).
"""

from __future__ import annotations

from flowllm_kit.flow.base import BaseDistribution, PairedBase, TypesOnlyBase, UniformBase
from flowllm_kit.flow.checkpoint import load_network
from flowllm_kit.flow.config import (
    FlowSamplerConfig,
    LossConfig,
    NetworkConfig,
    TrainConfig,
    flow_configs,
    network_preset,
    reference_loss,
    reference_network,
    train_preset,
)
from flowllm_kit.flow.graph import CrystalGraph, fully_connected_graph
from flowllm_kit.flow.loss import FlowLoss, VelocityField, flow_matching_loss, path_loss
from flowllm_kit.flow.network import VelocityNetwork
from flowllm_kit.flow.path import PathSample, sample_path, sample_times
from flowllm_kit.flow.sampler import (
    FlowSamples,
    Trajectory,
    chunk_type_starts,
    sample,
    sample_in_chunks,
)
from flowllm_kit.flow.starts import (
    denovo_starts,
    denovo_starts_from,
    types_only_starts,
    uniform_starts,
)
from flowllm_kit.flow.statistics import FlowStatistics
from flowllm_kit.flow.train import FlowPair, FlowTrainer, fit_statistics
from flowllm_kit.flow.types import (
    DEFAULT_TYPE_BITS,
    AtomCounts,
    decode_types,
    encode_types,
    type_noise,
)

__all__ = [
    "DEFAULT_TYPE_BITS",
    "AtomCounts",
    "BaseDistribution",
    "CrystalGraph",
    "FlowLoss",
    "FlowPair",
    "FlowStatistics",
    "FlowTrainer",
    "LossConfig",
    "NetworkConfig",
    "PairedBase",
    "PathSample",
    "FlowSamples",
    "FlowSamplerConfig",
    "TrainConfig",
    "Trajectory",
    "TypesOnlyBase",
    "UniformBase",
    "VelocityField",
    "VelocityNetwork",
    "chunk_type_starts",
    "decode_types",
    "denovo_starts",
    "denovo_starts_from",
    "encode_types",
    "fit_statistics",
    "flow_configs",
    "flow_matching_loss",
    "uniform_starts",
    "fully_connected_graph",
    "types_only_starts",
    "load_network",
    "network_preset",
    "path_loss",
    "reference_loss",
    "reference_network",
    "sample",
    "sample_in_chunks",
    "sample_path",
    "sample_times",
    "train_preset",
    "type_noise",
]
