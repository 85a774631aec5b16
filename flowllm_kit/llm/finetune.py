"""Fine-tune a language model on crystal texts with the transformers ``Trainer``.

Training examples are prompt + crystal text + end of sequence
(:func:`flowllm_kit.text.training_text`). They are rendered when the batch is drawn, from a
random generator seeded by (seed, epoch, index): every epoch sees a fresh translation (and
prompt) draw, and a resumed run sees exactly the draws the interrupted one would have.

A run folder holds::

    <run_dir>/llm_config.json      the LLMConfig the run was started with
    <run_dir>/checkpoints/...      Trainer checkpoints (resume from the last one)
    <run_dir>/model/               final weights (or LoRA adapters) and the tokenizer
    <run_dir>/train_log.json       the Trainer's log history (losses, eval losses)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from flowllm_kit.distributed import barrier, world
from flowllm_kit.llm.config import FinetuneConfig, LLMConfig
from flowllm_kit.progress import Reporter
from flowllm_kit.run import LLM_CONFIG_JSON
from flowllm_kit.text.prompts import training_text

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

__all__ = ["FinetuneResult", "TextDataset", "finetune", "render_training_text"]

Render = Callable[[Any, np.random.Generator], str]
"""Turns one training item into its text, given a random generator for augmentation."""


def render_training_text(config: FinetuneConfig, tokenizer: PreTrainedTokenizerBase) -> Render:
    """The default :data:`Render`: strings pass through, crystals go through
    :func:`flowllm_kit.text.training_text` with the options in ``config``."""

    def render(item: Any, rng: np.random.Generator) -> str:
        if isinstance(item, str):
            return item
        return training_text(
            item,
            eos_token=tokenizer.eos_token,
            conditioning=config.conditioning,
            formula_probability=config.formula_probability,
            infill_probability=config.infill_probability,
            translate=config.translate,
            permute=config.permute,
            rng=rng,
        )

    return render


class TextDataset(torch.utils.data.Dataset):
    """Training items rendered to token ids on access, augmentation redrawn per epoch.

    Args:
        items: Crystals or ready texts.
        tokenizer: Turns texts into ids; the end-of-sequence id is appended if missing.
        render: Item -> text (see :func:`render_training_text`).
        max_length: Longest tokenized example; longer ones are truncated.
        seed: Base seed of the augmentation draws.
    """

    def __init__(
        self,
        items: Sequence[Any],
        tokenizer: PreTrainedTokenizerBase,
        *,
        render: Render,
        max_length: int,
        seed: int = 0,
    ) -> None:
        self.items = items
        self.tokenizer = tokenizer
        self.render = render
        self.max_length = max_length
        self.seed = seed
        self.epoch = 0  # set by the Trainer callback at the start of every epoch

    def __len__(self) -> int:
        return len(self.items)

    def text(self, index: int) -> str:
        """The text of item ``index`` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return self.render(self.items[index], rng)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        ids = self.tokenizer(self.text(index), truncation=True, max_length=self.max_length)[
            "input_ids"
        ]
        eos = self.tokenizer.eos_token_id
        if ids[-1] != eos and len(ids) < self.max_length:
            ids = [*ids, eos]
        return {"input_ids": ids}


