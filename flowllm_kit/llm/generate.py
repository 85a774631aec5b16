"""One batch of prompts completed by one ``model.generate`` call: nucleus sampling, the
end-of-sequence token as the stop, and composition-constrained decoding when asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from flowllm_kit.llm.config import LLMSamplingConfig
from flowllm_kit.llm.constrain import CompositionConstraint

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["generate_texts"]


@torch.inference_mode()
def generate_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    config: LLMSamplingConfig = LLMSamplingConfig(),  # noqa: B008 (frozen dataclass)
    compositions: Sequence[Mapping[str, int]] | None = None,
) -> tuple[list[str | None], int]:
    """Complete a batch of prompts in one ``generate`` call.

    Args:
        model: A causal LM.
        tokenizer: Its tokenizer.
        prompts: ``B`` prompts (left-padded to a common length).
        config: Temperature, top-p, token limit and cache type.
        compositions: ``B`` ``{element: count}`` to hold the element lines to
            (:class:`~flowllm_kit.llm.constrain.CompositionConstraint`); ``None``: free.

    Returns:
        ``(texts, num_tokens)``: the ``B`` completions without prompt and special tokens
        (``None`` where no end-of-sequence token came within ``max_new_tokens``), and the
        number of tokens generated up to each row's end of sequence, summed.
    """
    model.eval()
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")
    batch = {name: tensor.to(model.device) for name, tensor in batch.items()}
    sampling: dict[str, Any] = {"temperature": config.temperature, "top_p": config.top_p}
    if compositions is not None:
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        if len(compositions) != len(prompts):
            raise ValueError(f"{len(compositions)} compositions for {len(prompts)} prompts")
        # The mask goes first: after nucleus filtering it could leave a row with no token.
        constraint = CompositionConstraint(tokenizer, compositions, batch["input_ids"].shape[1])
        sampling = {
            "temperature": 1.0,
            "top_p": 1.0,
            "logits_processor": LogitsProcessorList(
                [
                    constraint,
                    TemperatureLogitsWarper(config.temperature),
                    TopPLogitsWarper(config.top_p),
                ]
            ),
        }
    output = model.generate(
        **batch,
        do_sample=True,
        **sampling,
        top_k=0,  # nucleus sampling only (transformers' default would also cut at 50)
        max_new_tokens=config.max_new_tokens,
        cache_implementation=config.cache,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    new = output[:, batch["input_ids"].shape[1] :].cpu()  # (B, T_new)
    is_eos = new == tokenizer.eos_token_id  # (B, T_new)
    finished = is_eos.any(dim=1)  # (B,)
    # Tokens up to and including each row's first end of sequence (all of them if none).
    lengths = torch.where(finished, is_eos.int().argmax(dim=1) + 1, new.shape[1])  # (B,)
    texts: list[str | None] = []
    for row, length, done in zip(new, lengths.tolist(), finished.tolist(), strict=True):
        texts.append(tokenizer.decode(row[:length], skip_special_tokens=True) if done else None)
    return texts, int(lengths.sum())
