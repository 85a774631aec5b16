"""Configuration dataclasses of the flow stage and their presets.

One dataclass per component (network, loss, sampler, training); presets are instances of
those dataclasses, looked up by name::

    >>> network_preset("paper").hidden_dim
    512
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from flowllm_kit.geometry.lattice import LatticeRepresentation, check_representation
from flowllm_kit.presets import PresetName, lookup_preset

__all__ = [
    "KIT_LOSS",
    "KIT_NETWORK_CHOICES",
    "NETWORK_PRESETS",
    "TRAIN_PRESETS",
    "LossConfig",
    "NetworkConfig",
    "FlowSamplerConfig",
    "TrainConfig",
    "flow_configs",
    "network_preset",
    "reference_loss",
    "reference_network",
    "train_preset",
]


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of the velocity network (docs/METHOD.md §7).

    With ``hidden_dim=512``, ``num_frequencies=128`` and both optional edge features on, the
    edge MLP's first layer sees the reference's 2,313-wide input:
    ``h_i`` (512) + ``h_j`` (512) + lattice (6) + atom-count embedding (512) +
    sinusoids (6 * 128 = 768) + Cartesian direction (3).
    """

    hidden_dim: int = 512  # width of node features and of every MLP's hidden layer
    time_dim: int = 256  # width of the sinusoidal embedding of t
    num_layers: int = 6  # message-passing layers
    # Frequencies k = 1..num_frequencies of the displacement embedding sin/cos(2 pi k x). The
    # reference uses k = 0..n-1; k = 0 gives sin = 0 and cos = 1, a dead and a constant input
    # (the layer's bias already covers a constant), so the kit starts at k = 1. Same width.
    num_frequencies: int = 128
    max_atomic_number: int = 118  # size of the atom-type embedding table (index 0 unused)
    # Feed an embedding of each crystal's atom count into every edge (as the reference does).
    num_atoms_embedding: bool = True
    max_num_atoms: int = 128  # atom counts above this share the last embedding row
    # Feed a Cartesian direction of each edge's torus displacement (the reference feeds one).
    edge_direction: bool = True
    # Which direction: False is the reference's unit vector of the wrapped displacement, which
    # jumps across half-lattice offsets and there depends on the atom order; True is
    # graph.smooth_direction, continuous and exactly permutation-equivariant.
    smooth_direction: bool = True
    # Gaussian radial basis functions of each pair's minimum-image distance in Å fed to every
    # edge (0: none, as in the reference). The reference network sees lengths only through
    # the z-scored lattice parameters, never an interatomic distance.
    edge_distances: int = 0
    distance_cutoff: float = 8.0  # Å, last centre of the radial basis
    # The flow's lattice space (geometry/lattice.py): "logit" (reference: lengths in Å, logit
    # angles) or "log" (log lengths, angles linear in degrees).
    lattice_representation: LatticeRepresentation = "logit"
    # Add layers.EdgeLatticeHead to the mean-pooled lattice head: pairs propose lattice changes
    # along the lattice vectors their bonds lie on (the reference has only the pooled head).
    edge_lattice_head: bool = False
    # Add layers.EdgeCoordinateHead to the per-atom coordinate head: each atom moves along its
    # bonds by learned amounts (EGNN-style; the reference has only the per-atom head).
    edge_coordinate_head: bool = False
    # Harmonics k = 1..angle_features of sin/cos(2 pi k angle / 30°) of the current lattice
    # angles, fed with the z-scored lattice (0: none, as in the reference). 60°, 90° and 120°
    # are multiples of 30°, so these say how far each angle is from the nearest of them, with
    # the same resolution at every angle; MP-20's reduced cells hold many angles at exactly
    # those values. The z-scored lattice alone resolves a 2° change at 90° as about 0.04.
    angle_features: int = 0
    # Feed the log length ratios log(a/b), log(b/c), log(a/c), times 10, with the lattice: 0
    # for equal lengths (cubic, tetragonal, hexagonal cells), so the network can see how far a
    # cell is from having equal lengths (0: none, as in the reference).
    length_ratios: bool = False
    # Generate atom types too (a de novo flow, FlowMM's analog bits: flow/types.py): atoms start
    # from a linear embedding of their current type bits and a head predicts the bits'
    # velocity. 0: the types are given and fixed (FlowLLM, FlowLLM-Types, FlowMM-CSP).
    type_bits: int = 0
    aggregation: Literal["mean", "sum"] = "mean"  # how messages are pooled per receiving atom
    layer_norm: bool = True  # pre-LayerNorm in each layer and before the output heads

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "time_dim", "num_layers", "num_frequencies", "max_num_atoms"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"NetworkConfig.{name} must be positive, got {value}")
        if self.time_dim % 2:
            raise ValueError(f"NetworkConfig.time_dim must be even, got {self.time_dim}")
        if self.aggregation not in ("mean", "sum"):
            raise ValueError(f"aggregation must be 'mean' or 'sum', got {self.aggregation!r}")
        if self.angle_features < 0:
            raise ValueError(
                f"NetworkConfig.angle_features must be >= 0, got {self.angle_features}"
            )
        if self.edge_distances < 0:
            raise ValueError(
                f"NetworkConfig.edge_distances must be >= 0, got {self.edge_distances}"
            )
        if self.distance_cutoff <= 0:
            raise ValueError(f"distance_cutoff must be positive, got {self.distance_cutoff}")
        if self.type_bits < 0 or self.type_bits > 16:
            raise ValueError(f"NetworkConfig.type_bits must lie in 0..16, got {self.type_bits}")
        check_representation(self.lattice_representation)

    @property
    def edge_input_dim(self) -> int:
        """Width of the (never materialized) concatenated edge input."""
        width = 2 * self.hidden_dim + 6 + 6 * self.angle_features + 6 * self.num_frequencies
        width += 3 if self.length_ratios else 0
        width += self.hidden_dim if self.num_atoms_embedding else 0
        return width + (3 if self.edge_direction else 0) + self.edge_distances


