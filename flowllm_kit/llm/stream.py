"""Continuous batching: a fixed number of rows decode together, and a row whose text has ended
takes the next prompt while the others go on.

``model.generate`` runs a batch until its longest text ends. Crystal texts run from about 40 to
over 400 tokens, so at batch 64 most rows sit finished for most of the steps. Here the rows in
flight stay right-aligned in one KV cache: a new prompt is encoded on its own (a short batched
forward), its keys and values are left-padded to the cache's length and appended as new rows,
finished rows are dropped, and cache columns no row needs any more are cut from the left. Each
row has its own position ids, so padding never shifts a row's positions.

Every draw samples from its own random generator, seeded from ``seed`` and the draw's index:
a draw's text is the same whatever the batch it ran in, so a run interrupted and resumed
draws what an uninterrupted one would (up to floating-point ties).

Only models whose cache is transformers' plain ``DynamicCache`` (full attention in every
layer) can be decoded this way; :func:`supports_streaming` says whether one can. For
transformers' own float32 ``LlamaForCausalLM`` (the kit's scratch models), each decoding
step runs the model's layers directly rather than through its ``forward``, which at batch 1 on a
CPU spends more time on per-call work than on the arithmetic; the logits are the same
(:mod:`flowllm_kit.llm.llama_step`). The cache's layers grow in place
(:mod:`flowllm_kit.llm.kv_cache`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from flowllm_kit.llm.kv_cache import buffered, pad_left
from flowllm_kit.llm.llama_step import DecodeStep, llama_decoder

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from flowllm_kit.llm.config import LLMSamplingConfig

__all__ = ["Finished", "sample_next_tokens", "stream_generate", "supports_streaming"]

# next_prompt() -> (draw index, prompt), or None while no new draw is wanted.
NextPrompt = Callable[[], "tuple[int, str] | None"]


@dataclass(frozen=True)
class Finished:
    """One draw that has ended."""

    draw: int  # the index next_prompt gave it
    text: str | None  # its completion without special tokens; None if it hit the token limit
    num_tokens: int  # tokens generated, the end of sequence included


def sample_next_tokens(
    logits: torch.Tensor, uniforms: torch.Tensor, *, temperature: float, top_p: float
) -> torch.Tensor:
    """Nucleus sampling by inverse transform: one token per row from ``uniforms`` in [0, 1).

    The tokens kept are the most probable ones up to and including the first at which their
    probability, summed in decreasing order, reaches ``top_p`` (transformers' ``TopPLogitsWarper``
    keeps the same set); the draw is from their renormalised probabilities.

    Args:
        logits: ``(B, V)`` next-token logits.
        uniforms: ``(B,)`` independent uniform numbers, one per row.
        temperature: Divides the logits (> 0).
        top_p: Nucleus mass in (0, 1].

    Returns:
        ``(B,)`` token ids.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    sorted_probs, order = probs.sort(dim=-1, descending=True)  # (B, V)
    cumulative = sorted_probs.cumsum(dim=-1)  # (B, V)
    # the kept tokens are a prefix: those with less than top_p of mass ahead of them (>= 1)
    kept = ((cumulative - sorted_probs) < top_p).sum(dim=-1, keepdim=True).clamp_(min=1)  # (B, 1)
    threshold = uniforms.to(cumulative)[:, None] * cumulative.gather(1, kept - 1)  # (B, 1)
    choice = torch.searchsorted(cumulative, threshold, right=True)  # first index above it
    choice = torch.minimum(choice, kept - 1)  # rounding at the top end
    return order.gather(1, choice).squeeze(1)


