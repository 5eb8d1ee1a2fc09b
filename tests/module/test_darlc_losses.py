"""DARLC losses and seeding graph: dense formulas, eigengap, DEC, gradients; doctests of the DARLC kernels."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from threadpoolctl import threadpool_limits

from scomics_ext.module._darlc_losses import (
    cluster_size_loss,
    dec_kl_loss,
    estimate_n_clusters,
    laplacian_term,
    seeding_graphs,
    seeding_similarity,
    similarity_laplacian,
    smm_nll,
    target_distribution,
)
from scomics_ext.module._smm import StudentTMixture, smm_posterior


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _random_similarity(n: int, seed: int) -> sp.csr_matrix:
    a = sp.random(n, n, density=0.2, random_state=seed, format="csr")
    a = a + a.T
    a.setdiag(0)
    a.eliminate_zeros()
    return sp.csr_matrix(a)


def _dense_laplacian(a: np.ndarray) -> np.ndarray:
    d = a.sum(1)
    dinv = np.zeros_like(d)
    dinv[d != 0] = np.abs(d[d != 0]) ** -0.5
    return np.diag(np.sign(d)) - dinv[:, None] * a * dinv[None, :]


@pytest.mark.parametrize("seed", [0, 1])
def test_laplacian_term_equals_dense_formula(seed):
    a = _random_similarity(30, seed)
    a = a.tolil()
    a[3, :] = 0  # an isolated node
    a[:, 3] = 0
    a = sp.csr_matrix(a)
    lap = similarity_laplacian(a)
    dense_l = _dense_laplacian(a.toarray())
    np.testing.assert_allclose(lap.toarray(), dense_l, atol=1e-12)
    z = torch.randn(
        30, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed), requires_grad=True
    )
    zl = torch.as_tensor(dense_l)
    torch.testing.assert_close(laplacian_term(z, lap), torch.trace(z.T @ zl @ z))
    torch.testing.assert_close(laplacian_term(z, lap, reduction="mean"), torch.trace(z.T @ zl @ z) / 30)
    # batch: sub-Laplacian L[idx][:, idx]
    idx = np.array([5, 0, 17, 3, 29, 11])
    zb = z[idx]
    sub = zl[idx][:, idx]
    torch.testing.assert_close(laplacian_term(zb, lap, torch.as_tensor(idx)), torch.trace(zb.T @ sub @ zb))
    laplacian_term(zb, lap, idx).backward()
    assert z.grad[idx].abs().sum() > 0
    with pytest.raises(ValueError, match="does not match"):
        laplacian_term(z[:5], lap)


def test_laplacian_term_is_zero_for_constant_embedding_on_regular_graph():
    ring = sp.diags([np.ones(9), np.ones(9)], [1, -1], shape=(10, 10)).tolil()
    ring[0, 9] = ring[9, 0] = 1
    lap = similarity_laplacian(ring)
    assert abs(laplacian_term(torch.ones(10, 3), lap).item()) < 1e-6


def _planted_blocks(sizes, seed, noise=0.02):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    same = labels[:, None] == labels[None, :]
    dense = np.where(same, rng.uniform(0.5, 1.0, (n, n)), rng.uniform(0, 1, (n, n)) * noise)
    dense = np.where(rng.random((n, n)) < 0.3, dense, 0.0)  # sparse
    dense = np.triu(dense, 1)
    return sp.csr_matrix(dense + dense.T)


@pytest.mark.parametrize(("sizes", "seed"), [((40, 60, 50, 30, 70, 50), 0), ((200, 200, 200), 1)])
def test_eigengap_recovers_planted_k(sizes, seed):
    a = _planted_blocks(sizes, seed)  # one connected component; > 500 items → the eigsh path
    k, lam = estimate_n_clusters(a, max_clusters=20)
    assert k == len(sizes)
    assert lam.shape == (21,)
    assert np.all(np.diff(lam) >= -1e-10)
    ref = np.sort(np.linalg.eigvalsh(_dense_laplacian(a.toarray())))[:21]
    np.testing.assert_allclose(lam, ref, atol=1e-7)
    assert estimate_n_clusters(a, max_clusters=20, min_clusters=len(sizes) + 1)[0] != len(sizes)


def test_seeding_similarity_properties():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 50))
    x = np.vstack([base[i % 4] + 0.5 * rng.normal(size=50) for i in range(40)])
    x[7] = 1.0  # constant row: no edges
    a = seeding_similarity(x, n_neighbors=5, chunk_size=16)
    assert a.shape == (40, 40)
    assert (a != a.T).nnz == 0
    assert a.diagonal().sum() == 0
    assert a.data.min() > 0
    assert a[7].nnz == 0
    r = np.corrcoef(np.delete(x, 7, axis=0))
    dense = a.toarray()
    kept = np.delete(np.delete(dense, 7, 0), 7, 1)
    np.testing.assert_allclose(kept[kept > 0], r[kept > 0], atol=1e-12)
    # union top-k: every non-constant row keeps at least its own k (here all correlations in a group are > 0)
    assert (np.delete((dense > 0).sum(1), 7) >= 5).all()
    mutual = seeding_similarity(x, n_neighbors=5, mode="mutual")
    assert ((mutual.toarray() > 0) <= (dense > 0)).all()
    # one sweep for both rules gives exactly the separate graphs
    both = seeding_graphs(x, n_neighbors=5, modes=("union", "mutual"))
    assert (both[0] != seeding_similarity(x, n_neighbors=5)).nnz == 0
    assert (both[1] != mutual).nnz == 0
    with pytest.raises(ValueError, match="mode"):
        seeding_graphs(x, modes=("union", "both"))
    # neighbours are within the planted groups
    rows, cols = a.nonzero()
    assert np.mean(rows % 4 == cols % 4) > 0.95
    # the eigengap finds the 4 groups (4 components: every zero eigenvalue is found); the isolated
    # constant row gets λ = 1 and does not count
    k, lam = estimate_n_clusters(a, 10)
    assert k == 4
    assert np.allclose(lam[:4], 0, atol=1e-10)


def test_dec_target_and_kl_equal_naive_formulas():
    gen = torch.Generator().manual_seed(0)
    q = torch.softmax(torch.randn(7, 4, generator=gen, dtype=torch.float64), dim=1)
    p = target_distribution(q)
    f = q.sum(0)
    naive_p = torch.stack([torch.stack([q[i, k] ** 2 / f[k] for k in range(4)]) for i in range(7)])
    naive_p = naive_p / naive_p.sum(1, keepdim=True)
    torch.testing.assert_close(p, naive_p)
    naive_kl = (
        sum(float(p[i, k] * (torch.log(p[i, k]) - torch.log(q[i, k]))) for i in range(7) for k in range(4))
        / 7
    )
    assert dec_kl_loss(q, p).item() == pytest.approx(naive_kl, rel=1e-10)
    assert dec_kl_loss(torch.log(q), p, log_input=True).item() == pytest.approx(naive_kl, rel=1e-10)


def test_gradients_flow_to_z_through_all_losses():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(c, 1.0, (60, 3)) for c in (0.0, 6.0, 12.0)])
    smm = StudentTMixture(3, random_state=0).fit(x, max_iter=10)
    # true NLL equals the mixture's own log-likelihood
    z = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    nll = smm_nll(z, smm.params)
    assert nll.item() == pytest.approx(-smm.log_prob(x).mean(), rel=1e-10)
    lap = similarity_laplacian(seeding_similarity(x, n_neighbors=5))
    q = smm_posterior(z, smm.params)
    log_q = smm_posterior(z, smm.params, log=True)
    p = target_distribution(q)
    for loss in (
        nll,
        laplacian_term(z, lap),
        dec_kl_loss(log_q, p, log_input=True),
        cluster_size_loss(q, threshold=0.5),
        cluster_size_loss(q, threshold=0.5, kind="entropy"),
    ):
        (grad,) = torch.autograd.grad(loss, z, retain_graph=True)
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


def test_cluster_size_loss_targets_small_clusters_only():
    q = torch.tensor([[0.98, 0.01, 0.01], [0.97, 0.02, 0.01], [0.01, 0.98, 0.01]], requires_grad=True)
    assert cluster_size_loss(q, threshold=0.005).item() == 0.0
    loss = cluster_size_loss(q, threshold=0.2)  # third cluster (p̄ = 0.01) is small
    p = q.detach().mean(0)
    assert loss.item() == pytest.approx(float((0.2 - p[2]) * -torch.log(p[2] + 1e-6)), rel=1e-5)
    (grad,) = torch.autograd.grad(loss, q)
    assert (grad[:, 2] < 0).all()
    assert (grad[:, :2] == 0).all()
    ent = cluster_size_loss(q, threshold=0.2, kind="entropy")
    assert ent.item() == pytest.approx(float((p[2] + 1e-6) * torch.log(p[2] + 1e-6)), rel=1e-5)
    with pytest.raises(ValueError, match="kind"):
        cluster_size_loss(q, kind="other")


def test_pieces_compose_into_an_epoch_step():
    """ViT embeddings → EM on detached z → differentiable SMM losses → gradients reach the encoder."""
    from scomics_ext.module._vit import MaskedViT, UncertaintyWeighting

    torch.manual_seed(0)
    vit = MaskedViT((21, 16), depth=1)
    images = torch.rand(48, 21, 16)
    out = vit(images, generator=torch.Generator().manual_seed(0))
    smm = StudentTMixture(4, random_state=0).fit(out.z.detach().double(), max_iter=5)
    q = smm_posterior(out.z, smm.params)
    lap = similarity_laplacian(seeding_similarity(images.flatten(1).numpy(), n_neighbors=5))
    awl = UncertaintyWeighting(3)
    loss = awl(out.mim_loss, 0.01 * smm_nll(out.z, smm.params), 0.01 * cluster_size_loss(q))
    loss = loss + 1e-3 * laplacian_term(out.z, lap)
    loss = loss + dec_kl_loss(
        smm_posterior(out.z, smm.params, log=True), target_distribution(q), log_input=True
    )
    loss.backward()
    assert vit.patch_embed.weight.grad.abs().sum() > 0
    assert vit.head[0].weight.grad.abs().sum() > 0
    assert awl.sigma.grad is not None
