"""Models: scratch presets' sizes; LoRA (full precision, 8-bit, 4-bit) trains only adapters and
merges back into an equivalent full-precision model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowllm_kit.llm import (
    count_parameters,
    load_model,
    merge_lora,
    pretrained_model,
    scratch_model,
)


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [("smoke", 50_000, 500_000), ("demo", 500_000, 2_000_000), ("gpu", 50_000_000, 200_000_000)],
)
def test_scratch_preset_sizes(tokenizer, preset: str, low: int, high: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = scratch_model(tokenizer, config=preset)
    assert low <= count_parameters(model) <= high
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == tokenizer.eos_token_id


def test_scratch_model_trains_every_weight(tokenizer) -> None:
    model = scratch_model(tokenizer, config="smoke", seed=1)
    assert count_parameters(model, trainable_only=True) == count_parameters(model)
    again = scratch_model(tokenizer, config="smoke", seed=1)
    assert torch.equal(model.lm_head.weight, again.lm_head.weight)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (quantized weights included), copied."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _train_a_few_steps(model: torch.nn.Module, ids: torch.Tensor, steps: int = 3) -> None:
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("quantization", ["none", "8bit", "4bit"])
def test_lora_training_changes_only_adapters(
    tiny_llama_dir: Path, tmp_path: Path, quantization: str
) -> None:
    model, tokenizer = pretrained_model(tiny_llama_dir, quantization=quantization)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # Adapters on q/k/v/o of both layers, A and B each.
    assert len(trainable) == 2 * 4 * 2
    before = _snapshot(model)
    ids = tokenizer(["3.9 3.9 3.9\n60 60 60\nNa\n0.00 0.00 0.00"], return_tensors="pt")
    _train_a_few_steps(model, ids["input_ids"])
    after = _snapshot(model)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all("lora_" in name for name in changed)
    assert any("lora_B" in name for name in changed)  # B starts at zero: the update is real

    # Adapters trained on quantized weights fold into the full-precision base exactly.
    model.save_pretrained(tmp_path / "adapters")
    tokenizer.save_pretrained(tmp_path / "adapters")
    if quantization != "none":
        with pytest.raises(ValueError, match="quantized"):
            merge_lora(model)
    full, _ = load_model(tmp_path / "adapters", quantization="none")
    with torch.no_grad():
        expected = full(**ids).logits
        merged = merge_lora(full)
        assert not any("lora_" in name for name, _ in merged.named_parameters())
        torch.testing.assert_close(merged(**ids).logits, expected, atol=1e-5, rtol=1e-5)


def test_merged_full_precision_model_matches_unmerged(tiny_llama_dir: Path) -> None:
    model, tokenizer = pretrained_model(tiny_llama_dir)
    ids = tokenizer(["Below is a description of a bulk material. "], return_tensors="pt")
    _train_a_few_steps(model, ids["input_ids"])
    model.eval()
    with torch.no_grad():
        expected = model(**ids).logits
        merged = merge_lora(model)
        torch.testing.assert_close(merged(**ids).logits, expected, atol=1e-5, rtol=1e-5)


def test_quantized_loading_needs_adapters(tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="LoRAConfig"):
        pretrained_model(tiny_llama_dir, lora=None, quantization="4bit")
    with pytest.raises(ValueError, match="PeftModel"):
        merge_lora(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
