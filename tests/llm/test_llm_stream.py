"""Continuous batching: the sampler keeps the nucleus, rows do not affect each other, greedy
decoding equals decoding without a cache through refills and cache cuts, and sample_crystals
resumes to the same draws."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import TopPLogitsWarper

from flowllm_kit import llm, text
from flowllm_kit.llm.llama_step import llama_decoder
from flowllm_kit.llm.stream import (
    _cache_keyword,
    _encode,
    _Rows,
    sample_next_tokens,
    stream_generate,
    supports_streaming,
)

PROMPTS = [
    text.generation_prompt(formula=f)
    for f in ["NaCl", "Sr3CaMn2FeO10", "GaTe", "Cu", "MgAl2O4", "K", "BaTiO3", "Li7La3Zr2O12"]
]


def feeder(prompts: list[str]):
    items = iter(enumerate(prompts))
    return lambda: next(items, None)


@pytest.mark.parametrize("top_p", [0.3, 0.9, 1.0])
def test_sampler_keeps_the_nucleus_and_its_probabilities(top_p: float) -> None:
    logits = torch.randn(4, 50) * 3  # (B, V)
    temperature = 0.8
    kept = torch.isfinite(TopPLogitsWarper(top_p)(None, logits / temperature))  # (B, V)
    probs = torch.softmax(logits / temperature, dim=-1)
    expected = torch.where(kept, probs, 0) / torch.where(kept, probs, 0).sum(-1, keepdim=True)
    grid = (torch.arange(20_000) + 0.5) / 20_000  # evenly spread uniforms
    counts = torch.zeros(4, 50)
    for u in grid.split(1000):
        for row in range(4):
            tokens = sample_next_tokens(
                logits[row].expand(len(u), -1), u, temperature=temperature, top_p=top_p
            )
            counts[row] += torch.bincount(tokens, minlength=50)
    assert ((counts > 0) <= kept).all()  # nothing outside the nucleus is ever drawn
    torch.testing.assert_close(counts / len(grid), expected, atol=2 / len(grid), rtol=0)


def test_a_model_with_a_plain_cache_streams(tokenizer) -> None:
    assert supports_streaming(llm.scratch_model(tokenizer, config="smoke", seed=0))
    assert not supports_streaming(torch.nn.Linear(2, 2))


def test_greedy_stream_equals_uncached_decoding_through_refills(tokenizer) -> None:
    model = llm.scratch_model(tokenizer, config="smoke", seed=3).eval()
    # Let a token that greedy decoding writes at different steps end the texts, so that rows
    # end at different times, leave, and are refilled mid-flight.
    config = llm.LLMSamplingConfig(temperature=1.0, top_p=1e-9, max_new_tokens=24)
    runs = {}  # greedy continuations computed without any cache: the whole text each step
    with torch.inference_mode():
        for i, prompt in enumerate(PROMPTS):
            ids = tokenizer([prompt], return_tensors="pt")["input_ids"]  # (1, T)
            for _ in range(24):
                next_id = model(input_ids=ids).logits[0, -1].argmax()
                ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
            runs[i] = ids[0, -24:].tolist()
    firsts = {}
    for token in {t for run in runs.values() for t in run}:
        firsts[token] = {run.index(token) if token in run else None for run in runs.values()}
    stop = max(firsts, key=lambda t: len(firsts[t] - {None}))
    assert len(firsts[stop] - {None}) >= 3, "no token ends the texts at varied steps"
    stopping = copy.deepcopy(tokenizer)
    stopping.eos_token = tokenizer.convert_ids_to_tokens(stop)
    assert stopping.eos_token_id == stop

    finished = {
        f.draw: f for f in stream_generate(model, stopping, feeder(PROMPTS), config=config, rows=3)
    }
    assert sorted(finished) == list(range(len(PROMPTS)))
    for i, run in runs.items():
        expected = run[: run.index(stop) + 1] if stop in run else run
        assert finished[i].num_tokens == len(expected)
        if stop in run:
            want = stopping.decode(expected, skip_special_tokens=True)
            assert finished[i].text == want
        else:
            assert finished[i].text is None  # cut at max_new_tokens


@pytest.mark.parametrize(
    ("overrides", "prompts"),
    [
        ({}, PROMPTS[:4]),  # prompts of different lengths: left padding in the cache
        ({}, PROMPTS[:1]),  # one row, no padding: no attention mask
        ({"attention_bias": True, "mlp_bias": True}, PROMPTS[2:5]),
    ],
    ids=["padded", "one-row", "biases"],
)
def test_llama_decoding_step_equals_the_model_forward(
    tokenizer, make_tiny_llama, overrides: dict, prompts: list[str]
) -> None:
    model = make_tiny_llama(tokenizer, **overrides).eval()  # 4 query heads share 2 kv heads
    if "mlp_bias" in overrides:  # random biases: transformers initialises them to zero
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("bias"):
                    parameter.normal_()
    step = llama_decoder(model)
    assert step is not None
    config = llm.LLMSamplingConfig(max_new_tokens=8)
    flight = _Rows()
    flight.join(_encode(model, tokenizer, list(enumerate(prompts)), seed=0, config=config))
    assert (flight.mask == 0).any() == (len(set(map(len, tokenizer(prompts)["input_ids"]))) > 1)
    for _ in range(3):  # steps that grow the cache
        mask = torch.cat([flight.mask, flight.mask.new_ones(len(flight), 1)], dim=1)
        cache = copy.deepcopy(flight.cache)
        with torch.no_grad():
            expected = model(
                input_ids=flight.last[:, None],
                attention_mask=mask,
                position_ids=flight.positions[:, None],
                cache_position=torch.tensor([mask.shape[1] - 1]),
                use_cache=True,
                **{_cache_keyword(model): cache},
            ).logits[:, -1]
            got = step(flight.last, flight.positions, mask, flight.cache)
        torch.testing.assert_close(got, expected)
        for mine, theirs in zip(flight.cache.layers, cache.layers, strict=True):
            torch.testing.assert_close(mine.keys, theirs.keys)  # the same new cache column
            torch.testing.assert_close(mine.values, theirs.values)
        flight.mask, flight.positions = mask, flight.positions + 1
        flight.last = expected.argmax(dim=-1)


def test_llama_decoding_step_is_only_for_plain_llama_models(tokenizer, make_tiny_llama) -> None:
    from peft import LoraConfig, get_peft_model

    adapted = get_peft_model(make_tiny_llama(tokenizer), LoraConfig(r=2, target_modules=["q_proj"]))
    assert llama_decoder(adapted) is None  # adapters: through the model's forward
    assert llama_decoder(adapted.get_base_model()) is None  # LoRA layers inside
    scaled = make_tiny_llama(
        tokenizer, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}
    )
    assert llama_decoder(scaled) is None  # scaled rotary embeddings: not from the table
    half = make_tiny_llama(tokenizer).to(torch.bfloat16)
    assert llama_decoder(half) is None  # its fused sums would round differently


def test_a_draw_does_not_depend_on_the_rows_beside_it(tokenizer) -> None:
    model = llm.scratch_model(tokenizer, config="smoke", seed=4).eval()
    config = llm.LLMSamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=20)

    def decode_all(rows: int, seed: int) -> dict:
        stream = stream_generate(
            model, tokenizer, feeder(PROMPTS), config=config, rows=rows, seed=seed
        )
        return {f.draw: f for f in stream}

    alone, together, other_seed = decode_all(1, 7), decode_all(5, 7), decode_all(5, 8)
    assert alone == together
    assert any(
        alone[d].num_tokens != other_seed[d].num_tokens or alone[d].text != other_seed[d].text
        for d in alone
    )


def test_continuous_sample_crystals_resumes_to_the_same_draws(
    tokenizer, tmp_path: Path, small_crystals
) -> None:
    """A smoke model trained on three crystals writes parseable ones; a run broken off midway
    and resumed keeps the same first crystals in draw order as an unbroken one."""
    model = llm.scratch_model(tokenizer, config="smoke", seed=0)
    config = llm.llm_preset("smoke").replace(
        finetune=llm.FinetuneConfig(
            epochs=120,
            batch_size=3,
            learning_rate=5e-3,
            warmup_steps=5,
            conditioning="none",
            translate=False,
        )
    )
    llm.finetune(
        model,
        tokenizer,
        small_crystals,
        run_dir=tmp_path / "llm",
        config=config,
        progress_bar=False,
    )
    sampling = llm.LLMSamplingConfig(
        temperature=1.0, top_p=1.0, max_new_tokens=128, batch_size=4, continuous=True
    )

    def draw(name: str, **options):  # noqa: ANN003, ANN202
        return llm.sample_crystals(
            model, tokenizer, num_crystals=10, config=sampling, path=tmp_path / name, seed=3,
            progress_bar=False, **options,
        )  # fmt: skip

    whole = draw("whole.jsonl")
    assert len(whole.crystals) == 10 and whole.draws == sorted(whole.draws)
    records = llm.read_draws(tmp_path / "whole.jsonl")
    assert [r.draw for r in records] == list(range(whole.num_draws))

    calls = 0

    def interrupt(crystal, draw):  # noqa: ANN001, ANN202
        nonlocal calls
        calls += 1
        if calls == 6:
            raise KeyboardInterrupt
        return None

    with pytest.raises(KeyboardInterrupt):
        draw("broken.jsonl", accept=interrupt)
    partial = llm.read_draws(tmp_path / "broken.jsonl")
    assert 0 < len(partial) < whole.num_draws
    resumed = draw("broken.jsonl")
    assert resumed.draws == whole.draws
    assert resumed.texts == whole.texts
