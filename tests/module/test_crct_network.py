"""Graph fusion and CRCTNetwork: gradients to learnable edges, invariants, scale without N x N tensors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _crct_synth import planted_spatial_problem

from scomics_ext.module import (
    CRCTGraphs,
    CRCTNetwork,
    GraphFusion,
    graph_regularization,
    reconstruction_loss,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: threads add only overhead, and stall when other jobs share the CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _dense_sym_norm(a: np.ndarray) -> np.ndarray:
    a = a + np.eye(a.shape[0])
    d = a.sum(1) ** -0.5
    return d[:, None] * a * d[None, :]


@pytest.fixture(scope="module")
def small():
    _, labels, feats, spatial, fgraphs = planted_spatial_problem(side=8, seed=1)
    return labels, feats, spatial, fgraphs


def test_graphs_from_scipy_union_and_params(small):
    _, _, spatial, fgraphs = small
    graphs = CRCTGraphs.from_scipy(spatial, fgraphs, dtype=torch.float64)
    s_dense = spatial.toarray()
    np.testing.assert_allclose(
        graphs.spatial_structure.to_sparse(graphs.spatial_values).to_dense().numpy(), _dense_sym_norm(s_dense)
    )
    for g, f in zip(graphs.modalities, fgraphs):
        union = ((s_dense + f.toarray()) != 0).sum()
        assert g.structure.n_edges == union
        assert g.structure.is_symmetric()
        assert g.n_feature_params == f.nnz // 2  # one parameter per undirected feature edge
        np.testing.assert_allclose(g.structure.to_sparse(g.spatial).to_dense().numpy(), s_dense)
        np.testing.assert_allclose(g.structure.to_sparse(g.feature).to_dense().numpy(), f.toarray())
        # (i, j) and (j, i) share their parameter
        p = g.feature_param[g.structure.transpose_perm]
        assert torch.equal(p, g.feature_param)
    with pytest.raises(ValueError, match="symmetric"):
        CRCTGraphs.from_scipy(sp.triu(spatial).tocsr(), fgraphs)


def test_fusion_at_init_equals_dense_formula(small):
    _, _, spatial, fgraphs = small
    g = CRCTGraphs.from_scipy(spatial, fgraphs, dtype=torch.float64).modalities[0]
    fusion = GraphFusion(g.n_feature_params, init_mix=(0.7, 0.4, 0.1)).double()
    out = fusion(g)
    s, f = spatial.toarray(), fgraphs[0].toarray()
    fused = np.where((s + f) != 0, 0.7 * s + 0.4 * f + 0.1, 0.0)  # bias only on the union of edges
    np.testing.assert_allclose(
        out.structure.to_sparse(out.values.detach()).to_dense().numpy(), _dense_sym_norm(fused)
    )
    torch.testing.assert_close(out.feature_weights, out.feature_init)


@pytest.mark.parametrize("edge_mlp", [False, True])
def test_gradients_reach_edge_weights_and_mixing(small, edge_mlp):
    _, feats, spatial, fgraphs = small
    graphs = CRCTGraphs.from_scipy(spatial, fgraphs)
    x = [torch.as_tensor(f) for f in feats]
    net = CRCTNetwork(
        [f.shape[1] for f in feats], graphs.n_feature_params, n_hidden=16, n_latent=8, edge_mlp=edge_mlp
    )
    out = net(x, graphs)
    reconstruction_loss(x, out.reconstructions).backward()
    for fusion in net.fusions:
        for p in (fusion.spatial_weight, fusion.feature_weight, fusion.bias, fusion.delta):
            assert p.grad is not None
            assert torch.isfinite(p.grad).all()
            assert p.grad.abs().sum() > 0
        if edge_mlp:
            assert fusion.edge_mlp[-1].weight.grad.abs().sum() > 0
    for p in net.parameters():
        assert p.grad is not None, "every parameter gets a gradient"


def test_graph_regularizer_zero_at_init_positive_after_perturbation(small):
    _, feats, spatial, fgraphs = small
    graphs = CRCTGraphs.from_scipy(spatial, fgraphs)
    x = [torch.as_tensor(f) for f in feats]
    net = CRCTNetwork([f.shape[1] for f in feats], graphs.n_feature_params, n_hidden=8, n_latent=4)
    out = net(x, graphs)
    reg = graph_regularization(out.feature_weights, out.feature_init)
    assert reg.item() == 0.0
    reg.backward()  # the norm's gradient at 0 is finite (0)
    assert torch.isfinite(net.fusions[0].delta.grad).all()
    with torch.no_grad():
        net.fusions[0].delta.add_(0.3 * torch.randn_like(net.fusions[0].delta))
    out = net(x, graphs)
    reg = graph_regularization(out.feature_weights, out.feature_init)
    assert reg.item() > 0
    # equals 1/(2M) * Frobenius norm of the dense difference
    g = graphs.modalities[0]
    diff = g.structure.to_sparse(out.feature_weights[0] - out.feature_init[0]).to_dense()
    torch.testing.assert_close(reg, torch.linalg.matrix_norm(diff) / 4)


def test_network_shapes_state_dict_and_single_modality(small):
    _, feats, spatial, fgraphs = small
    graphs = CRCTGraphs.from_scipy(spatial, fgraphs[:1])
    net = CRCTNetwork(
        [feats[0].shape[1]], graphs.n_feature_params, n_hidden=8, n_latent=5, fusion_activation="relu"
    )
    out = net([torch.as_tensor(feats[0])], graphs)
    assert out.z.shape == (64, 5)
    assert out.reconstructions[0].shape == feats[0].shape
    assert net.mixing_weights().shape == (1, 3)
    clone = CRCTNetwork(
        [feats[0].shape[1]], graphs.n_feature_params, n_hidden=8, n_latent=5, fusion_activation="relu"
    )
    clone.load_state_dict(net.state_dict())
    torch.testing.assert_close(clone([torch.as_tensor(feats[0])], graphs).z, out.z)
    with pytest.raises(ValueError, match="modalities"):
        net([torch.as_tensor(f) for f in feats], graphs)
    with pytest.raises(ValueError, match="shape"):
        net([torch.as_tensor(feats[0][:, :3])], graphs)
    with pytest.raises(ValueError, match="fusion_activation"):
        CRCTNetwork([3], [1], fusion_activation="swish")


def _peak_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:  # pragma: no cover - not Linux / not permitted
        return False


def _grid6(side: int) -> sp.csr_matrix:
    """Binary symmetric 6-neighbour graph on a side x side grid (triangular lattice), built directly."""
    idx = np.arange(side * side).reshape(side, side)
    pairs = [
        (idx[:, :-1], idx[:, 1:]),  # right
        (idx[:-1, :], idx[1:, :]),  # down
        (idx[:-1, :-1], idx[1:, 1:]),  # diagonal
    ]
    r = np.concatenate([a.ravel() for a, _ in pairs])
    c = np.concatenate([b.ravel() for _, b in pairs])
    n = side * side
    a = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    return (a + a.T).tocsr()


def _random_regular(n: int, k: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    r = np.repeat(np.arange(n), k // 2)
    c = (r + rng.integers(1, n, size=len(r))) % n
    a = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    a = a + a.T
    a.data[:] = 1.0
    return a.tocsr()


def test_scales_to_50k_nodes_without_dense_graphs():
    side, d = 224, 30
    n = side * side  # 50,176 spots
    spatial = _grid6(side)  # 6 spatial neighbours per spot
    fgraphs = [_random_regular(n, 6, seed) for seed in (0, 1)]  # ~6 feature neighbours per spot
    rng = np.random.default_rng(0)
    x = [torch.as_tensor(rng.standard_normal((n, dm)).astype(np.float32)) for dm in (d, 20)]
    # one thread (autouse fixture) and CPU time: robust to other jobs sharing the machine
    graphs = CRCTGraphs.from_scipy(spatial, fgraphs)
    net = CRCTNetwork([d, 20], graphs.n_feature_params)
    net(x, graphs)  # warm-up (lazy transpose permutations are built once)
    measured = _reset_peak_rss()
    before = _peak_rss_mb()
    t0 = time.process_time()
    out = net(x, graphs)
    loss = reconstruction_loss(x, out.reconstructions) + graph_regularization(
        out.feature_weights, out.feature_init
    )
    loss.backward()
    cpu = time.process_time() - t0
    after = _peak_rss_mb()
    assert torch.isfinite(loss)
    assert cpu < 5.0, f"forward+backward took {cpu:.1f}s CPU"
    if measured and before is not None and after is not None:
        # a single dense float32 N x N matrix would be 10,000 MB
        assert after - before < 1000, f"peak memory grew by {after - before:.0f} MB"
    assert all(p.grad is not None for p in net.parameters())