# The kit's choices, measured on the refinement benchmark (benchmarks/refinement.py; results
# and the ablation in benchmarks/results/refinement.md). reference_network() undoes them.
KIT_NETWORK_CHOICES: dict[str, object] = {
    "smooth_direction": True,
    "lattice_representation": "log",
    "edge_distances": 16,
    "edge_coordinate_head": True,
    "angle_features": 4,
    "length_ratios": True,
}

# A laptop CPU: about 0.55 M parameters. The kit-scale recipe trains this same network longer
# on more pairs (TRAIN_PRESETS["kit"]).
_DEMO_NETWORK = NetworkConfig(
    hidden_dim=128, time_dim=64, num_layers=3, num_frequencies=32, **KIT_NETWORK_CHOICES
)

NETWORK_PRESETS: dict[str, NetworkConfig] = {
    # CI: seconds on a CPU.
    "smoke": NetworkConfig(
        hidden_dim=32, time_dim=16, num_layers=2, num_frequencies=8, **KIT_NETWORK_CHOICES
    ),
    "demo": _DEMO_NETWORK,
    "kit": _DEMO_NETWORK,
    # FlowLLM paper: hidden 512, time 256, 6 layers; with reference_network() the reference's
    # 2,313-wide edge input.
    "paper": NetworkConfig(
        hidden_dim=512, time_dim=256, num_layers=6, num_frequencies=128, **KIT_NETWORK_CHOICES
    ),
}


def network_preset(name: PresetName) -> NetworkConfig:
    """The named :class:`NetworkConfig` (``"smoke"``, ``"demo"``, ``"kit"`` or ``"paper"``)."""
    return lookup_preset(NETWORK_PRESETS, name)


def reference_network(config: NetworkConfig) -> NetworkConfig:
    """``config`` with the reference code's choices where the kit's presets differ: the unit
    direction feature, the logit lattice space, no distances, only the pooled heads.

    With the paper preset this is the reference CSPNet's shape (2,313-wide edge input), for
    comparisons with the paper::

        >>> reference_network(network_preset("paper")).edge_input_dim
        2313
    """
    return dataclasses.replace(
        config,
        smooth_direction=False,
        edge_distances=0,
        lattice_representation="logit",
        edge_lattice_head=False,
        edge_coordinate_head=False,
        angle_features=0,
        length_ratios=False,
    )


def reference_loss(config: LossConfig | None = None) -> LossConfig:
    """``config`` (default :class:`LossConfig`) with the reference's loss: raw errors weighted
    200 : 1 (the paper's ratio; the dataclass defaults), types at FlowMM's tenth of the
    coordinates' weight (20), normalization kept as given."""
    reference = LossConfig()
    return dataclasses.replace(
        config or reference,
        weight_coords=reference.weight_coords,
        weight_lattice=reference.weight_lattice,
        weight_types=reference.weight_types,
        lattice_error="raw",
        coord_error="raw",
    )


