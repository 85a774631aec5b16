"""CHGNet as a torch-sim model: energies, forces and stresses of many structures in one call.

torch-sim (``torch-sim-atomistic`` 0.3.0) ships wrappers for MACE, SevenNet, ORB, MatterSim and
others, but not for CHGNet, so this is one. Each call rebuilds every structure's crystal graph
with CHGNet's own converter (the neighbour lists change as atoms move), assembles the graphs into
one batch, runs CHGNet once, and takes forces and stresses from a single backward pass.

A structure CHGNet cannot handle (no graph, or a crash) does not stop the batch: its outputs are
NaN and the reason is kept in :attr:`CHGNetModel.errors`, for the relaxation loop to record.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch_sim.models.interface import ModelInterface

from flowllm_kit.crystal.convert import structure_from_cell
from flowllm_kit.distributed import resolve_device

if TYPE_CHECKING:
    from chgnet.graph import CrystalGraph
    from chgnet.model import CHGNet
    from torch_sim.state import SimState

__all__ = ["CHGNetModel", "load_chgnet", "resolve_device"]


@functools.lru_cache(maxsize=4)
def load_chgnet(model_name: str = "0.3.0", device: str = "cpu") -> CHGNet:
    """Pretrained CHGNet from the weights inside the chgnet wheel (offline), ready for inference.

    Parameters are frozen (forces and stresses need gradients with respect to positions and
    strain only), and a structure with an atom that has no neighbour within the 5 Å graph cutoff
    is refused: CHGNet's energy for it would be meaningless.
    """
    from chgnet.model import CHGNet

    with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet v0.3.0 initialized with ..."
        model = CHGNet.load(model_name=model_name, use_device=device, verbose=False)
    model.eval()
    model.requires_grad_(False)
    model.graph_converter.set_isolated_atom_response("error")
    return model


class CHGNetModel(ModelInterface):
    """A torch-sim :class:`ModelInterface` around a CHGNet model.

    Args:
        model: A CHGNet model (default: :func:`load_chgnet` on ``device``).
        device: Where CHGNet runs.
        dtype: Floating type of the outputs (CHGNet itself computes in float32).

    Attributes:
        errors: For the last call, the index of each structure that failed and why.
        num_calls: Forward calls so far.
        num_evaluations: Structures evaluated so far (summed over calls).

    Example::

        >>> import torch_sim as ts
        >>> model = CHGNetModel()  # doctest: +SKIP
        >>> out = model(ts.io.structures_to_state(structures, model.device, model.dtype))
        >>> out["energy"].shape, out["forces"].shape, out["stress"].shape  # doctest: +SKIP
        (torch.Size([B]), torch.Size([N, 3]), torch.Size([B, 3, 3]))
    """

    def __init__(
        self,
        model: CHGNet | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self._device = torch.device(device)
        self._dtype = dtype
        self._compute_forces = True
        self._compute_stress = True
        self.chgnet = model if model is not None else load_chgnet("0.3.0", str(self._device))
        self.errors: dict[int, str] = {}
        self.num_calls = 0
        self.num_evaluations = 0

    def forward(self, state: SimState | dict[str, Any], **_: Any) -> dict[str, torch.Tensor]:
        """Energies (eV), forces (eV/Å) and stresses (eV/Å³, ASE sign) of every structure.

        Args:
            state: torch-sim state with ``positions`` (N, 3), ``cell`` (B, 3, 3) column vectors,
                ``atomic_numbers`` (N,) and ``system_idx`` (N,).

        Returns:
            ``energy`` (B,), ``forces`` (N, 3) and ``stress`` (B, 3, 3); NaN for failed structures.
        """
        if isinstance(state, dict):
            from torch_sim.state import SimState

            state = SimState(**state, masses=torch.ones_like(state["positions"][:, 0]))
        self.num_calls += 1
        self.errors = {}
        counts = torch.bincount(state.system_idx, minlength=state.n_systems).tolist()
        graphs = self._graphs(state, counts)
        good = [i for i, graph in enumerate(graphs) if graph is not None]
        outputs = self._predict_isolating_failures([graphs[i] for i in good], good)
        self.num_evaluations += len(good)

        n_systems, n_atoms = len(counts), int(sum(counts))
        energy = torch.full((n_systems,), torch.nan, dtype=self._dtype, device=self._device)
        forces = torch.full((n_atoms, 3), torch.nan, dtype=self._dtype, device=self._device)
        stress = torch.full((n_systems, 3, 3), torch.nan, dtype=self._dtype, device=self._device)
        starts = np.concatenate([[0], np.cumsum(counts)])
        for i, (e, f, s) in outputs.items():
            energy[i] = e
            forces[starts[i] : starts[i + 1]] = f
            stress[i] = s
        return {"energy": energy, "forces": forces, "stress": stress}

    def _graphs(self, state: SimState, counts: list[int]) -> list[CrystalGraph | None]:
        """One CHGNet crystal graph per structure (None, with a message, where it fails)."""
        cells = state.row_vector_cell.detach().cpu().numpy()  # (B, 3, 3), rows are a, b, c
        positions = state.positions.detach().cpu().numpy()  # (N, 3)
        numbers = state.atomic_numbers.detach().cpu().numpy()  # (N,)
        graphs: list[CrystalGraph | None] = []
        start = 0
        for i, count in enumerate(counts):
            atoms = slice(start, start + count)
            start += count
            try:
                structure = structure_from_cell(
                    cells[i], numbers[atoms].tolist(), positions[atoms], cartesian=True
                )
                graphs.append(self.chgnet.graph_converter(structure, graph_id=str(i)))
            except Exception as exc:  # noqa: BLE001 (any failure is this structure's, not ours)
                self.errors[i] = f"CHGNet graph: {type(exc).__name__}: {exc}"
                graphs.append(None)
        return graphs

    def _predict_isolating_failures(
        self, graphs: list[CrystalGraph], indices: list[int]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batched prediction; if the batch raises, structure by structure to find the culprit."""
        if not graphs:
            return {}
        try:
            return dict(zip(indices, self._predict(graphs), strict=True))
        except Exception as exc:  # noqa: BLE001
            if len(graphs) == 1:
                self.errors[indices[0]] = f"CHGNet forward: {type(exc).__name__}: {exc}"
                return {}
        outputs = {}
        for graph, index in zip(graphs, indices, strict=True):
            outputs |= self._predict_isolating_failures([graph], [index])
        return outputs

    def _predict(
        self, graphs: list[CrystalGraph]
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(energy (), forces (n, 3), stress (3, 3)) per graph, from one forward and backward."""
        from chgnet.model.model import BatchedGraph

        chgnet = self.chgnet
        graphs = [graph.to(self._device) for graph in graphs]
        with torch.enable_grad(), warnings.catch_warnings():
            # CHGNet's batching turns per-structure volumes into floats, harmlessly (it warns)
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
            batch = BatchedGraph.from_graphs(
                graphs,
                bond_basis_expansion=chgnet.bond_basis_expansion,
                angle_basis_expansion=chgnet.angle_basis_expansion,
                compute_stress=True,  # strains (B x (3, 3)) that the lattices depend on
            )
            # CHGNet.forward would take forces and stresses with create_graph=True (it trains
            # through them); one plain backward for both is cheaper, so call its _compute
            # for the energy only and differentiate here.
            prediction = chgnet._compute(batch)  # noqa: SLF001
            per_atom = prediction["e"]  # (B,) eV/atom, the composition model's share added next
            if chgnet.composition_model is not None:
                per_atom = per_atom + chgnet.composition_model(graphs)
            num_atoms = prediction["atoms_per_graph"].to(per_atom.dtype)  # (B,)
            energy = per_atom * num_atoms  # (B,) eV
            grads = torch.autograd.grad(energy.sum(), [*batch.atom_positions, *batch.strains])
        forces = [-g for g in grads[: len(graphs)]]  # B x (n_b, 3)
        volumes = batch.volumes.detach().view(-1, 1, 1)  # (B, 1, 1)
        stresses = torch.stack(grads[len(graphs) :]) / volumes  # (B, 3, 3) = dE/dstrain / V
        dtype = self._dtype
        return [
            (e.detach().to(dtype), f.detach().to(dtype), s.to(dtype))
            for e, f, s in zip(energy, forces, stresses, strict=True)
        ]
