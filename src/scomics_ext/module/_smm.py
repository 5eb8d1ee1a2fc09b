"""Student's t mixture model with diagonal scales, fitted by MAP-EM (DARLC, method note §1.6).

Two halves:

* :class:`StudentTMixture` runs the EM in float64 numpy on detached embeddings. Its state is a handful of
  plain arrays (:meth:`StudentTMixture.state_dict`), so a model class can save and reload it.
* :func:`smm_log_prob` / :func:`smm_posterior` evaluate ``log π_k t(z | θ_k)`` and the posterior
  ``q_ik`` in torch from the *current* embeddings with ``θ`` held fixed, so that likelihood and DEC losses
  send gradients to the encoder (the reference code's detached EM posterior gives none).

Model and priors (all variances are per dimension, ``Σ_k = diag(σ²_k)``)::

    z_i ~ Σ_k π_k t_{ν_k}(μ_k, Σ_k)
    π ~ Dirichlet(α0 · 1_K)                        α0 = 1 by default (flat)
    μ_k flat                                        NIW with κ0 = 0
    σ²_kd ~ scaled-inverse-χ²: log p = -(ρ̂0/2) log σ²_kd - s0_d / (2 σ²_kd)
    s0 = K^(-1/D) · var(Z) + reg_covar,  ρ̂0 = 2 (D + 2)

The variance prior is the diagonal reading of the note's NIW (κ0 = 0, ``S0``, ``ρ̂0``): it is the prior whose
MAP M-step is exactly ``σ²_k = (s0 + diag(S_k) ) / (ρ̂0 + n_k)``, with ``reg_covar`` folded into ``s0`` so
that :meth:`StudentTMixture.map_objective` is the quantity every EM iteration provably does not decrease.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from scipy.special import digamma, gammaln
from torch import Tensor

__all__ = [
    "SMMParams",
    "StudentTMixture",
    "smm_log_prob",
    "smm_posterior",
    "student_t_log_density",
]

_LOG_PI = math.log(math.pi)
_TINY = 1e-12


class SMMParams(NamedTuple):
    """Parameters of a diagonal Student's t mixture with ``K`` components in ``D`` dimensions.

    Attributes
    ----------
    means
        Locations ``μ``, shape ``(K, D)``.
    variances
        Diagonal scale matrices ``σ²`` (not covariances: ``Cov = ν/(ν-2) σ²``), shape ``(K, D)``.
    weights
        Mixing proportions ``π``, shape ``(K,)``, summing to 1.
    dof
        Degrees of freedom ``ν``, shape ``(K,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.module import SMMParams
    >>> p = SMMParams(np.zeros((2, 3)), np.ones((2, 3)), np.array([0.5, 0.5]), np.array([3.0, 3.0]))
    >>> p.to_torch().means.shape
    torch.Size([2, 3])
    """

    means: Any
    variances: Any
    weights: Any
    dof: Any

    def to_torch(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> SMMParams:
        """The same parameters as torch tensors (no gradient).

        Parameters
        ----------
        dtype
            Floating dtype.
        device
            Target device.

        Returns
        -------
        :class:`SMMParams` of tensors.

        Examples
        --------
        >>> import numpy as np
        >>> from scomics_ext.module import SMMParams
        >>> p = SMMParams(np.zeros((2, 3)), np.ones((2, 3)), np.full(2, 0.5), np.full(2, 3.0))
        >>> p.to_torch().means.shape
        torch.Size([2, 3])
        """
        return SMMParams(
            *(
                (v.detach() if isinstance(v, Tensor) else torch.as_tensor(np.asarray(v))).to(
                    dtype=dtype, device=device
                )
                for v in self
            )
        )


# ------------------------------------------------------------------------------------------------------
# densities
# ------------------------------------------------------------------------------------------------------
def _mahalanobis_np(x: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """``δ_ik = Σ_d (x_id - μ_kd)² / σ²_kd`` via three matrix products (float64)."""
    prec = 1.0 / variances
    delta = (x * x) @ prec.T - 2.0 * x @ (means * prec).T + np.sum(means * means * prec, axis=1)[None, :]
    return np.maximum(delta, 0.0)


def _t_log_norm(dim: int, variances: Any, dof: Any, lib: Any) -> Any:
    """Log normalising constant of the diagonal t density, one per component."""
    if lib is np:
        return (
            gammaln((dof + dim) / 2.0)
            - gammaln(dof / 2.0)
            - 0.5 * dim * (np.log(dof) + _LOG_PI)
            - 0.5 * np.log(variances).sum(axis=1)
        )
    return (
        torch.lgamma((dof + dim) / 2.0)
        - torch.lgamma(dof / 2.0)
        - 0.5 * dim * (torch.log(dof) + _LOG_PI)
        - 0.5 * torch.log(variances).sum(dim=1)
    )


def student_t_log_density(
    x: np.ndarray, means: np.ndarray, variances: np.ndarray, dof: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log density of diagonal multivariate Student's t components (float64 numpy).

    ``log t(x | μ, diag(σ²), ν) = log Γ((ν+D)/2) - log Γ(ν/2) - D/2 log(νπ) - ½ Σ_d log σ²_d
    - (ν+D)/2 · log(1 + δ/ν)`` with ``δ = Σ_d (x_d - μ_d)²/σ²_d``.

    Parameters
    ----------
    x
        Points, shape ``(N, D)``.
    means
        Locations, shape ``(K, D)``.
    variances
        Diagonal scales ``σ²``, shape ``(K, D)``.
    dof
        Degrees of freedom, shape ``(K,)``.

    Returns
    -------
    log_density
        Shape ``(N, K)``.
    mahalanobis
        The squared Mahalanobis distances ``δ``, shape ``(N, K)``.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.module import student_t_log_density
    >>> ld, _ = student_t_log_density(np.zeros((1, 1)), np.zeros((1, 1)), np.ones((1, 1)), np.array([1.0]))
    >>> bool(np.isclose(ld[0, 0], -np.log(np.pi)))  # Cauchy density at its centre
    True
    """
    x = np.asarray(x, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    dof = np.asarray(dof, dtype=np.float64)
    dim = x.shape[1]
    delta = _mahalanobis_np(x, means, variances)
    log_norm = _t_log_norm(dim, variances, dof, np)
    return log_norm[None, :] - 0.5 * (dof + dim)[None, :] * np.log1p(delta / dof[None, :]), delta


def _as_torch_params(params: SMMParams | Mapping[str, Any], like: Tensor) -> SMMParams:
    if not isinstance(params, SMMParams):
        params = SMMParams(params["means"], params["variances"], params["weights"], params["dof"])
    return params.to_torch(dtype=like.dtype, device=like.device)


def smm_log_prob(z: Tensor, params: SMMParams | Mapping[str, Any]) -> Tensor:
    """Differentiable ``log π_k + log t(z_i | μ_k, σ²_k, ν_k)`` with the mixture parameters held fixed.

    The parameters are detached and cast to ``z``'s dtype and device; gradients reach ``z`` only (θ is
    fitted by EM, not by the optimiser). The Mahalanobis distance is computed by matrix products, so memory
    is ``O(N·K)``, never ``O(N·K·D)``.

    Parameters
    ----------
    z
        Embeddings, shape ``(N, D)``.
    params
        :class:`SMMParams` (numpy or torch), e.g. :attr:`StudentTMixture.params`, or a mapping with the
        same field names.

    Returns
    -------
    Tensor of shape ``(N, K)``; ``logsumexp`` over ``K`` is the per-sample mixture log-likelihood.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from scomics_ext.module import SMMParams, smm_log_prob
    >>> p = SMMParams(np.zeros((2, 2)), np.ones((2, 2)), np.full(2, 0.5), np.full(2, 3.0))
    >>> z = torch.zeros(4, 2, requires_grad=True)
    >>> smm_log_prob(z, p).shape
    torch.Size([4, 2])
    """
    if z.ndim != 2:
        raise ValueError(f"z must have shape (N, D), got {tuple(z.shape)}")
    p = _as_torch_params(params, z)
    if p.means.shape[1] != z.shape[1]:
        raise ValueError(f"z has {z.shape[1]} dimensions but the mixture has {p.means.shape[1]}")
    dim = z.shape[1]
    prec = 1.0 / p.variances
    delta = (z * z) @ prec.T - 2.0 * z @ (p.means * prec).T + (p.means * p.means * prec).sum(1)[None, :]
    delta = delta.clamp_min(0.0)
    log_norm = _t_log_norm(dim, p.variances, p.dof, torch)
    log_t = log_norm[None, :] - 0.5 * (p.dof + dim)[None, :] * torch.log1p(delta / p.dof[None, :])
    return torch.log(p.weights.clamp_min(_TINY))[None, :] + log_t


def smm_posterior(z: Tensor, params: SMMParams | Mapping[str, Any], *, log: bool = False) -> Tensor:
    """Differentiable posterior ``q_ik ∝ π_k t(z_i | θ_k)`` from the current embeddings (θ fixed).

    Parameters
    ----------
    z
        Embeddings, shape ``(N, D)``.
    params
        Mixture parameters (see :func:`smm_log_prob`).
    log
        Return ``log q`` (a log-softmax, numerically safer for KL losses).

    Returns
    -------
    Tensor of shape ``(N, K)`` whose rows sum to 1 (or log-sum-exp to 0).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from scomics_ext.module import SMMParams, smm_posterior
    >>> p = SMMParams(np.array([[0.0], [4.0]]), np.ones((2, 1)), np.full(2, 0.5), np.full(2, 3.0))
    >>> q = smm_posterior(torch.tensor([[0.0], [4.0]]), p)
    >>> q.argmax(1).tolist(), torch.allclose(q.sum(1), torch.ones(2))
    ([0, 1], True)
    """
    logp = smm_log_prob(z, params)
    return torch.log_softmax(logp, dim=1) if log else torch.softmax(logp, dim=1)


# ------------------------------------------------------------------------------------------------------
# the EM
# ------------------------------------------------------------------------------------------------------
def _dof_root(c: np.ndarray, lo: float, hi: float, n_bisect: int = 100) -> np.ndarray:
    """Solve ``log(ν/2) - ψ(ν/2) + 1 + c = 0`` for every entry of ``c`` by bisection on ``[lo, hi]``.

    ``g(ν) = log(ν/2) - ψ(ν/2)`` decreases from +∞ to 0, so the left side is decreasing in ``ν`` and the
    root is unique when it exists; otherwise the nearer bound is returned (the constrained maximiser of
    the concave ``ν``-part of the EM objective).
    """

    def f(nu: np.ndarray) -> np.ndarray:
        return np.log(nu / 2.0) - digamma(nu / 2.0) + 1.0 + c

    a = np.full_like(c, math.log(lo))
    b = np.full_like(c, math.log(hi))
    f_lo, f_hi = f(np.exp(a)), f(np.exp(b))
    for _ in range(n_bisect):  # bisection in log ν: same relative accuracy at 2 and at 200
        m = 0.5 * (a + b)
        pos = f(np.exp(m)) > 0.0
        a = np.where(pos, m, a)
        b = np.where(pos, b, m)
    nu = np.exp(0.5 * (a + b))
    nu = np.where(f_lo <= 0.0, lo, nu)
    return np.where(f_hi >= 0.0, hi, nu)


def _normalize_log_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``logsumexp`` and softmax of ``a`` in one pass (``-inf`` entries allowed)."""
    m = a.max(axis=1, keepdims=True)
    e = np.exp(a - m)
    s = e.sum(axis=1, keepdims=True)
    e /= s
    return (m + np.log(s))[:, 0], e


class _EStep(NamedTuple):
    resp: np.ndarray  # ξ, (N, K)
    zeta: np.ndarray  # ζ, (N, K)
    log_lik: np.ndarray  # per-sample log Σ_k π_k t, (N,)
    labels: np.ndarray  # argmax ξ, (N,)


class StudentTMixture:
    """Student's t mixture with diagonal scales fitted by MAP-EM (DARLC method note §1.6).

    EM in float64 on a fixed data matrix: the E-step uses the multivariate t density (log space) and the
    latent scales ``ζ_ik = (ν_k + D)/(ν_k + δ_ik)``; the M-step updates ``π`` (Dirichlet MAP), ``μ``
    (``ξζ``-weighted means), the variances (inverse-χ² MAP, see the module docstring) and ``ν`` (ECM step:
    bisection on the Peel & McLachlan root equation, clipped to ``dof_bounds``). Empty clusters are
    re-seeded from a random large cluster. Without re-seeding every iteration does not decrease
    :meth:`map_objective`.

    Parameters
    ----------
    n_components
        Number of clusters ``K``.
    dof_init
        Initial degrees of freedom ``ν`` (the note: 3).
    update_dof
        Run the ``ν`` step (else ``ν`` stays at ``dof_init``).
    dof_bounds
        Clip range of ``ν``.
    alpha0
        Dirichlet concentration ``α0 ≥ 1`` (1: ``π_k = n_k / N``).
    prior_dof
        ``ρ̂0``, pseudo-count of the variance prior; ``None`` gives ``2 (D + 2)``.
    prior_scale_power
        ``s0 = K^(-power/D) · var(Z)``; 1 as in the note (Fraley & Raftery use 2).
    reg_covar
        Added to ``s0`` (the note's ``+1e-6``); also the floor of the initial variances.
    init
        ``"kmeans"`` (``sklearn.cluster.KMeans``) or ``"minibatch"`` (``MiniBatchKMeans``, batch 256, as
        in the reference code; faster for large ``N·K``).
    kmeans_n_init
        Restarts of k-means.
    reseed_empty
        Re-seed components that own no point after an E-step.
    big_cluster_fraction
        A cluster may donate to an empty one if it holds more than ``⌊fraction·N⌋`` points (note: 1/50).
    random_state
        Seed of k-means and of the re-seeding draws.

    Attributes
    ----------
    means_
        Fitted locations ``(K, D)`` (see :class:`SMMParams`).
    variances_
        Fitted diagonal scales ``(K, D)``.
    weights_
        Fitted mixing proportions ``(K,)``.
    dof_
        Fitted degrees of freedom ``(K,)``.
    prior_scale_
        ``s0`` (with ``reg_covar``) of the last :meth:`fit`.
    prior_dof_
        ``ρ̂0`` of the last :meth:`fit`.
    labels_
        Hard labels of the last E-step in :meth:`fit`.
    n_iter_
        EM iterations run by the last :meth:`fit`.
    converged_
        Whether the label-change criterion was met in the last :meth:`fit`.
    history_
        One dict per E-step of the last :meth:`fit`: ``map_objective``, ``log_likelihood`` (sum),
        ``changed`` (label-change fraction), ``reseeded`` (number of re-seeded components).

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.module import StudentTMixture
    >>> rng = np.random.default_rng(0)
    >>> x = np.vstack([rng.standard_t(5, (100, 2)), rng.standard_t(5, (100, 2)) + 10])
    >>> smm = StudentTMixture(2, random_state=0).fit(x)
    >>> np.bincount(smm.predict(x)).tolist()
    [100, 100]
    """

    def __init__(
        self,
        n_components: int,
        *,
        dof_init: float = 3.0,
        update_dof: bool = True,
        dof_bounds: tuple[float, float] = (2.01, 200.0),
        alpha0: float = 1.0,
        prior_dof: float | None = None,
        prior_scale_power: float = 1.0,
        reg_covar: float = 1e-6,
        init: Literal["kmeans", "minibatch"] = "kmeans",
        kmeans_n_init: int = 10,
        reseed_empty: bool = True,
        big_cluster_fraction: float = 1 / 50,
        random_state: int = 0,
    ) -> None:
        if int(n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        lo, hi = map(float, dof_bounds)
        if not 0 < lo < hi:
            raise ValueError(f"dof_bounds must satisfy 0 < low < high, got {dof_bounds}")
        if not lo <= dof_init <= hi:
            raise ValueError(f"dof_init={dof_init} lies outside dof_bounds={dof_bounds}")
        if alpha0 < 1:
            raise ValueError(f"alpha0 must be >= 1 (a proper MAP for the weights), got {alpha0}")
        if init not in ("kmeans", "minibatch"):
            raise ValueError(f"init must be 'kmeans' or 'minibatch', got {init!r}")
        self.n_components = int(n_components)
        self.dof_init = float(dof_init)
        self.update_dof = bool(update_dof)
        self.dof_bounds = (lo, hi)
        self.alpha0 = float(alpha0)
        self.prior_dof = None if prior_dof is None else float(prior_dof)
        self.prior_scale_power = float(prior_scale_power)
        self.reg_covar = float(reg_covar)
        self.init = init
        self.kmeans_n_init = int(kmeans_n_init)
        self.reseed_empty = bool(reseed_empty)
        self.big_cluster_fraction = float(big_cluster_fraction)
        self.random_state = int(random_state)
        self._rng = np.random.default_rng(self.random_state)
        self.means_: np.ndarray | None = None
        self.variances_: np.ndarray | None = None
        self.weights_: np.ndarray | None = None
        self.dof_: np.ndarray | None = None
        self.prior_scale_: np.ndarray | None = None
        self.prior_dof_: float | None = None
        self.labels_: np.ndarray | None = None
        self.n_iter_: int = 0
        self.converged_: bool = False
        self.history_: list[dict[str, float]] = []

    # -- state ----------------------------------------------------------------------------------------
    @property
    def is_initialized(self) -> bool:
        """Whether parameters exist (after :meth:`initialize`, :meth:`fit` or :meth:`load_state_dict`)."""
        return self.means_ is not None

    @property
    def params(self) -> SMMParams:
        """Current parameters as an :class:`SMMParams` of float64 arrays (copies)."""
        self._check_initialized()
        return SMMParams(self.means_.copy(), self.variances_.copy(), self.weights_.copy(), self.dof_.copy())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Fitted state as plain arrays (parameters and the prior of the last fit).

        Returns
        -------
        Dict with ``means``, ``variances``, ``weights``, ``dof`` and, when set, ``prior_scale`` and
        ``prior_dof``.
        """
        self._check_initialized()
        out = {k: v.copy() for k, v in self.params._asdict().items()}
        if self.prior_scale_ is not None:
            out["prior_scale"] = self.prior_scale_.copy()
            out["prior_dof"] = np.asarray(self.prior_dof_, dtype=np.float64)
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> StudentTMixture:
        """Set the parameters from :meth:`state_dict` output (or any mapping with the same keys).

        Parameters
        ----------
        state
            At least ``means``, ``variances``, ``weights``, ``dof``.

        Returns
        -------
        ``self``.
        """
        means = np.array(state["means"], dtype=np.float64)
        variances = np.array(state["variances"], dtype=np.float64)
        weights = np.array(state["weights"], dtype=np.float64)
        dof = np.array(state["dof"], dtype=np.float64)
        k = self.n_components
        if means.ndim != 2 or means.shape[0] != k or variances.shape != means.shape:
            raise ValueError(
                f"means/variances must both have shape ({k}, D), got {means.shape}, {variances.shape}"
            )
        if weights.shape != (k,) or dof.shape != (k,):
            raise ValueError(f"weights and dof must have shape ({k},), got {weights.shape}, {dof.shape}")
        if np.any(variances <= 0) or np.any(dof <= 0) or np.any(weights < 0):
            raise ValueError("variances and dof must be positive and weights non-negative")
        self.means_, self.variances_, self.dof_ = means, variances, dof
        self.weights_ = weights / weights.sum()
        if "prior_scale" in state:
            self.prior_scale_ = np.array(state["prior_scale"], dtype=np.float64)
            self.prior_dof_ = float(np.asarray(state["prior_dof"]))
        return self

    def _check_initialized(self) -> None:
        if self.means_ is None:
            raise RuntimeError("the mixture has no parameters yet; call fit() or initialize() first")

    def _check_x(self, x: Any) -> np.ndarray:
        if isinstance(x, Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"X must have shape (N, D), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("X contains NaN or infinite values")
        if self.means_ is not None and x.shape[1] != self.means_.shape[1]:
            raise ValueError(f"X has {x.shape[1]} dimensions but the mixture has {self.means_.shape[1]}")
        return x

    # -- prior ----------------------------------------------------------------------------------------
    def _set_prior(self, x: np.ndarray) -> None:
        k, dim = self.n_components, x.shape[1]
        self.prior_scale_ = k ** (-self.prior_scale_power / dim) * x.var(axis=0) + self.reg_covar
        self.prior_dof_ = 2.0 * (dim + 2) if self.prior_dof is None else self.prior_dof

    def log_prior(self) -> float:
        """Log prior density of the current parameters, up to an additive constant.

        ``(α0 - 1) Σ_k log π_k + Σ_kd [-(ρ̂0/2) log σ²_kd - s0_d / (2 σ²_kd)]`` (flat on ``μ`` and ``ν``).

        Returns
        -------
        The log prior (float).
        """
        self._check_initialized()
        if self.prior_scale_ is None:
            raise RuntimeError("no prior yet; call fit() or map_objective(X) first")
        lp = 0.0
        if self.alpha0 != 1.0:
            lp += (self.alpha0 - 1.0) * float(np.sum(np.log(np.maximum(self.weights_, 1e-300))))
        v = self.variances_
        lp += float(np.sum(-0.5 * self.prior_dof_ * np.log(v) - 0.5 * self.prior_scale_[None, :] / v))
        return lp

    # -- initialisation -------------------------------------------------------------------------------
    def initialize(self, x: Any) -> StudentTMixture:
        """Initialise from k-means: ``μ`` = centres, ``π = 1/K``, ``ν = dof_init``, per-cluster variances.

        Clusters with fewer than two members get the variance prior's mode with no data, ``s0/ρ̂0``;
        all variances are floored at ``reg_covar``.

        Parameters
        ----------
        x
            Data, shape ``(N, D)`` with ``N >= K``.

        Returns
        -------
        ``self``.
        """
        from sklearn.cluster import KMeans, MiniBatchKMeans

        x = self._check_x(x)
        n, _ = x.shape
        k = self.n_components
        if n < k:
            raise ValueError(f"need at least n_components={k} samples, got {n}")
        self._set_prior(x)
        if self.init == "kmeans":
            km = KMeans(k, n_init=self.kmeans_n_init, random_state=self.random_state)
        else:
            km = MiniBatchKMeans(k, batch_size=256, n_init=self.kmeans_n_init, random_state=self.random_state)
        labels = km.fit_predict(x)
        means = np.asarray(km.cluster_centers_, dtype=np.float64)
        variances = np.tile(self.prior_scale_ / self.prior_dof_, (k, 1))
        counts = np.bincount(labels, minlength=k)
        for j in np.flatnonzero(counts >= 2):
            variances[j] = x[labels == j].var(axis=0)
        self.means_ = means
        self.variances_ = np.maximum(variances, self.reg_covar)
        self.weights_ = np.full(k, 1.0 / k)
        self.dof_ = np.full(k, self.dof_init)
        self.labels_ = labels
        self._rng = np.random.default_rng(self.random_state)
        return self

    # -- E and M steps --------------------------------------------------------------------------------
    def _weighted_log_prob(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_t, delta = student_t_log_density(x, self.means_, self.variances_, self.dof_)
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights_)
        return log_t + log_w[None, :], delta

    def _e_step(self, x: np.ndarray) -> _EStep:
        wlp, delta = self._weighted_log_prob(x)
        log_lik, resp = _normalize_log_rows(wlp)
        dim = x.shape[1]
        zeta = (self.dof_ + dim)[None, :] / (self.dof_[None, :] + delta)
        return _EStep(resp, zeta, log_lik, resp.argmax(axis=1))

    def _reseed(self, labels: np.ndarray) -> int:
        """Copy a random big cluster into every component that owns no point; number re-seeded."""
        k, n = self.n_components, labels.shape[0]
        counts = np.bincount(labels, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if empty.size == 0:
            return 0
        big = np.flatnonzero(counts > n * self.big_cluster_fraction)
        if big.size == 0:
            big = np.array([int(np.argmax(counts))])
        for j_empty in empty:
            j = int(self._rng.choice(big))
            self.means_[j_empty] = 0.99 * self.means_[j]
            self.weights_[j_empty] = 0.99 * self.weights_[j]
            self.variances_[j_empty] = 0.981 * self.variances_[j]
            self.dof_[j_empty] = float(np.clip(0.99 * self.dof_[j], *self.dof_bounds))
        self.weights_ = self.weights_ / self.weights_.sum()
        return int(empty.size)

    def _m_step(self, x: np.ndarray, e: _EStep) -> None:
        n, dim = x.shape
        k = self.n_components
        nk = e.resp.sum(axis=0)
        w = e.resp * e.zeta
        wk = w.sum(axis=0)
        # π: Dirichlet MAP (α0 >= 1 keeps it non-negative)
        self.weights_ = (nk + self.alpha0 - 1.0) / (n + k * (self.alpha0 - 1.0))
        # μ: ξζ-weighted means; a component with no weight keeps its location
        ok = wk > _TINY
        means = self.means_.copy()
        means[ok] = (w[:, ok].T @ x) / wk[ok, None]
        self.means_ = means
        # σ²: (s0 + Σ_i ξζ (x - μ)²) / (ρ̂0 + n_k); expanded on centred data (less cancellation)
        centre = x.mean(axis=0)
        xc, mc = x - centre, means - centre
        scatter = w.T @ (xc * xc) - 2.0 * mc * (w.T @ xc) + wk[:, None] * mc * mc
        scatter = np.maximum(scatter, 0.0)
        self.variances_ = (self.prior_scale_[None, :] + scatter) / (self.prior_dof_ + nk)[:, None]
        # ν: ECM root of the Peel & McLachlan equation, from the E-step of the current iteration
        if self.update_dof:
            upd = nk > _TINY
            if np.any(upd):
                a = (self.dof_ + dim) / 2.0
                mean_term = (e.resp[:, upd] * (np.log(e.zeta[:, upd]) - e.zeta[:, upd])).sum(0) / nk[upd]
                c = mean_term + digamma(a[upd]) - np.log(a[upd])
                dof = self.dof_.copy()
                dof[upd] = _dof_root(c, *self.dof_bounds)
                self.dof_ = dof

    def _e_step_reseed(self, x: np.ndarray) -> tuple[_EStep, int]:
        e = self._e_step(x)
        n_reseeded = 0
        if self.reseed_empty and self.n_components > 1:
            n_reseeded = self._reseed(e.labels)
            if n_reseeded:
                e = self._e_step(x)
        return e, n_reseeded

    # -- public API -----------------------------------------------------------------------------------
    def fit(self, x: Any, max_iter: int = 100, tol: float = 5e-3) -> StudentTMixture:
        """Run MAP-EM on ``x`` (warm start from the current parameters when they exist).

        An E-step (with re-seeding) is followed by at most ``max_iter`` rounds of (M-step, E-step); the
        loop stops when the fraction of changed hard labels falls below ``tol``. ``max_iter=0`` runs the
        E-step and re-seeding only. The prior ``s0`` is recomputed from ``x`` at every call.

        Parameters
        ----------
        x
            Data, shape ``(N, D)`` (numpy or a torch tensor, which is detached).
        max_iter
            Maximum number of EM rounds (DARLC's epoch level uses 5).
        tol
            Label-change fraction below which EM stops (the note: 5e-3).

        Returns
        -------
        ``self``.
        """
        x = self._check_x(x)
        if self.means_ is None:
            self.initialize(x)
        self._set_prior(x)
        e, n_re = self._e_step_reseed(x)
        ll = float(e.log_lik.sum())
        self.history_ = [
            {"map_objective": ll + self.log_prior(), "log_likelihood": ll, "changed": 1.0, "reseeded": n_re}
        ]
        labels = e.labels
        self.converged_ = False
        self.n_iter_ = 0
        for it in range(int(max_iter)):
            self._m_step(x, e)
            e, n_re = self._e_step_reseed(x)
            changed = float(np.mean(e.labels != labels))
            labels = e.labels
            ll = float(e.log_lik.sum())
            self.history_.append(
                {
                    "map_objective": ll + self.log_prior(),
                    "log_likelihood": ll,
                    "changed": changed,
                    "reseeded": n_re,
                }
            )
            self.n_iter_ = it + 1
            if changed < tol:
                self.converged_ = True
                break
        self.labels_ = labels
        return self

    def weighted_log_prob(self, x: Any) -> np.ndarray:
        """``log π_k + log t(x_i | θ_k)`` for every sample and component, shape ``(N, K)``.

        Parameters
        ----------
        x
            Data, shape ``(N, D)``.

        Returns
        -------
        Array of shape ``(N, K)``.
        """
        self._check_initialized()
        return self._weighted_log_prob(self._check_x(x))[0]

    def log_prob(self, x: Any) -> np.ndarray:
        """Per-sample mixture log density ``log Σ_k π_k t(x_i | θ_k)``.

        Parameters
        ----------
        x
            Data, shape ``(N, D)``.

        Returns
        -------
        Array of shape ``(N,)``.
        """
        return _normalize_log_rows(self.weighted_log_prob(x))[0]

    def score(self, x: Any) -> float:
        """Mean per-sample log-likelihood (as in scikit-learn mixtures).

        Parameters
        ----------
        x
            Data, shape ``(N, D)``.

        Returns
        -------
        The mean of :meth:`log_prob`.
        """
        return float(np.mean(self.log_prob(x)))

    def predict_proba(self, x: Any) -> np.ndarray:
        """Posterior responsibilities ``ξ_ik``, shape ``(N, K)``, rows summing to 1.

        Parameters
        ----------
        x
            Data, shape ``(N, D)``.

        Returns
        -------
        Array of shape ``(N, K)``.
        """
        return _normalize_log_rows(self.weighted_log_prob(x))[1]

    def predict(self, x: Any) -> np.ndarray:
        """Hard labels ``argmax_k ξ_ik``.

        Parameters
        ----------
        x
            Data, shape ``(N, D)``.

        Returns
        -------
        Integer array of shape ``(N,)``.
        """
        return self.weighted_log_prob(x).argmax(axis=1)

    def map_objective(self, x: Any) -> float:
        """Log-likelihood plus log prior, the quantity MAP-EM does not decrease.

        ``Σ_i log Σ_k π_k t(x_i | θ_k) + log p(π) + log p(σ²)`` (up to a constant). If no prior has
        been set yet (parameters loaded without one), it is computed from ``x``.

        Parameters
        ----------
        x
            Data, shape ``(N, D)``.

        Returns
        -------
        The objective (float).
        """
        x = self._check_x(x)
        self._check_initialized()
        if self.prior_scale_ is None:
            self._set_prior(x)
        return float(np.sum(self.log_prob(x))) + self.log_prior()
