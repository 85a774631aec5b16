"""A resumable JSON-lines cache of relaxation results, keyed by input structure and settings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flowllm_kit.relax.result import RelaxResult

if TYPE_CHECKING:
    from pymatgen.core import Structure

    from flowllm_kit.relax.config import RelaxConfig

__all__ = ["RelaxCache", "relax_key"]

# Bump when the meaning of a cached result changes, so old caches are ignored, not misread.
_CACHE_VERSION = 1
# Coordinates are rounded before hashing, so a structure read back from a CIF hashes the same.
_DECIMALS = 6


def relax_key(structure: Structure, config: RelaxConfig) -> str:
    """SHA-256 of the structure (lattice, species, fractional coordinates) and settings.

    Only the settings that change the result enter the key (see
    :meth:`RelaxConfig.result_settings`): batch sizes or worker counts do not.
    """
    frac = np.round(np.mod(structure.frac_coords, 1.0), _DECIMALS) % 1.0  # 0.9999999 -> 0
    payload = {
        "version": _CACHE_VERSION,
        "lattice": np.round(structure.lattice.matrix, _DECIMALS).tolist(),
        "species": [site.species_string for site in structure],
        "frac_coords": (frac + 0.0).tolist(),  # + 0.0 turns -0.0 into 0.0
        "settings": config.result_settings(),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class RelaxCache:
    """Results on disk, one JSON object per line: ``{"key": ..., "result": {...}}``.

    Lines are appended and flushed as results arrive, so an interrupted run loses at most the
    structures still in flight. A truncated last line (a killed writer) is skipped on reading.

    Example::

        >>> cache = RelaxCache("relax.jsonl")  # doctest: +SKIP
        >>> key in cache, cache.get(key)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._results: dict[str, RelaxResult] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    self._results[record["key"]] = RelaxResult.from_json(record["result"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue

    def __contains__(self, key: str) -> bool:
        return key in self._results

    def __len__(self) -> int:
        return len(self._results)

    def items(self) -> list[tuple[str, RelaxResult]]:
        """Every ``(key, result)`` held, in the order first read or put."""
        return list(self._results.items())

    def get(self, key: str) -> RelaxResult | None:
        """The cached result for ``key``, if any."""
        return self._results.get(key)

    def put(self, key: str, result: RelaxResult) -> None:
        """Remember ``result`` and append it to the file."""
        self._results[key] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps({"key": key, "result": result.to_json()}) + "\n")
