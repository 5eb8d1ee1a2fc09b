"""ISDA running class statistics (exact merge, paper eqs 5-6) and augmentation (eqs 7-8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scomics_ext.module import RunningClassStats, batch_class_stats, isda_augment, rho_schedule


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: threads add only overhead, and stall when other jobs share the CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _reference(z: np.ndarray, y: np.ndarray, n_classes: int):
    d = z.shape[1]
    count = np.zeros(n_classes)
    mean = np.zeros((n_classes, d))
    cov = np.zeros((n_classes, d, d))
    for c in range(n_classes):
        zc = z[y == c]
        count[c] = len(zc)
        if len(zc):
            mean[c] = zc.mean(0)
            cov[c] = np.cov(zc, rowvar=False, bias=True).reshape(d, d)
    return count, mean, cov


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merging_random_batches_equals_concatenation(seed):
    rng = np.random.default_rng(seed)
    n_classes, d = 5, 4
    stats = RunningClassStats(n_classes, d, full_covariance=True)
    chunks_z, chunks_y = [], []
    for b in range(int(rng.integers(2, 8))):
        m = int(rng.integers(1, 40))
        # some batches miss some classes entirely; class 4 never appears
        present = rng.choice(4, size=int(rng.integers(1, 5)), replace=False)
        y = rng.choice(present, size=m)
        z = rng.normal(loc=3.0 * y[:, None] + b, scale=1.0 + y[:, None], size=(m, d))
        stats.update(torch.as_tensor(z), torch.as_tensor(y))
        chunks_z.append(z)
        chunks_y.append(y)
    count, mean, cov = _reference(np.concatenate(chunks_z), np.concatenate(chunks_y), n_classes)
    np.testing.assert_allclose(stats.count.numpy(), count)
    np.testing.assert_allclose(stats.mean.numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(stats.cov.numpy(), cov, atol=1e-6)
    np.testing.assert_allclose(stats.var.numpy(), np.diagonal(cov, axis1=1, axis2=2), atol=1e-6)
    assert stats.count[4] == 0
    assert torch.all(stats.std[4] == 0)


def test_two_batches_match_paper_eq6_by_hand():
    rng = np.random.default_rng(3)
    za, zb = rng.normal(size=(7, 3)), rng.normal(2.0, 2.0, size=(5, 3))
    stats = RunningClassStats(1, 3, full_covariance=True)
    stats.update(torch.as_tensor(za), torch.zeros(7))
    stats.update(torch.as_tensor(zb), torch.zeros(5))
    n, m = 7, 5
    mu_a, mu_b = za.mean(0), zb.mean(0)
    sa, sb = np.cov(za, rowvar=False, bias=True), np.cov(zb, rowvar=False, bias=True)
    mu = (n * mu_a + m * mu_b) / (n + m)
    sigma = (n * sa + m * sb) / (n + m) + n * m / (n + m) ** 2 * np.outer(mu_a - mu_b, mu_a - mu_b)
    np.testing.assert_allclose(stats.mean[0].numpy(), mu, atol=1e-12)
    np.testing.assert_allclose(stats.cov[0].numpy(), sigma, atol=1e-12)


def test_batch_stats_state_dict_reset_and_decay():
    z = torch.randn(50, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    count, mean, _var, cov = batch_class_stats(z, y, 4)
    assert cov is None
    assert count[3] == 0
    assert torch.all(mean[3] == 0)
    stats = RunningClassStats(4, 3)
    stats.update(z, y)
    clone = RunningClassStats(4, 3)
    clone.load_state_dict(stats.state_dict())
    torch.testing.assert_close(clone.var, stats.var)
    stats.reset()
    assert stats.count.sum() == 0
    # decay=1 is the exact merge; a smaller decay weighs the newest batch more
    exact, forget = RunningClassStats(1, 1), RunningClassStats(1, 1, decay=0.1)
    for s in (exact, forget):
        s.update(torch.zeros(10, 1), torch.zeros(10))
        s.update(torch.ones(10, 1), torch.zeros(10))
    assert exact.mean.item() == pytest.approx(0.5)
    assert forget.mean.item() == pytest.approx(10 / 11)
    with pytest.raises(ValueError, match="labels must lie"):
        stats.update(z, torch.full((50,), 7))
    with pytest.raises(ValueError, match="decay"):
        RunningClassStats(2, 2, decay=0.0)


def test_augmentation_scale_uses_class_sigma_and_rho():
    n = 20_000
    std = torch.tensor([[0.5, 2.0], [0.0, 0.0], [3.0, 1.0]])
    y = torch.arange(n) % 3
    z = torch.randn(n, 2)
    for rho in (0.25, 1.0):
        out = isda_augment(z, y, std, rho, generator=torch.Generator().manual_seed(0))
        for c in range(3):
            emp = (out - z)[y == c].std(0)
            torch.testing.assert_close(emp, rho * std[c], atol=0.05 * rho * std.max(), rtol=0.05)
    # rho(t) grows linearly with progress, so does the perturbation
    noise = [
        (isda_augment(z, y, std, rho_schedule(p, 1.0), generator=torch.Generator().manual_seed(0)) - z).norm()
        for p in (0.0, 0.5, 1.0)
    ]
    assert noise[0] == 0
    assert noise[1] == pytest.approx(noise[2].item() / 2, rel=1e-5)


def test_augmentation_deterministic_and_differentiable():
    stats = RunningClassStats(2, 4)
    z = torch.randn(30, 4)
    y = torch.randint(0, 2, (30,))
    stats.update(z, y)
    a = stats.augment(z, y, 0.5, generator=torch.Generator().manual_seed(7))
    b = stats.augment(z, y, 0.5, generator=torch.Generator().manual_seed(7))
    c = stats.augment(z, y, 0.5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == z.dtype
    zg = z.clone().requires_grad_(True)
    stats.augment(zg, y, 0.5).sum().backward()
    torch.testing.assert_close(zg.grad, torch.ones_like(z))
