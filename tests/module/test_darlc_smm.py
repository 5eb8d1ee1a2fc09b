"""DARLC Student's t mixture: density vs scipy, MAP-EM monotonicity, recovery, re-seeding, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from scomics_ext.module._smm import (
    SMMParams,
    StudentTMixture,
    smm_log_prob,
    smm_posterior,
    student_t_log_density,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Single-threaded kernels: fast and stable on a shared CI machine (OpenMP spin-waits otherwise)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _mvt(rng: np.random.Generator, n: int, loc, scale, nu: float) -> np.ndarray:
    """Multivariate t with diagonal scale (one shared Gamma scale per sample)."""
    loc, scale = np.asarray(loc, float), np.asarray(scale, float)
    u = rng.gamma(nu / 2.0, 2.0 / nu, size=(n, 1))
    return loc + scale * rng.standard_normal((n, loc.size)) / np.sqrt(u)


def _mixture(seed: int, k: int = 3, d: int = 3, n: int = 150, sep: float = 4.0, nu: float = 4.0):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for j in range(k):
        loc = rng.normal(0, sep, d)
        xs.append(_mvt(rng, n, loc, rng.uniform(0.5, 1.5, d), nu))
        ys.append(np.full(n, j))
    return np.vstack(xs), np.concatenate(ys)


def test_t_log_density_matches_scipy():
    rng = np.random.default_rng(0)
    d, k = 4, 3
    x = rng.normal(0, 3, (50, d))
    means = rng.normal(0, 1, (k, d))
    variances = rng.uniform(0.2, 3.0, (k, d))
    dof = np.array([2.5, 7.0, 60.0])
    ours, delta = student_t_log_density(x, means, variances, dof)
    for j in range(k):
        ref = stats.multivariate_t(loc=means[j], shape=np.diag(variances[j]), df=dof[j]).logpdf(x)
        np.testing.assert_allclose(ours[:, j], ref, rtol=0, atol=1e-8)
        np.testing.assert_allclose(delta[:, j], (((x - means[j]) ** 2) / variances[j]).sum(1), atol=1e-9)
    # the torch version agrees in float64
    params = SMMParams(means, variances, np.full(k, 1 / k), dof)
    t = smm_log_prob(torch.as_tensor(x), params).numpy()
    np.testing.assert_allclose(t, ours + np.log(1 / k), atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("update_dof", [True, False])
def test_em_never_decreases_map_objective(seed, update_dof):
    x, _ = _mixture(seed, k=4, d=3, n=80, sep=2.5)  # overlapping: many iterations
    smm = StudentTMixture(4, update_dof=update_dof, reseed_empty=False, random_state=seed)
    smm.fit(x, max_iter=40, tol=0.0)
    obj = np.array([h["map_objective"] for h in smm.history_])
    assert obj.size == 41
    assert np.all(np.diff(obj) >= -1e-9 * np.abs(obj[:-1])), np.diff(obj).min()
    assert obj[-1] > obj[0]
    assert smm.map_objective(x) == pytest.approx(obj[-1], rel=1e-12)


def test_monotone_from_poor_start_with_dof_far_off():
    x, _ = _mixture(5, k=3, d=2, n=100, sep=3.0, nu=3.0)
    smm = StudentTMixture(3, dof_init=150.0, reseed_empty=False, random_state=0)
    smm.initialize(x)
    smm.means_ = smm.means_[[0, 0, 1]] + np.array([[0.0, 0.0], [0.5, 0.5], [0.0, 0.0]])  # bad start
    smm.fit(x, max_iter=60, tol=0.0)
    obj = np.array([h["map_objective"] for h in smm.history_])
    assert np.all(np.diff(obj) >= -1e-9 * np.abs(obj[:-1]))


def test_recovers_planted_heavy_tailed_clusters():
    rng = np.random.default_rng(3)
    d = 5
    locs = 12.0 * np.eye(d)[:4]
    x = np.vstack([_mvt(rng, 150, loc, np.ones(d), nu=3.0) for loc in locs])
    y = np.repeat(np.arange(4), 150)
    smm = StudentTMixture(4, random_state=0).fit(x, max_iter=100)
    assert adjusted_rand_score(y, smm.predict(x)) > 0.95
    assert smm.converged_
    assert np.allclose(smm.weights_, 0.25, atol=0.02)


@pytest.mark.parametrize("nu", [3.0, 5.0, 10.0])
def test_dof_estimate_recovers_true_dof(nu):
    rng = np.random.default_rng(int(nu))
    x = _mvt(rng, 20000, np.zeros(6), np.ones(6), nu)
    smm = StudentTMixture(1, random_state=0).fit(x, max_iter=200, tol=0.0)
    assert 0.6 * nu <= smm.dof_[0] <= 1.8 * nu  # ν = 5 → [3, 9]


def test_dof_stays_in_bounds_for_gaussian_data():
    x = np.random.default_rng(0).normal(size=(3000, 3))
    smm = StudentTMixture(1, dof_bounds=(2.01, 50.0)).fit(x, max_iter=50, tol=0.0)
    assert 2.01 <= smm.dof_[0] <= 50.0
    assert smm.dof_[0] > 20  # Gaussian data push ν to the upper end


def test_reseeding_fills_empty_clusters():
    rng = np.random.default_rng(0)
    x = np.vstack([_mvt(rng, 200, loc, np.ones(2), 5.0) for loc in ([0, 0], [10, 0], [0, 10])])
    smm = StudentTMixture(3, random_state=0).initialize(x)
    state = smm.state_dict()
    state["means"][2] = [1e4, 1e4]  # a component nobody belongs to
    smm.load_state_dict(state)
    assert np.unique(smm.predict(x)).size == 2
    smm.fit(x, max_iter=0)
    assert smm.history_[0]["reseeded"] == 1
    assert np.unique(smm.labels_).size == 3
    smm.fit(x, max_iter=20)
    assert np.unique(smm.predict(x)).size == 3


def test_posterior_gradients_reach_z():
    x, _ = _mixture(0, k=3, d=4)
    smm = StudentTMixture(3, random_state=0).fit(x, max_iter=10)
    z = torch.tensor(x[:20], dtype=torch.float64, requires_grad=True)
    q = smm_posterior(z, smm.params)
    np.testing.assert_allclose(q.detach().numpy(), smm.predict_proba(x[:20]), atol=1e-10)
    (q * torch.randn(q.shape, dtype=q.dtype, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad.abs().sum() > 0
    # analytic gradient of the log density is right
    torch.autograd.gradcheck(lambda t: smm_log_prob(t, smm.params), (z.detach()[:5].requires_grad_(),))
    # parameters are held fixed: float32 torch params do not require grad either
    p32 = smm.params.to_torch(torch.float32)
    assert not any(v.requires_grad for v in p32)


def test_state_dict_round_trip_and_determinism():
    x, _ = _mixture(1)
    a = StudentTMixture(3, random_state=7).fit(x, max_iter=20)
    b = StudentTMixture(3, random_state=7).fit(x, max_iter=20)
    for key, val in a.state_dict().items():
        np.testing.assert_array_equal(val, b.state_dict()[key])
    c = StudentTMixture(3).load_state_dict(a.state_dict())
    np.testing.assert_allclose(c.predict_proba(x), a.predict_proba(x))
    assert c.map_objective(x) == pytest.approx(a.map_objective(x))
    assert a.log_prob(x).shape == (x.shape[0],)
    assert a.score(x) == pytest.approx(a.log_prob(x).mean())


def test_minibatch_init_and_torch_input():
    x, y = _mixture(2, sep=8.0)
    smm = StudentTMixture(3, init="minibatch", random_state=0).fit(torch.as_tensor(x, dtype=torch.float32))
    assert adjusted_rand_score(y, smm.labels_) > 0.9


def test_validation_messages():
    with pytest.raises(ValueError, match="alpha0"):
        StudentTMixture(2, alpha0=0.5)
    with pytest.raises(ValueError, match="dof_init"):
        StudentTMixture(2, dof_init=1.0)
    smm = StudentTMixture(5)
    with pytest.raises(ValueError, match="at least n_components"):
        smm.fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        smm.fit(np.full((10, 2), np.nan))
    with pytest.raises(RuntimeError, match="fit"):
        smm.predict(np.zeros((3, 2)))
    x, _ = _mixture(0)
    smm = StudentTMixture(3).fit(x, max_iter=2)
    with pytest.raises(ValueError, match="dimensions"):
        smm.predict(np.zeros((3, 7)))
    with pytest.raises(ValueError, match="dimensions"):
        smm_log_prob(torch.zeros(3, 7), smm.params)
