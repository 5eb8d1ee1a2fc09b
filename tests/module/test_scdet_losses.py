"""scDET losses against naive implementations on small inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import gammaln
from torch.nn import functional as F

from scomics_ext.module import _scdet_losses as L


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def _naive_contrastive(v: np.ndarray, pos: np.ndarray, tau: float) -> float:
    m = v.shape[0]
    losses = []
    for i in range(m):
        p_i = [j for j in range(m) if j != i and pos[i, j]]
        if not p_i:
            continue
        denom = sum(math.exp(v[i] @ v[a] / tau) for a in range(m) if a != i)
        losses.append(np.mean([-math.log(math.exp(v[i] @ v[j] / tau) / denom) for j in p_i]))
    return float(np.mean(losses))


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1)


def test_contrastive_two_view_matches_naive(gen):
    n = 5
    v = _unit(torch.randn(2 * n, 4, generator=gen, dtype=torch.float64))
    pos = L.two_view_positives(n)
    assert pos.sum(1).tolist() == [1] * (2 * n)
    got = float(L.contrastive_loss(v, pos, 0.5))
    assert got == pytest.approx(_naive_contrastive(v.numpy(), pos.numpy(), 0.5), rel=1e-10)


def test_contrastive_supervised_matches_naive(gen):
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    y = torch.cat([labels, labels])
    v = _unit(torch.randn(12, 3, generator=gen, dtype=torch.float64))
    pos = L.label_positives(y)
    got = float(L.contrastive_loss(v, pos, 0.2))
    assert got == pytest.approx(_naive_contrastive(v.numpy(), pos.numpy(), 0.2), rel=1e-10)


def test_contrastive_without_positives_is_zero():
    v = _unit(torch.randn(3, 2))
    assert float(L.contrastive_loss(v, torch.zeros(3, 3, dtype=torch.bool), 1.0)) == 0.0
    assert float(L.contrastive_loss(v[:1], torch.ones(1, 1, dtype=torch.bool), 1.0)) == 0.0


def test_soft_contrastive_matches_naive(gen):
    n, k = 6, 3
    v = _unit(torch.randn(n, 4, generator=gen, dtype=torch.float64))
    vt = _unit(torch.randn(n, 4, generator=gen, dtype=torch.float64))
    p = torch.softmax(torch.randn(n, k, generator=gen, dtype=torch.float64), dim=1)
    w = p @ p.T
    tau = 0.7
    vn, vtn, wn = v.numpy(), vt.numpy(), w.numpy()
    per = []
    for i in range(n):
        denom = sum(math.exp(vn[i] @ vtn[a] / tau) for a in range(n) if a != i)
        s = sum(wn[i, j] for j in range(n) if j != i)
        per.append(
            -sum(wn[i, j] * math.log(math.exp(vn[i] @ vtn[j] / tau) / denom) for j in range(n) if j != i) / s
        )
    assert float(L.soft_contrastive_loss(v, vt, w, tau)) == pytest.approx(np.mean(per), rel=1e-10)


def test_soft_contrastive_with_one_hot_weights_is_supervised_cross_view():
    # one-hot weights: positives are the other same-label cells of the other view
    v = _unit(torch.randn(4, 3, dtype=torch.float64))
    y = torch.tensor([0, 0, 1, 1])
    w = F.one_hot(y).double() @ F.one_hot(y).double().T
    got = float(L.soft_contrastive_loss(v, v, w, 1.0))
    sim = (v @ v.T).numpy()
    per = []
    for i in range(4):
        j = [1, 0, 3, 2][i]
        denom = sum(math.exp(sim[i, a]) for a in range(4) if a != i)
        per.append(-math.log(math.exp(sim[i, j]) / denom))
    assert got == pytest.approx(np.mean(per), rel=1e-10)


def test_supervised_ce_matches_manual(gen):
    logits = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    logits2 = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    labels = torch.tensor([2, -1, 0, -1, 3])
    lab = [0, 2, 4]
    ls, ls2 = torch.log_softmax(logits, 1), torch.log_softmax(logits2, 1)
    expected = 0.5 * np.mean([-(ls[i, labels[i]] + ls2[i, labels[i]]).item() for i in lab])
    assert float(L.supervised_ce(logits, logits2, labels)) == pytest.approx(expected, rel=1e-10)
    assert float(L.supervised_ce(logits, logits2, torch.full((5,), -1))) == 0.0


def test_cross_view_ce_matches_manual(gen):
    logits = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    logits2 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    s = 3.0
    q, q2 = torch.softmax(s * logits, 1).numpy(), torch.softmax(s * logits2, 1).numpy()
    lp, lp2 = torch.log_softmax(logits, 1).numpy(), torch.log_softmax(logits2, 1).numpy()
    expected = 0.5 * (np.mean(-(q2 * lp).sum(1)) + np.mean(-(q * lp2).sum(1)))
    assert float(L.cross_view_ce(logits, logits2, s)) == pytest.approx(expected, rel=1e-10)
    # the pseudo-labels are targets: no gradient flows through them
    a = logits.clone().requires_grad_(True)
    b = logits2.clone().requires_grad_(True)
    L.cross_view_ce(a, b, s).backward()
    a2 = logits.clone().requires_grad_(True)
    (0.5 * -(torch.tensor(q2) * torch.log_softmax(a2, 1)).sum(1).mean()).backward()
    assert torch.allclose(a.grad, a2.grad)


def test_distribution_kl_matches_manual(gen):
    logits = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    logits2 = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    pi = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    prior = L.smoothed_prior(pi, 0.5)
    target = np.sqrt(pi.numpy()) / np.sqrt(pi.numpy()).sum()
    assert np.allclose(prior.numpy(), target)
    expected = 0.0
    for lg in (logits, logits2):
        m = torch.softmax(lg, 1).mean(0).numpy()
        expected += float(np.sum(m * np.log(m / target)))
    assert float(L.distribution_kl(logits, logits2, prior)) == pytest.approx(expected, rel=1e-10)


def test_logit_adjustment_math(gen):
    logits = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    pi = torch.tensor([0.55, 0.25, 0.15, 0.05], dtype=torch.float64)
    gamma = 0.5
    got = L.adjusted_probabilities(logits, pi, gamma)
    # softmax(l - γ log π) = softmax(l) · π^-γ, renormalised
    p = torch.softmax(logits, 1) * pi.pow(-gamma)
    assert torch.allclose(got, p / p.sum(1, keepdim=True))
    assert torch.allclose(L.adjusted_probabilities(logits, pi, 0.0), torch.softmax(logits, 1))
    # a tie between a head and a tail class is broken in favour of the tail
    tie = torch.zeros(1, 4, dtype=torch.float64)
    assert int(L.adjusted_probabilities(tie, pi, gamma).argmax()) == 3


def test_sampling_rates_formula():
    pi = torch.tensor([0.5, 0.3, 0.15, 0.05])
    in_batch = torch.tensor([True, False, True, False])
    rates = L.sampling_rates(pi, in_batch, alpha=0.5, beta=0.25)
    expected = [(0.5 / 0.05) ** -0.5, (0.3 / 0.05) ** -0.25, (0.15 / 0.05) ** -0.5, 1.0]
    assert rates.tolist() == pytest.approx(expected, rel=1e-6)
    assert L.sampling_rates(pi, in_batch, 0.0, 0.0).tolist() == [1.0] * 4


def test_balanced_selection_keeps_most_confident_per_class(gen):
    p = torch.softmax(3 * torch.randn(40, 3, generator=gen), dim=1)
    rates = torch.tensor([0.25, 0.5, 1.0])
    keep = L.balanced_selection(p, rates)
    conf, pred = p.max(1)
    for c in range(3):
        members = torch.nonzero(pred == c).flatten()
        n_keep = math.ceil(float(rates[c]) * members.numel() - 1e-6)
        assert int(keep[members].sum()) == n_keep
        if 0 < n_keep < members.numel():
            assert conf[members][keep[members]].min() >= conf[members][~keep[members]].max()
    assert not L.balanced_selection(p[:0], rates).any()


def test_zinb_nll_matches_formula(gen):
    x = torch.tensor([[0.0, 2.0, 5.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    mu = torch.tensor([[0.5, 2.5, 4.0], [1.2, 0.3, 2.0]], dtype=torch.float64)
    theta = torch.tensor([2.0, 5.0, 1.5], dtype=torch.float64)
    zi = torch.tensor([[-1.0, 0.5, -2.0], [0.0, 1.0, -0.5]], dtype=torch.float64)
    xn, mn, tn = x.numpy(), mu.numpy(), np.broadcast_to(theta.numpy(), x.shape)
    pz = 1 / (1 + np.exp(-zi.numpy()))
    log_nb = (
        gammaln(xn + tn)
        - gammaln(tn)
        - gammaln(xn + 1)
        + tn * np.log(tn / (tn + mn))
        + xn * np.log(mn / (tn + mn))
    )
    ll = np.where(xn == 0, np.log(pz + (1 - pz) * np.exp(log_nb)), np.log(1 - pz) + log_nb)
    assert float(L.zinb_nll(x, mu, theta, zi)) == pytest.approx(-ll.mean(), rel=1e-6)


def test_mse_and_bce_match_manual(gen):
    x, y = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    assert float(L.mse_loss(x, y)) == pytest.approx(float(((x - y) ** 2).mean()), rel=1e-6)
    logits = torch.randn(3, 4, generator=gen)
    mask = (torch.rand(3, 4, generator=gen) < 0.3).float()
    p = torch.sigmoid(logits)
    manual = -(mask * p.log() + (1 - mask) * (1 - p).log()).mean()
    assert float(L.swap_bce(logits, mask)) == pytest.approx(float(manual), rel=1e-5)