@dataclass(frozen=True)
class LossConfig:
    """Weights of the flow-matching loss (docs/METHOD.md §6).

    Default: the paper's ratio 200 : 1 (FlowLLM appendix), divided by the sum of the weights as
    the reference code does. Normalizing keeps the loss on the scale the reference's learning
    rate (3e-4) and gradient clip (0.5) were tuned for; the paper-vs-code difference (200 vs
    400) then only halves or doubles the lattice term's share (0.5 % vs 0.25 %).
    """

    weight_coords: float = 200.0  # lambda_f, on the per-atom mean squared coordinate error
    weight_lattice: float = 1.0  # lambda_l, on the mean squared lattice error
    # lambda_a, on the mean squared error of the type bits' velocity; only flows that generate
    # atom types have that term (FlowMM's ratio to the coordinates is 40 : 400).
    weight_types: float = 20.0
    normalize: bool = True  # divide the weights by the sum of those in use (reference code)
    # Where the lattice error is measured: "raw" (reference: in the lattice space's own units,
    # so components with large velocities dominate) or "standardized" (each component divided
    # by the standard deviation of its training target velocity, so all six count alike).
    lattice_error: Literal["raw", "standardized"] = "raw"
    # The same for the coordinate error: "standardized" divides it by the coordinate scale
    # (the RMS of the training target velocity), so both terms start near 1.
    coord_error: Literal["raw", "standardized"] = "raw"

    def __post_init__(self) -> None:
        for name in ("lattice_error", "coord_error"):
            value = getattr(self, name)
            if value not in ("raw", "standardized"):
                raise ValueError(f"{name} must be 'raw' or 'standardized', got {value!r}")

    @property
    def weights(self) -> tuple[float, float]:
        """``(lambda_f, lambda_l)`` as applied to a flow with fixed atom types."""
        total = self.weight_coords + self.weight_lattice if self.normalize else 1.0
        return self.weight_coords / total, self.weight_lattice / total

    @property
    def weights_with_types(self) -> tuple[float, float, float]:
        """``(lambda_f, lambda_l, lambda_a)`` as applied to a flow that generates atom types."""
        total = self.weight_coords + self.weight_lattice + self.weight_types
        total = total if self.normalize else 1.0
        return self.weight_coords / total, self.weight_lattice / total, self.weight_types / total


