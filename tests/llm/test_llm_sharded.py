"""Sharded sampling in one process: fixed blocks, the merge up to the last crystal needed,
resume from the rank files without new draws, and the edge of no draws at all. (Several
processes: tests/test_distributed.py.)"""

from __future__ import annotations

import itertools
from pathlib import Path

from flowllm_kit import text
from flowllm_kit.llm import LLMSamplingConfig, read_draws, sample_crystals
from flowllm_kit.llm.sharded import merge_draws

SMALL = LLMSamplingConfig(batch_size=4, max_new_tokens=200)


def test_sharded_sampling_draws_whole_blocks_and_merges_up_to_the_last_crystal(
    scripted_model, tokenizer, small_crystals, tmp_path: Path
) -> None:
    good, bad = text.encode(small_crystals[0]), ""
    answers = itertools.cycle([good, bad, good, good])  # 3 crystals per block of 4
    model = scripted_model(lambda prompt: next(answers))
    path = tmp_path / "samples.jsonl"
    options = dict(num_crystals=5, config=SMALL, path=path, seed=3, progress_bar=False)
    result = sample_crystals(model, tokenizer, sharded=True, **options)
    # Blocks 0 and 1 (draws 0-7) were drawn; the 5th crystal is draw 6, so the merged file ends
    # there, while the rank file keeps every draw for a resume.
    assert result.draws == [0, 2, 3, 4, 6] and result.num_draws == 7
    assert [d.draw for d in read_draws(path, repair=False)] == list(range(7))
    shard = tmp_path / "samples.rank-0.jsonl"
    assert [d.draw for d in read_draws(shard, repair=False)] == list(range(8))
    assert model.num_prompts == 8
    again = sample_crystals(model, tokenizer, sharded=True, **options)
    assert model.num_prompts == 8  # resumed: nothing drawn again
    assert again.draws == result.draws and again.num_resumed == 8
    # Merging the rank files again gives the same file (an array's merge step).
    merged = merge_draws(path, num_crystals=5)
    assert merged.draws == result.draws


def test_sharded_sampling_with_no_draws_writes_an_empty_file(
    scripted_model, tokenizer, tmp_path: Path
) -> None:
    model = scripted_model(lambda prompt: "never asked")
    path = tmp_path / "samples.jsonl"
    result = sample_crystals(
        model, tokenizer, num_crystals=3, config=SMALL, path=path, max_draws=0, sharded=True,
        progress_bar=False,
    )  # fmt: skip
    assert result.crystals == [] and path.read_text() == "" and model.num_prompts == 0
