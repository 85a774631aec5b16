"""Perplexity of crystal texts under a causal language model, and IPT.

IPT, the *increase in perplexity under transformation* of Gruver et al. (2024, "Fine-Tuned
Language Models Generate Stable Inorganic Materials as Text"), measures how far a model is from
invariance under a symmetry that leaves the crystal unchanged but changes its text. For a
crystal ``s`` and a group ``G`` of transformations ``t_g`` (global translations of the
fractional coordinates; the kit adds permutations of the atoms)::

    IPT(s) = E_{g in G} [ PPL(t_g(s)) - PPL(t_{g*}(s)) ],   g* = argmin_g PPL(t_g(s))

The expectation is estimated from ``num_transforms`` random draws and the minimum is taken over
those draws and the untransformed text (``baseline="min"``, as we read the paper's
definition). ``baseline="original"`` subtracts the untransformed text's perplexity instead: the
mean increase over the text as written. A perfectly invariant model has IPT 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from flowllm_kit.crystal import Crystal
from flowllm_kit.text.codec import encode
from flowllm_kit.text.prompts import generation_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["UNCONDITIONAL_PROMPT", "increase_in_perplexity", "perplexity"]

UNCONDITIONAL_PROMPT = generation_prompt()
"""The default context of :func:`perplexity`: the prompt the kit's models are sampled with."""


def _scored_ids(
    tokenizer: PreTrainedTokenizerBase, prompt: str, text: str, add_eos: bool
) -> tuple[list[int], list[bool]]:
    """Token ids of prompt + text (+ EOS) and which of them are scored (the text's)."""
    encoding = tokenizer(
        prompt + text, return_offsets_mapping=True, return_special_tokens_mask=True
    )
    ids = list(encoding["input_ids"])
    scored = [
        not special and start >= len(prompt)
        for (start, _), special in zip(
            encoding["offset_mapping"], encoding["special_tokens_mask"], strict=True
        )
    ]
    if add_eos:
        ids.append(tokenizer.eos_token_id)
        scored.append(True)
    return ids, scored


def _mean_nll(
    model: PreTrainedModel, rows: list[tuple[list[int], list[bool]]], pad_id: int
) -> np.ndarray:
    """Mean negative log-likelihood of the scored tokens of each row, one right-padded batch."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (b, T)
    scored = torch.zeros((len(rows), width), dtype=torch.bool)  # (b, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (b, T)
    for row, (ids, mask) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        scored[row, : len(ids)] = torch.tensor(mask)
        attention_mask[row, : len(ids)] = 1
    device = next(model.parameters()).device
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
    # Token t is predicted from the logits at t - 1.
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (b, T-1, V)
    targets = input_ids[:, 1:].to(device).unsqueeze(-1)  # (b, T-1, 1)
    # float64 sums: hundreds of float32 terms would drift by ~1e-6.
    token_nll = -log_probs.gather(-1, targets).squeeze(-1).double()  # (b, T-1)
    weights = scored[:, 1:].to(device, dtype=token_nll.dtype)  # (b, T-1)
    return ((token_nll * weights).sum(-1) / weights.sum(-1)).cpu().numpy()  # (b,)


@torch.no_grad()
def perplexity(
    texts: Sequence[str],
    *,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str | Sequence[str] = UNCONDITIONAL_PROMPT,
    add_eos: bool = True,
    batch_size: int = 16,
) -> np.ndarray:
    """Per-text perplexity ``exp(mean negative log-likelihood)`` of the text's tokens.

    Each text is scored in the context of its prompt: the model reads ``<bos> prompt text``
    and only the tokens that start inside ``text`` (and the end-of-sequence token, if
    ``add_eos``) count. Texts are batched by length with right padding, so the result does
    not depend on ``batch_size`` beyond floating-point noise.

    Args:
        texts: Crystal texts (or any texts), ``B`` of them.
        model: A causal language model (``model(input_ids, attention_mask).logits``).
        tokenizer: Its fast tokenizer (offsets are needed to find the text's tokens).
        prompt: One prompt for all texts or one per text; ``""`` for none.
        add_eos: Score the end-of-sequence token after each text, as in training.
        batch_size: Texts per forward pass.

    Returns:
        ``(B,)`` float64 perplexities.
    """
    prompts = [prompt] * len(texts) if isinstance(prompt, str) else list(prompt)
    if len(prompts) != len(texts):
        raise ValueError(f"got {len(prompts)} prompts for {len(texts)} texts")
    encoded = [_scored_ids(tokenizer, p, t, add_eos) for p, t in zip(prompts, texts, strict=True)]
    if any(not any(scored) for _, scored in encoded):
        raise ValueError("a text has no token to score (empty text and add_eos=False?)")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i][0]))  # less padding
    result = np.empty(len(texts), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        for begin in range(0, len(order), batch_size):
            rows = order[begin : begin + batch_size]
            mean_nll = _mean_nll(model, [encoded[i] for i in rows], pad_id)
            result[rows] = np.exp(mean_nll)
    finally:
        model.train(was_training)
    return result


def increase_in_perplexity(
    crystals: Sequence[Crystal],
    *,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    transform: Literal["translate", "permute", "both"] = "translate",
    num_transforms: int = 8,
    baseline: Literal["min", "original"] = "min",
    prompt: str = UNCONDITIONAL_PROMPT,
    batch_size: int = 16,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """IPT of each crystal (see the module docstring for the definition).

    Args:
        crystals: ``B`` crystals.
        model: A causal language model.
        tokenizer: Its fast tokenizer.
        transform: Random global translations, random atom orders, or both at once.
        num_transforms: Random transformations drawn per crystal.
        baseline: ``"min"``: subtract the lowest perplexity among the untransformed and the
            transformed texts (the paper's ``g*``); ``"original"``: subtract the perplexity of
            the untransformed text.
        prompt: Context the texts are scored in.
        batch_size: Texts per forward pass.
        rng: Random generator or seed for the transformations.

    Returns:
        ``(B,)`` float64 IPT values, >= 0 for ``baseline="min"``.
    """
    if transform not in ("translate", "permute", "both"):
        raise ValueError(f"transform must be 'translate', 'permute' or 'both', got {transform!r}")
    if baseline not in ("min", "original"):
        raise ValueError(f"baseline must be 'min' or 'original', got {baseline!r}")
    if num_transforms < 1:
        raise ValueError(f"num_transforms must be >= 1, got {num_transforms}")
    generator = np.random.default_rng(rng)
    translate = transform in ("translate", "both")
    permute = transform in ("permute", "both")
    texts = []
    for crystal in crystals:
        texts.append(encode(crystal))
        texts += [
            encode(crystal, translate=translate, permute=permute, rng=generator)
            for _ in range(num_transforms)
        ]
    values = perplexity(
        texts, model=model, tokenizer=tokenizer, prompt=prompt, batch_size=batch_size
    ).reshape(len(crystals), 1 + num_transforms)  # (B, 1 + K): untransformed first
    reference = values.min(axis=1) if baseline == "min" else values[:, 0]
    return values[:, 1:].mean(axis=1) - reference
