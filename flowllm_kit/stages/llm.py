"""The LLM stages on a run folder: choose the crystals, fine-tune the LLM, sample it, build the
pair sets.

Notebooks 03 and 04 and the commands ``train-llm``, ``sample-llm`` and ``pairs`` call these
functions, so the crystal selection, the fine-tuning call, the sampling settings and the draw
budgets exist once. The notebooks still show the building blocks (the model's parts, the
training texts, rejection reasons, formula following, aligned pairs).

Example::

    >>> run = RunFolder("runs/smoke")
    >>> config = llm_preset("smoke")
    >>> crystals = select_crystals("smoke", max_atoms=config.finetune.max_atoms)
    >>> result = train_llm(run, config, crystals)
    >>> model, tokenizer, config = load_llm(run)
    >>> samples = sample_llm(run, model, tokenizer, config, num_samples=16)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowllm_kit import llm, text
from flowllm_kit.crystal import Crystal
from flowllm_kit.data import load_dataset
from flowllm_kit.distributed import barrier, world
from flowllm_kit.evaluate import wilson_interval
from flowllm_kit.llm.config import LLMConfig, LLMSamplingConfig, PairConfig, llm_preset
from flowllm_kit.llm.crystal_lists import write_crystal_lists
from flowllm_kit.llm.draws import LLMSamples
from flowllm_kit.llm.pairs import PairSet, build_pairs
from flowllm_kit.llm.sample import DRAWS_PER_CRYSTAL, sample_crystals
from flowllm_kit.presets import get_preset
from flowllm_kit.run import RunFolder

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from flowllm_kit.llm.finetune import FinetuneResult

__all__ = [
    "FormulaFollowing",
    "SelectedCrystals",
    "build_pair_sets",
    "build_val_pairs",
    "formula_following",
    "load_llm",
    "pair_settings",
    "sample_llm",
    "sampling_config",
    "select_crystals",
    "train_llm",
]

_WRITERS = {"llm": "notebook 03 or `python -m flowllm_kit train-llm`"}


@dataclass(frozen=True)
class SelectedCrystals:
    """The crystals the LLM trains on and is checked against."""

    dataset: str
    train_split: str
    train: list[Crystal]
    eval_split: str
    evaluation: list[Crystal]


def select_crystals(
    preset: str,
    *,
    dataset: str | None = None,
    train_split: str | None = None,
    eval_split: str | None = None,
    max_atoms: int | None = None,
    max_train: int | None = None,
    num_eval: int | None = None,
) -> SelectedCrystals:
    """The training and held-out crystals of a run: the preset's dataset and splits (or the
    ones given), crystals of at most ``max_atoms`` atoms, the first ``max_train`` and
    ``num_eval`` of them in dataset order.

    Defaults (None) come from the presets: the data preset's dataset and splits, the LLM
    preset's ``max_atoms``, ``max_train_crystals`` (else the data preset's cap) and
    ``max_eval_crystals``.
    """

    finetune = llm_preset(preset).finetune
    data = get_preset(preset).data
    dataset = dataset or data.dataset
    train_split, eval_split = train_split or data.train_split, eval_split or data.eval_split
    limit = max_atoms or finetune.max_atoms or 10**9
    max_train = max_train or finetune.max_train_crystals or data.max_crystals
    num_eval = num_eval or finetune.max_eval_crystals
    train = [c for c in load_dataset(dataset, train_split) if c.num_atoms <= limit][:max_train]
    evals = [c for c in load_dataset(dataset, eval_split) if c.num_atoms <= limit][:num_eval]
    return SelectedCrystals(dataset, train_split, train, eval_split, evals)


def train_llm(
    run: RunFolder,
    config: LLMConfig,
    crystals: SelectedCrystals,
    *,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    resume: bool = True,
) -> FinetuneResult:
    """Fine-tune the LLM on ``crystals.train`` into ``run.llm`` (notebook 03).

    Writes the crystal lists (``llm/crystals.json``, which the pair stage reads back), builds
    the model of ``config`` unless one is given, and takes the tokenizer of notebook 02
    (``run.tokenizer``) when no tokenizer is given, building and saving one when it is missing.

    Args:
        run: The run folder.
        config: The LLM settings (saved with the model).
        crystals: From :func:`select_crystals`.
        model, tokenizer: A model built from ``config`` (e.g. to show its parts first).
        resume: Continue from the last checkpoint in ``run.llm`` when there is one.
    """

    on = world()
    if on.is_main:  # under a launcher rank 0 writes the shared files, the others wait
        write_crystal_lists(
            run.llm, dataset=crystals.dataset, train_split=crystals.train_split,
            train=crystals.train, eval_split=crystals.eval_split, evaluation=crystals.evaluation,
        )  # fmt: skip
        if tokenizer is None and not run.tokenizer.is_dir():
            text.build_tokenizer().save_pretrained(run.tokenizer)
    barrier()
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(run.tokenizer)
    if model is None:
        model, tokenizer = llm.build_model(config, tokenizer=tokenizer)
    return llm.finetune(
        model, tokenizer, crystals.train, eval=crystals.evaluation, run_dir=run.llm,
        config=config, resume=resume,
    )  # fmt: skip


def load_llm(run: RunFolder) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, LLMConfig]:
    """The fine-tuned model, its tokenizer and its :class:`LLMConfig` from ``run.llm``.

    Raises:
        RunFolderError: If the run folder holds no fine-tuned model.
    """

    model, tokenizer = llm.load_model(run.require(run.llm_model, "model", _WRITERS["llm"]))
    config_file = run.require(run.llm_config, "LLM settings", _WRITERS["llm"])
    return model, tokenizer, LLMConfig.from_dict(json.loads(config_file.read_text()))


def sample_llm(
    run: RunFolder,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: LLMConfig,
    *,
    num_samples: int,
    temperature: float | None = None,
    top_p: float | None = None,
    max_draws: int | None = None,
    seed: int = 0,
    sharded: bool | None = None,
) -> LLMSamples:
    """Draw unconditional crystals into ``run.llm_samples`` until ``num_samples`` parse,
    resuming after the draws already there (notebook 04, section 2).

    Args:
        temperature, top_p: Override the run's sampling settings.
        max_draws: Stop after this many draws (default :data:`DRAWS_PER_CRYSTAL` per crystal).
        sharded: Draw in the fixed blocks of a multi-process run (:mod:`flowllm_kit.llm.sharded`);
            None: whenever a launcher started this process.
    """
    sampling = sampling_config(config, temperature=temperature, top_p=top_p)
    return sample_crystals(
        model, tokenizer, num_crystals=num_samples, config=sampling, path=run.llm_samples,
        max_draws=max_draws, seed=seed, sharded=sharded,
    )  # fmt: skip


@dataclass(frozen=True)
class FormulaFollowing:
    """How many of the held-out formulas the LLM answered with their composition: one answer
    each, counted over the formulas asked (an answer that does not parse counts as a miss)."""

    formulas: int  # formulas asked, one draw each
    parsed: int  # answers that parse into a crystal
    exact: int  # answers with exactly the target's atoms (what a FlowLLM pair needs)
    reduced: int  # answers with the target's reduced formula (what the prompt states)
    elements: int  # answers with the target's elements, in any counts
    temperature: float
    top_p: float

    @property
    def exact_share(self) -> float:
        """The share of formulas answered with exactly their composition (NaN for none)."""
        return self.exact / self.formulas if self.formulas else float("nan")

    @property
    def exact_interval(self) -> tuple[float, float]:
        """The 95% Wilson interval of :attr:`exact_share`."""
        return wilson_interval(self.exact, self.formulas)

    def as_dict(self) -> dict[str, Any]:
        """The counts and the sampling settings, with the exact share and its 95% Wilson
        interval (fractions), for a JSON record."""
        return dataclasses.asdict(self) | {
            "exact_share": self.exact_share,
            "exact_interval": list(self.exact_interval),
        }

    def __str__(self) -> str:
        low, high = self.exact_interval
        return (
            f"{self.exact} of {self.formulas} formulas answered with exactly their "
            f"composition ({self.exact_share:.0%} [{low:.0%}, {high:.0%}]), "
            f"{self.reduced} with their reduced formula, {self.elements} with their elements; "
            f"{self.parsed} answers parsed (tau {self.temperature:g}, P {self.top_p:g})"
        )


def formula_following(
    run: RunFolder,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: LLMConfig,
    crystals: Sequence[Crystal],
    *,
    seed: int = 1,
) -> FormulaFollowing:
    """Prompt the LLM once with each formula of ``crystals`` (the held-out ones) at the run's
    sampling settings, without constrained decoding, and count the answers that follow it.

    The draws go to ``run.llm_formulas`` (resumable); draw k answers crystal k. This is the
    kit recipe's measure of formula following (its target: 80% exact); notebook 04, section 3,
    shows the same comparison with a table of answers.

    Raises:
        ValueError: If ``crystals`` is empty.
    """
    if not crystals:
        raise ValueError("formula_following needs at least one held-out crystal")
    sampling = sampling_config(config)
    out = sample_crystals(
        model, tokenizer, num_crystals=len(crystals),
        prompts=[text.formula_prompt(c) for c in crystals], config=sampling,
        path=run.llm_formulas, max_draws=len(crystals), seed=seed,
        desc="LLM answers to held-out formulas",
    )  # fmt: skip
    parsed = len(out.crystals)
    counts = {"exact": 0, "reduced": 0, "elements": 0}
    if parsed:
        agreement = llm.composition_agreement(out.crystals, [crystals[d] for d in out.draws])
        # The agreement holds shares of the parsed answers; each share times their number is
        # a whole count up to rounding error.
        counts = {key: round(getattr(agreement, key) * parsed) for key in counts}
    return FormulaFollowing(
        formulas=len(crystals), parsed=parsed, **counts,
        temperature=sampling.temperature, top_p=sampling.top_p,
    )  # fmt: skip


def sampling_config(
    config: LLMConfig, *, temperature: float | None = None, top_p: float | None = None
) -> LLMSamplingConfig:
    """The run's unconditional sampling settings, with ``temperature`` and ``top_p`` replaced
    where given."""
    return dataclasses.replace(
        config.sampling,
        temperature=temperature or config.sampling.temperature,
        top_p=top_p or config.sampling.top_p,
    )


def pair_settings(
    config: LLMConfig,
    *,
    num_pairs: int | None = None,
    max_draws: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
) -> PairConfig:
    """The run's pair-set settings (``config.pairs``) with the given values replaced."""
    return dataclasses.replace(
        config.pairs,
        num_pairs=num_pairs or config.pairs.num_pairs,
        max_draws=max_draws or config.pairs.max_draws,
        temperature=temperature or config.pairs.temperature,
        top_p=top_p or config.pairs.top_p,
    )


