"""DARLC GAT denoiser: sparse attention, tied decoder, denoising quality, scale."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

from scomics_ext.module._gat import GATAutoencoder, SpotGraph, _edge_spmm, fit_gat_denoiser


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _grid_edges(n_side: int, n_nodes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij")
    coords = np.stack([yy.ravel(), xx.ravel()], 1).astype(float)[:n_nodes]
    pairs = cKDTree(coords).query_pairs(1.01, output_type="ndarray")
    return coords, np.concatenate([pairs.T, pairs[:, ::-1].T], axis=1)


def test_spot_graph_structure():
    edges = np.array([[0, 0, 1, 2], [1, 1, 2, 1]])  # duplicate (0, 1)
    g = SpotGraph.from_edge_index(edges, 3)
    assert g.n_edges == 3 + 3
    assert g.row.tolist() == [0, 0, 1, 1, 2, 2]
    assert g.col.tolist() == [0, 1, 1, 2, 1, 2]
    g2 = SpotGraph.from_edge_index(
        sp.csr_matrix(([1.0, 1.0], ([0, 2], [1, 1])), shape=(3, 3)), 3, symmetrize=True
    )
    assert set(zip(g2.row.tolist(), g2.col.tolist())) == {
        (0, 0),
        (1, 1),
        (2, 2),
        (0, 1),
        (1, 0),
        (2, 1),
        (1, 2),
    }
    with pytest.raises(ValueError, match="lie in"):
        SpotGraph.from_edge_index(np.array([[0], [5]]), 3)
    with pytest.raises(ValueError, match=r"shape \(2, E\)"):
        SpotGraph.from_edge_index(np.zeros((3, 2), dtype=int), 3)


def test_edge_spmm_matches_dense_and_gradcheck():
    _, edges = _grid_edges(4)
    g = SpotGraph.from_edge_index(edges, 16)
    gen = torch.Generator().manual_seed(0)
    v = torch.rand(g.n_edges, dtype=torch.float64, generator=gen, requires_grad=True)
    x = torch.rand(16, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    dense = torch.zeros(16, 16, dtype=torch.float64)
    dense[g.row, g.col] = v.detach()
    torch.testing.assert_close(_edge_spmm(g, v, x), dense @ x)
    assert torch.autograd.gradcheck(lambda a, b: _edge_spmm(g, a, b), (v, x))


def test_attention_sums_to_one_and_matches_dense_formula():
    _, edges = _grid_edges(5)
    g = SpotGraph.from_edge_index(edges, 25)
    gen = torch.Generator().manual_seed(0)
    model = GATAutoencoder(6, hidden=(8, 3), generator=gen).double()
    x = torch.rand(25, 6, dtype=torch.float64, generator=gen)
    h0 = x @ model.w1.T
    alpha = model.attention(h0, g)
    sums = torch.zeros(25, dtype=torch.float64).index_add_(0, g.row, alpha)
    torch.testing.assert_close(sums, torch.ones(25, dtype=torch.float64))
    # dense reference: softmax over neighbours of σ(v_s·h_i + v_n·h_j)
    score = torch.sigmoid((h0 @ model.att_self.T) + (h0 @ model.att_neigh.T).T)
    adj = torch.zeros(25, 25, dtype=torch.bool)
    adj[g.row, g.col] = True
    ref = torch.softmax(score.masked_fill(~adj, float("-inf")), dim=1)
    torch.testing.assert_close(alpha, ref[g.row, g.col])
    # forward equals the dense formulas with tied weights
    z, x_hat = model(x, g)
    h1 = torch.nn.functional.elu(ref @ h0)
    torch.testing.assert_close(z, h1 @ model.w2.T)
    torch.testing.assert_close(x_hat, torch.nn.functional.elu(ref @ (z @ model.w2)) @ model.w1)
    assert z.shape == (25, 3)
    assert x_hat.shape == (25, 6)


def test_denoising_reduces_error_against_clean_signal():
    rng = np.random.default_rng(0)
    coords, edges = _grid_edges(20)
    n_genes = 40
    patterns = np.stack(
        [
            np.exp(-((coords - rng.uniform(3, 17, 2)) ** 2).sum(1) / (2 * rng.uniform(3, 6) ** 2))
            for _ in range(3)
        ],
        axis=1,
    )
    loadings = rng.gamma(1.0, 1.0, (3, n_genes)) * (rng.random((3, n_genes)) < 0.6)
    clean = 1.0 + 4.0 * patterns @ loadings
    x = rng.poisson(clean).astype(np.float32)
    x_hat = fit_gat_denoiser(x, edges, hidden=(64, 8), epochs=200, seed=0)
    assert x_hat.shape == x.shape
    assert x_hat.dtype == np.float32
    err_hat, err_raw = np.linalg.norm(x_hat - clean), np.linalg.norm(x - clean)
    assert err_hat < 0.6 * err_raw, (err_hat, err_raw)


def test_deterministic_with_seed():
    rng = np.random.default_rng(1)
    _, edges = _grid_edges(6)
    x = rng.poisson(2.0, (36, 10)).astype(np.float32)
    a = fit_gat_denoiser(x, edges, hidden=(16, 4), epochs=10, seed=3)
    b = fit_gat_denoiser(sp.csr_matrix(x), edges, hidden=(16, 4), epochs=10, seed=3)
    c = fit_gat_denoiser(x, edges, hidden=(16, 4), epochs=10, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(ValueError, match="NaN"):
        fit_gat_denoiser(np.full((36, 10), np.nan), edges, epochs=1)


def test_runs_on_5000_spots_by_500_genes():
    rng = np.random.default_rng(0)
    _, edges = _grid_edges(71, 5000)
    edges = edges[:, (edges < 5000).all(0)]
    x = rng.poisson(1.0, (5000, 500)).astype(np.float32)
    start = time.perf_counter()
    x_hat = fit_gat_denoiser(x, edges, epochs=2, seed=0)  # default hidden (512, 30)
    elapsed = time.perf_counter() - start
    assert x_hat.shape == (5000, 500)
    assert np.isfinite(x_hat).all()
    assert elapsed < 30.0, elapsed  # ~0.3-0.5 s per epoch single-threaded
