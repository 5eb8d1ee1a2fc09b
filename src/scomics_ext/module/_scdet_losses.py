"""scDET losses (paper eqs 1-9).

Reconstruction, cross-view self-training, distribution regulariser, logit adjustment, class-balanced
sampling and the (supervised / unsupervised / soft) contrastive losses.

Every function works on plain tensors; none sees AnnData. Conventions: ``logits`` are the
classifier's cosine logits ``h·μ/τ`` over the ``K`` classes (seen classes first), ``labels`` are
integer class ids with ``-1`` for unlabelled (query) cells, projections ``v`` are L2-normalised.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "adjusted_probabilities",
    "balanced_selection",
    "contrastive_loss",
    "cross_view_ce",
    "distribution_kl",
    "label_positives",
    "mse_loss",
    "sampling_rates",
    "smoothed_prior",
    "soft_contrastive_loss",
    "supervised_ce",
    "swap_bce",
    "two_view_positives",
    "zinb_nll",
]

_EPS = 1e-12


def zinb_nll(counts: Tensor, mu: Tensor, theta: Tensor, zi_logits: Tensor) -> Tensor:
    """Zero-inflated negative-binomial negative log-likelihood, averaged over cells and genes.

    Uses :class:`scvi.distributions.ZeroInflatedNegativeBinomial` (``mu``/``theta`` parametrisation).
    Averaging over all ``N x G`` entries (as scGAD does) keeps the term on the scale of the other
    losses whatever the number of genes.

    Parameters
    ----------
    counts
        ``(N, G)`` observed counts.
    mu
        ``(N, G)`` means (``size factor x decoded proportions``).
    theta
        ``(G,)`` or ``(N, G)`` inverse dispersions (``> 0``).
    zi_logits
        ``(N, G)`` logits of the zero-inflation probability.

    Returns
    -------
    Scalar tensor.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import zinb_nll
    >>> x = torch.tensor([[0.0, 3.0]])
    >>> float(
    ...     zinb_nll(x, torch.tensor([[1.0, 3.0]]), torch.tensor([10.0, 10.0]), torch.full((1, 2), -5.0))
    ... ) > 0
    True
    """
    from scvi.distributions import ZeroInflatedNegativeBinomial

    theta = theta.expand_as(mu)
    dist = ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=zi_logits, validate_args=False)
    return -dist.log_prob(counts).mean()


def mse_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean squared reconstruction error over all entries (fallback when no counts are available).

    Parameters
    ----------
    x, x_hat
        ``(N, G)`` clean input and reconstruction.

    Returns
    -------
    Scalar tensor.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import mse_loss
    >>> float(mse_loss(torch.zeros(2, 2), torch.ones(2, 2)))
    1.0
    """
    return F.mse_loss(x_hat, x)


def swap_bce(mask_logits: Tensor, mask: Tensor) -> Tensor:
    """Binary cross-entropy of the "mask" head predicting which entries of ``x̃`` were swapped.

    Parameters
    ----------
    mask_logits
        ``(N, G)`` logits of the mask head on the swapped view.
    mask
        ``(N, G)`` 0/1 (or bool) swapped-entry indicator (from :func:`~scomics_ext.module._scdet.feature_swap`).

    Returns
    -------
    Scalar tensor (mean over entries).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import swap_bce
    >>> round(float(swap_bce(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))), 4)
    0.6931
    """
    return F.binary_cross_entropy_with_logits(mask_logits, mask.to(mask_logits.dtype))


def supervised_ce(logits: Tensor, logits_tilde: Tensor, labels: Tensor) -> Tensor:
    """``L_r`` (eq 3): ``½·mean_ref[CE(y, p) + CE(y, p̃)]`` over the labelled cells.

    Parameters
    ----------
    logits, logits_tilde
        ``(N, K)`` classifier logits of the two views.
    labels
        ``(N,)`` class ids, ``-1`` for unlabelled cells (ignored).

    Returns
    -------
    Scalar tensor (0 when no cell is labelled).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import supervised_ce
    >>> logits = torch.zeros(3, 2)
    >>> round(float(supervised_ce(logits, logits, torch.tensor([0, 1, -1]))), 4)
    0.6931
    """
    lab = labels >= 0
    if not bool(lab.any()):
        return logits.new_zeros(())
    y = labels[lab]
    return 0.5 * (F.cross_entropy(logits[lab], y) + F.cross_entropy(logits_tilde[lab], y))


