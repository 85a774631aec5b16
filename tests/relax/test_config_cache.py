"""RelaxConfig defaults, RelaxResult's JSON form, cache keys and the JSON-lines cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from flowllm_kit.relax import RelaxCache, RelaxConfig, RelaxResult, relax_key


def rock_salt() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_defaults_are_the_reference_settings() -> None:
    config = RelaxConfig()
    assert (config.optimizer, config.fmax, config.max_steps, config.relax_cell) == (
        "FIRE",
        0.1,
        1500,
        True,
    )
    assert config.model_name == "0.3.0"


@pytest.mark.parametrize(
    "bad",
    [
        {"fmax": 0.0},
        {"max_steps": -1},
        {"max_structures_per_batch": 0},
        {"num_workers": 0},
        {"stall_steps": 0},
        {"stall_steps": 10, "stall_tolerance": -1e-3},
    ],
)
def test_config_rejects_nonsense(bad: dict) -> None:
    with pytest.raises(ValueError):
        RelaxConfig(**bad)


def test_key_ignores_speed_settings_but_not_result_settings() -> None:
    structure = rock_salt()
    base = relax_key(structure, RelaxConfig())
    assert relax_key(structure, RelaxConfig(max_structures_per_batch=3, num_workers=1)) == base
    assert relax_key(structure, RelaxConfig(fmax=0.05)) != base
    assert relax_key(structure, RelaxConfig(relax_cell=False)) != base
    # the stall test changes results only when it is on; off, keys are those written before it
    assert relax_key(structure, RelaxConfig(stall_tolerance=0.5)) == base
    stall = relax_key(structure, RelaxConfig(stall_steps=100))
    assert stall != base and stall != relax_key(structure, RelaxConfig(stall_steps=200))


def test_key_is_stable_under_round_trips_and_wrapping() -> None:
    structure = rock_salt()
    key = relax_key(structure, RelaxConfig())
    from_cif = Structure.from_str(structure.to(fmt="cif"), fmt="cif")
    shifted = Structure(structure.lattice, structure.species, structure.frac_coords + [1, 0, -1])
    assert relax_key(from_cif, RelaxConfig()) == key
    assert relax_key(shifted, RelaxConfig()) == key
    moved = Structure(structure.lattice, structure.species, structure.frac_coords + 0.01)
    assert relax_key(moved, RelaxConfig()) != key


def test_result_json_round_trip_keeps_nan_and_structure() -> None:
    result = RelaxResult(-3.5, -3.6, rock_salt(), 12, True)
    back = RelaxResult.from_json(result.to_json())
    assert (back.initial_energy_per_atom, back.final_energy_per_atom) == (-3.5, -3.6)
    assert (back.steps, back.converged, back.error) == (12, True, None)
    np.testing.assert_allclose(back.final_structure.lattice.matrix, rock_salt().lattice.matrix)
    failed = RelaxResult.from_json(RelaxResult.failure("boom").to_json())
    assert math.isnan(failed.final_energy_per_atom) and failed.error == "boom"
    assert failed.final_structure is None and not failed.ok
    stalled = RelaxResult(-3.5, -3.6, rock_salt(), 200, False, stalled=True)
    assert RelaxResult.from_json(stalled.to_json()).stalled
    older = result.to_json()
    del older["stalled"]  # a cache line written before results had the field
    assert not RelaxResult.from_json(older).stalled


def test_cache_persists_and_skips_a_truncated_line(tmp_path) -> None:
    path = tmp_path / "relax.jsonl"
    cache = RelaxCache(path)
    cache.put("a", RelaxResult(-1.0, -2.0, rock_salt(), 3, True))
    cache.put("b", RelaxResult.failure("broken"))
    with path.open("a") as handle:
        handle.write('{"key": "c", "result": {"initial_ener')  # a writer killed mid-line
    again = RelaxCache(path)
    assert len(again) == 2 and "a" in again and "c" not in again
    assert again.get("a").final_energy_per_atom == -2.0
    assert again.get("b").error == "broken"
