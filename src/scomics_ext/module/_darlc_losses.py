"""DARLC losses and seeding-graph tools (method note §1.7-1.8), on plain torch / numpy / scipy.sparse.

Epoch level: :func:`smm_nll` (the true Student's t mixture NLL, gradients to ``z``), :func:`laplacian_term`
(``tr(Zᵀ L Z)`` with a sparse seeding Laplacian, or its sub-Laplacian on a batch), :func:`cluster_size_loss`
(hinge on small clusters). Batch level: :func:`target_distribution` and :func:`dec_kl_loss` (DEC). Seeding:
:func:`seeding_similarity` (sparse positive Pearson top-k graph), :func:`similarity_laplacian` and
:func:`estimate_n_clusters` (eigengap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from scipy import sparse
from scipy.sparse import linalg as sla
from scipy.sparse.csgraph import connected_components
from torch import Tensor
from torch.nn import functional as F

from ._smm import SMMParams, smm_log_prob

__all__ = [
    "DEFAULT_SIZE_THRESHOLD",
    "cluster_size_loss",
    "dec_kl_loss",
    "estimate_n_clusters",
    "laplacian_term",
    "seeding_graphs",
    "seeding_similarity",
    "similarity_laplacian",
    "smm_nll",
    "target_distribution",
]

#: Cluster-size threshold ``τ_s`` of :func:`cluster_size_loss` (reference code: 1/3000).
DEFAULT_SIZE_THRESHOLD = 1.0 / 3000

_DENSE_EIG_MAX = 500  # connected components up to this size use a dense eigensolver


# ------------------------------------------------------------------------------------------------------
# likelihood
# ------------------------------------------------------------------------------------------------------
def smm_nll(z: Tensor, params: SMMParams | Mapping[str, Any]) -> Tensor:
    """Negative mean log-likelihood ``-(1/N) Σ_i log Σ_k π_k t(z_i | θ_k)``; θ fixed, gradients to ``z``.

    Replaces the reference code's proxy ``(1/N) Σ_i log(Σ_k q_ik π_k + 1e-6)``, which is built from the
    detached EM posterior and gives no gradient.

    Parameters
    ----------
    z
        Embeddings, ``(N, D)``.
    params
        Mixture parameters from :class:`~scomics_ext.module.StudentTMixture` (``.params``).

    Returns
    -------
    Scalar tensor.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from scomics_ext.module import SMMParams, smm_nll
    >>> p = SMMParams(np.zeros((1, 1)), np.ones((1, 1)), np.ones(1), np.ones(1))
    >>> round(smm_nll(torch.zeros(3, 1), p).item(), 4)  # Cauchy: log π
    1.1447
    """
    return -torch.logsumexp(smm_log_prob(z, params), dim=1).mean()


# ------------------------------------------------------------------------------------------------------
# Laplacian regulariser
# ------------------------------------------------------------------------------------------------------
def similarity_laplacian(similarity: Any) -> sparse.csr_matrix:
    """Sparse Laplacian of the seeding similarity, as in the reference code.

    ``L = diag(sign(d)) - D^{-1/2} A D^{-1/2}`` with ``d_i = Σ_j A_ij`` and ``D^{-1/2} = diag(|d_i|^{-1/2})``
    (0 for empty rows); for a non-negative ``A`` without empty rows this is ``I - D^{-1/2} A D^{-1/2}``.

    Parameters
    ----------
    similarity
        Square matrix ``A`` (scipy sparse or dense), symmetric with a zero diagonal.

    Returns
    -------
    ``scipy.sparse.csr_matrix`` (float64) of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.module import similarity_laplacian
    >>> similarity_laplacian(np.array([[0.0, 2.0], [2.0, 0.0]])).toarray().round(6).tolist()
    [[1.0, -1.0], [-1.0, 1.0]]
    """
    a = sparse.csr_matrix(similarity, dtype=np.float64)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"similarity must be square, got shape {a.shape}")
    d = np.asarray(a.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        dinv = np.where(d != 0, np.abs(d) ** -0.5, 0.0)
    dm = sparse.diags(dinv)
    lap = sparse.diags(np.sign(d)) - dm @ a @ dm
    lap = sparse.csr_matrix(lap)
    lap.eliminate_zeros()
    return lap


def laplacian_term(
    z: Tensor,
    laplacian: Any,
    index: Any = None,
    *,
    reduction: Literal["sum", "mean"] = "sum",
) -> Tensor:
    """Laplacian regulariser ``tr(Zᵀ L Z) = Σ_ij L_ij <z_i, z_j>`` on a sparse ``L``, differentiable in ``z``.

    With ``index``, ``z`` holds the rows ``index`` of the full embedding and the sub-Laplacian
    ``L[index][:, index]`` is used (the batch-level form). Cost ``O(nnz · D)``; no dense ``N × N``.

    Parameters
    ----------
    z
        Embeddings, ``(n, D)``.
    laplacian
        ``N × N`` scipy sparse Laplacian (:func:`similarity_laplacian`); ``N = n`` without ``index``.
    index
        Integer indices (length ``n``) of the rows of ``z`` in the full graph, or ``None``.
    reduction
        ``"sum"`` (the trace, as in the paper) or ``"mean"`` (divided by ``n``).

    Returns
    -------
    Scalar tensor.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from scomics_ext.module import laplacian_term, similarity_laplacian
    >>> lap = similarity_laplacian(np.array([[0.0, 1.0], [1.0, 0.0]]))
    >>> laplacian_term(torch.tensor([[1.0], [3.0]]), lap).item()  # (1 - 3)²
    4.0
    """
    lap = sparse.csr_matrix(laplacian)
    if index is not None:
        idx = np.asarray(index.detach().cpu() if isinstance(index, Tensor) else index, dtype=np.int64)
        lap = lap[idx][:, idx]
    if lap.shape != (z.shape[0], z.shape[0]):
        raise ValueError(f"Laplacian of shape {lap.shape} does not match {z.shape[0]} embeddings")
    coo = lap.tocoo()
    row = torch.as_tensor(coo.row.astype(np.int64), device=z.device)
    col = torch.as_tensor(coo.col.astype(np.int64), device=z.device)
    val = torch.as_tensor(coo.data, dtype=z.dtype, device=z.device)
    total = (val * (z[row] * z[col]).sum(dim=1)).sum()
    if reduction == "mean":
        return total / max(z.shape[0], 1)
    if reduction != "sum":
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return total


# ------------------------------------------------------------------------------------------------------
# cluster size
# ------------------------------------------------------------------------------------------------------
def cluster_size_loss(
    q: Tensor,
    threshold: float = DEFAULT_SIZE_THRESHOLD,
    *,
    kind: Literal["hinge", "entropy"] = "hinge",
    eps: float = 1e-6,
) -> Tensor:
    """Penalty on empty and tiny clusters that leaves clusters above ``threshold`` alone.

    With ``p̄_k = (1/N) Σ_i q_ik``:

    * ``"hinge"`` (default): ``Σ_k max(0, τ_s - p̄_k) · (-log(p̄_k + eps))`` — zero for clusters at or
      above ``τ_s``, growing without bound as a cluster empties, with a gradient that always pushes a small
      cluster up (the note's suggested form; the paper's "cross-entropy hinge").
    * ``"entropy"``: ``-Σ_{k: p̄_k ≤ τ_s} (p̄_k + eps) log(p̄_k + eps)`` returned with a minus sign (a loss
      to minimise), i.e. the reference code's small-cluster entropy with its ``p1 == …`` bug fixed.

    Parameters
    ----------
    q
        Soft assignments ``(N, K)`` (differentiable, e.g. :func:`~scomics_ext.module.smm_posterior`).
    threshold
        ``τ_s`` as a fraction of ``N`` (reference code: 1/3000).
    kind
        ``"hinge"`` or ``"entropy"``.
    eps
        Guard inside the logarithm.

    Returns
    -------
    Scalar tensor (0 when every cluster is above the threshold).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import cluster_size_loss
    >>> q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> cluster_size_loss(q, 0.1).item() > 0, cluster_size_loss(torch.full((2, 2), 0.5), 0.1).item()
    (True, 0.0)
    """
    p = q.mean(dim=0)
    if kind == "hinge":
        return (F.relu(threshold - p) * -torch.log(p + eps)).sum()
    if kind == "entropy":
        small = (p <= threshold).to(p.dtype)
        return ((p + eps) * torch.log(p + eps) * small).sum()
    raise ValueError(f"kind must be 'hinge' or 'entropy', got {kind!r}")


# ------------------------------------------------------------------------------------------------------
# DEC
# ------------------------------------------------------------------------------------------------------
def target_distribution(q: Tensor) -> Tensor:
    """DEC target ``p_ik = (q_ik² / f_k) / Σ_j (q_ij² / f_j)`` with ``f_k = Σ_i q_ik`` (no gradient).

    Compute it once per epoch on all samples and slice the rows of each batch.

    Parameters
    ----------
    q
        Soft assignments ``(N, K)``.

    Returns
    -------
    Detached tensor of shape ``(N, K)``, rows summing to 1.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import target_distribution
    >>> q = torch.tensor([[0.6, 0.4], [0.4, 0.6]], dtype=torch.float64)
    >>> target_distribution(q).numpy().round(4).tolist()
    [[0.6923, 0.3077], [0.3077, 0.6923]]
    """
    q = q.detach()
    w = q**2 / q.sum(dim=0).clamp_min(1e-12)
    return w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)


def dec_kl_loss(q: Tensor, p: Tensor, *, log_input: bool = False, eps: float = 1e-12) -> Tensor:
    """``KL(P ‖ Q) = (1/B) Σ_i Σ_k p_ik (log p_ik - log q_ik)`` (``'batchmean'``), gradients through ``q``.

    Parameters
    ----------
    q
        Soft assignments ``(B, K)``, or their logarithm with ``log_input=True`` (e.g.
        ``smm_posterior(z, params, log=True)``, numerically safer).
    p
        Target rows for the same samples (:func:`target_distribution`), ``(B, K)``.
    log_input
        Whether ``q`` is ``log q``.
    eps
        Floor of ``q`` before the logarithm (ignored with ``log_input``).

    Returns
    -------
    Scalar tensor.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import dec_kl_loss
    >>> q = torch.tensor([[0.5, 0.5]])
    >>> dec_kl_loss(q, q).item()
    0.0
    """
    if q.shape != p.shape:
        raise ValueError(f"q and p must have the same shape, got {tuple(q.shape)} and {tuple(p.shape)}")
    log_q = q if log_input else torch.log(q.clamp_min(eps))
    return F.kl_div(log_q, p.detach(), reduction="batchmean")


# ------------------------------------------------------------------------------------------------------
# seeding similarity and number of clusters
# ------------------------------------------------------------------------------------------------------
def seeding_similarity(
    x: Any,
    *,
    n_neighbors: int = 15,
    mode: Literal["union", "mutual"] = "union",
    chunk_size: int = 1024,
) -> sparse.csr_matrix:
    """Sparse seeding similarity: positive Pearson correlation between rows, kept on top-k neighbours.

    ``A_ij = max(0, r_ij)`` for ``j`` among the ``n_neighbors`` most correlated rows of ``i`` (self
    excluded); ``"union"`` keeps an edge found from either end, ``"mutual"`` one found from both. The result
    is symmetric with a zero diagonal. Correlations are computed in row chunks, so memory is
    ``O(chunk_size · N)`` and never ``N × N``. Rows with zero variance have no edges.

    Parameters
    ----------
    x
        ``(N, F)`` matrix, one row per item (gene): flattened images restricted to tissue pixels, or
        expression vectors (dense or scipy sparse).
    n_neighbors
        ``k`` of the top-k sparsification.
    mode
        ``"union"`` or ``"mutual"`` top-k.
    chunk_size
        Rows per correlation block.

    Returns
    -------
    ``scipy.sparse.csr_matrix`` of shape ``(N, N)``, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.module import seeding_similarity
    >>> x = np.array([[1.0, 2, 3, 4], [2, 4, 6, 8.1], [4, 3, 2, 1], [4, 3, 2, 1.2]])
    >>> a = seeding_similarity(x, n_neighbors=1)
    >>> (a.toarray() > 0).astype(int).tolist()
    [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    """
    return seeding_graphs(x, n_neighbors=n_neighbors, modes=(mode,), chunk_size=chunk_size)[0]


def seeding_graphs(
    x: Any,
    *,
    n_neighbors: int = 15,
    modes: tuple[Literal["union", "mutual"], ...] = ("union", "mutual"),
    chunk_size: int = 1024,
) -> tuple[sparse.csr_matrix, ...]:
    """:func:`seeding_similarity` for several symmetrisation rules from one top-k pass.

    The ``N × N`` correlation sweep (the costly part: ``O(N² F)``) is done once; each rule in ``modes``
    then symmetrises the same directed top-k graph, so the results equal separate
    :func:`seeding_similarity` calls exactly.

    Parameters
    ----------
    x
        ``(N, F)`` matrix, one row per item (dense or scipy sparse).
    n_neighbors
        ``k`` of the top-k sparsification.
    modes
        Symmetrisation rules, each ``"union"`` or ``"mutual"``.
    chunk_size
        Rows per correlation block.

    Returns
    -------
    One ``scipy.sparse.csr_matrix`` (``N × N``, float64) per entry of ``modes``.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.module import seeding_graphs
    >>> x = np.array([[1.0, 2, 3, 4], [2, 4, 6, 8.1], [4, 3, 2, 1], [4, 3, 2.2, 1.2], [1, 2, 3, 4.5]])
    >>> union, mutual = seeding_graphs(x, n_neighbors=1)
    >>> int(union.nnz) >= int(mutual.nnz)
    True
    """
    for mode in modes:
        if mode not in ("union", "mutual"):
            raise ValueError(f"mode must be 'union' or 'mutual', got {mode!r}")
    if sparse.issparse(x):
        x = x.toarray()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (items x features), got shape {x.shape}")
    n = x.shape[0]
    k = int(min(n_neighbors, n - 1))
    if k < 1:
        return tuple(sparse.csr_matrix((n, n)) for _ in modes)
    xc = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(xc, axis=1)
    ok = norm > 0
    xs = np.zeros_like(xc)
    xs[ok] = xc[ok] / norm[ok, None]
    rows, cols, vals = [], [], []
    for s in range(0, n, int(chunk_size)):
        r = xs[s : s + chunk_size] @ xs.T  # (c, N) Pearson correlations
        c = r.shape[0]
        r[np.arange(c), np.arange(s, s + c)] = -np.inf  # exclude self
        top = np.argpartition(-r, k - 1, axis=1)[:, :k]
        v = np.take_along_axis(r, top, axis=1)
        keep = v > 0
        rows.append(np.repeat(np.arange(s, s + c), k)[keep.ravel()])
        cols.append(top.ravel()[keep.ravel()])
        vals.append(v.ravel()[keep.ravel()])
    a = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float64
    )
    out = []
    for mode in modes:
        g = sparse.csr_matrix(a.maximum(a.T) if mode == "union" else a.minimum(a.T))
        g.setdiag(0.0)
        g.eliminate_zeros()
        out.append(g)
    return tuple(out)


def estimate_n_clusters(
    similarity: Any,
    max_clusters: int = 50,
    *,
    min_clusters: int = 1,
    random_state: int = 0,
) -> tuple[int, np.ndarray]:
    """Number of clusters from the largest eigengap of ``L_sym = I - D^{-1/2} A D^{-1/2}``.

    ``K̂ = argmax_{min ≤ k < max} (λ_{k+1} - λ_k)`` over the ``M = max_clusters + 1`` smallest eigenvalues.
    They are obtained per connected component (the spectrum of a block-diagonal matrix is the union of the
    blocks' spectra, and Lanczos alone can miss copies of the repeated eigenvalue 0), with
    ``scipy.sparse.linalg.eigsh`` as ``1 - μ`` for the *largest* eigenvalues ``μ`` of
    ``D^{-1/2} A D^{-1/2}`` (fast convergence, unlike shift-free ``which="SM"``); components of at most
    500 items use a dense solver. Isolated items get ``D^{-1/2} = 0``, hence eigenvalue 1: they do not
    count as clusters.

    Parameters
    ----------
    similarity
        Symmetric non-negative ``N × N`` matrix (e.g. :func:`seeding_similarity`).
    max_clusters
        ``K_max``.
    min_clusters
        Smallest ``K`` allowed (2 forbids the trivial answer 1).
    random_state
        Seed of the Lanczos start vector.

    Returns
    -------
    n_clusters
        ``K̂``.
    eigenvalues
        The ``M`` smallest eigenvalues of ``L_sym``, ascending.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from scomics_ext.module import estimate_n_clusters
    >>> blocks = sp.block_diag([np.ones((5, 5)) - np.eye(5)] * 3)
    >>> estimate_n_clusters(blocks, max_clusters=6)[0]
    3
    """
    a = sparse.csr_matrix(similarity, dtype=np.float64)
    n = a.shape[0]
    if a.shape != (n, n):
        raise ValueError(f"similarity must be square, got shape {a.shape}")
    if a.nnz and a.data.min() < 0:
        raise ValueError("similarity must be non-negative (use the positive part of the correlations)")
    if not 1 <= min_clusters < max_clusters:
        raise ValueError(f"need 1 <= min_clusters < max_clusters, got {min_clusters}, {max_clusters}")
    m = int(min(max_clusters + 1, n))
    d = np.asarray(a.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        dinv = np.where(d > 0, d**-0.5, 0.0)
    dm = sparse.diags(dinv)
    norm_adj = sparse.csr_matrix(dm @ a @ dm)
    norm_adj = sparse.csr_matrix((norm_adj + norm_adj.T) * 0.5)  # exact symmetry for the solver
    # the spectrum of a block-diagonal matrix is the union of its blocks' spectra: solving per connected
    # component gives every zero eigenvalue (Lanczos alone can miss copies of a repeated eigenvalue)
    _, comp = connected_components(norm_adj, directed=False)
    sizes = np.bincount(comp)
    isolated = d <= 0
    rng = np.random.default_rng(random_state)
    mu_parts = [np.zeros(min(int(isolated.sum()), m))]  # μ = 0 ⇒ λ = 1 for isolated items
    for c in np.flatnonzero(sizes > 1):
        idx = np.flatnonzero(comp == c)
        sub = norm_adj[idx][:, idx]
        kc = min(m, idx.size)
        mu_c = None
        if idx.size > max(3 * m, _DENSE_EIG_MAX):
            try:
                mu_c = sla.eigsh(
                    sub,
                    k=kc,
                    which="LA",
                    v0=rng.uniform(0.5, 1.5, idx.size),
                    return_eigenvectors=False,
                    tol=1e-10,
                )
            except sla.ArpackNoConvergence:  # pragma: no cover - dense fallback below
                mu_c = None
        if mu_c is None:
            mu_c = np.linalg.eigvalsh(sub.toarray())[::-1][:kc]
        mu_parts.append(np.asarray(mu_c))
    mu = np.sort(np.concatenate(mu_parts))[::-1][:m]
    lam = np.sort(1.0 - np.asarray(mu))
    gaps = np.diff(lam)  # gaps[k-1] = λ_{k+1} - λ_k
    ks = np.arange(1, lam.size)
    allowed = (ks >= min_clusters) & (ks < max_clusters)
    if not np.any(allowed):
        raise ValueError(f"too few items ({n}) for max_clusters={max_clusters}")
    best = int(ks[allowed][np.argmax(gaps[allowed])])
    return best, lam
