"""The flow stages on a run folder: train FlowLLM, FlowMM (de novo), FlowMM-CSP and FlowLLM-Types
on the pair set, and sample them.

Notebooks 05 and 06 and the commands ``train-flow`` and ``sample`` call these functions, so the
model table, the training loop, the start crystals and the sampling loop exist once. The
notebooks still show the building blocks (bases, start distances, loss curves, trajectories).

Example::

    >>> run = RunFolder("runs/smoke")
    >>> pairs, val_pairs = load_pair_sets(run)
    >>> network, config = flow_configs("smoke")
    >>> trained = train_flows(run, flow_runs(pairs, val_pairs), network=network, config=config)
    >>> starts = flow_starts(run)
    >>> samples = sample_flows(run, load_flows(run, starts), starts, sampler=FlowSamplerConfig())
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flowllm_kit.crystal import Crystal, CrystalBatch, read_crystals, write_crystals
from flowllm_kit.crystal.io import merge_crystal_shards
from flowllm_kit.data import load_dataset
from flowllm_kit.distributed import barrier, shard_path, world
from flowllm_kit.flow import (
    DEFAULT_TYPE_BITS,
    BaseDistribution,
    FlowSamplerConfig,
    FlowTrainer,
    NetworkConfig,
    PairedBase,
    TrainConfig,
    Trajectory,
    TypesOnlyBase,
    UniformBase,
    VelocityNetwork,
    chunk_type_starts,
    denovo_starts,
    load_network,
    sample,
    sample_in_chunks,
    types_only_starts,
    uniform_starts,
)
from flowllm_kit.flow.checkpoint import STATE_FILE, config_dict, read_state
from flowllm_kit.flow.refinement import default_denoise_pairs, denoising_pairs
from flowllm_kit.llm.draws import llm_starts
from flowllm_kit.llm.pairs import PairSet
from flowllm_kit.presets import get_preset
from flowllm_kit.run import RunFolder, RunFolderError

__all__ = [
    "FLOW_MODELS",
    "FlowRun",
    "TrainedFlow",
    "denoising_set",
    "flow_runs",
    "flow_starts",
    "load_flows",
    "load_pair_sets",
    "record_trajectory",
    "sample_flows",
    "train_flows",
]

FLOW_MODELS = ("flowllm", "flowmm", "flowmm_csp", "flowllm_types")
"""The flow models of the series: FlowLLM (LLM starts), FlowMM (de novo, as in its paper: atom
counts drawn from the training crystals', atom types generated with the geometry), FlowMM-CSP
(FlowMM's geometry flow on the atom types of training crystals: crystal structure prediction)
and FlowLLM-Types (the LLM's atom types, uniform geometry)."""

Pairs = list[tuple[Crystal | None, Crystal]]

_WRITERS = {
    "pairs": "notebook 04 or `python -m flowllm_kit pairs`",
    "sample-llm": "notebook 04 or `python -m flowllm_kit sample-llm`",
    "flow": "notebook 05 or `python -m flowllm_kit train-flow`",
}


@dataclass(frozen=True)
class FlowRun:
    """What one flow model trains on."""

    base: BaseDistribution  # where its flow starts
    train: Pairs  # (start, target) pairs; the start is None where the base draws it
    validation: Pairs  # held-out pairs for the validation loss (may be empty)
    generates_types: bool = False  # flows the atom types too (de novo FlowMM)


@dataclass(frozen=True)
class TrainedFlow:
    """A flow model after :func:`train_flows`."""

    trainer: FlowTrainer  # weights, EMA weights, history; its checkpoint is in the run folder
    seconds: float  # wall time of this call's training (0 when it resumed a finished run)


def load_pair_sets(run: RunFolder) -> tuple[PairSet, PairSet | None]:
    """The pair set and, when notebook 04 built one, the validation pair set.

    Raises:
        RunFolderError: If the run folder has no pair set (it names the file and the stage
            that writes it) or the pair set is empty.
    """
    pairs = PairSet.load(run.require(run.pairs, "pair set", _WRITERS["pairs"]))
    if not pairs.c0:
        raise RunFolderError(
            f"the pair set {run.pairs} is empty: the LLM matched no training composition; "
            "train it longer or build the pairs with more draws"
        )
    val_pairs = PairSet.load(run.val_pairs) if run.val_pairs.is_file() else None
    return pairs, val_pairs


def denoising_set(
    *,
    preset: str,
    choices: str = "kit",
    count: int | None = None,
    crystals: Sequence[Crystal] | None = None,
    seed: int = 0,
) -> Pairs:
    """The corrupted real crystals that join FlowLLM's pairs (notebook 05, section 3).

    Args:
        preset: Names the default count (see
            :func:`~flowllm_kit.flow.refinement.default_denoise_pairs`) and the training data.
        choices: ``kit`` or ``reference`` (the reference's choices take none).
        count: Pairs to make (None: the default of ``preset`` and ``choices``).
        crystals: Real training crystals to corrupt (default: the preset's training split,
            loaded only when pairs are wanted).
        seed: Seed of the picks and the corruption.
    """
    count = default_denoise_pairs(preset, choices) if count is None else count
    if not count:
        return []
    if crystals is None:
        data = get_preset(preset).data
        crystals = load_dataset(data.dataset, data.train_split, progress=False)[: data.max_crystals]
    return denoising_pairs(crystals, count, seed=seed)


def flow_runs(
    pairs: PairSet,
    val_pairs: PairSet | None = None,
    *,
    denoise: Pairs = (),  # type: ignore[assignment]
    noise_std: float = 0.0,
) -> dict[str, FlowRun]:
    """The four models' bases and pairs, all on the same targets.

    FlowMM and FlowMM-CSP ignore the LLM crystals (FlowMM generates the types as well, so it
    learns the targets' compositions too); FlowLLM-Types keeps only their atom types (equal to
    the targets' atom by atom: the pairs are composition-matched); FlowLLM alone also trains on
    the ``denoise`` pairs.
    """
    validation = list(zip(val_pairs.c0, val_pairs.c1, strict=True)) if val_pairs else []
    llm_pairs: Pairs = list(zip(pairs.c0, pairs.c1, strict=True))
    csp = FlowRun(
        UniformBase.fit(pairs.c1),
        [(None, c) for c in pairs.c1],
        [(None, c1) for _, c1 in validation],
    )
    return {
        "flowllm": FlowRun(PairedBase(noise_std=noise_std), llm_pairs + list(denoise), validation),
        "flowmm": dataclasses.replace(csp, generates_types=True),  # FlowMM-CSP's data
        "flowmm_csp": csp,
        "flowllm_types": FlowRun(TypesOnlyBase.fit(pairs.c1), llm_pairs, validation),
    }


def train_flows(
    run: RunFolder,
    runs: dict[str, FlowRun],
    *,
    network: NetworkConfig,
    config: TrainConfig,
    models: Sequence[str] | None = None,
    seed: int = 0,
    resume: bool = True,
) -> dict[str, TrainedFlow]:
    """Train each model with the same network, budget and initial weights into
    ``run.flow(model)``; with ``resume``, an interrupted run continues from its checkpoint and a
    finished one is only loaded.

    Args:
        run: The run folder.
        runs: From :func:`flow_runs`.
        network: The velocity network's config (the same for every model; a model that
            generates atom types gets ``type_bits`` added).
        config: The training config (the same for every model).
        models: Which of ``runs`` to train (default: all, in order).
        seed: Seeds the initial weights (identical for every model).
        resume: Continue from ``run.flow_checkpoint(model)`` when it exists.
    """
    trained = {}
    for name in models if models is not None else list(runs):
        if name not in runs:
            raise ValueError(f"unknown flow model {name!r}; expected one of {sorted(runs)}")
        base, train, validation = runs[name].base, runs[name].train, runs[name].validation
        shape = network
        if runs[name].generates_types:
            shape = dataclasses.replace(network, type_bits=network.type_bits or DEFAULT_TYPE_BITS)
        torch.manual_seed(seed)  # the same initial weights for every model
        trainer = FlowTrainer(
            VelocityNetwork(shape), train, base=base, config=config,
            val_pairs=validation, run_dir=run.flow(name),
        )  # fmt: skip
        checkpoint = run.flow_checkpoint(name)
        if resume and (checkpoint / STATE_FILE).exists():
            saved = read_state(checkpoint)["network_config"]
            if NetworkConfig(**saved) != shape:
                changed = sorted(k for k, v in config_dict(shape).items() if saved.get(k) != v)
                raise RunFolderError(
                    f"{checkpoint} was trained with another network ({', '.join(changed)} "
                    f"differ{'s' if len(changed) == 1 else ''}), so {name} cannot resume from "
                    "it: delete that folder to train anew, or train without resume"
                )
            trainer.load_checkpoint(checkpoint)
        start = time.perf_counter()
        trainer.fit()
        trained[name] = TrainedFlow(trainer, time.perf_counter() - start)
    return trained


def flow_starts(
    run: RunFolder, models: Sequence[str] = FLOW_MODELS, *, n: int | None = None, seed: int = 0
) -> dict[str, list[Crystal]]:
    """Start crystals of each model (notebook 06, section 1).

    FlowLLM refines the LLM's parsed unconditional crystals; FlowMM draws as many crystal
    sizes from the training targets' and their geometry from its uniform base (it generates the
    types); FlowMM-CSP draws as many crystals from its uniform base with the atom types of
    training targets; FlowLLM-Types keeps each LLM crystal's atom types and draws its geometry
    from the uniform base it was trained with.

    Args:
        run: The run folder (reads ``llm_samples.jsonl`` and the pair set's targets).
        models: Which of :data:`FLOW_MODELS`.
        n: Crystals per model (None: every parsed LLM crystal).
        seed: Seed of FlowMM's sizes, FlowMM-CSP's templates and the base draws.

    Raises:
        RunFolderError: If the LLM's samples or the pair set are missing, or the samples hold
            no parsed crystal.
        ValueError: If a model is unknown.
    """
    unknown = set(models) - set(FLOW_MODELS)
    if unknown:
        raise ValueError(f"unknown flow models {sorted(unknown)}; expected {FLOW_MODELS}")
    starts: dict[str, list[Crystal]] = {}
    count = n
    if {"flowllm", "flowllm_types"} & set(models) or count is None:
        path = run.require(run.llm_samples, "LLM samples", _WRITERS["sample-llm"])
        starts["flowllm"] = llm_starts(path, n=n)
        if not starts["flowllm"]:
            raise RunFolderError(f"no parsed crystal in {path}: sample the LLM again")
        count = len(starts["flowllm"])
    if {"flowmm", "flowmm_csp", "flowllm_types"} & set(models):
        targets = load_pair_sets(run)[0].c1
        if "flowmm" in models:
            starts["flowmm"] = denovo_starts(targets, count=count, seed=seed)
        if "flowmm_csp" in models:
            starts["flowmm_csp"] = uniform_starts(targets, count=count, seed=seed)
        if "flowllm_types" in models:
            base = TypesOnlyBase.fit(targets)  # the base FlowLLM-Types was trained with
            starts["flowllm_types"] = types_only_starts(starts["flowllm"], base=base, seed=seed)
    return {name: starts[name] for name in models}


def load_flows(
    run: RunFolder, models: Sequence[str], *, device: torch.device | str | None = None
) -> dict[str, VelocityNetwork]:
    """The trained networks (EMA weights) of ``models`` from the run folder.

    Raises:
        RunFolderError: If a model has no checkpoint, or FlowMM's checkpoint does not generate
            atom types (a FlowMM-CSP network trained under the name ``flowmm`` by a kit before
            de novo FlowMM).
    """
    networks = {}
    for name in models:
        checkpoint = run.require(run.flow_checkpoint(name), f"{name} checkpoint", _WRITERS["flow"])
        networks[name] = load_network(checkpoint, device=device)
        if name == "flowmm" and not networks[name].type_bits:
            raise RunFolderError(
                f"{checkpoint} holds a network that does not generate atom types: FlowMM-CSP, "
                "trained under the name flowmm before the kit had de novo FlowMM. Train FlowMM "
                f"again ({_WRITERS['flow']} with --redo) or load it as flowmm_csp"
            )
    return networks


def sample_flows(
    run: RunFolder,
    networks: dict[str, VelocityNetwork],
    starts: dict[str, list[Crystal]],
    *,
    sampler: FlowSamplerConfig,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, list[Crystal]]:
    """Integrate each model's start crystals into ``run.samples_file(model)`` (written afresh,
    batch by batch as they are done) and record the settings in ``run.sampler_settings``.

    ``seed`` seeds the start of the atom types of a model that generates them. Under a
    launcher the batches are shared out over the processes; the file is the same for any
    number of them.

    Returns:
        The generated crystals of each model, in the order of its starts (ids kept).
    """
    on = world()
    run.samples.mkdir(parents=True, exist_ok=True)
    if on.is_main:
        run.sampler_settings.write_text(json.dumps(dataclasses.asdict(sampler), indent=1))
    generated: dict[str, list[Crystal]] = {}
    for name, crystals in starts.items():
        path = run.samples_file(name)
        # Under a launcher each rank solves its share of the batches into its own file and
        # rank 0 merges them in the order of the starts (:func:`sample_in_chunks`' shard rule).
        written = path if on.size == 1 else shard_path(path, on.rank)
        written.unlink(missing_ok=True)  # start afresh: write_crystals appends
        generated[name] = []
        chunks = sample_in_chunks(
            networks[name], crystals, config=sampler, batch_size=batch_size,
            desc=f"sampling {name}", seed=seed, shard=on if on.size > 1 else None,
        )  # fmt: skip
        for chunk in chunks:
            write_crystals(chunk, written)
            generated[name].extend(chunk)
        if on.size > 1:
            barrier()
            if on.is_main:
                merge_crystal_shards(path, [c.id for c in crystals])
            barrier()
            generated[name] = read_crystals(path)
    return generated


def record_trajectory(
    network: VelocityNetwork,
    starts: Sequence[Crystal],
    *,
    count: int,
    sampler: FlowSamplerConfig,
    batch_size: int = 256,
    seed: int = 0,
) -> Trajectory:
    """The recorded solve of the first ``count`` start crystals (``sampler.record_every`` set),
    ending at the crystals :func:`sample_flows` wrote for them with the same ``batch_size`` and
    ``seed``: for a model that generates atom types, the types start from the same noise.

    Raises:
        ValueError: If ``sampler`` records nothing or ``count`` is not in 1..``batch_size``.
    """
    if sampler.record_every is None:
        raise ValueError("record_trajectory needs a sampler with record_every set")
    if not 1 <= count <= batch_size:
        raise ValueError(f"count must lie in 1..batch_size ({batch_size}), got {count}")
    device = next(network.parameters()).device
    batch = CrystalBatch.from_crystals(list(starts[:count])).to(device)
    types_0 = None
    if network.type_bits:  # the first rows of sample_in_chunks' draw for its first batch
        first = chunk_type_starts(starts, batch_size=batch_size, bits=network.type_bits, seed=seed)
        types_0 = next(first)[: batch.atomic_numbers.shape[0]].to(device)
    trajectory = sample(network, batch, config=sampler, types_0=types_0).trajectory
    assert trajectory is not None  # record_every is set
    return trajectory
