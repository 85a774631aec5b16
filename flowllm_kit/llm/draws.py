"""The LLM's draw record: one line of a samples file (``llm_samples.jsonl``,
``pairs/pair_samples.jsonl``), typed, with the one function that judges a generated text and the
ones that read a file back.

On disk a draw is a JSON object::

    {"draw": 7, "text": "4.1 4.1 4.1\\n90 90 90\\nNa\\n0.00 0.00 0.00\\n...", "reason": null,
     "crystal": {"atomic_numbers": [...], "frac_coords": [...], ...}}

``reason`` is ``None`` for a kept crystal, else why the draw was rejected (``truncated``, a
:class:`~flowllm_kit.text.ParseError` reason, or the caller's own check, e.g.
``composition_mismatch``); only kept draws carry their ``crystal``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowllm_kit.crystal import Crystal
from flowllm_kit.crystal.io import crystal_from_dict, crystal_to_dict, read_jsonl
from flowllm_kit.text import ParseError

__all__ = ["TRUNCATED", "LLMDraw", "LLMSamples", "judge", "llm_starts", "read_draws"]

TRUNCATED = "truncated"  # the reason of a draw that did not end within max_new_tokens

Accept = Callable[[Crystal, int], str | None]
"""(crystal, draw index) -> ``None`` to keep it, or the reason to reject it."""


@dataclass(frozen=True)
class LLMDraw:
    """One generated text and what became of it."""

    draw: int  # index of the draw (which prompt it answered)
    text: str | None  # the text as generated; None when it was cut off
    reason: str | None  # None: kept; else why it was rejected
    crystal: Crystal | None = None  # the parsed crystal of a kept draw (id ``draw-<draw>``)

    @property
    def kept(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"draw": self.draw, "text": self.text, "reason": self.reason}
        if self.crystal is not None:  # its id follows from the draw, so it is not written
            record["crystal"] = crystal_to_dict(self.crystal.replace(id=None))
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> LLMDraw:
        """Read one record; raises ``KeyError`` naming a missing field."""
        draw = int(record["draw"])
        crystal = record.get("crystal")
        return cls(
            draw=draw,
            text=record["text"],
            reason=record["reason"],
            crystal=None if crystal is None else crystal_from_dict(crystal, id=f"draw-{draw}"),
        )


@dataclass
class LLMSamples:
    """Crystals drawn by :func:`sample_crystals` and how the drawing went."""

    crystals: list[Crystal]  # exactly the number asked for (unless max_draws ran out)
    texts: list[str]  # their texts, as generated
    draws: list[int]  # the draw index of each crystal (which prompt it answered)
    rejections: Counter[str] = field(default_factory=Counter)  # reason -> count, all draws
    num_draws: int = 0  # samples generated, including resumed ones
    num_resumed: int = 0  # draws read back from the samples file
    num_tokens: int = 0  # tokens generated in this call
    generate_seconds: float = 0.0  # time spent in generate in this call
    seconds: float = 0.0  # wall time of this call

    @property
    def acceptance_rate(self) -> float:
        """Kept draws / all draws."""
        return (self.num_draws - sum(self.rejections.values())) / max(self.num_draws, 1)

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of ``generate`` in this call."""
        return self.num_tokens / self.generate_seconds if self.generate_seconds else 0.0

    @property
    def crystals_per_second(self) -> float:
        """Crystals kept per second of wall time in this call."""
        new = len(self.crystals) - sum(1 for draw in self.draws if draw < self.num_resumed)
        return new / self.seconds if self.seconds else 0.0


def judge(
    text: str | None, draw: int, *, decode: Callable[[str], Crystal], accept: Accept | None = None
) -> LLMDraw:
    """The record of one generated text: decoded into a crystal and checked by ``accept``.

    Args:
        text: The generated text (None: cut off at the token limit).
        draw: Its draw index.
        decode: Text -> crystal; raises :class:`~flowllm_kit.text.ParseError` with a reason.
        accept: Extra check of a parsed crystal: None to keep it, or the reason to reject it.
    """

    if text is None:
        return LLMDraw(draw, None, TRUNCATED)
    try:
        crystal = decode(text)
    except ParseError as error:
        return LLMDraw(draw, text, error.reason)
    reason = accept(crystal, draw) if accept is not None else None
    if reason is not None:
        return LLMDraw(draw, text, reason)
    return LLMDraw(draw, text, None, crystal.replace(id=f"draw-{draw}"))


def read_draws(path: str | Path, *, repair: bool = True) -> list[LLMDraw]:
    """Every draw of a samples file, in draw order (with continuous batching draws are written
    as they end; they are sorted here). A last line cut short by an interruption is skipped,
    and with ``repair`` removed from the file so that sampling can append after it; a missing
    file holds no draws."""
    records = read_jsonl(path, repair=repair)
    return sorted((LLMDraw.from_dict(r) for r in records), key=lambda d: d.draw)


def llm_starts(samples_path: str | Path, *, n: int | None = None) -> list[Crystal]:
    """The crystals the LLM's parser kept, in draw order: FlowLLM's start crystals.

    Args:
        samples_path: A samples file (``llm_samples.jsonl``); rejected draws are skipped.
        n: At most this many crystals (None: all).

    Returns:
        The crystals, with ids ``llm-<draw>`` (empty when the file has none or is missing).
    """
    kept = [d for d in read_draws(samples_path) if d.kept][:n]
    return [d.crystal.replace(id=f"llm-{d.draw}") for d in kept if d.crystal is not None]
