"""Implicit semantic data augmentation (ISDA) for CRCT: running class statistics and feature noise.

Paper eqs 5-8. Per pseudo-class ``c`` we keep the count ``n_c``, the mean ``mu_c`` and the (population)
covariance ``Sigma_c`` of the embeddings seen so far, and merge every step's batch statistics exactly::

    n     = n_c + m_c
    mu    = (n_c mu_c + m_c mu_b) / n                                                  (eq 5)
    Sigma = (n_c Sigma_c + m_c Sigma_b) / n + n_c m_c / n^2 (mu_c - mu_b)(mu_c - mu_b)^T  (eq 6)

(Chan et al.'s parallel variance), so that merging batches equals the statistics of their concatenation.
Only the diagonal is kept by default (the paper samples with it, eq 7); the full matrix is optional.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RunningClassStats", "batch_class_stats", "isda_augment"]


def _check_labels(z: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    if z.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d), got shape {tuple(z.shape)}")
    labels = torch.as_tensor(labels, device=z.device).long()
    if labels.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},), got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    return labels


def batch_class_stats(
    z: Tensor, labels: Tensor, n_classes: int, *, full_covariance: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Per-class count, mean, population variance (and covariance) of one batch.

    Parameters
    ----------
    z
        Embeddings ``(n, d)``.
    labels
        Integer labels in ``[0, n_classes)``, shape ``(n,)``.
    n_classes
        Number of classes ``C``.
    full_covariance
        Also return the ``(C, d, d)`` covariance matrices.

    Returns
    -------
    count
        ``(C,)`` class sizes ``m_c`` (in ``z.dtype``).
    mean
        ``(C, d)`` class means (0 for absent classes).
    var
        ``(C, d)`` population variances (divide by ``m_c``; 0 for absent classes).
    cov
        ``(C, d, d)`` population covariances, or ``None``.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import batch_class_stats
    >>> n, mu, var, _ = batch_class_stats(torch.tensor([[0.0], [2.0], [5.0]]), torch.tensor([0, 0, 1]), 3)
    >>> n.tolist(), mu.squeeze(1).tolist(), var.squeeze(1).tolist()
    ([2.0, 1.0, 0.0], [1.0, 5.0, 0.0], [1.0, 0.0, 0.0])
    """
    labels = _check_labels(z, labels, n_classes)
    d = z.shape[1]
    count = torch.zeros(n_classes, dtype=z.dtype, device=z.device).index_add_(
        0, labels, z.new_ones(len(labels))
    )
    sums = torch.zeros(n_classes, d, dtype=z.dtype, device=z.device).index_add_(0, labels, z)
    safe = count.clamp_min(1).unsqueeze(1)
    mean = sums / safe
    centred = z - mean[labels]  # two-pass: numerically stable
    var = torch.zeros_like(sums).index_add_(0, labels, centred * centred) / safe
    cov = None
    if full_covariance:
        cov = torch.zeros(n_classes, d, d, dtype=z.dtype, device=z.device)
        for c in torch.unique(labels).tolist():
            xc = centred[labels == c]
            cov[c] = xc.T @ xc / count[c]
    return count, mean, var, cov


