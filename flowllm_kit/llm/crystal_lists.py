"""The crystals an LLM was fine-tuned and evaluated on, listed by id in ``<llm_dir>/crystals.json``.

Notebook 03 and ``train-llm`` write the lists; notebook 04 and ``pairs`` read them back, so the
pair set's targets are exactly the LLM's training crystals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from flowllm_kit.crystal import Crystal
from flowllm_kit.data import load_dataset

__all__ = ["CRYSTAL_LISTS_FILE", "CrystalLists", "read_crystal_lists", "write_crystal_lists"]

CRYSTAL_LISTS_FILE = "crystals.json"
"""The name of the lists file in an LLM folder."""


class CrystalLists(NamedTuple):
    """The crystals of ``crystals.json``, loaded from their dataset."""

    dataset: str
    """The dataset both splits come from."""
    train: list[Crystal]
    """The training crystals (of the train split), in dataset order."""
    evaluation: list[Crystal]
    """The held-out crystals (of the eval split), in dataset order."""


def write_crystal_lists(
    llm_dir: str | Path,
    *,
    dataset: str,
    train_split: str,
    train: Sequence[Crystal],
    eval_split: str,
    evaluation: Sequence[Crystal],
) -> Path:
    """Write the ids of the training and held-out crystals to ``<llm_dir>/crystals.json``.

    Args:
        llm_dir: The LLM folder (created if missing).
        dataset: The dataset both splits come from.
        train_split: The split of the training crystals.
        train: The training crystals.
        eval_split: The split of the held-out crystals.
        evaluation: The held-out crystals.

    Returns:
        The path written.
    """
    llm_dir = Path(llm_dir)
    llm_dir.mkdir(parents=True, exist_ok=True)
    lists = {
        "dataset": dataset,
        "train_split": train_split,
        "train_ids": [c.id for c in train],
        "eval_split": eval_split,
        "eval_ids": [c.id for c in evaluation],
    }
    path = llm_dir / CRYSTAL_LISTS_FILE
    path.write_text(json.dumps(lists, indent=1))
    return path


def read_crystal_lists(llm_dir: str | Path) -> CrystalLists:
    """The crystals listed in ``<llm_dir>/crystals.json``, loaded from their dataset.

    Args:
        llm_dir: The LLM folder.

    Raises:
        FileNotFoundError: If the folder has no ``crystals.json``.
    """

    lists = json.loads((Path(llm_dir) / CRYSTAL_LISTS_FILE).read_text())
    train_ids, eval_ids = set(lists["train_ids"]), set(lists["eval_ids"])
    train = [c for c in load_dataset(lists["dataset"], lists["train_split"]) if c.id in train_ids]
    evals = [c for c in load_dataset(lists["dataset"], lists["eval_split"]) if c.id in eval_ids]
    return CrystalLists(lists["dataset"], train, evals)
