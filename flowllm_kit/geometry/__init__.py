"""Geometry of crystal space: the flat torus of fractional coordinates and the lattice."""

from __future__ import annotations

from flowllm_kit.geometry import lattice, torus

__all__ = ["lattice", "torus"]
