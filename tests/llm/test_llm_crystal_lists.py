"""The lists of an LLM's training and held-out crystals, written and read back."""

from __future__ import annotations

import json

import pytest

from flowllm_kit.data import load_dataset
from flowllm_kit.llm import CRYSTAL_LISTS_FILE, read_crystal_lists, write_crystal_lists


def test_crystal_lists_round_trip(data_root, tmp_path):
    dataset = str(data_root / "mp_20_subset")
    val = load_dataset(dataset, "val", progress=False)[:5]
    test = load_dataset(dataset, "test", progress=False)[:3]
    path = write_crystal_lists(
        tmp_path / "llm", dataset=dataset, train_split="val", train=val, eval_split="test",
        evaluation=test,
    )  # fmt: skip
    assert path == tmp_path / "llm" / CRYSTAL_LISTS_FILE
    assert json.loads(path.read_text())["train_ids"] == [c.id for c in val]

    lists = read_crystal_lists(tmp_path / "llm")
    assert lists.dataset == dataset
    assert [c.id for c in lists.train] == [c.id for c in val]
    assert [c.id for c in lists.evaluation] == [c.id for c in test]


def test_missing_crystal_lists(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_crystal_lists(tmp_path)