def _soft_ce(target: Tensor, logits: Tensor) -> Tensor:
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def cross_view_ce(logits: Tensor, logits_tilde: Tensor, sharpen: float) -> Tensor:
    """``L_t`` (eq 4): cross-view self-training with sharpened soft pseudo-labels.

    ``q = softmax(sharpen·logits)`` (i.e. the cosine logits at the sharper temperature
    ``τ̂ = τ / sharpen``), detached; ``L_t = ½·mean[CE(q̃, p) + CE(q, p̃)]``.

    Parameters
    ----------
    logits, logits_tilde
        ``(N, K)`` logits of the unlabelled cells' two views.
    sharpen
        ``τ / τ̂ >= 1``.

    Returns
    -------
    Scalar tensor (0 for an empty input).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import cross_view_ce
    >>> round(float(cross_view_ce(torch.zeros(2, 4), torch.zeros(2, 4), 2.0)), 4)
    1.3863
    """
    if logits.shape[0] == 0:
        return logits.new_zeros(())
    q = F.softmax(sharpen * logits.detach(), dim=-1)
    q_tilde = F.softmax(sharpen * logits_tilde.detach(), dim=-1)
    return 0.5 * (_soft_ce(q_tilde, logits) + _soft_ce(q, logits_tilde))


def smoothed_prior(pi: Tensor, rho: float) -> Tensor:
    """The regularisation target ``π^ρ`` renormalised to sum to one.

    Parameters
    ----------
    pi
        ``(K,)`` estimated class distribution.
    rho
        Smoothing exponent (``0``: uniform; ``1``: ``pi`` itself).

    Returns
    -------
    ``(K,)`` target distribution.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import smoothed_prior
    >>> [round(v, 4) for v in smoothed_prior(torch.tensor([0.8, 0.2]), 0.5).tolist()]
    [0.6667, 0.3333]
    """
    t = pi.clamp_min(_EPS).pow(rho)
    return t / t.sum()


def distribution_kl(logits: Tensor, logits_tilde: Tensor, prior: Tensor) -> Tensor:
    """``L_reg`` (eq 5): ``KL(mean_i p_i ‖ prior) + KL(mean_i p̃_i ‖ prior)``.

    Parameters
    ----------
    logits, logits_tilde
        ``(N, K)`` logits of all cells of the batch (both views).
    prior
        ``(K,)`` target distribution, e.g. :func:`smoothed_prior` of the estimated ``π``.

    Returns
    -------
    Scalar tensor.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import distribution_kl
    >>> float(distribution_kl(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0.5, 0.5])))
    0.0
    """
    total = logits.new_zeros(())
    log_prior = prior.clamp_min(_EPS).log()
    for lg in (logits, logits_tilde):
        p_mean = F.softmax(lg, dim=-1).mean(0)
        total = total + (p_mean * (p_mean.clamp_min(_EPS).log() - log_prior)).sum()
    return total


def adjusted_probabilities(logits: Tensor, pi: Tensor, gamma: float) -> Tensor:
    """Rectified predictions (eq 7): ``p̂ = softmax(logits − γ·log π)`` (post-hoc logit adjustment).

    Parameters
    ----------
    logits
        ``(N, K)`` cosine logits ``h·μ/τ``.
    pi
        ``(K,)`` estimated class frequencies.
    gamma
        Adjustment strength ``γ`` (0 = no adjustment).

    Returns
    -------
    ``(N, K)`` probabilities.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import adjusted_probabilities
    >>> adjusted_probabilities(torch.zeros(1, 2), torch.tensor([0.8, 0.2]), 1.0).tolist()
    [[0.20000000298023224, 0.800000011920929]]
    """
    return F.softmax(logits - gamma * pi.clamp_min(_EPS).log(), dim=-1)


def sampling_rates(pi: Tensor, in_batch: Tensor, alpha: float, beta: float) -> Tensor:
    """Class-wise sampling rates (eq 8): ``SR_c = (π_c / min π)^(−α)`` for ``c ∈ C_B`` else ``^(−β)``.

    Parameters
    ----------
    pi
        ``(K,)`` estimated class frequencies.
    in_batch
        ``(K,)`` bool, class present among the batch's reference labels (``C_B``).
    alpha, beta
        Exponents in ``[0, 1]``.

    Returns
    -------
    ``(K,)`` rates in ``(0, 1]``.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import sampling_rates
    >>> sampling_rates(torch.tensor([0.4, 0.1, 0.5]), torch.tensor([True, False, False]), 0.5, 1.0).tolist()
    [0.5, 1.0, 0.20000000298023224]
    """
    pi = pi.clamp_min(_EPS)
    ratio = pi / pi.min()
    exponent = torch.where(in_batch, torch.full_like(pi, -alpha), torch.full_like(pi, -beta))
    return ratio.pow(exponent)


def balanced_selection(p_hat: Tensor, rates: Tensor) -> Tensor:
    """Class-balanced confident sampling ``M(D_t)``.

    Per predicted class ``c``, keep the ``ceil(SR_c · n_c)`` cells with the highest confidence ``max p̂``.

    Parameters
    ----------
    p_hat
        ``(N, K)`` rectified predictions of the unlabelled cells.
    rates
        ``(K,)`` sampling rates from :func:`sampling_rates`.

    Returns
    -------
    ``(N,)`` bool mask of the selected cells.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import balanced_selection
    >>> p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    >>> balanced_selection(p, torch.tensor([0.5, 1.0])).tolist()
    [True, False, True, True]
    """
    n = p_hat.shape[0]
    keep = torch.zeros(n, dtype=torch.bool, device=p_hat.device)
    if n == 0:
        return keep
    conf, pred = p_hat.max(dim=1)
    for c in torch.unique(pred).tolist():
        members = torch.nonzero(pred == c, as_tuple=False).flatten()
        n_keep = math.ceil(float(rates[c]) * members.numel() - 1e-6)
        if n_keep <= 0:
            continue
        order = torch.argsort(conf[members], descending=True, stable=True)
        keep[members[order[:n_keep]]] = True
    return keep


