"""Sparse graph kernels: equality with dense formulas, gradients, structure bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from scomics_ext.module import (
    EdgeIndex,
    edge_index_from_scipy,
    spmm,
    sym_normalize,
    to_torch_sparse,
    union_edges,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: threads add only overhead, and stall when other jobs share the CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _random_graph(n: int, density: float, seed: int, symmetric: bool = True) -> sp.csr_matrix:
    a = sp.random(n, n, density=density, random_state=seed, format="csr")
    a.data = np.random.default_rng(seed).uniform(0.5, 2.0, a.nnz)
    if symmetric:
        a = a + a.T
    a.setdiag(0)
    a.eliminate_zeros()
    return a.tocsr()


def _dense_sym_norm(a: np.ndarray, s: float = 1.0) -> np.ndarray:
    a = a + s * np.eye(a.shape[0])
    d = a.sum(1) ** -0.5
    return d[:, None] * a * d[None, :]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sym_normalize_equals_dense_formula(seed):
    a = _random_graph(25, 0.15, seed)
    ei, w = edge_index_from_scipy(a, dtype=torch.float64)
    loops, v = sym_normalize(ei, w)
    assert loops.n_edges == ei.n_edges + 25
    np.testing.assert_allclose(
        loops.to_sparse(v).to_dense().numpy(), _dense_sym_norm(a.toarray()), atol=1e-12
    )
    loops2, v2 = sym_normalize(ei, w, self_loop_weight=0.5)
    np.testing.assert_allclose(
        loops2.to_sparse(v2).to_dense().numpy(), _dense_sym_norm(a.toarray(), 0.5), atol=1e-12
    )


def test_sym_normalize_isolated_nodes_and_rejects_self_loops():
    a = sp.csr_matrix(([1.0, 1.0], ([0, 1], [1, 0])), shape=(4, 4))
    ei, w = edge_index_from_scipy(a, dtype=torch.float64)
    loops, v = sym_normalize(ei, w)
    np.testing.assert_allclose(loops.to_sparse(v).to_dense().numpy(), _dense_sym_norm(a.toarray()))
    with_diag, wd = edge_index_from_scipy(a + sp.eye(4), drop_diagonal=False)
    with pytest.raises(ValueError, match="self loops"):
        sym_normalize(with_diag, wd)


def test_spmm_matches_dense_and_gradients():
    a = _random_graph(30, 0.2, 3, symmetric=False)  # non-symmetric: exercises the transpose path
    ei, w = edge_index_from_scipy(a, dtype=torch.float64)
    dense = torch.as_tensor(a.toarray())
    x = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)
    w = w.clone().requires_grad_(True)
    out = spmm(ei, w, x)
    torch.testing.assert_close(out, dense @ x)
    assert torch.autograd.gradcheck(lambda w_, x_: spmm(ei, w_, x_), (w, x))
    # gradient w.r.t. edge values = the dense gradient read at the edges
    dense_w = dense.clone().requires_grad_(True)
    g = torch.randn(30, 4, dtype=torch.float64)
    (dense_w @ x.detach() * g).sum().backward()
    (spmm(ei, w, x.detach()) * g).sum().backward()
    torch.testing.assert_close(w.grad, dense_w.grad[ei.row, ei.col])


def test_sym_normalize_is_differentiable_in_edge_weights():
    a = _random_graph(15, 0.3, 4)
    ei, w0 = edge_index_from_scipy(a, dtype=torch.float64)
    x = torch.randn(15, 3, dtype=torch.float64)

    def f(w):
        loops, v = sym_normalize(ei, w)
        return spmm(loops, v, x)

    assert torch.autograd.gradcheck(f, (w0.clone().requires_grad_(True),))


def test_edge_index_sorting_duplicates_and_range():
    ei = EdgeIndex(torch.tensor([2, 0, 1]), torch.tensor([0, 2, 1]), n_nodes=3)
    assert ei.row.tolist() == [0, 1, 2]
    assert ei.col.tolist() == [2, 1, 0]
    assert ei.crow.tolist() == [0, 1, 2, 3]
    assert ei.has_self_loops()
    assert ei.is_symmetric()
    assert not EdgeIndex(torch.tensor([0, 1]), torch.tensor([1, 2]), n_nodes=3).is_symmetric()
    assert not EdgeIndex(torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 0, 1]), n_nodes=3).is_symmetric()
    with pytest.raises(ValueError, match="duplicate"):
        EdgeIndex(torch.tensor([0, 0]), torch.tensor([1, 1]), n_nodes=2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        EdgeIndex(torch.tensor([0]), torch.tensor([2]), n_nodes=2)


def test_to_torch_sparse_and_roundtrip():
    a = _random_graph(12, 0.3, 5, symmetric=False)
    x = torch.randn(12, 2, dtype=torch.float64)
    for layout in (torch.sparse_csr, torch.sparse_coo):
        t = to_torch_sparse(a, layout=layout, dtype=torch.float64)
        assert t.layout == layout
        torch.testing.assert_close(t.to_dense(), torch.as_tensor(a.toarray()))
        torch.testing.assert_close(t @ x, torch.as_tensor(a.toarray()) @ x)
    ei, w = edge_index_from_scipy(a, dtype=torch.float64)
    assert (ei.to_scipy(w) != a).nnz == 0
    rect = to_torch_sparse(sp.random(3, 5, density=0.5, random_state=0, format="csr"))
    assert rect.shape == (3, 5)


def test_union_edges_aligns_values():
    a = _random_graph(20, 0.1, 6)
    b = _random_graph(20, 0.1, 7)
    ea, wa = edge_index_from_scipy(a, dtype=torch.float64)
    eb, wb = edge_index_from_scipy(b, dtype=torch.float64)
    u, (va, vb), (pa, pb) = union_edges([ea, eb], [wa, wb])
    dense_u = (a + b).toarray() != 0
    assert u.n_edges == dense_u.sum()
    np.testing.assert_allclose(u.to_sparse(va).to_dense().numpy(), a.toarray())
    np.testing.assert_allclose(u.to_sparse(vb).to_dense().numpy(), b.toarray())
    torch.testing.assert_close(va[pa], wa)
    torch.testing.assert_close(vb[pb], wb)
