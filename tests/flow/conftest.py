"""Small random crystals and pairs for the flow tests (no dataset needed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from flowllm_kit.crystal import Crystal


def random_crystals(
    count: int, *, seed: int = 0, min_atoms: int = 1, max_atoms: int = 8
) -> list[Crystal]:
    """``count`` crystals with random atoms, coordinates, lengths 3-8 Å, angles 70-110°."""
    rng = np.random.default_rng(seed)
    crystals = []
    for i in range(count):
        n = int(rng.integers(min_atoms, max_atoms + 1))
        crystals.append(
            Crystal(
                atomic_numbers=rng.integers(1, 95, size=n),
                frac_coords=rng.random((n, 3)),
                lengths=rng.uniform(3.0, 8.0, size=3),
                angles=rng.uniform(70.0, 110.0, size=3),
                id=f"random-{i}",
            )
        )
    return crystals


def perturbed(crystals: list[Crystal], *, seed: int = 1, scale: float = 1.0) -> list[Crystal]:
    """Start crystals for pairs: coordinates, lengths and angles jittered (same atoms)."""
    rng = np.random.default_rng(seed)
    return [
        c.replace(
            frac_coords=c.frac_coords + scale * rng.normal(0.0, 0.08, c.frac_coords.shape),
            lengths=c.lengths * np.exp(scale * rng.normal(0.0, 0.1, 3)),
            angles=np.clip(c.angles + scale * rng.normal(0.0, 4.0, 3), 61.0, 119.0),
        )
        for c in crystals
    ]


@pytest.fixture
def make_crystals() -> Callable[..., list[Crystal]]:
    return random_crystals


@pytest.fixture
def make_pairs() -> Callable[..., list[tuple[Crystal, Crystal]]]:
    """``make_pairs(count, seed=0, ...)`` -> ``[(x_0, x_1), ...]`` with aligned atoms."""

    def make(count: int, *, seed: int = 0, **options) -> list[tuple[Crystal, Crystal]]:
        targets = random_crystals(count, seed=seed, **options)
        return list(zip(perturbed(targets, seed=seed + 1), targets, strict=True))

    return make
