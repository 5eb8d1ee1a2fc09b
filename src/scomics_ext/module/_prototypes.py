"""Pseudo-labels and prototypes for CRCT: k-means on ``Z`` with label ids kept stable across refreshes."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch import Tensor
from torch.nn import functional as F

__all__ = ["assign_to_prototypes", "kmeans_prototypes", "match_prototypes"]


def match_prototypes(new: Tensor, previous: Tensor) -> Tensor:
    """Permutation of ``new`` prototypes that best matches ``previous`` ones (Hungarian, squared distance).

    Parameters
    ----------
    new
        ``(C, d)`` freshly computed centroids.
    previous
        ``(C, d)`` centroids of the last refresh.

    Returns
    -------
    ``perm`` (long, ``(C,)``) such that ``new[perm[k]]`` is the new centroid that takes over id ``k``.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import match_prototypes
    >>> match_prototypes(torch.tensor([[5.0], [0.0]]), torch.tensor([[0.1], [4.9]])).tolist()
    [1, 0]
    """
    if new.shape != previous.shape:
        raise ValueError(
            f"new {tuple(new.shape)} and previous {tuple(previous.shape)} prototypes differ in shape"
        )
    cost = torch.cdist(previous.detach().double().cpu(), new.detach().double().cpu()).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return torch.as_tensor(perm, device=new.device)


def kmeans_prototypes(
    z: Tensor,
    n_clusters: int,
    *,
    previous: Tensor | None = None,
    normalize: bool = True,
    random_state: int = 0,
    n_init: int = 10,
) -> tuple[Tensor, Tensor]:
    """k-means prototypes and pseudo-labels of embeddings (CPU, scikit-learn), ids stable across calls.

    Parameters
    ----------
    z
        ``(N, d)`` embeddings (detached; any device).
    n_clusters
        Number of clusters ``C``.
    previous
        ``(C, d)`` prototypes of the last refresh. When given, the new clusters are renumbered so that
        cluster ``k`` is the one closest (Hungarian matching) to the old prototype ``k``; running class
        statistics keyed by label id then stay meaningful.
    normalize
        Cluster L2-normalised rows (use with the cosine version of
        :func:`~scomics_ext.module.prototype_contrastive_loss`); the centroids are returned as computed
        (not re-normalised).
    random_state
        Seed of :class:`sklearn.cluster.KMeans`.
    n_init
        Number of k-means restarts.

    Returns
    -------
    prototypes
        ``(C, d)`` centroids, on ``z``'s device and dtype.
    labels
        ``(N,)`` long pseudo-labels.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import kmeans_prototypes
    >>> z = torch.cat([torch.randn(20, 2) * 0.1 + 3, torch.randn(20, 2) * 0.1 - 3])
    >>> protos, labels = kmeans_prototypes(z, 2, normalize=False)
    >>> protos.shape, int(labels[:20].unique().numel())
    (torch.Size([2, 2]), 1)
    """
    if z.ndim != 2:
        raise ValueError(f"z must be 2-D (N, d), got shape {tuple(z.shape)}")
    if not 1 <= n_clusters <= z.shape[0]:
        raise ValueError(f"n_clusters must be in [1, {z.shape[0]}], got {n_clusters}")
    if previous is not None and previous.shape != (n_clusters, z.shape[1]):
        raise ValueError(f"previous prototypes must have shape ({n_clusters}, {z.shape[1]})")
    x = z.detach()
    if normalize:
        x = F.normalize(x, dim=1)
    x_np = x.double().cpu().numpy()
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state).fit(x_np)
    centers = torch.as_tensor(km.cluster_centers_, dtype=z.dtype, device=z.device)
    labels = torch.as_tensor(km.labels_.astype(np.int64), device=z.device)
    if previous is not None:
        perm = match_prototypes(centers, previous.to(centers))
        centers = centers[perm]
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n_clusters, device=perm.device)
        labels = inverse[labels]
    return centers, labels


def assign_to_prototypes(z: Tensor, prototypes: Tensor, *, normalize: bool = True) -> Tensor:
    """Nearest-prototype pseudo-labels (for re-labelling between k-means refreshes).

    Parameters
    ----------
    z
        ``(N, d)`` embeddings.
    prototypes
        ``(C, d)`` prototypes.
    normalize
        Compare L2-normalised embeddings and prototypes (cosine), matching
        ``kmeans_prototypes(..., normalize=True)``.

    Returns
    -------
    ``(N,)`` long labels.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import assign_to_prototypes
    >>> assign_to_prototypes(torch.tensor([[1.0, 0.1], [0.0, 2.0]]), torch.eye(2)).tolist()
    [0, 1]
    """
    with torch.no_grad():
        x, c = z.detach(), prototypes.detach().to(z)
        if normalize:
            x, c = F.normalize(x, dim=1), F.normalize(c, dim=1)
        return torch.cdist(x, c).argmin(dim=1)
