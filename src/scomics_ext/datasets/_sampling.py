"""Numeric kernels of the simulators: negative-binomial count sampling in row chunks.

Two samplers share one model, ``X ~ NB(mean=mu, size=theta)`` (variance ``mu + mu**2 / theta``):

* :func:`nb_csr` for sparse modalities (RNA, ATAC): zero entries are decided with one uniform draw
  against ``P(X=0) = (theta / (theta + mu))**theta``; only the non-zero entries then walk the
  inverse CDF (pmf recursion), so the cost grows with the number of non-zeros, not with ``mu``.
* :func:`nb_dense` for dense modalities with large means (ADT): the gamma-Poisson mixture.

Both take a callable returning the mean matrix of a block of rows, so the full dense mean matrix is
never held in memory; the result is bitwise reproducible for a given :class:`numpy.random.Generator`
state and ``chunk_size``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse

MeanFn = Callable[[int, int], np.ndarray]

#: entries per chunk (rows x columns) processed at once; bounds the temporary memory (~0.5 GB)
CHUNK_ENTRIES = 4_000_000
#: safety cap on the inverse-CDF walk (reached only for absurd means)
_MAX_STEPS = 100_000


def _rows_per_chunk(n_cols: int, chunk_entries: int = CHUNK_ENTRIES) -> int:
    return max(1, chunk_entries // max(n_cols, 1))


def nb_nonzero(mu: np.ndarray, theta: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Sample ``NB(mu, theta)`` for a dense block of means and return its non-zero entries.

    Parameters
    ----------
    mu
        Means, shape ``(n, p)``, non-negative (float32 or float64).
    theta
        NB size (inverse dispersion), ``> 0``; ``numpy.inf`` gives the Poisson distribution.
    rng
        Random generator.

    Returns
    -------
    ``(rows, cols, values)`` of the non-zero draws, in row-major order; ``values`` are float32.
    """
    theta = float(theta)
    poisson = np.isinf(theta)
    u = rng.random(mu.shape)
    if poisson:  # P(X = 0) = exp(-mu)
        p0 = np.exp(-mu)
    else:  # P(X = 0) = exp(-theta * log1p(mu / theta))
        p0 = np.log1p(mu / np.asarray(theta, dtype=mu.dtype))
        p0 *= -theta
        np.exp(p0, out=p0)
    rows, cols = np.nonzero(u >= p0)
    if rows.size == 0:
        return rows, cols, np.zeros(0, dtype=np.float32)
    m = mu[rows, cols].astype(np.float64)
    ua = u[rows, cols]
    pk = p0[rows, cols].astype(np.float64)
    del u, p0
    # pmf recursion: p_k = p_{k-1} * (k - 1 + theta) / k * mu / (theta + mu)  (Poisson: p_{k-1} * mu / k)
    q = m if poisson else m / (theta + m)
    cdf = pk.copy()
    values = np.zeros(rows.size, dtype=np.float32)
    active = np.arange(rows.size)
    k = 0
    while active.size:
        k += 1
        pk *= (1.0 / k if poisson else (k - 1 + theta) / k) * q
        cdf += pk
        done = (ua < cdf) | (pk <= 0.0)
        if k >= _MAX_STEPS:
            done[:] = True
        values[active[done]] = k
        keep = ~done
        active, pk, cdf, q, ua = active[keep], pk[keep], cdf[keep], q[keep], ua[keep]
    return rows, cols, values


def nb_csr(
    mean_fn: MeanFn,
    n_rows: int,
    n_cols: int,
    theta: float,
    rng: np.random.Generator,
    *,
    chunk_entries: int = CHUNK_ENTRIES,
) -> sparse.csr_matrix:
    """Sample an ``n_rows x n_cols`` NB count matrix as CSR (float32 values, int32 indices).

    Parameters
    ----------
    mean_fn
        ``mean_fn(start, stop)`` returns the dense means of rows ``start:stop``, shape
        ``(stop - start, n_cols)``.
    n_rows, n_cols
        Shape of the result.
    theta
        NB size parameter.
    rng
        Random generator.
    chunk_entries
        Approximate number of entries generated at once.
    """
    step = _rows_per_chunk(n_cols, chunk_entries)
    counts = np.zeros(n_rows, dtype=np.int64)
    col_parts, val_parts = [], []
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        rows, cols, vals = nb_nonzero(mean_fn(start, stop), theta, rng)
        counts[start:stop] = np.bincount(rows, minlength=stop - start)
        col_parts.append(cols.astype(np.int32))
        val_parts.append(vals)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    index_dtype = np.int32 if nnz < np.iinfo(np.int32).max else np.int64
    X = sparse.csr_matrix(
        (
            np.concatenate(val_parts) if val_parts else np.zeros(0, np.float32),
            np.concatenate(col_parts).astype(index_dtype, copy=False) if col_parts else np.zeros(0, np.int32),
            indptr.astype(index_dtype),
        ),
        shape=(n_rows, n_cols),
    )
    X.has_sorted_indices = True
    return X


def nb_dense(
    mean_fn: MeanFn,
    n_rows: int,
    n_cols: int,
    theta: float,
    rng: np.random.Generator,
    *,
    chunk_entries: int = CHUNK_ENTRIES,
) -> np.ndarray:
    """Sample a dense ``n_rows x n_cols`` NB count matrix (float32) by the gamma-Poisson mixture.

    Parameters are those of :func:`nb_csr`.
    """
    out = np.empty((n_rows, n_cols), dtype=np.float32)
    step = _rows_per_chunk(n_cols, chunk_entries)
    theta = float(theta)
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        mu = mean_fn(start, stop)
        lam = mu if np.isinf(theta) else rng.standard_gamma(theta, size=mu.shape) * (mu / theta)
        out[start:stop] = rng.poisson(lam)
    return out


def apply_dropout(X: sparse.csr_matrix | np.ndarray, rate: float, rng: np.random.Generator):
    """Set each non-zero entry to zero with probability ``rate`` (technical dropout); returns a new matrix."""
    if rate <= 0:
        return X
    if sparse.issparse(X):
        X = X.tocsr(copy=True)
        keep = rng.random(X.nnz) >= rate
        X.data = X.data * keep.astype(X.data.dtype)
        X.eliminate_zeros()
        return X
    keep = rng.random(X.shape) >= rate
    return X * keep
