"""The crystal types that flow through every stage of the kit.

:class:`Crystal` is one structure (NumPy arrays); :class:`CrystalBatch` is many structures as
flat torch tensors. A crystal converts itself to and from pymatgen and ASE; many structures, raw
cells and CIF go through :mod:`flowllm_kit.crystal.convert`; batches are stored with
:mod:`flowllm_kit.crystal.store`.
"""

from __future__ import annotations

from flowllm_kit.crystal.batch import CrystalBatch
from flowllm_kit.crystal.convert import write_cif
from flowllm_kit.crystal.crystal import Crystal
from flowllm_kit.crystal.io import read_crystals, write_crystals

__all__ = ["Crystal", "CrystalBatch", "read_crystals", "write_cif", "write_crystals"]
