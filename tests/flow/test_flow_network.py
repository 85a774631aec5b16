"""The velocity network: shapes, presets, invariances, and the factorized edge layer."""

from __future__ import annotations

import itertools

import pytest
import torch

from flowllm_kit.crystal import CrystalBatch
from flowllm_kit.flow import (
    FlowStatistics,
    NetworkConfig,
    VelocityNetwork,
    fully_connected_graph,
    network_preset,
    reference_network,
)
from flowllm_kit.flow.graph import (
    displacement_features,
    distance_features,
    minimum_image_distance,
)
from flowllm_kit.flow.layers import PairFeatures
from flowllm_kit.geometry import lattice, torus
from flowllm_kit.geometry.lattice import LatticeStatistics


def _statistics() -> FlowStatistics:
    """Non-trivial statistics, so de-standardization is exercised."""
    return FlowStatistics(
        lattice=LatticeStatistics(
            mean=(5.0, 5.5, 6.0, 0.1, 0.0, -0.1), std=(1.0, 1.2, 1.5, 0.5, 0.4, 0.6)
        ),
        lattice_velocity=LatticeStatistics(mean=(0.1,) * 6, std=(0.3,) * 6),
        coord_scale=0.05,
    )


def _network(**changes) -> VelocityNetwork:
    return VelocityNetwork.from_preset("smoke", statistics=_statistics(), **changes).double()


@pytest.mark.parametrize("preset", ["smoke", "demo"])
def test_output_shapes(preset, make_crystals):
    batch = CrystalBatch.from_crystals(make_crystals(5))
    net = VelocityNetwork.from_preset(preset)
    v_f, v_l = net(batch, torch.rand(5))
    assert v_f.shape == (batch.atomic_numbers.shape[0], 3)
    assert v_l.shape == (5, 6)
    assert torch.isfinite(v_f).all() and torch.isfinite(v_l).all()


def test_paper_preset_matches_reference_size():
    net = VelocityNetwork(reference_network(network_preset("paper")))
    assert net.config.edge_input_dim == 2313  # the reference CSPNet's edge input width
    assert 13e6 < net.num_parameters() < 15e6  # reference: 14.2 M
    kit = VelocityNetwork.from_preset("paper")  # the kit's choices add a little
    assert kit.config.edge_input_dim == 2313 + 16 + 6 * 4 + 3
    assert net.num_parameters() < kit.num_parameters() < 1.1 * net.num_parameters()


