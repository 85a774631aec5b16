"""Sampling: exactly N valid crystals, rejection counts by reason, incremental file, resume."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flowllm_kit import text
from flowllm_kit.crystal import Crystal
from flowllm_kit.llm import (
    LLMSamplingConfig,
    composition_agreement,
    generate_texts,
    read_draws,
    sample_crystals,
)

SMALL = LLMSamplingConfig(batch_size=4, max_new_tokens=200)


def _script(small_crystals: list[Crystal]) -> list[str | None]:
    """Every fourth answer invalid, for a different reason each time."""
    good = [text.encode(c) for c in small_crystals]
    bad = ["", "3.9 3.9 3.9\n60 60 60\nthe\n0.00 0.00 0.00", None, "3.9 3.9\n60 60 60\nNa\n0 0 0"]
    return [good[0], good[1], good[2], bad[0], good[1], good[0], good[2], bad[1],
            good[2], good[1], good[0], bad[2], good[0], good[2], good[1], bad[3]]  # fmt: skip


EXPECTED_REASONS = {"empty", "unknown_element", "truncated", "wrong_number_of_values"}


def test_exactly_n_valid_crystals_and_rejections_by_reason(
    scripted_model, tokenizer, small_crystals
) -> None:
    answers = itertools.cycle(_script(small_crystals))
    model = scripted_model(lambda prompt: next(answers))
    result = sample_crystals(model, tokenizer, num_crystals=12, config=SMALL, progress_bar=False)
    assert len(result.crystals) == len(result.texts) == len(result.draws) == 12
    assert result.num_draws == 16  # 12 valid in the first 16 draws
    assert dict(result.rejections) == dict.fromkeys(EXPECTED_REASONS, 1)
    assert result.acceptance_rate == pytest.approx(12 / 16)
    assert result.crystals[0].formula == "NaCl" and result.crystals[2].formula == "MgF2"
    assert result.tokens_per_second > 0 and result.crystals_per_second > 0


def test_prompts_cycle_and_accept_check(scripted_model, tokenizer, small_crystals) -> None:
    prompts = [text.generation_prompt(formula=c.formula) for c in small_crystals]
    seen: list[str] = []
    by_formula = {c.formula: text.encode(c) for c in small_crystals}

    def respond(prompt: str) -> str:
        seen.append(prompt)
        return by_formula["NaCl"]  # always NaCl, whatever was asked

    def accept(crystal: Crystal, draw: int) -> str | None:
        return None if crystal.formula == small_crystals[draw % 3].formula else "wrong_formula"

    model = scripted_model(respond)
    result = sample_crystals(
        model, tokenizer, num_crystals=2, prompts=prompts, accept=accept, config=SMALL,
        progress_bar=False,
    )  # fmt: skip
    assert seen[:3] == prompts  # draw k answers prompts[k % 3]
    assert result.draws == [0, 3]
    assert result.rejections["wrong_formula"] == sum(1 for d in range(result.num_draws) if d % 3)


def test_max_draws_stops_a_hopeless_run(scripted_model, tokenizer) -> None:
    model = scripted_model(lambda prompt: "nonsense")
    result = sample_crystals(
        model, tokenizer, num_crystals=5, max_draws=10, config=SMALL, progress_bar=False
    )
    assert result.crystals == [] and result.num_draws == 10


def test_interrupted_run_resumes_and_loses_nothing(
    scripted_model, tokenizer, small_crystals, tmp_path: Path
) -> None:
    path = tmp_path / "samples.jsonl"
    script = _script(small_crystals)
    answers = itertools.cycle(script)

    class Interrupt(Exception):
        pass

    def flaky(prompt: str) -> str | None:
        if model.num_prompts > 9:  # dies while generating the third batch
            raise Interrupt
        return next(answers)

    model = scripted_model(flaky)
    with pytest.raises(Interrupt):
        sample_crystals(
            model, tokenizer, num_crystals=12, path=path, config=SMALL, progress_bar=False
        )
    assert len(read_draws(path)) == 8  # two whole batches were written
    with path.open("a") as handle:  # and a write cut short by the interruption
        handle.write('{"draw": 8, "text": "3.9')

    # The sampler reseeds by draw index, so a real model redraws draw 8 as it would have.
    answers = itertools.islice(itertools.cycle(script), 8, None)
    resumed_model = scripted_model(lambda prompt: next(answers))
    resumed = sample_crystals(
        resumed_model, tokenizer, num_crystals=12, path=path, config=SMALL, progress_bar=False
    )
    answers = itertools.cycle(script)
    uninterrupted = sample_crystals(
        scripted_model(lambda prompt: next(answers)), tokenizer, num_crystals=12, config=SMALL,
        progress_bar=False,
    )  # fmt: skip
    assert resumed.num_resumed == 8 and resumed_model.num_prompts == 8
    assert resumed.texts == uninterrupted.texts
    assert resumed.rejections == uninterrupted.rejections
    records = read_draws(path)
    assert [r.draw for r in records] == list(range(16))
    assert all(json.loads(line) for line in path.read_text().splitlines())
    # A finished run read back draws nothing more.
    again = scripted_model(lambda prompt: pytest.fail("should not generate"))
    done = sample_crystals(again, tokenizer, num_crystals=12, path=path, progress_bar=False)
    assert [c.formula for c in done.crystals] == [c.formula for c in resumed.crystals]


class _OneToken(torch.nn.Module):
    """An output head that makes one token (almost) certain."""

    def __init__(self, vocab_size: int, token: int) -> None:
        super().__init__()
        self.logits = torch.full((vocab_size,), -1e4)
        self.logits[token] = 0.0

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*hidden.shape[:-1], -1)  # (B, T, V)


@pytest.mark.parametrize("cache", ["static", "dynamic"])
def test_generate_texts_with_a_real_model(tiny_llama_dir: Path, cache: str) -> None:
    from flowllm_kit.llm import load_model

    model, tokenizer = load_model(tiny_llama_dir)
    prompts = [text.generation_prompt(), text.generation_prompt(formula="NaCl")]  # unequal
    config = LLMSamplingConfig(max_new_tokens=6, cache=cache)
    # End of sequence first: every row stops after one token, with an empty text.
    model.lm_head = _OneToken(len(tokenizer), tokenizer.eos_token_id)
    texts, num_tokens = generate_texts(model, tokenizer, prompts, config=config)
    assert texts == ["", ""] and num_tokens == 2
    # A digit forever: every row runs into max_new_tokens and counts as truncated.
    model.lm_head = _OneToken(len(tokenizer), tokenizer.convert_tokens_to_ids("7"))
    texts, num_tokens = generate_texts(model, tokenizer, prompts, config=config)
    assert texts == [None, None] and num_tokens == 12


@pytest.mark.parametrize("continuous", [False, True])
def test_a_diverged_model_is_refused_by_name(tiny_llama_dir: Path, continuous: bool) -> None:
    from flowllm_kit.llm import load_model

    model, tokenizer = load_model(tiny_llama_dir)
    config = LLMSamplingConfig(max_new_tokens=8, batch_size=2, continuous=continuous)
    assert sample_crystals(model, tokenizer, num_crystals=1, config=config, max_draws=2).num_draws
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"'model\.layers\.0\.mlp\.up_proj\.weight'.*diverged"):
        sample_crystals(model, tokenizer, num_crystals=1, config=config, max_draws=2)


def _salt(*atomic_numbers: int) -> Crystal:
    n = len(atomic_numbers)
    return Crystal(
        atomic_numbers=list(atomic_numbers),
        frac_coords=np.linspace(0.05, 0.85, 3 * n).reshape(n, 3),
        lengths=[5.0, 5.0, 5.0],
        angles=[90.0, 90.0, 90.0],
    )


def test_composition_agreement_counts_three_ways() -> None:
    target = _salt(11, 17)  # NaCl, one formula unit
    written = [
        _salt(17, 11),  # the same atoms in another order: all three
        _salt(11, 17, 11, 17),  # two formula units: reduced and elements, not exact
        _salt(11, 17, 17),  # NaCl2: elements only
        _salt(19, 17),  # KCl: none
    ]
    agreement = composition_agreement(written, [target] * 4)
    assert (agreement.exact, agreement.reduced, agreement.elements) == (0.25, 0.5, 0.75)
    assert agreement.count == 4
    with pytest.raises(ValueError, match="1 requested"):
        composition_agreement(written, [target])
    with pytest.raises(ValueError, match="at least one"):
        composition_agreement([], [])
