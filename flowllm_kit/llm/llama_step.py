"""A decoding step for transformers' own float32 ``LlamaForCausalLM`` (the kit's scratch
models) that runs the model's layers directly: at batch 1 on a CPU, the forward's per-call work
costs more than the small model's arithmetic. The logits are the model's forward's."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["DecodeStep", "llama_decoder"]

# step(tokens (B,), positions (B,), mask (B, S), cache) -> (B, V) logits of the next token
DecodeStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], torch.Tensor]


def llama_decoder(model: PreTrainedModel) -> DecodeStep | None:
    """A decoding step for transformers' own ``LlamaForCausalLM`` in float32, or None for any
    other model (adapters, quantized layers, half precision, other architectures, scaled rotary
    embeddings: they go through their ``forward``).

    The step computes what the model's forward computes for one new token per row, from the
    same weights, without the forward's per-call work (mask building, output objects, module
    hooks): at batch 1 on a CPU that work costs more than the small model's arithmetic. Fewer,
    larger operations do the same sums:

    - one matrix multiplication per layer gives the queries, keys and values *and* the queries
      and keys with their halves swapped and one negated (``rotate_half``), from weight rows
      permuted the same way, so the rotary embedding is a multiply-add;
    - cos and sin come from a table of positions, not from the rotary module each step;
    - the residual additions are fused into the output projections (``addmm``);
    - no attention mask is built when no row has padding.

    The weights are read when this is called, so call it again after changing them.
    """
    from transformers import LlamaForCausalLM

    if (
        type(model) is not LlamaForCausalLM
        or getattr(model, "is_quantized", False)
        or model.dtype != torch.float32  # in half precision the fused sums round differently
        or model.config._attn_implementation not in ("sdpa", "eager")
        or getattr(model.model.rotary_emb, "rope_type", "default") != "default"
    ):
        return None
    base = model.model
    layers = []
    for layer in base.layers:
        attention, mlp = layer.self_attn, layer.mlp
        projections = (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj)
        projections += (mlp.gate_proj, mlp.up_proj, mlp.down_proj)
        if any(type(p) is not torch.nn.Linear for p in projections):
            return None
        head_dim = attention.head_dim
        heads = attention.q_proj.out_features // head_dim
        kv_heads = attention.k_proj.out_features // head_dim
        rotated = [_Rotated(attention.q_proj, heads), _Rotated(attention.k_proj, kv_heads)]
        layers.append(
            (
                _packed(attention.q_proj, attention.k_proj, attention.v_proj, *rotated),
                (heads, kv_heads, head_dim),
                attention.scaling,
                _transposed(attention.o_proj),
                _packed(mlp.gate_proj, mlp.up_proj),
                mlp.act_fn,
                _transposed(mlp.down_proj),
                layer.input_layernorm,
                layer.post_attention_layernorm,
            )
        )
    functional = torch.nn.functional
    embeddings = base.embed_tokens.weight
    rotary = _RotaryTable(base.rotary_emb, embeddings)

    @torch.inference_mode()
    def step(
        tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        batch = len(tokens)
        x = functional.embedding(tokens, embeddings)  # (B, H)
        cos, sin = rotary(positions, mask.shape[1])  # (B, 1, head_dim) each
        bias = None  # (B, 1, 1, S) -inf at padding
        if not bool(mask.all()):
            bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
            bias = bias.masked_fill_(mask == 0, float("-inf"))[:, None, None, :]
        for (qkv, shape, scaling, o, gate_up, act, down, norm1, norm2), layer_cache in zip(
            layers, cache.layers, strict=True
        ):
            heads, kv_heads, head_dim = shape
            rotating = (heads + kv_heads) * head_dim
            out = functional.linear(_rms_norm(x, norm1), *qkv)  # (B, (2 heads + 3 kv_heads) d)
            qk, v, qk_swapped = out.split((rotating, kv_heads * head_dim, rotating), dim=1)
            qk = qk.view(batch, heads + kv_heads, head_dim)
            qk = torch.addcmul(qk * cos, qk_swapped.view(qk.shape), sin)  # rotary embedding
            q = qk[:, :heads, None]  # (B, heads, 1, d)
            k, v = layer_cache.update(qk[:, heads:, None], v.view(batch, kv_heads, 1, head_dim))[:2]
            attended = functional.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, scale=scaling, enable_gqa=kv_heads != heads
            )  # (B, heads, 1, d)
            x = _add_linear(x, attended.reshape(batch, heads * head_dim), *o)
            gate, up = functional.linear(_rms_norm(x, norm2), *gate_up).chunk(2, dim=-1)
            x = _add_linear(x, act(gate) * up, *down)
        return model.lm_head(_rms_norm(x, base.norm))

    return step


class _Rotated:
    """The weight (and bias) rows of a query or key projection reordered so that its output is
    ``rotate_half`` of the projection's: per head, the second half negated, then the first."""

    def __init__(self, projection: torch.nn.Linear, heads: int) -> None:
        self.weight = self._swap(projection.weight, heads)
        self.bias = None if projection.bias is None else self._swap(projection.bias, heads)

    @staticmethod
    def _swap(rows: torch.Tensor, heads: int) -> torch.Tensor:
        per_head = rows.reshape(heads, 2, -1, *rows.shape[1:])  # (heads, 2, d / 2, ...)
        return torch.cat([-per_head[:, 1:], per_head[:, :1]], dim=1).reshape(rows.shape)


class _RotaryTable:
    """cos and sin of the model's rotary embedding by position, from a table that grows."""

    def __init__(self, rotary: torch.nn.Module, like: torch.Tensor) -> None:
        self.rotary, self.like = rotary, like
        self.table = torch.empty(0, 2, 0)  # (positions, cos / sin, head_dim)

    def __call__(self, positions: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 1, d)`` cos and sin at ``positions``, all below ``length``."""
        if length > len(self.table):
            every = torch.arange(max(length, 2 * len(self.table), 256), device=self.like.device)
            cos, sin = self.rotary(self.like, every[None])  # (1, P, d) each
            self.table = torch.stack([cos[0], sin[0]], dim=1)
        both = self.table[positions]  # (B, 2, d)
        return both[:, :1], both[:, 1:]


def _packed(*layers: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weights (and biases) of linear layers on the same input, stacked into one."""
    weight = torch.cat([layer.weight for layer in layers])
    has_bias = layers[0].bias is not None
    return weight, torch.cat([layer.bias for layer in layers]) if has_bias else None


def _transposed(layer: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    return layer.weight.t(), layer.bias


def _add_linear(
    x: torch.Tensor, inputs: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x + linear(inputs)``, the addition fused into the multiplication."""
    x = torch.addmm(x, inputs, weight_t)
    return x if bias is None else x + bias


def _rms_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """LLaMA's RMSNorm of a float32 input as one op, its weight included."""
    return torch.nn.functional.rms_norm(x, x.shape[-1:], norm.weight, norm.variance_epsilon)
