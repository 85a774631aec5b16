"""Shared fixtures: seeding and the location of the benchmark data."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 (legacy global state that some libraries still read)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Run each test on one torch thread: test tensors are tiny, pytest-xdist runs one worker
    per core, and on a shared 2-core machine intra-op threads spin-waiting for each other made
    tiny forward passes up to 100x slower. Code that wants more threads sets them itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer():
    """The kit's from-scratch tokenizer."""
    from flowllm_kit.text import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def make_tiny_llama():
    """``make(tokenizer, **overrides)``: a randomly initialised two-layer LLaMA (seed 0)."""

    def make(tokenizer, **overrides):
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        settings = {
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        return LlamaForCausalLM(LlamaConfig(**(settings | overrides)))

    return make


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder of benchmark CSVs: ``$FLOWLLM_KIT_DATA`` or ``../shared/data``.

    Tests that need real data skip when it is absent on a developer's machine, but fail in CI
    (``CI`` set), where the data must be present.
    """
    root = Path(os.environ.get("FLOWLLM_KIT_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (root / "mp_20_subset").is_dir():
        message = f"benchmark data not found at {root}; set FLOWLLM_KIT_DATA"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Code under test (the loaders, the command line) finds the data the way users' code does.
    os.environ.setdefault("FLOWLLM_KIT_DATA", str(root))
    return root