def supports_streaming(model: PreTrainedModel) -> bool:
    """Whether ``model``'s KV cache is the plain full-attention ``DynamicCache``."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # noqa: BLE001 (a model transformers cannot build a cache for)
        return False
    return all(type(layer) is DynamicLayer for layer in cache.layers)


class _Rows:
    """The rows in flight: their cache, attention mask, positions and sampling state."""

    def __init__(self) -> None:
        self.cache = None  # DynamicCache, (B, heads, T, head_dim) per layer
        self.mask = None  # (B, T) 1 where a cache column holds one of the row's tokens
        self.positions = None  # (B,) position id of the next token fed
        self.last = None  # (B,) last sampled token (the next input)
        self.draws: list[int] = []
        self.tokens: list[list[int]] = []
        self.generators: list[torch.Generator] = []
        # A row whose text has ended stays in the batch (decoded, its tokens ignored) until the
        # next refill drops it: dropping rows copies the whole cache.
        self.alive: list[bool] = []

    def __len__(self) -> int:
        return len(self.draws)

    @property
    def num_alive(self) -> int:
        return sum(self.alive)

    def drop_ended(self) -> None:
        """Drop the rows whose texts have ended."""
        if not all(self.alive):
            self.keep([row for row, alive in enumerate(self.alive) if alive])

    @torch.no_grad()
    def join(self, other: _Rows) -> None:
        """Append ``other``'s rows, left-padding whichever cache is shorter."""
        if self.cache is None:
            self.__dict__.update(other.__dict__)
            layers = self.cache.layers
            for i, layer in enumerate(layers):
                layers[i] = buffered(layer.keys, layer.values)
            return
        length = max(self.mask.shape[1], other.mask.shape[1])
        layers = self.cache.layers
        for i, (mine, theirs) in enumerate(zip(layers, other.cache.layers, strict=True)):
            layers[i] = buffered(
                torch.cat([pad_left(mine.keys, length), pad_left(theirs.keys, length)]),
                torch.cat([pad_left(mine.values, length), pad_left(theirs.values, length)]),
            )
        self.mask = torch.cat([pad_left(self.mask, length), pad_left(other.mask, length)])
        self.positions = torch.cat([self.positions, other.positions])
        self.last = torch.cat([self.last, other.last])
        self.draws += other.draws
        self.tokens += other.tokens
        self.generators += other.generators
        self.alive += other.alive

    @torch.no_grad()
    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in this order), then cut the cache columns none of them uses."""
        if not rows:
            self.__init__()
            return
        index = torch.tensor(rows, device=self.mask.device)
        used = self.mask.index_select(0, index).any(dim=0)  # (T,)
        start = int(used.nonzero()[0])  # rows are right-aligned: unused columns are at the left
        layers = self.cache.layers
        for i, layer in enumerate(layers):
            layers[i] = buffered(
                layer.keys[:, :, start:].index_select(0, index),
                layer.values[:, :, start:].index_select(0, index),
            )
        self.mask = self.mask.index_select(0, index)[:, start:]
        self.positions = self.positions.index_select(0, index)
        self.last = self.last.index_select(0, index)
        self.draws = [self.draws[r] for r in rows]
        self.tokens = [self.tokens[r] for r in rows]
        self.generators = [self.generators[r] for r in rows]
        self.alive = [self.alive[r] for r in rows]


def stream_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    next_prompt: NextPrompt,
    *,
    config: LLMSamplingConfig,
    seed: int = 0,
    rows: int | None = None,
    refill_fraction: float = 0.125,
) -> Iterator[Finished]:
    """Decode prompts with ``rows`` rows in flight, yielding each draw as soon as it ends.

    Args:
        model: A causal LM with a plain ``DynamicCache`` (see :func:`supports_streaming`).
        tokenizer: Its tokenizer.
        next_prompt: Called whenever rows are free; returns ``(draw, prompt)``, or ``None``
            while no new draw is wanted (it is asked again as rows free up). Decoding ends when
            no row is in flight and it returns ``None``.
        config: Temperature, top-p and the token limit per draw (``batch_size`` is the default
            number of rows).
        seed: Draw ``d`` samples from a generator seeded with ``(seed, d)``.
        rows: Rows in flight (default ``config.batch_size``).
        refill_fraction: New prompts are encoded once this fraction of the rows is free (or
            none is in flight), so that each encoding pass takes several prompts.

    Yields:
        One :class:`Finished` per draw, in the order the draws end.
    """
    rows = rows or config.batch_size
    eos = tokenizer.eos_token_id
    model.eval()
    step = llama_decoder(model)
    flight = _Rows()
    threshold = max(1, int(refill_fraction * rows))
    while True:
        free = rows - flight.num_alive
        if free >= threshold or not flight.num_alive:
            new = []
            while len(new) < free and (item := next_prompt()) is not None:
                new.append(item)
            if new:
                flight.drop_ended()
                flight.join(_encode(model, tokenizer, new, seed=seed, config=config))
                yield from _finish(flight, eos, config.max_new_tokens, tokenizer)
                continue  # maybe refill the rows that ended on their first token
        if not flight.num_alive:
            return
        if 4 * (len(flight) - flight.num_alive) > len(flight):  # the last rows, no refill
            flight.drop_ended()
        _decode_step(model, flight, config, step)
        yield from _finish(flight, eos, config.max_new_tokens, tokenizer)


@torch.no_grad()  # not around the loop: that would stay on while the caller runs
def _encode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[tuple[int, str]],
    *,
    seed: int,
    config: LLMSamplingConfig,
) -> _Rows:
    """Run the new prompts (left-padded among themselves) and sample their first tokens."""
    batch = tokenizer([p for _, p in items], return_tensors="pt", padding=True, padding_side="left")
    device = model.device
    mask = batch["attention_mask"].to(device)  # (b, T)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (b, T), 0 at each row's first token
    output = model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
    )
    rows = _Rows()
    rows.cache = _returned_cache(output)
    rows.mask = mask
    rows.positions = positions[:, -1] + 1
    rows.draws = [draw for draw, _ in items]
    rows.tokens = [[] for _ in items]
    rows.alive = [True] * len(items)
    rows.generators = [torch.Generator().manual_seed(seed * 1_000_003 + draw) for draw, _ in items]
    rows.last = _sample(output.logits[:, -1], rows, config)
    return rows


@torch.no_grad()
def _decode_step(
    model: PreTrainedModel, flight: _Rows, config: LLMSamplingConfig, step: DecodeStep | None
) -> None:
    """Feed every row its last token (through ``step`` if given) and sample the next."""
    flight.mask = torch.cat([flight.mask, flight.mask.new_ones(len(flight), 1)], dim=1)
    if step is not None:
        logits = step(flight.last, flight.positions, flight.mask, flight.cache)
    else:
        output = model(
            input_ids=flight.last[:, None],
            attention_mask=flight.mask,
            position_ids=flight.positions[:, None],
            cache_position=torch.tensor([flight.mask.shape[1] - 1], device=flight.mask.device),
            use_cache=True,
            **{_cache_keyword(model): flight.cache},
        )
        flight.cache = _returned_cache(output)
        logits = output.logits[:, -1]
    flight.positions = flight.positions + 1
    flight.last = _sample(logits, flight, config)


def _cache_keyword(model: PreTrainedModel) -> str:
    """``cache`` (transformers >= 5.2x) or ``past_key_values`` (earlier 5.x), as the model's
    forward takes it (a peft model's base model is asked)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _returned_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _sample(logits: torch.Tensor, flight: _Rows, config: LLMSamplingConfig) -> torch.Tensor:
    """One token per row from the row's own generator; appended to the row's tokens."""
    uniforms = torch.stack([torch.rand((), generator=g) for g in flight.generators])
    tokens = sample_next_tokens(
        logits, uniforms.to(logits.device), temperature=config.temperature, top_p=config.top_p
    )
    for row, token, alive in zip(flight.tokens, tokens.tolist(), flight.alive, strict=True):
        if alive:
            row.append(token)
    return tokens


def _finish(
    flight: _Rows, eos: int, max_new_tokens: int, tokenizer: PreTrainedTokenizerBase
) -> Iterator[Finished]:
    """Yield the rows whose last token ended them, and mark them ended."""
    for row, tokens in enumerate(flight.tokens):
        if flight.alive[row] and (tokens[-1] == eos or len(tokens) >= max_new_tokens):
            flight.alive[row] = False
            text = tokenizer.decode(tokens, skip_special_tokens=True) if tokens[-1] == eos else None
            yield Finished(flight.draws[row], text, len(tokens))