def build_pair_sets(
    run: RunFolder,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: LLMConfig,
    train: Sequence[Crystal],
    evaluation: Sequence[Crystal] = (),
    *,
    pairs: PairConfig | None = None,
    num_val_pairs: int = 0,
    seed: int = 0,
    sharded: bool | None = None,
) -> tuple[PairSet, PairSet | None]:
    """Build (or resume) the pair set on the training crystals into ``run.pairs`` and, when
    ``num_val_pairs`` > 0, a validation pair set on the held-out crystals into
    ``run.val_pairs`` (notebook 04, section 4).

    Args:
        pairs: The pair set's size, draw budget and sampling (default: the run's
            ``config.pairs``; see :func:`pair_settings`).
        num_val_pairs: Validation pairs (0: none); see :func:`build_val_pairs`.
        seed: Seed of the pair set; the validation set uses ``seed + 2``.
        sharded: Draw in the fixed blocks of a multi-process run (:mod:`flowllm_kit.llm.sharded`);
            None: whenever a launcher started this process.

    Returns:
        The pair set and the validation pair set (None when not built).
    """
    if num_val_pairs < 0:
        raise ValueError(f"num_val_pairs must be >= 0, got {num_val_pairs}")
    pairs = pairs or config.pairs
    train_pairs = build_pairs(
        model, tokenizer, train, run_dir=run.pairs_dir, config=pairs, seed=seed,
        sharded=sharded, **_generation(config),
    )  # fmt: skip
    val_pairs = None
    if num_val_pairs:
        val_pairs = build_val_pairs(
            run, model, tokenizer, config, evaluation, num_pairs=num_val_pairs, pairs=pairs,
            seed=seed, sharded=sharded,
        )  # fmt: skip
    return train_pairs, val_pairs


def build_val_pairs(
    run: RunFolder,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: LLMConfig,
    evaluation: Sequence[Crystal],
    *,
    num_pairs: int,
    pairs: PairConfig | None = None,
    seed: int = 0,
    sharded: bool | None = None,
) -> PairSet:
    """Build (or resume) ``num_pairs`` validation pairs on the held-out crystals into
    ``run.val_pairs``, with the training pairs' sampling, at most :data:`DRAWS_PER_CRYSTAL`
    draws per pair, and the seed ``seed + 2`` (the flows' validation loss reads them)."""
    val_config = dataclasses.replace(
        pairs or config.pairs, num_pairs=num_pairs, max_draws=DRAWS_PER_CRYSTAL * num_pairs
    )
    return build_pairs(
        model, tokenizer, evaluation, run_dir=run.val_pairs_dir, config=val_config,
        seed=seed + 2, sharded=sharded, **_generation(config),
    )  # fmt: skip


def _generation(config: LLMConfig) -> dict[str, Any]:
    """The batch size, longest text and batching of the run's sampling, which the pair sets
    share."""
    return {
        "batch_size": config.sampling.batch_size,
        "max_new_tokens": config.sampling.max_new_tokens,
        "continuous": config.sampling.continuous,
    }
