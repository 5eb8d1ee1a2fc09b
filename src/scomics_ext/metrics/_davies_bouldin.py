"""Davies–Bouldin index with Euclidean or Pearson distance, for dense and sparse data."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.metrics.pairwise import euclidean_distances

from scomics_ext._validation import check_finite, check_in

from ._labels import encode_labels

__all__ = ["davies_bouldin"]

_METRICS = ("euclidean", "pearson")
#: Values per block of rows processed at once (8 MB as float64): bounds the working memory.
_CHUNK_ELEMS = 1 << 20


def _as_matrix(X: Any) -> np.ndarray | sparse.csr_matrix:
    """Validate ``X``; return a 2-D dense array (not copied when floating) or a canonical float64 CSR."""
    if sparse.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"`X` must be 2-D (n_samples, n_features), got shape {X.shape}.")
        Xc = sparse.csr_matrix(X)  # no copy when X is already a CSR matrix
        check_finite(Xc, "`X`")  # on CSR: LIL/DOK do not expose their values as one array
        if Xc.dtype != np.float64:
            Xc = Xc.astype(np.float64)
        if not Xc.has_canonical_format:
            Xc = Xc.copy()  # never modify the caller's matrix
            Xc.sum_duplicates()
        return Xc
    if isinstance(X, pd.DataFrame):
        X = X.to_numpy()
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(
            f"`X` must be 2-D (n_samples, n_features), got shape {X.shape}; "
            "for a single feature use `X.reshape(-1, 1)`."
        )
    check_finite(X, "`X`")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    return X


def _row_chunks(X: np.ndarray | sparse.csr_matrix) -> list[tuple[int, int]]:
    """Contiguous row ranges holding about ``_CHUNK_ELEMS`` values (stored values when sparse)."""
    n, n_features = X.shape
    if not sparse.issparse(X):
        step = max(1, _CHUNK_ELEMS // max(1, n_features))
        return [(a, min(a + step, n)) for a in range(0, n, step)]
    indptr = X.indptr
    chunks, a = [], 0
    while a < n:
        b = int(np.searchsorted(indptr, indptr[a] + _CHUNK_ELEMS, side="right")) - 1
        b = min(max(b, a + 1), n)
        chunks.append((a, b))
        a = b
    return chunks


def _constant_rows(X: np.ndarray | sparse.csr_matrix, chunks: list[tuple[int, int]]) -> np.ndarray:
    """Boolean mask of the rows whose values are all equal (zero variance across features)."""
    if sparse.issparse(X):
        # max/min include the implicit zeros of rows that are not fully stored
        return np.ravel(X.max(axis=1).toarray()) == np.ravel(X.min(axis=1).toarray())
    return np.concatenate([np.ptp(X[a:b], axis=1) == 0 for a, b in chunks])


def _centroids(
    X: np.ndarray | sparse.csr_matrix, codes: np.ndarray, sizes: np.ndarray, chunks: list[tuple[int, int]]
) -> np.ndarray:
    """``(n_clusters, n_features)`` float64 array of cluster means."""
    n_clusters = sizes.size
    if sparse.issparse(X):
        onehot = sparse.csr_matrix(
            (np.ones(codes.size), (codes, np.arange(codes.size))), shape=(n_clusters, codes.size)
        )
        sums = (onehot @ X).toarray()
    else:
        sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
        for a, b in chunks:
            onehot = sparse.csr_matrix(
                (np.ones(b - a), (codes[a:b], np.arange(b - a))), shape=(n_clusters, b - a)
            )
            sums += onehot @ np.asarray(X[a:b], dtype=np.float64)
    return sums / sizes[:, None]


def _dist_dense(block: np.ndarray, centers: np.ndarray, metric: str) -> np.ndarray:
    """Distances of the rows of ``block`` to their own centre (row-aligned ``centers``)."""
    if metric == "euclidean":
        diff = block - centers
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))
    # pearson: ``centers`` are the centred, unit-norm centroids
    centred = block - block.mean(axis=1, keepdims=True)
    r = np.einsum("ij,ij->i", centred, centers) / np.linalg.norm(centred, axis=1)
    return 1.0 - np.clip(r, -1.0, 1.0)


def _dist_sparse(block: sparse.csr_matrix, codes: np.ndarray, centers: np.ndarray, metric: str) -> np.ndarray:
    """Distances of the rows of a CSR ``block`` to their cluster's centre, touching only stored values."""
    m, n_features = block.shape
    nnz_row = np.diff(block.indptr)
    row = np.repeat(np.arange(m), nnz_row)
    data = block.data
    c_at = centers[codes[row], block.indices]  # each stored value's centre coordinate
    if metric == "euclidean":
        # ||x - c||² = Σ_stored (x_j - c_j)² + Σ_unstored c_j²
        c_sq = np.einsum("ij,ij->i", centers, centers)
        stored = np.bincount(row, weights=(data - c_at) ** 2, minlength=m)
        unstored = c_sq[codes] - np.bincount(row, weights=c_at**2, minlength=m)
        return np.sqrt(stored + np.maximum(unstored, 0.0))
    # pearson: r = x·ĉ / ||x - mean(x)||, ĉ centred unit-norm (so mean(x) drops out of the numerator)
    mean = np.bincount(row, weights=data, minlength=m) / n_features
    ss = np.bincount(row, weights=(data - mean[row]) ** 2, minlength=m) + (n_features - nnz_row) * mean**2
    dot = np.bincount(row, weights=data * c_at, minlength=m)
    r = dot / np.sqrt(ss)
    return 1.0 - np.clip(r, -1.0, 1.0)


