"""Presets: every component's lookup names a misspelt preset and the choices the same way."""

from __future__ import annotations

import pytest
import torch

from flowllm_kit.flow import network_preset, train_preset
from flowllm_kit.llm import llm_preset
from flowllm_kit.presets import configure_threads, get_preset


@pytest.mark.parametrize("lookup", [get_preset, llm_preset, network_preset, train_preset])
def test_unknown_preset_is_named_with_the_choices(lookup) -> None:
    with pytest.raises(ValueError, match=r"unknown preset 'smokey'; choose one of smoke, demo"):
        lookup("smokey")
    assert lookup("smoke") is lookup("smoke")


def test_configure_threads_uses_argument_then_preset() -> None:
    assert configure_threads("smoke") == 1  # the smoke preset's single thread
    assert configure_threads("demo", 2) == 2
    before = torch.get_num_threads()
    assert configure_threads("demo") == before  # demo leaves torch's setting alone
