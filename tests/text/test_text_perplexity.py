"""Perplexity and IPT: exact answers on a uniform stand-in model, batching on a tiny LLaMA."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from flowllm_kit.crystal import Crystal
from flowllm_kit.text import encode, increase_in_perplexity, perplexity
from flowllm_kit.text.perplexity import UNCONDITIONAL_PROMPT, _scored_ids


class UniformLM(torch.nn.Module):
    """Stand-in causal LM that gives every token the same probability: perplexity = V."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.unused = torch.nn.Parameter(torch.zeros(1))  # so the model has a device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab_size))


@pytest.fixture(scope="module")
def tiny_llama(tokenizer, make_tiny_llama):
    return make_tiny_llama(tokenizer).eval()


def test_only_the_text_and_eos_are_scored(tokenizer, mp20_subset: list[Crystal]) -> None:
    text = encode(mp20_subset[0])
    ids, scored = _scored_ids(tokenizer, UNCONDITIONAL_PROMPT, text, add_eos=True)
    assert ids == tokenizer(UNCONDITIONAL_PROMPT + text)["input_ids"] + [tokenizer.eos_token_id]
    assert sum(scored) == len(tokenizer.tokenize(text)) + 1
    assert all(scored[-sum(scored) :]) and not any(scored[: -sum(scored)])


def test_uniform_model_has_perplexity_vocab_size(tokenizer, mp20_subset: list[Crystal]) -> None:
    texts = [encode(crystal) for crystal in mp20_subset[:5]]
    model = UniformLM(len(tokenizer))
    for prompt in (UNCONDITIONAL_PROMPT, ""):
        values = perplexity(texts, model=model, tokenizer=tokenizer, prompt=prompt)
        np.testing.assert_allclose(values, len(tokenizer), rtol=1e-6)


def test_uniform_model_is_invariant_so_ipt_is_zero(tokenizer, mp20_subset: list[Crystal]) -> None:
    model = UniformLM(len(tokenizer))
    for baseline in ("min", "original"):
        ipt = increase_in_perplexity(
            mp20_subset[:4], model=model, tokenizer=tokenizer, baseline=baseline, rng=0
        )
        np.testing.assert_allclose(ipt, 0.0, atol=1e-6)


def test_tiny_llama_perplexity_is_finite_and_batching_does_not_matter(
    tokenizer, tiny_llama, mp20_subset: list[Crystal]
) -> None:
    # Crystals of different sizes, so batches mix lengths and need padding.
    texts = [encode(crystal) for crystal in mp20_subset[:8]]
    assert len({len(text) for text in texts}) > 3
    batched = perplexity(texts, model=tiny_llama, tokenizer=tokenizer, batch_size=3)
    one_by_one = [perplexity([text], model=tiny_llama, tokenizer=tokenizer)[0] for text in texts]
    assert batched.shape == (8,) and batched.dtype == np.float64
    assert np.all(np.isfinite(batched)) and np.all(batched > 1.0)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4)
    per_text_prompts = perplexity(
        texts, model=tiny_llama, tokenizer=tokenizer, prompt=[UNCONDITIONAL_PROMPT] * 8
    )
    np.testing.assert_allclose(per_text_prompts, batched, rtol=1e-4)


def test_tiny_llama_ipt(tokenizer, tiny_llama, mp20_subset: list[Crystal]) -> None:
    crystals = mp20_subset[:3]
    kwargs = {"model": tiny_llama, "tokenizer": tokenizer, "num_transforms": 3}
    for transform in ("translate", "permute", "both"):
        ipt = increase_in_perplexity(crystals, transform=transform, rng=1, **kwargs)
        assert ipt.shape == (3,) and np.all(np.isfinite(ipt)) and np.all(ipt >= 0)
    again = increase_in_perplexity(crystals, transform="both", rng=1, batch_size=2, **kwargs)
    np.testing.assert_allclose(again, ipt, rtol=1e-4, atol=1e-6)
    original = increase_in_perplexity(crystals, baseline="original", rng=1, **kwargs)
    assert np.all(np.isfinite(original))


def test_bad_arguments_are_rejected(tokenizer, tiny_llama, mp20_subset: list[Crystal]) -> None:
    with pytest.raises(ValueError, match="prompts"):
        perplexity(["a", "b"], model=tiny_llama, tokenizer=tokenizer, prompt=["x"])
    with pytest.raises(ValueError, match="transform"):
        increase_in_perplexity(
            mp20_subset[:1], model=tiny_llama, tokenizer=tokenizer, transform="rotate"
        )