def davies_bouldin(
    X: Any,
    labels: Any,
    *,
    metric: Literal["euclidean", "pearson"] = "euclidean",
) -> float:
    r"""Davies–Bouldin index of a clustering, with Euclidean or Pearson distance.

    Lower is better. DARLC reports both: DBIE (Euclidean) and DBIP (Pearson, "pattern coherence"),
    computed on the genes' expression vectors (genes x spots), not on a method's embedding.

    Parameters
    ----------
    X
        Data, shape ``(n_samples, n_features)``: a numpy array, :class:`pandas.DataFrame` or any
        :mod:`scipy.sparse` matrix/array. Sparse input is never densified as a whole (see Notes).
    labels
        Cluster label of each sample (any 1-D array-like of hashable values, no missing values).
    metric
        ``"euclidean"`` (same value as :func:`sklearn.metrics.davies_bouldin_score`) or ``"pearson"``,
        the distance :math:`d(a, b) = 1 - r(a, b)` with :math:`r` the Pearson correlation across features.

    Returns
    -------
    The index, a float :math:`\ge 0`.

    Raises
    ------
    ValueError
        If the number of clusters is not in ``[2, n_samples - 1]``, ``labels`` and the rows of ``X``
        differ in number, ``X`` holds NaN/inf or is not 2-D, ``metric`` is unknown, or (Pearson) a row of
        ``X`` or a cluster centroid is constant.
    TypeError
        If ``X`` is not numeric.

    Notes
    -----
    With clusters :math:`k = 1..K`, centroids :math:`c_k` (the mean of the members of :math:`k`, in the
    original space for both metrics), spreads :math:`S_k = \operatorname{mean}_{i \in k} d(x_i, c_k)`
    and separations :math:`M_{kl} = d(c_k, c_l)`,

    .. math::

        \mathrm{DB} = \frac{1}{K} \sum_{k=1}^{K} \max_{l \ne k} \frac{S_k + S_l}{M_{kl}}.

    Distances of samples to their centroid are computed directly (not with the expansion
    :math:`\lVert x\rVert^2 - 2 x \cdot c + \lVert c\rVert^2` scikit-learn uses), so the Euclidean index
    agrees with :func:`sklearn.metrics.davies_bouldin_score` to floating-point precision, except that a
    single-member cluster has spread exactly 0 here where scikit-learn's round-off gives about
    :math:`10^{-8}\lVert x\rVert`.

    Degenerate cases follow scikit-learn for both metrics: pairs of clusters with :math:`M_{kl} = 0`
    are left out of the maximum, and the index is 0.0 when all :math:`S_k` or all :math:`M_{kl}` are
    (close to) 0.

    Pearson distance is undefined for a constant vector (zero variance across features). Rather than
    silently inventing a value, a ``ValueError`` reports how many rows of ``X`` are constant (e.g. genes
    never detected) so that they can be removed first; likewise for a constant centroid.

    The computation is vectorised over blocks of rows of bounded size (about a million values), with one Python
    loop over blocks only. Sparse input stays sparse: distances are computed from the stored values
    (:math:`\lVert x - c\rVert^2 = \sum_{\text{stored}} (x_j - c_j)^2 + \sum_{\text{unstored}}
    c_j^2`; for Pearson the row mean drops out of :math:`x \cdot (c - \bar c)`), so time and memory grow
    with the number of stored values plus the ``(K, n_features)`` centroid matrix.

    Examples
    --------
    >>> import numpy as np
    >>> import scomics_ext as sx
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]])
    >>> round(sx.metrics.davies_bouldin(X, ["a", "a", "b", "b"]), 4)
    0.1414
    >>> genes = np.array([[1, 2, 3, 4], [2, 4, 6, 9], [4, 3, 2, 1], [8, 6, 4, 1]])
    >>> round(sx.metrics.davies_bouldin(genes, [0, 0, 1, 1], metric="pearson"), 4)
    0.0016
    """
    if not isinstance(metric, str):
        raise TypeError(f"`metric` must be a string, one of {list(_METRICS)}; got {type(metric).__name__}.")
    check_in(metric, _METRICS, "metric")
    Xm = _as_matrix(X)
    codes, uniques = encode_labels(labels, "labels")
    n, n_features = Xm.shape
    if codes.size != n:
        raise ValueError(
            f"`X` has {n} rows (samples) but `labels` has {codes.size} values; they must have the same "
            "length, one label per row."
        )
    n_clusters = uniques.size
    if n_clusters < 2:
        raise ValueError(
            f"`labels` define {n_clusters} cluster; the Davies-Bouldin index needs at least 2 clusters."
        )
    if n_clusters >= n:
        raise ValueError(
            f"`labels` define {n_clusters} clusters for {n} samples: every cluster is a single sample and "
            "the index is not informative. Valid numbers of clusters are 2 to n_samples - 1."
        )
    if n_features == 0:
        raise ValueError("`X` has no features (shape[1] == 0).")

    chunks = _row_chunks(Xm)
    if metric == "pearson":
        constant = _constant_rows(Xm, chunks)
        if constant.any():
            first = np.flatnonzero(constant)[:5].tolist()
            raise ValueError(
                f"Pearson distance is undefined for constant rows: {int(constant.sum())} of {n} rows of `X` "
                f"have zero variance across features (e.g. rows {first}). Remove them first (e.g. genes "
                "detected nowhere) or use metric='euclidean'."
            )

    sizes = np.bincount(codes, minlength=n_clusters).astype(np.float64)
    centroids = _centroids(Xm, codes, sizes, chunks)
    if metric == "pearson":
        centred = centroids - centroids.mean(axis=1, keepdims=True)
        scale = np.abs(centroids).max(axis=1)
        flat = np.ptp(centroids, axis=1) <= 64 * np.finfo(np.float64).eps * scale
        if flat.any():
            names = [uniques[k] for k in np.flatnonzero(flat)[:5]]
            raise ValueError(
                f"Pearson distance is undefined for a constant centroid: the mean of the members of "
                f"cluster(s) {names} is constant across features."
            )
        centers = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    else:
        centers = centroids

    dist = np.empty(n, dtype=np.float64)
    for a, b in chunks:
        if sparse.issparse(Xm):
            dist[a:b] = _dist_sparse(Xm[a:b], codes[a:b], centers, metric)
        else:
            block = np.asarray(Xm[a:b], dtype=np.float64)
            dist[a:b] = _dist_dense(block, centers[codes[a:b]], metric)
    spread = np.bincount(codes, weights=dist, minlength=n_clusters) / sizes

    if metric == "euclidean":
        separation = euclidean_distances(centroids)
    else:
        separation = np.clip(1.0 - centers @ centers.T, 0.0, 2.0)
        np.fill_diagonal(separation, 0.0)

    if np.all(np.isclose(spread, 0.0)) or np.all(np.isclose(separation, 0.0)):
        return 0.0
    separation[separation == 0] = np.inf
    ratios = (spread[:, None] + spread[None, :]) / separation
    return float(np.mean(ratios.max(axis=1)))