@dataclass(frozen=True)
class FlowSamplerConfig:
    """How the ODE is integrated (docs/METHOD.md §8)."""

    method: Literal["euler", "midpoint", "rk4", "dopri5"] = "euler"  # torchdiffeq solver
    num_steps: int = 250  # fixed-grid steps on [0, 1] (paper 250); ignored by dopri5
    # Inference anti-annealing: v_f is multiplied by 1 + scale * max(0, t - start). Off by
    # default (a plain ODE); the paper lists scale 5.
    anti_annealing_scale: float = 0.0
    anti_annealing_start: float = 0.0  # b: time after which anti-annealing starts
    record_every: int | None = None  # keep the state every k steps (None: no trajectory)
    # Matmul precision of the network: "bfloat16" runs it under torch.autocast (the ODE state
    # stays float32). On CPUs with AVX512-BF16 and on GPUs several times faster; velocities
    # carry ~3 significant digits (see benchmarks/results/flow.md for the effect on samples).
    precision: Literal["float32", "bfloat16"] = "float32"
    rtol: float = 1e-5  # dopri5 relative tolerance
    atol: float = 1e-5  # dopri5 absolute tolerance

    def __post_init__(self) -> None:
        if self.method not in ("euler", "midpoint", "rk4", "dopri5"):
            raise ValueError(f"unknown ODE method {self.method!r}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be positive, got {self.num_steps}")
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")
        if self.record_every is not None and self.record_every < 1:
            raise ValueError(f"record_every must be positive, got {self.record_every}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization of the velocity network (docs/METHOD.md §7, reference-code values)."""

    batch_size: int = 256  # crystals per step (paper 256)
    max_steps: int = 10_000  # optimizer steps in total; the cosine schedule spans them
    learning_rate: float = 3e-4  # peak AdamW learning rate
    min_learning_rate: float = 1e-5  # end of the cosine schedule
    warmup_steps: int = 0  # linear warm-up before the cosine decay
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 0.5  # max global gradient norm; 0 turns clipping off
    ema_decay: float = 0.999  # exponential moving average of the weights
    val_every: int = 500  # steps between validation losses (0: never)
    # Stop once the validation loss has not fallen below its best by more than
    # min_val_improvement in this many validations in a row (None: train to max_steps). The
    # cosine schedule still spans max_steps.
    patience: int | None = None
    min_val_improvement: float = 0.0
    checkpoint_every: int = 1_000  # steps between checkpoints when a run folder is given
    seed: int = 0  # fixes shuffling, t and base samples: same seed, same run
    device: Literal["auto", "cpu", "cuda"] = "auto"  # "auto": CUDA when available
    # CUDA only: torch.use_deterministic_algorithms (bitwise-repeatable runs, slower). CPU runs
    # are repeatable without it (see flow/train.py on gathers).
    deterministic: bool = False
    progress: bool = True  # show a tqdm progress bar
    # "bfloat16": forward and backward under torch.autocast (weights, optimizer and EMA stay
    # float32). Several times faster on CPUs with AVX512-BF16 and on GPUs.
    precision: Literal["float32", "bfloat16"] = "float32"
    loss: LossConfig = field(default_factory=LossConfig)  # loss weights

    def __post_init__(self) -> None:
        if self.patience is not None and (self.patience < 1 or self.val_every < 1):
            raise ValueError(
                f"patience={self.patience} needs patience >= 1 and validations (val_every >= 1, "
                f"got {self.val_every})"
            )


# Both errors standardized, weighted 1 : 1 (the reference: raw errors, 200 : 1; see LossConfig
# and benchmarks/results/refinement.md). reference_loss() undoes it.
# A flow that generates types adds their term at weight 1: the bits' target velocity has
# variance 2 per component, the same order as the two standardized errors.
KIT_LOSS = LossConfig(
    weight_coords=1.0,
    weight_lattice=1.0,
    weight_types=1.0,
    lattice_error="standardized",
    coord_error="standardized",
)

# Sized for make demo's 45 minutes on 2 CPU cores: three models at about 2 minutes each.
_DEMO_TRAINING = TrainConfig(
    batch_size=64,
    max_steps=1_500,
    learning_rate=1e-3,
    val_every=250,
    checkpoint_every=500,
    ema_decay=0.995,
    loss=KIT_LOSS,
)

TRAIN_PRESETS: dict[str, TrainConfig] = {
    "smoke": TrainConfig(
        batch_size=16,
        max_steps=200,
        learning_rate=1e-3,
        val_every=50,
        checkpoint_every=100,
        ema_decay=0.99,
        loss=KIT_LOSS,
    ),
    "demo": _DEMO_TRAINING,
    # Kit scale: the demo's training until the validation loss (on validation pairs, which the
    # recipe command draws) has not fallen for 4 validations in a row (2,000 steps), at most
    # 20,000 steps.
    "kit": dataclasses.replace(
        _DEMO_TRAINING, max_steps=20_000, val_every=500, patience=4, ema_decay=0.999
    ),
    "paper": TrainConfig(loss=KIT_LOSS),
}


def train_preset(name: PresetName) -> TrainConfig:
    """The named :class:`TrainConfig`."""
    return lookup_preset(TRAIN_PRESETS, name)


FLOW_CHOICES = ("kit", "reference")
"""``flow_configs`` choices: the kit's presets, or the reference code's network and loss."""


def flow_configs(
    preset: PresetName, *, network: PresetName | None = None, choices: str = "kit"
) -> tuple[NetworkConfig, TrainConfig]:
    """The network and training configs of a run: the preset's (``network`` picks another
    network preset), with the kit's choices or, for ``choices="reference"``, the reference
    code's (:func:`reference_network`, :func:`reference_loss`). Notebook 05 and the command
    line both build their flows from this."""
    if choices not in FLOW_CHOICES:
        raise ValueError(f"flow choices must be one of {', '.join(FLOW_CHOICES)}, got {choices!r}")
    network_config, train_config = network_preset(network or preset), train_preset(preset)
    if choices == "reference":
        network_config = reference_network(network_config)
        train_config = dataclasses.replace(train_config, loss=reference_loss(train_config.loss))
    return network_config, train_config
