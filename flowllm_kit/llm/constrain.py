"""Composition-constrained decoding: the model writes the lattice and the coordinates, but
its element lines are restricted to a requested composition.

The pair set of Algorithm 1 (docs/METHOD.md §4) keeps formula-prompted samples whose composition
equals the target's and rejects the rest. A large fine-tuned model matches often; a small model
trained from scratch for minutes on a CPU hardly ever learns to copy the formula of its prompt,
so rejection would keep next to nothing. With :class:`CompositionConstraint` every sample has
the target's composition by construction: at each step, element tokens whose element has no
atoms left are masked, and the end-of-sequence token is masked until every atom is written.
Lengths, angles, coordinates and the order of the atoms are still the model's own choices.
This departs from the paper (which uses rejection), so it is an option, off by default
(:attr:`flowllm_kit.llm.PairConfig.constrain_composition`).

It needs a tokenizer with one token per element symbol, as the kit's own tokenizer has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from flowllm_kit.text.codec import element_symbols

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["CompositionConstraint", "element_token_ids"]


def element_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Element symbol -> its token id.

    Raises:
        ValueError: If the tokenizer writes some element symbol as more than one token (most
            pretrained tokenizers do); composition constraints are then not available.
    """
    ids: dict[str, int] = {}
    split: list[str] = []
    for symbol in element_symbols():
        tokens = tokenizer.encode(symbol, add_special_tokens=False)
        if len(tokens) == 1:
            ids[symbol] = tokens[0]
        else:
            split.append(symbol)
    if split:
        raise ValueError(
            f"composition-constrained decoding needs one token per element symbol; "
            f"{type(tokenizer).__name__} splits {len(split)} of them (e.g. {', '.join(split[:5])})"
        )
    return ids


class CompositionConstraint:
    """A transformers logits processor that keeps each row of a batch to its composition.

    It follows the text format (:mod:`flowllm_kit.text.codec`): two lines of lattice, then an
    element line and a coordinate line per atom, and the end of sequence after the last
    coordinate. At the start of an element line only elements with atoms left may come, and
    after the element only the newline; element tokens may come nowhere else; the end of
    sequence may come only on the last coordinate line, where a newline may not. Everything
    else (lattice, coordinates, atom order) is the model's.

    Args:
        tokenizer: The model's tokenizer (one token per element symbol).
        compositions: One ``{element: count}`` per row of the batch.
        prompt_length: Length of the (left-padded) prompt batch; tokens after it are counted.

    Use it before temperature and top-p (see :func:`flowllm_kit.llm.generate_texts`): masking
    after nucleus filtering could leave a row with no token at all.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        compositions: Sequence[Mapping[str, int]],
        prompt_length: int,
    ) -> None:
        ids = element_token_ids(tokenizer)
        symbols = sorted(ids)
        unknown = {s for c in compositions for s in c if s not in ids}
        if unknown:
            raise ValueError(f"compositions name unknown elements: {sorted(unknown)}")
        if any(sum(c.values()) < 1 for c in compositions):
            raise ValueError("every composition needs at least one atom")
        (newline,) = tokenizer.encode("\n", add_special_tokens=False)
        self.newline_id = newline
        self.prompt_length = prompt_length
        self.eos_token_id = tokenizer.eos_token_id
        self.element_ids = torch.tensor([ids[s] for s in symbols])  # (E,)
        self.targets = torch.tensor(
            [[int(c.get(s, 0)) for s in symbols] for c in compositions]
        )  # (B, E)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length :]  # (B, T)
        device = scores.device
        element_ids = self.element_ids.to(device)
        written = (generated[:, :, None] == element_ids).sum(dim=1)  # (B, E)
        remaining = self.targets.to(device) - written  # (B, E)
        done = (remaining <= 0).all(dim=1)  # (B,)
        line = (generated == self.newline_id).sum(dim=1)  # (B,) index of the current line
        if generated.shape[1]:
            last = generated[:, -1]  # (B,)
            after_newline = last == self.newline_id
            after_element = (last[:, None] == element_ids).any(dim=1)
        else:
            after_newline = after_element = torch.zeros_like(done)
        element_start = after_newline & (line >= 2) & (line % 2 == 0)  # (B,)
        coordinates = (line >= 3) & (line % 2 == 1)  # (B,)

        element_scores = scores[:, element_ids]  # (B, E); ``scores`` itself is never written
        allowed_elements = element_start[:, None] & (remaining > 0)
        # At an element line's start: only the elements with atoms left (or, if none is left,
        # the end of sequence). Elsewhere: no element token.
        opening = scores.masked_fill(element_start[:, None], -torch.inf)
        opening[:, element_ids] = element_scores.masked_fill(~allowed_elements, -torch.inf)
        eos_allowed = done & (coordinates | element_start)
        opening[:, self.eos_token_id] = scores[:, self.eos_token_id].masked_fill(
            ~eos_allowed, -torch.inf
        )
        # On the last coordinate line the text ends: no newline.
        opening[:, self.newline_id] = opening[:, self.newline_id].masked_fill(
            done & coordinates, -torch.inf
        )
        # An element line holds the element only.
        opening[after_element] = -torch.inf
        opening[after_element, self.newline_id] = scores[after_element, self.newline_id]
        return opening