def contrastive_loss(features: Tensor, positives: Tensor, temperature: float) -> Tensor:
    r"""The general contrastive loss of eq 1 (SupCon form).

    .. math::

        L = \frac{1}{|D'|}\sum_{i \in D'} \frac{1}{|P(i)|} \sum_{j\in P(i)}
        -\log\frac{\exp(v_i\cdot v_j/\tau)}{\sum_{a \ne i}\exp(v_i\cdot v_a/\tau)}

    over the anchors :math:`D'` that have at least one positive.

    Parameters
    ----------
    features
        ``(M, d)`` L2-normalised features (e.g. both views stacked).
    positives
        ``(M, M)`` bool, ``positives[i, j]`` when ``j`` is a positive of ``i`` (the diagonal is ignored).
        Two views: ``j = i ± N``; supervised: same label.
    temperature
        ``τ``.

    Returns
    -------
    Scalar tensor (0 when no anchor has a positive).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import contrastive_loss
    >>> v = torch.eye(2).repeat(2, 1)  # two cells, two identical views each
    >>> pos = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    >>> round(float(contrastive_loss(v, pos, 1.0)), 4)
    0.5514
    """
    m = features.shape[0]
    if m < 2:
        return features.new_zeros(())
    eye = torch.eye(m, dtype=torch.bool, device=features.device)
    pos = positives & ~eye
    n_pos = pos.sum(1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        return features.new_zeros(())
    sim = features @ features.T / temperature
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    log_prob = log_prob.masked_fill(eye, 0.0)
    per_anchor = -(log_prob * pos).sum(1)[anchors] / n_pos[anchors]
    return per_anchor.mean()


def two_view_positives(n: int, device: torch.device | None = None) -> Tensor:
    """``(2n, 2n)`` positives of the unsupervised loss: each view's partner view (``i ± n``).

    Examples
    --------
    >>> from scomics_ext.module._scdet_losses import two_view_positives
    >>> two_view_positives(1).int().tolist()
    [[0, 1], [1, 0]]
    """
    idx = torch.arange(2 * n, device=device)
    partner = (idx + n) % (2 * n)
    return partner[None, :] == idx[:, None]


def label_positives(labels: Tensor) -> Tensor:
    """``(M, M)`` positives of the supervised loss: same label (the diagonal is ignored downstream).

    Parameters
    ----------
    labels
        ``(M,)`` integer class labels.

    Returns
    -------
    ``(M, M)`` boolean matrix, ``True`` where two cells share a label.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import label_positives
    >>> label_positives(torch.tensor([0, 1, 0])).int().tolist()
    [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    """
    return labels[:, None] == labels[None, :]


def soft_contrastive_loss(v: Tensor, v_tilde: Tensor, weights: Tensor, temperature: float) -> Tensor:
    r"""Soft contrastive loss (eq 9) with positiveness scores ``w_ij``.

    .. math::

        L = \frac{1}{|D|}\sum_i \frac{-1}{\sum_{j \ne i} w_{ij}}\sum_{j\ne i} w_{ij}
        \log\frac{\exp(v_i\cdot\tilde v_j/\tau)}{\sum_{a\ne i}\exp(v_i\cdot\tilde v_a/\tau)}

    Anchors whose weights sum to zero are left out.

    Parameters
    ----------
    v, v_tilde
        ``(N, d)`` L2-normalised projections of the two views.
    weights
        ``(N, N)`` non-negative positiveness scores, e.g. ``p̂ p̂ᵀ`` (the diagonal is ignored).
    temperature
        ``τ``.

    Returns
    -------
    Scalar tensor (0 for fewer than two cells).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module._scdet_losses import soft_contrastive_loss
    >>> v = torch.eye(3)
    >>> round(float(soft_contrastive_loss(v, v, torch.ones(3, 3), 1.0)), 4)
    0.6931
    """
    n = v.shape[0]
    if n < 2:
        return v.new_zeros(())
    eye = torch.eye(n, dtype=torch.bool, device=v.device)
    w = weights.masked_fill(eye, 0.0)
    w_sum = w.sum(1)
    anchors = w_sum > _EPS
    if not bool(anchors.any()):
        return v.new_zeros(())
    sim = (v @ v_tilde.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = (sim - torch.logsumexp(sim, dim=1, keepdim=True)).masked_fill(eye, 0.0)
    per_anchor = -(w * log_prob).sum(1)[anchors] / w_sum[anchors]
    return per_anchor.mean()
