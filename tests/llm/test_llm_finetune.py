"""Fine-tuning: per-epoch augmentation, run folder, eval loss, resume after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flowllm_kit.llm import (
    FinetuneConfig,
    LLMConfig,
    ScratchModelConfig,
    build_model,
    finetune,
    load_model,
)
from flowllm_kit.llm.finetune import TextDataset, render_training_text
from flowllm_kit.progress import PROGRESS_ENV

MICRO = ScratchModelConfig(
    hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_position_embeddings=256
)


def _config(**finetune: object) -> LLMConfig:
    options = {
        "max_steps": 6,
        "batch_size": 2,
        "learning_rate": 5e-3,
        "warmup_steps": 2,
        "logging_steps": 1,
        "save_steps": 2,
        "eval_steps": 3,
        "conditioning": "none",
    }
    return LLMConfig(scratch=MICRO, finetune=FinetuneConfig(**{**options, **finetune}))


def test_augmentation_is_redrawn_every_epoch_and_reproducible(tokenizer, small_crystals) -> None:
    render = render_training_text(FinetuneConfig(translate=True), tokenizer)
    dataset = TextDataset(small_crystals, tokenizer, render=render, max_length=512, seed=3)
    first = [dataset.text(i) for i in range(3)]
    assert first == [dataset.text(i) for i in range(3)]  # same epoch, same draw
    dataset.epoch = 1
    assert all(a != b for a, b in zip(first, [dataset.text(i) for i in range(3)], strict=True))
    ids = dataset[0]["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1


class _Crash(Exception):
    pass


def _crash_at(step: int):  # noqa: ANN202
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN202
            if state.global_step == step:
                raise _Crash

    return Crash()


def _train(tokenizer, crystals, run_dir: Path, **options: object):  # noqa: ANN202
    config = _config()
    model, tokenizer = build_model(config, tokenizer=tokenizer)
    result = finetune(
        model, tokenizer, crystals, eval=crystals[:2], run_dir=run_dir, config=config,
        progress_bar=False, **options,
    )  # fmt: skip
    return model, result


def test_resume_after_interruption_matches_an_uninterrupted_run(
    tokenizer, small_crystals, tmp_path: Path
) -> None:
    crystals = small_crystals + small_crystals[:1]  # 4 crystals: 2 steps per epoch
    model, result = _train(tokenizer, crystals, tmp_path / "whole")

    with pytest.raises(_Crash):
        _train(tokenizer, crystals, tmp_path / "cut", callbacks=[_crash_at(5)])
    checkpoints = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    resumed_model, resumed = _train(tokenizer, crystals, tmp_path / "cut", resume=True)

    assert resumed.global_step == result.global_step == 6
    for (name, value), (_, expected) in zip(
        resumed_model.state_dict().items(), model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(value, expected, msg=name)
    assert resumed.eval_loss == pytest.approx(result.eval_loss, rel=1e-5)


def test_fine_tuning_reports_steps_and_loss_to_the_series_runner(
    tokenizer, small_crystals, tmp_path: Path, monkeypatch
) -> None:
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(events))
    crystals = small_crystals + small_crystals[:1]
    with pytest.raises(_Crash):
        _train(tokenizer, crystals, tmp_path / "cut", callbacks=[_crash_at(5)])
    events.unlink()
    _train(tokenizer, crystals, tmp_path / "cut", resume=True)
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    assert {event["desc"] for event in seen} == {"LLM fine-tuning (cut)"}
    # Resumed from checkpoint-4: the time left is estimated from the steps done since.
    assert (seen[0]["initial"], seen[0]["n"], seen[0]["total"]) == (4, 4, 6)
    assert seen[-1]["n"] == 6 and seen[-1]["done"]
    assert seen[-1]["postfix"].startswith("loss=") and ", eval_loss=" in seen[-1]["postfix"]


def test_run_folder_holds_model_tokenizer_config_and_logs(
    tokenizer, small_crystals, tmp_path: Path
) -> None:
    model, result = _train(tokenizer, small_crystals, tmp_path / "run")
    assert result.model_dir == tmp_path / "run" / "model"
    assert (result.model_dir / "model.safetensors").is_file()
    saved = LLMConfig.from_dict(json.loads((tmp_path / "run" / "llm_config.json").read_text()))
    assert saved == _config()
    logs = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert any("eval_loss" in entry for entry in logs) and any("loss" in entry for entry in logs)
    assert result.eval_loss is not None and result.train_loss > 0
    loaded, loaded_tokenizer = load_model(result.model_dir)
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    ids = tokenizer(["3.9 3.9 3.9\n60 60 60\nNa\n0.00 0.00 0.00"], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**ids).logits, model(**ids).logits)


def test_lora_run_saves_adapters_and_reloads_quantized(
    tiny_llama_dir: Path, small_crystals, tmp_path: Path
) -> None:
    from flowllm_kit.llm import LoRAConfig

    config = LLMConfig(
        pretrained=str(tiny_llama_dir),
        lora=LoRAConfig(),
        quantization="4bit",
        finetune=FinetuneConfig(max_steps=2, batch_size=2, warmup_steps=0, conditioning="none"),
    )
    model, tokenizer = build_model(config)
    result = finetune(
        model, tokenizer, small_crystals, run_dir=tmp_path, config=config, progress_bar=False
    )
    assert (result.model_dir / "adapter_model.safetensors").is_file()
    assert not (result.model_dir / "model.safetensors").exists()  # adapters only
    loaded, _ = load_model(result.model_dir)  # quantized as at training time
    assert getattr(loaded.get_base_model(), "is_loaded_in_4bit", False)
    ids = tokenizer(["3.9 3.9 3.9\n60 60 60\nNa\n0.00 0.00 0.00"], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**ids).logits, model(**ids).logits)


def test_group_by_length_batches_texts_of_similar_length(tokenizer, tmp_path: Path) -> None:
    short = [f"3.{i % 10} 3.{i % 10} 3.{i % 10}\n90 90 90\nNa\n0.00 0.00 0.00\n" for i in range(32)]
    long = [s + "Cl\n0.50 0.50 0.50\n" * 6 for s in short]
    texts = [t for pair in zip(short, long, strict=True) for t in pair]  # alternating
    mixed: dict[bool, int] = {}
    for grouped in (True, False):
        config = _config(group_by_length=grouped, max_steps=16, batch_size=4, eval_steps=None)
        model, tokenizer = build_model(config, tokenizer=tokenizer)
        widths: list[set[int]] = []

        def record(module, args, kwargs, widths=widths):  # noqa: ANN001, ANN202
            if module.training:
                widths.append(set(kwargs["attention_mask"].sum(dim=1).tolist()))

        model.register_forward_pre_hook(record, with_kwargs=True)
        finetune(
            model, tokenizer, texts, run_dir=tmp_path / str(grouped), config=config,
            progress_bar=False,
        )  # fmt: skip
        assert len(widths) == 16  # one epoch
        mixed[grouped] = sum(len(w) > 1 for w in widths)
    # The sampler sorts megabatches of 16 texts: at most one mixed batch in each of the four.
    assert mixed[True] <= 4 < 8 <= mixed[False]


def test_packed_batches_give_the_padded_loss_and_gradients(tokenizer, small_crystals) -> None:
    from flowllm_kit.llm.finetune import _collate, _packed_collate

    config = _config(conditioning="formula")
    model, tokenizer = build_model(config, tokenizer=tokenizer)
    render = render_training_text(config.finetune, tokenizer)
    dataset = TextDataset(small_crystals * 2, tokenizer, render=render, max_length=256, seed=1)
    examples = [dataset[i] for i in range(len(dataset))]
    lengths = sorted(len(e["input_ids"]) for e in examples)
    assert lengths[0] < lengths[-1]  # texts of different lengths
    row_length = lengths[-1] + lengths[0]  # the longest and the shortest share a row
    padded = _collate(tokenizer.pad_token_id)(examples)
    packed = _packed_collate(tokenizer.pad_token_id, row_length)(examples)
    assert packed["input_ids"].shape[0] < len(examples)
    assert packed["input_ids"].shape[1] <= row_length
    # Every token is there once, and labelled as in the padded batch.
    assert (packed["labels"] != -100).sum() == (padded["labels"][:, 1:] != -100).sum()

    def loss_and_grads(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    model.train()
    padded_loss, padded_grads = loss_and_grads(padded)
    packed_loss, packed_grads = loss_and_grads(packed)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(packed_grads, padded_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # Without the restarting positions the texts would see each other: other logits.
    leaky = {k: v for k, v in packed.items() if k != "position_ids"}
    with torch.no_grad():
        assert not torch.allclose(model(**leaky).logits, model(**packed).logits, atol=1e-4)


def test_packed_finetune_trains_and_evaluates(tokenizer, small_crystals, tmp_path: Path) -> None:
    config = _config(pack_length=512, max_steps=4, save_steps=4, eval_steps=2)
    model, tokenizer = build_model(config, tokenizer=tokenizer)
    result = finetune(
        model, tokenizer, small_crystals, eval=small_crystals[:2], run_dir=tmp_path,
        config=config, progress_bar=False,
    )  # fmt: skip
    assert result.global_step == 4 and result.eval_loss is not None
    assert LLMConfig.from_dict(json.loads((tmp_path / "llm_config.json").read_text())) == config
