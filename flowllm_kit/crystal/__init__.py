"""The crystal types that flow through every stage of the kit.

:class:`Crystal` is one structure (NumPy arrays); :class:`CrystalBatch` is many structures as
flat torch tensors. Conversions to and from pymatgen, ASE and CIF live in
:mod:`flowllm_kit.crystal.convert`.
"""

from __future__ import annotations

from flowllm_kit.crystal.batch import CrystalBatch
from flowllm_kit.crystal.convert import write_cif
from flowllm_kit.crystal.crystal import Crystal
from flowllm_kit.crystal.io import read_crystals, write_crystals

__all__ = ["Crystal", "CrystalBatch", "read_crystals", "write_cif", "write_crystals"]