class RunningClassStats(nn.Module):
    """Running per-class count, mean and covariance, merged exactly with each batch (paper eqs 5-6).

    The statistics are buffers (saved in ``state_dict``) and are updated without gradients. They are kept
    in ``float64`` by default so that long runs do not drift.

    Parameters
    ----------
    n_classes
        Number of pseudo-classes ``C``.
    n_features
        Embedding dimension ``d``.
    full_covariance
        Also keep the ``(C, d, d)`` covariance (O(C d²) memory); the diagonal is always kept.
    decay
        ``None`` (default) merges exactly as eqs 5-6, so the running statistics are those of everything
        seen since the last :meth:`reset`. A value in ``(0, 1]`` multiplies the old counts by ``decay``
        before each merge (exponential forgetting of embeddings from earlier, less trained steps).
    dtype
        Dtype of the buffers.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import RunningClassStats
    >>> stats = RunningClassStats(n_classes=2, n_features=3)
    >>> g = torch.Generator().manual_seed(0)
    >>> z = torch.randn(100, 3, generator=g)
    >>> y = torch.randint(0, 2, (100,), generator=g)
    >>> stats.update(z[:60], y[:60])
    >>> stats.update(z[60:], y[60:])
    >>> bool(torch.allclose(stats.mean[0].float(), z[y == 0].mean(0), atol=1e-6))
    True
    >>> z_aug = stats.augment(z, y, rho=0.5, generator=g)
    """

    count: Tensor
    mean: Tensor
    var: Tensor
    cov: Tensor

    def __init__(
        self,
        n_classes: int,
        n_features: int,
        *,
        full_covariance: bool = False,
        decay: float | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if decay is not None and not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be None or in (0, 1], got {decay}")
        self.n_classes = int(n_classes)
        self.n_features = int(n_features)
        self.full_covariance = bool(full_covariance)
        self.decay = decay
        self.register_buffer("count", torch.zeros(self.n_classes, dtype=dtype))
        self.register_buffer("mean", torch.zeros(self.n_classes, self.n_features, dtype=dtype))
        self.register_buffer("var", torch.zeros(self.n_classes, self.n_features, dtype=dtype))
        cov_shape = (self.n_classes, self.n_features, self.n_features) if full_covariance else (0,)
        self.register_buffer("cov", torch.zeros(cov_shape, dtype=dtype))

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, n_features={self.n_features}, full_covariance={self.full_covariance}"

    @torch.no_grad()
    def reset(self) -> None:
        """Forget everything (e.g. after the pseudo-labels were recomputed)."""
        for buf in (self.count, self.mean, self.var, self.cov):
            buf.zero_()

    @torch.no_grad()
    def merge(self, count: Tensor, mean: Tensor, var: Tensor, cov: Tensor | None = None) -> None:
        """Merge precomputed batch statistics (as returned by :func:`batch_class_stats`).

        Parameters
        ----------
        count
            ``(C,)`` batch class sizes ``m_c``; classes with ``m_c = 0`` are left unchanged.
        mean
            ``(C, d)`` batch means.
        var
            ``(C, d)`` batch population variances.
        cov
            ``(C, d, d)`` batch population covariances (required when ``full_covariance``).
        """
        dt = self.mean.dtype
        m = count.to(dt)
        mu_b, var_b = mean.to(dt), var.to(dt)
        n_old = self.count * self.decay if self.decay is not None else self.count
        n = n_old + m
        safe = n.clamp_min(torch.finfo(dt).tiny)
        wa, wb = (n_old / safe).unsqueeze(1), (m / safe).unsqueeze(1)
        delta = mu_b - self.mean  # mu_b - mu_a
        between = (wa * wb) * delta  # n_a m / n² · delta
        present = (m > 0).unsqueeze(1)
        new_mean = self.mean + wb * delta
        new_var = wa * self.var + wb * var_b + between * delta
        self.mean.copy_(torch.where(present, new_mean, self.mean))
        self.var.copy_(torch.where(present, new_var, self.var))
        if self.full_covariance:
            if cov is None:
                raise ValueError("full_covariance=True needs the batch covariances")
            new_cov = (
                wa.unsqueeze(2) * self.cov
                + wb.unsqueeze(2) * cov.to(dt)
                + between.unsqueeze(2) * delta.unsqueeze(1)
            )
            self.cov.copy_(torch.where(present.unsqueeze(2), new_cov, self.cov))
        self.count.copy_(torch.where(m > 0, n, self.count))

    @torch.no_grad()
    def update(self, z: Tensor, labels: Tensor) -> None:
        """Merge the statistics of a batch of embeddings ``z`` with pseudo-labels ``labels`` (detached).

        Parameters
        ----------
        z
            ``(n, d)`` embeddings.
        labels
            ``(n,)`` integer pseudo-labels in ``[0, C)``.
        """
        if z.ndim != 2 or z.shape[1] != self.n_features:
            raise ValueError(f"z must have shape (n, {self.n_features}), got {tuple(z.shape)}")
        stats = batch_class_stats(
            z.detach().to(self.mean.dtype), labels, self.n_classes, full_covariance=self.full_covariance
        )
        self.merge(*stats)

    @property
    def std(self) -> Tensor:
        """Per-class standard deviations ``sqrt(diag Sigma_c)``, shape ``(C, d)`` (0 for unseen classes)."""
        return self.var.clamp_min(0).sqrt()

    def augment(
        self, z: Tensor, labels: Tensor, rho: float, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """``z̃ = z + rho · sigma_y ⊙ xi`` with the current class standard deviations (eqs 7-8).

        See :func:`isda_augment`.

        Parameters
        ----------
        z
            ``(n, d)`` embeddings (gradients flow through ``z``).
        labels
            ``(n,)`` pseudo-labels.
        rho
            Augmentation strength ``rho(t)``.
        generator
            Random generator for ``xi``.

        Returns
        -------
        Augmented embeddings, same shape and dtype as ``z``.
        """
        return isda_augment(z, labels, self.std, rho, generator=generator)


def isda_augment(
    z: Tensor, labels: Tensor, std: Tensor, rho: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Class-conditional diagonal Gaussian feature augmentation (paper eqs 7-8).

    ``z̃_i = z_i + rho · sigma_{y_i} ⊙ xi_i`` with ``xi_i ~ N(0, I)``. ``sigma`` is treated as a constant;
    gradients flow to ``z`` only. Classes never seen (``sigma = 0``) are not perturbed.

    Parameters
    ----------
    z
        ``(n, d)`` embeddings.
    labels
        ``(n,)`` integer labels indexing rows of ``std``.
    std
        ``(C, d)`` per-class standard deviations.
    rho
        Strength ``rho(t) = (t / T) rho_0`` (see :func:`~scomics_ext.module.rho_schedule`).
    generator
        Random generator. The noise is drawn on the generator's device and then moved to ``z``'s, so a
        seeded CPU generator gives the same ``xi`` on any device.

    Returns
    -------
    Augmented embeddings, same shape and dtype as ``z``.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import isda_augment
    >>> z = torch.zeros(4, 2)
    >>> std = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    >>> out = isda_augment(
    ...     z, torch.tensor([0, 0, 1, 1]), std, 0.5, generator=torch.Generator().manual_seed(0)
    ... )
    >>> out[2:].abs().sum().item()
    0.0
    """
    labels = _check_labels(z, labels, std.shape[0])
    if std.ndim != 2 or std.shape[1] != z.shape[1]:
        raise ValueError(f"std must have shape (C, {z.shape[1]}), got {tuple(std.shape)}")
    if rho == 0:
        return z
    gen_device = generator.device if generator is not None else z.device
    xi = torch.randn(z.shape, generator=generator, device=gen_device, dtype=z.dtype).to(z.device)
    sigma = std.detach().to(device=z.device, dtype=z.dtype)[labels]
    return z + float(rho) * sigma * xi
