"""Checkpoints: tensors in safetensors files, everything else in one JSON file.

A checkpoint is a folder::

    model.safetensors       network weights and statistics buffers
    ema.safetensors         exponential moving average of the weights
    optimizer.safetensors   AdamW moments, keyed "<parameter index>/<name>"
    state.json              step, configs, statistics, history, optimizer hyperparameters
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from flowllm_kit.flow.config import LossConfig, NetworkConfig, TrainConfig
from flowllm_kit.flow.network import VelocityNetwork

__all__ = [
    "STATE_FILE",
    "load_network",
    "load_optimizer_state",
    "optimizer_tensors",
    "read_state",
    "train_config_from_dict",
]

STATE_FILE = "state.json"  # written last by FlowTrainer.save_checkpoint


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """Split an optimizer's state into flat tensors and JSON-ready parameter groups."""
    state = optimizer.state_dict()
    tensors = {
        f"{index}/{name}": value.detach().contiguous()
        for index, entry in state["state"].items()
        for name, value in entry.items()
    }
    return tensors, state["param_groups"]


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], param_groups: list
) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


def read_state(folder: str | Path) -> dict[str, Any]:
    """The checkpoint's ``state.json`` as a dict."""
    return json.loads((Path(folder) / STATE_FILE).read_text())


def train_config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a :class:`TrainConfig` saved with ``dataclasses.asdict``."""
    return TrainConfig(**{**d, "loss": LossConfig(**d["loss"])})


def load_network(
    folder: str | Path, *, ema: bool = True, device: torch.device | str = "cpu"
) -> VelocityNetwork:
    """A trained network from a checkpoint folder.

    Args:
        folder: Checkpoint folder written by :class:`~flowllm_kit.flow.FlowTrainer`.
        ema: Load the EMA weights (what one samples with) rather than the raw weights.
        device: Where to put the network.

    Returns:
        The network in eval mode, statistics included.
    """
    folder = Path(folder)
    state = read_state(folder)
    network = VelocityNetwork(NetworkConfig(**state["network_config"]))
    weights = load_file(str(folder / ("ema.safetensors" if ema else "model.safetensors")))
    network.load_state_dict(weights)
    return network.to(device).eval()


def config_dict(config: Any) -> dict[str, Any]:
    """A (nested) config dataclass as a JSON-ready dict."""
    return dataclasses.asdict(config)