def test_coordinate_velocity_has_zero_mean_per_crystal(make_crystals):
    batch = CrystalBatch.from_crystals(make_crystals(6)).to(dtype=torch.float64)
    v_f, _ = _network()(batch, torch.rand(6, dtype=torch.float64))
    means = torus.scatter_mean(v_f, batch.batch_index, 6)
    torch.testing.assert_close(means, torch.zeros_like(means), atol=1e-12, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_permutation_equivariance(seed, make_crystals):
    batch = CrystalBatch.from_crystals(make_crystals(5, seed=seed)).to(dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    net = _network()
    # A random permutation of the atoms inside each crystal, as one index over the flat batch.
    permutation = torch.cat(
        [
            start + torch.randperm(int(n))
            for start, n in zip(batch.offsets[:-1], batch.num_atoms, strict=True)
        ]
    )
    permuted = batch.replace(
        atomic_numbers=batch.atomic_numbers[permutation], frac_coords=batch.frac_coords[permutation]
    )
    v_f, v_l = net(batch, t)
    v_f_permuted, v_l_permuted = net(permuted, t)
    torch.testing.assert_close(v_f_permuted, v_f[permutation], atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(v_l_permuted, v_l, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_translation_invariance(seed, make_crystals):
    batch = CrystalBatch.from_crystals(make_crystals(5, seed=seed)).to(dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    net = _network()
    shift = torch.rand(5, 3, dtype=torch.float64)[batch.batch_index]  # one shift per crystal
    shifted = batch.replace(frac_coords=torus.wrap(batch.frac_coords + shift))
    unwrapped = batch.replace(frac_coords=batch.frac_coords + 3.0)  # the universal cover
    v_f, v_l = net(batch, t)
    for other in (shifted, unwrapped):
        v_f_other, v_l_other = net(other, t)
        torch.testing.assert_close(v_f_other, v_f, atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(v_l_other, v_l, atol=1e-10, rtol=1e-9)


def test_graph_is_fully_connected_without_self_edges():
    num_atoms = torch.tensor([3, 1, 4, 2])
    graph = fully_connected_graph(num_atoms)
    crystal = torch.repeat_interleave(torch.arange(4), num_atoms)
    edges = set(zip(graph.receivers.tolist(), graph.senders.tolist(), strict=True))
    expected = {(i, j) for i, j in itertools.permutations(range(10), 2) if crystal[i] == crystal[j]}
    assert edges == expected and len(graph.receivers) == len(expected)
    assert torch.equal(graph.edge_crystal, crystal[graph.receivers])
    assert graph.in_degree.tolist() == [2, 2, 2, 0, 3, 3, 3, 3, 1, 1]


@pytest.mark.parametrize(
    ("direction", "smooth", "distances"),
    [(True, True, 0), (True, False, 0), (False, True, 0), (True, True, 6)],
)
def test_factorized_edge_layer_equals_dense_layer(direction, smooth, distances, make_crystals):
    """The first edge layer equals one linear map of the concatenated edge input."""
    batch = CrystalBatch.from_crystals(make_crystals(4, min_atoms=2)).to(dtype=torch.float64)
    net = _network(
        edge_direction=direction,
        smooth_direction=smooth,
        edge_distances=distances,
        lattice_representation="logit",
        angle_features=0,
        length_ratios=False,
    )
    layer = net.layers[0].edge_input
    graph = fully_connected_graph(batch.num_atoms)
    h = torch.randn(batch.atomic_numbers.shape[0], net.config.hidden_dim, dtype=torch.float64)
    l_t = batch.lattice_unconstrained
    crystal = torch.cat(
        [torch.randn(4, 6, dtype=torch.float64), net.num_atoms_embedding(batch.num_atoms)], dim=-1
    )
    displacement = torus.logmap(batch.frac_coords[graph.first], batch.frac_coords[graph.second])
    sines, cosines = displacement_features(displacement, net.config.num_frequencies)
    matrix = lattice.params_to_matrix(*lattice.unconstrained_to_lattice(l_t))
    unit = net._edge_direction(displacement, l_t, graph) if direction else None
    basis = None
    if distances:
        distance = minimum_image_distance(displacement, matrix[graph.pair_crystal])
        basis = distance_features(distance, distances, net.config.distance_cutoff)
    factorized = layer(h, PairFeatures(sines, cosines, unit, crystal, basis), graph)

    # The dense way: per directed edge i <- j, the concatenation, then one matmul.
    weight, bias = layer.dense_weight()
    assert weight.shape[1] == net.config.edge_input_dim
    i, j = graph.receivers, graph.senders
    edge_displacement = torus.logmap(batch.frac_coords[i], batch.frac_coords[j])  # (E, 3)
    edge_sines, edge_cosines = displacement_features(edge_displacement, net.config.num_frequencies)
    parts = [h[i], h[j], crystal[graph.edge_crystal], edge_sines, edge_cosines]
    edge_matrix = matrix[graph.edge_crystal]
    if direction:
        if smooth:  # sin(2 pi x) / (2 pi) in Cartesian, squashed by sqrt(|c|^2 + 1 Å^2)
            periodic = torch.sin(2 * torch.pi * edge_displacement) / (2 * torch.pi)
            cartesian = torch.einsum("ei,eij->ej", periodic, edge_matrix)
            parts.append(cartesian / (cartesian.pow(2).sum(-1, keepdim=True) + 1.0).sqrt())
        else:
            cartesian = torch.einsum("ei,eij->ej", edge_displacement, edge_matrix)
            parts.append(cartesian / cartesian.norm(dim=-1, keepdim=True))
    if distances:
        # Brute force over a 5x5x5 block of images, independently of the 27-image search.
        shifts = torch.cartesian_prod(*[torch.arange(-2.0, 3.0, dtype=torch.float64)] * 3)
        images = edge_displacement.unsqueeze(1) + shifts  # (E, 125, 3)
        distance = torch.einsum("eki,eij->ekj", images, edge_matrix).norm(dim=-1).amin(1)
        centres = torch.linspace(0, net.config.distance_cutoff, distances, dtype=torch.float64)
        width = net.config.distance_cutoff / (distances - 1)
        parts.append(torch.exp(-0.5 * ((distance[:, None] - centres) / width) ** 2))
    dense = torch.nn.functional.linear(torch.cat(parts, dim=-1), weight, bias)
    torch.testing.assert_close(factorized, dense, atol=1e-10, rtol=1e-9)


def test_single_atom_crystal_gets_zero_coordinate_velocity(make_crystals):
    batch = CrystalBatch.from_crystals(make_crystals(3, min_atoms=1, max_atoms=1))
    v_f, v_l = VelocityNetwork.from_preset("smoke")(batch, torch.rand(3))
    assert torch.equal(v_f, torch.zeros_like(v_f)) and torch.isfinite(v_l).all()


def test_graph_is_cached_per_num_atoms_tensor(make_crystals):
    batch = CrystalBatch.from_crystals(make_crystals(3))
    net = VelocityNetwork.from_preset("smoke")
    assert net.graph_for(batch.num_atoms) is net.graph_for(batch.num_atoms)
    assert net.graph_for(batch.num_atoms.clone()) is not net.graph_for(batch.num_atoms)


def test_sum_aggregation_and_no_layer_norm_run(make_crystals):
    batch = CrystalBatch.from_crystals(make_crystals(3))
    config = NetworkConfig(
        hidden_dim=16,
        time_dim=8,
        num_layers=1,
        num_frequencies=4,
        aggregation="sum",
        layer_norm=False,
        num_atoms_embedding=False,
    )
    v_f, v_l = VelocityNetwork(config)(batch, torch.rand(3))
    assert v_f.shape == (batch.atomic_numbers.shape[0], 3) and v_l.shape == (3, 6)


def test_statistics_round_trip():
    net = VelocityNetwork.from_preset("smoke", statistics=_statistics())
    held, given = net.statistics, _statistics()
    assert held.lattice.mean == pytest.approx(given.lattice.mean)
    assert held.lattice_velocity.std == pytest.approx(given.lattice_velocity.std)
    assert held.coord_scale == pytest.approx(given.coord_scale)
    assert FlowStatistics.from_dict(_statistics().to_dict()) == _statistics()


def test_flow_configs_kit_and_reference():
    from flowllm_kit.flow import LossConfig, flow_configs, train_preset

    network, train = flow_configs("demo")
    assert network == network_preset("demo") and train == train_preset("demo")
    assert train.loss.coord_error == train.loss.lattice_error == "standardized"
    network, train = flow_configs("demo", network="smoke", choices="reference")
    assert network == reference_network(network_preset("smoke"))
    assert not network.smooth_direction and network.lattice_representation == "logit"
    assert train.loss == LossConfig()  # raw errors weighted 200 : 1, as the reference
    assert train.max_steps == train_preset("demo").max_steps
    with pytest.raises(ValueError, match="flow choices must be one of kit, reference"):
        flow_configs("demo", choices="paper")