def _collate(pad_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, torch.Tensor]]:
    """Right-pad a batch; padding is left out of the loss through the mask, never by id (the
    pad id may equal the end-of-sequence id, which must be learned)."""

    def collate(examples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        length = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), length), pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(examples), length), dtype=torch.long)  # (B, T)
        for row, example in enumerate(examples):
            ids[row, : len(example["input_ids"])] = torch.tensor(example["input_ids"])
            mask[row, : len(example["input_ids"])] = 1
        labels = ids.masked_fill(mask == 0, -100)  # loss over prompt and crystal tokens
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def _packed_collate(
    pad_id: int, row_length: int
) -> Callable[[list[dict[str, list[int]]]], dict[str, torch.Tensor]]:
    """Pack a batch's texts end to end into rows of at most ``row_length`` tokens (first fit,
    longest first; a longer text gets a row of its own), with position ids restarting at 0 for
    every text.

    Given ``position_ids`` and no attention mask, transformers gives each text a causal mask of
    its own (``masking_utils.find_packed_sequence_indices``), so every token sees exactly what it
    would see padded: the loss and gradients equal those of :func:`_collate` (tested) and less of
    the batch is padding. The first token of every text has no label, as in a padded row, so no
    text is predicted from its neighbour. ``use_cache=False`` goes with the batch because the
    packed mask is only built without a cache.
    """

    def collate(examples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        texts = sorted((e["input_ids"] for e in examples), key=len, reverse=True)
        rows: list[list[list[int]]] = []
        room: list[int] = []
        for ids in texts:
            row = next((i for i, free in enumerate(room) if len(ids) <= free), None)
            if row is None:
                rows.append([])
                room.append(max(row_length, len(ids)))
                row = len(rows) - 1
            rows[row].append(ids)
            room[row] -= len(ids)
        length = max(sum(len(ids) for ids in row) for row in rows)
        input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)  # (R, T)
        positions = torch.zeros((len(rows), length), dtype=torch.long)  # (R, T)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)  # (R, T)
        for r, row in enumerate(rows):
            start = 0
            for ids in row:
                end = start + len(ids)
                input_ids[r, start:end] = torch.tensor(ids)
                positions[r, start:end] = torch.arange(len(ids))
                labels[r, start + 1 : end] = input_ids[r, start + 1 : end]
                start = end
            positions[r, start:] = torch.arange(length - start)  # padding: a text of its own
        return {
            "input_ids": input_ids,
            "position_ids": positions,
            "labels": labels,
            "use_cache": False,
        }

    return collate


