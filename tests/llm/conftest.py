"""Fixtures of the LLM tests: small crystals, a tiny pretrained LLaMA saved to disk (built by
the top-level ``make_tiny_llama``), and a scripted stand-in model whose ``generate`` returns
chosen texts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from flowllm_kit.crystal import Crystal


@pytest.fixture(scope="session")
def small_crystals() -> list[Crystal]:
    """Three crystals of two or three atoms (short texts keep training fast)."""
    return [
        Crystal(
            atomic_numbers=[11, 17],
            frac_coords=[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
            lengths=[3.99, 3.99, 3.99],
            angles=[60, 60, 60],
            id="NaCl",
        ),
        Crystal(
            atomic_numbers=[55, 17],
            frac_coords=[[0.1, 0.2, 0.3], [0.6, 0.7, 0.8]],
            lengths=[4.12, 4.12, 4.12],
            angles=[90, 90, 90],
            id="CsCl",
        ),
        Crystal(
            atomic_numbers=[12, 9, 9],
            frac_coords=[[0.0, 0.0, 0.0], [0.3, 0.3, 0.0], [0.7, 0.7, 0.0]],
            lengths=[4.62, 4.62, 3.05],
            angles=[90, 90, 90],
            id="MgF2",
        ),
    ]


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer, make_tiny_llama) -> Path:
    """A randomly initialised two-layer LLaMA and a tokenizer, saved like a hub checkpoint."""
    path = tmp_path_factory.mktemp("tiny_llama")
    model = make_tiny_llama(
        tokenizer,
        hidden_size=64,
        intermediate_size=128,
        num_key_value_heads=4,
        max_position_embeddings=256,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class ScriptedModel(torch.nn.Module):
    """A stand-in causal LM: ``generate`` answers each prompt with ``respond(prompt)``.

    ``respond`` returns the completion text, or ``None`` for a sample that never reaches the
    end-of-sequence token (it is then ``max_new_tokens`` tokens of filler).
    """

    def __init__(self, tokenizer, respond: Callable[[str], str | None]) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.respond = respond
        self.num_prompts = 0
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def generate(self, input_ids, attention_mask, max_new_tokens, **options):  # noqa: ANN001
        assert options["eos_token_id"] == self.tokenizer.eos_token_id
        assert bool((attention_mask[:, -1] == 1).all()), "prompts must be left-padded"
        tok = self.tokenizer
        rows = []
        for prompt in tok.batch_decode(input_ids, skip_special_tokens=True):
            self.num_prompts += 1
            completion = self.respond(prompt)
            if completion is None:
                ids = [tok.convert_tokens_to_ids("0")] * max_new_tokens
            else:
                ids = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rows.append(ids[:max_new_tokens])
        width = max(len(row) for row in rows)
        new = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        for i, row in enumerate(rows):
            new[i, : len(row)] = torch.tensor(row)
        return torch.cat([input_ids, new], dim=1)


@pytest.fixture
def scripted_model(tokenizer) -> Callable[[Callable[[str], str | None]], ScriptedModel]:
    """Factory: ``scripted_model(respond)`` is a :class:`ScriptedModel`."""
    return lambda respond: ScriptedModel(tokenizer, respond)
