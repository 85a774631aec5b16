"""flowllm-kit: generate crystals with FlowLLM (an LLM base distribution refined by a
Riemannian flow-matching GNN), stage by stage.

The package is split by stage; import the piece you need::

    from flowllm_kit.crystal import Crystal, CrystalBatch
    from flowllm_kit.data import load_dataset
    from flowllm_kit.geometry import torus, lattice
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