def _epoch_callback(datasets: Sequence[TextDataset]) -> TrainerCallback:
    from transformers import TrainerCallback

    class SetEpoch(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN202
            for dataset in datasets:
                dataset.epoch = math.floor((state.epoch or 0.0) + 1e-6)

    return SetEpoch()


def _progress_callback(desc: str) -> TrainerCallback:
    """Relays the Trainer's step and running loss to the series runner's terminal
    (:mod:`flowllm_kit.progress`); inactive outside the runner."""
    from transformers import TrainerCallback

    class Report(TrainerCallback):
        reporter: Reporter | None = None
        losses: dict[str, float]

        def __init__(self) -> None:
            self.losses = {}

        def postfix(self) -> str:
            return ", ".join(f"{name}={value:.4f}" for name, value in self.losses.items())

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN202
            if self.reporter is None:  # made at the first step: a resumed run's step is known
                self.reporter = Reporter(
                    desc, state.max_steps or None, initial=state.global_step - 1, unit="steps"
                )
            self.reporter.update_to(state.global_step, self.postfix())

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN202
            for name in ("loss", "eval_loss"):
                if logs and name in logs:
                    self.losses[name] = float(logs[name])

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN202
            if self.reporter is not None:
                self.reporter.update_to(state.global_step, self.postfix())
                self.reporter.close()

    return Report()


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` produced."""

    run_dir: Path  # the run folder
    model_dir: Path  # final model (or adapters) and tokenizer: pass to load_model
    train_loss: float  # mean training loss over the run
    eval_loss: float | None  # loss on the evaluation texts after training
    global_step: int  # optimizer steps taken (including those before a resume)
    log_history: list[dict[str, Any]]  # the Trainer's logs


def finetune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Sequence[Any],
    *,
    run_dir: str | Path,
    config: LLMConfig,
    eval: Sequence[Any] | None = None,  # noqa: A002 (mirrors the Trainer's eval_dataset)
    render: Render | None = None,
    resume: bool | str | Path = False,
    callbacks: Sequence[TrainerCallback] = (),
    progress_bar: bool = True,
) -> FinetuneResult:
    """Fine-tune ``model`` on crystals (or texts) and save it into ``run_dir``.

    Args:
        model: From :func:`flowllm_kit.llm.build_model` (scratch: all weights train; LoRA:
            only adapters train).
        tokenizer: The model's tokenizer.
        train: Training crystals (rendered with ``config.finetune``'s text options) or texts.
        run_dir: The run folder (created if needed).
        config: The run's settings; ``config.finetune`` drives the Trainer and the whole config
            is saved as ``llm_config.json``.
        eval: Evaluation crystals or texts, rendered with their epoch-0 augmentation only;
            their loss is logged every epoch (or
            ``eval_steps``).
        render: Item -> text override (default: :func:`render_training_text`).
        resume: ``True``: continue from the last checkpoint in ``run_dir`` if there is one;
            a path: continue from that checkpoint; ``False``: start afresh.
        callbacks: Extra ``TrainerCallback`` objects.
        progress_bar: Show the Trainer's tqdm progress bar.

    Returns:
        A :class:`FinetuneResult`.
    """
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    options = config.finetune
    # Under a launcher the Trainer runs data-parallel (DDP, or FSDP / DeepSpeed from an
    # accelerate config); options.batch_size stays the global batch, split over the processes.
    on = world()
    if options.batch_size % on.size:
        raise ValueError(
            f"the batch of {options.batch_size} texts cannot be split evenly over {on.size} "
            "processes: choose a batch size divisible by the number of processes"
        )
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    if on.is_main:
        (run_dir / LLM_CONFIG_JSON).write_text(json.dumps(config.to_dict(), indent=2))
    render = render or render_training_text(options, tokenizer)
    datasets = {
        name: TextDataset(
            items, tokenizer, render=render, max_length=options.max_length, seed=options.seed
        )
        for name, items in (("train", train), ("eval", eval))
        if items is not None
    }
    bf16 = options.precision == "bf16" or (
        options.precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    )
    per_epoch = options.eval_steps is None
    args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps if options.max_steps is not None else -1,
        per_device_train_batch_size=options.batch_size // on.size,
        per_device_eval_batch_size=options.batch_size // on.size,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        learning_rate=options.learning_rate,
        lr_scheduler_type=options.lr_scheduler,
        warmup_steps=options.warmup_steps,
        weight_decay=options.weight_decay,
        logging_steps=options.logging_steps,
        train_sampling_strategy="group_by_length" if options.group_by_length else "random",
        eval_strategy=("no" if eval is None else "epoch" if per_epoch else "steps"),
        eval_steps=options.eval_steps,
        save_strategy="epoch" if options.save_steps is None else "steps",
        save_steps=options.save_steps or 500,
        save_total_limit=options.save_total_limit,
        seed=options.seed,
        data_seed=options.seed,
        bf16=bf16,
        report_to="none",
        disable_tqdm=not progress_bar,
        remove_unused_columns=False,
        dataloader_num_workers=0,  # the epoch callback sets the dataset's epoch in-process
        dataloader_pin_memory=torch.cuda.is_available(),
        # Processes without a GPU join as accelerate's MULTI_CPU (gloo); without this flag the
        # Trainer would train each of them alone.
        use_cpu=on.size > 1 and not torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets.get("eval"),
        data_collator=(
            _collate(tokenizer.pad_token_id)
            if options.pack_length is None
            else _packed_collate(tokenizer.pad_token_id, options.pack_length)
        ),
        # Only the training texts are redrawn per epoch: evaluation texts keep their epoch-0
        # draw, so evaluation losses compare across epochs and across a resume.
        callbacks=[
            _epoch_callback([datasets["train"]]),
            _progress_callback(f"LLM fine-tuning ({run_dir.name})"),
            *callbacks,
        ],
    )
    checkpoint: str | None = None
    if resume is True:
        checkpoint = get_last_checkpoint(str(checkpoints))
    elif resume:
        checkpoint = str(resume)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    eval_loss = trainer.evaluate()["eval_loss"] if eval is not None else None
    model_dir = run_dir / "model"
    if trainer.is_fsdp_enabled:  # checkpoints stay sharded; the model is written whole
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(model_dir))  # rank 0 only under a launcher
    if on.is_main:
        tokenizer.save_pretrained(str(model_dir))
        (run_dir / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=2))
    barrier()
    return FinetuneResult(
        run_dir=run_dir,
        model_dir=model_dir,
        train_loss=float(output.training_loss),
        eval_loss=eval_loss,
        global_step=trainer.state.global_step,
        log_history=list(trainer.state.log_history),
    )
