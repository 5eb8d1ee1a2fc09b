"""davies_bouldin: Euclidean against sklearn, Pearson against a naive loop; dense and sparse."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import sparse
from sklearn.metrics import davies_bouldin_score

import scomics_ext as sx
from scomics_ext.metrics import _davies_bouldin

SPARSE_FORMATS = [
    sparse.csr_matrix,
    sparse.csc_matrix,
    sparse.coo_matrix,
    sparse.csr_array,
    sparse.lil_matrix,
]


def _pearson_db_naive(X, labels):
    """Direct transcription of the definition, one sample at a time."""
    X = np.asarray(X, dtype=float)
    labels = np.asarray(labels)
    ks = list(dict.fromkeys(labels.tolist()))

    def d(a, b):
        return 1.0 - np.corrcoef(a, b)[0, 1]

    cents = {k: X[labels == k].mean(axis=0) for k in ks}
    spread = {}
    for k in ks:
        dists = [d(x, cents[k]) for x in X[labels == k]]
        spread[k] = sum(dists) / len(dists)
    total = 0.0
    for k in ks:
        total += max((spread[k] + spread[j]) / d(cents[k], cents[j]) for j in ks if j != k)
    return total / len(ks)


def _blobs(rng, n, f, k, sparsity=0.0, min_size=1):
    labels = rng.integers(0, k, n)
    labels[: k * min_size] = np.repeat(np.arange(k), min_size)  # every cluster has min_size members
    centres = rng.normal(0, 3, (k, f))
    X = centres[labels] + rng.normal(size=(n, f))
    if sparsity:
        X = np.abs(X) * (rng.random((n, f)) > sparsity)
    return X, labels


@st.composite
def data_and_labels(draw, min_features=2):
    """Blobs with 2..5 clusters of at least 2 members each (see test_singleton_clusters)."""
    k = draw(st.integers(2, 5))
    n = draw(st.integers(2 * k + 1, 40))
    f = draw(st.integers(min_features, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    sparsity = draw(st.sampled_from([0.0, 0.5, 0.8]))
    rng = np.random.default_rng(seed)
    return _blobs(rng, n, f, k, sparsity, min_size=2)


@settings(max_examples=60, deadline=None)
@given(data_and_labels())
def test_euclidean_equals_sklearn(case):
    X, labels = case
    expected = davies_bouldin_score(X, labels)
    assert sx.metrics.davies_bouldin(X, labels) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert sx.metrics.davies_bouldin(sparse.csr_matrix(X), labels) == pytest.approx(
        expected, rel=1e-9, abs=1e-9
    )


@settings(max_examples=60, deadline=None)
@given(data_and_labels(min_features=3))
def test_pearson_equals_naive(case):
    X, labels = case
    assume(not np.any(np.ptp(X, axis=1) == 0))  # constant rows are refused (tested below)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = _pearson_db_naive(X, labels)
    assume(np.isfinite(expected))  # coinciding centroid patterns: sklearn's convention, tested elsewhere
    assert sx.metrics.davies_bouldin(X, labels, metric="pearson") == pytest.approx(
        expected, rel=1e-9, abs=1e-9
    )
    got_sparse = sx.metrics.davies_bouldin(sparse.csr_matrix(X), labels, metric="pearson")
    assert got_sparse == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("fmt", SPARSE_FORMATS)
@pytest.mark.parametrize("metric", ["euclidean", "pearson"])
def test_sparse_formats_and_dtypes(fmt, metric):
    rng = np.random.default_rng(0)
    X, labels = _blobs(rng, 60, 12, 4, sparsity=0.6)
    X = X + (rng.random((60, 1)) < 1.0) * np.eye(60, 12)  # no constant rows
    dense = sx.metrics.davies_bouldin(X, labels, metric=metric)
    assert sx.metrics.davies_bouldin(fmt(X), labels, metric=metric) == pytest.approx(dense, rel=1e-9)
    X32 = X.astype(np.float32)
    ref32 = sx.metrics.davies_bouldin(X32.astype(np.float64), labels, metric=metric)
    assert sx.metrics.davies_bouldin(X32, labels, metric=metric) == pytest.approx(ref32, rel=1e-9)
    assert sx.metrics.davies_bouldin(fmt(X32), labels, metric=metric) == pytest.approx(ref32, rel=1e-9)


def test_non_canonical_sparse_not_modified():
    # CSR with a duplicated entry (row 0, column 1 stored twice) and unsorted indices
    data = np.array([1.0, 2.0, 3.0, 1.0, 4.0, 5.0, 2.0, 1.0])
    indices = np.array([1, 1, 0, 2, 0, 2, 1, 0])
    indptr = np.array([0, 3, 4, 6, 8])
    X = sparse.csr_matrix((data, indices, indptr), shape=(4, 3))
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    dense = X.toarray()
    for metric in ("euclidean", "pearson"):
        got = sx.metrics.davies_bouldin(X, [0, 0, 1, 1], metric=metric)
        assert got == pytest.approx(sx.metrics.davies_bouldin(dense, [0, 0, 1, 1], metric=metric), rel=1e-12)
    for a, b in zip(before, (X.data, X.indices, X.indptr)):
        np.testing.assert_array_equal(a, b)


def test_dense_input_not_modified_and_containers():
    rng = np.random.default_rng(3)
    X, labels = _blobs(rng, 50, 6, 3)
    X0 = X.copy()
    lab = pd.Series([f"g{v}" for v in labels], index=rng.permutation(50))
    a = sx.metrics.davies_bouldin(X, lab, metric="pearson")
    b = sx.metrics.davies_bouldin(pd.DataFrame(X), pd.Categorical(lab), metric="pearson")
    c = sx.metrics.davies_bouldin(X.tolist(), labels, metric="pearson")
    assert a == pytest.approx(b) == pytest.approx(c)
    np.testing.assert_array_equal(X, X0)


@pytest.mark.parametrize("metric", ["euclidean", "pearson"])
def test_chunked_equals_single_block(monkeypatch, metric):
    rng = np.random.default_rng(5)
    X, labels = _blobs(rng, 300, 20, 6, sparsity=0.5)
    X[:, 0] += 1.0  # no constant rows
    full_dense = sx.metrics.davies_bouldin(X, labels, metric=metric)
    full_sparse = sx.metrics.davies_bouldin(sparse.csr_matrix(X), labels, metric=metric)
    monkeypatch.setattr(_davies_bouldin, "_CHUNK_ELEMS", 37)
    assert sx.metrics.davies_bouldin(X, labels, metric=metric) == pytest.approx(full_dense, rel=1e-12)
    assert sx.metrics.davies_bouldin(sparse.csr_matrix(X), labels, metric=metric) == pytest.approx(
        full_sparse, rel=1e-12
    )


def test_pearson_ignores_scale_and_offset():
    rng = np.random.default_rng(2)
    X, labels = _blobs(rng, 80, 10, 3)
    Y = X * rng.uniform(0.5, 3, (80, 1)) + rng.normal(0, 5, (80, 1))
    a = sx.metrics.davies_bouldin(X, labels, metric="pearson")
    # each row's affine change moves the centroids, so compare per-row distances via a one-row-per-cluster case
    assert a > 0
    Z = np.vstack([X[:3], X[:3] * 2 + 1])
    assert sx.metrics.davies_bouldin(Z, [0, 1, 2, 0, 1, 2], metric="pearson") == pytest.approx(
        _pearson_db_naive(Z, [0, 1, 2, 0, 1, 2]), rel=1e-9
    )
    assert sx.metrics.davies_bouldin(Y, labels, metric="pearson") == pytest.approx(
        _pearson_db_naive(Y, labels), rel=1e-9
    )


def test_singleton_clusters():
    """A single-member cluster has spread exactly 0 here; sklearn's expansion-based distances give
    sqrt(roundoff) ~ 1e-8 instead, so the two agree only to ~1e-7 in that case."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(6, 3))
    labels = [0, 1, 2, 3, 4, 0]
    assert sx.metrics.davies_bouldin(X, labels) == pytest.approx(davies_bouldin_score(X, labels), rel=1e-6)
    # two clusters, one a singleton: DB = S_0 / M_01 exactly
    c0 = X[:5].mean(axis=0)
    s0 = np.linalg.norm(X[:5] - c0, axis=1).mean()
    expected = s0 / np.linalg.norm(c0 - X[5])
    got = sx.metrics.davies_bouldin(X, [0, 0, 0, 0, 0, 1])
    assert got == pytest.approx(expected, rel=1e-12)
    assert sx.metrics.davies_bouldin(sparse.csr_matrix(X), [0, 0, 0, 0, 0, 1]) == pytest.approx(
        expected, rel=1e-12
    )


def test_degenerate_cases_follow_sklearn():
    # duplicated centroids: pairs at distance 0 are ignored
    X = np.array([[0.0, 0.0], [2.0, 2.0], [0.0, 2.0], [2.0, 0.0], [5.0, 5.0], [6.0, 6.0]])
    labels = [0, 0, 1, 1, 2, 2]
    assert sx.metrics.davies_bouldin(X, labels) == pytest.approx(davies_bouldin_score(X, labels), rel=1e-12)
    # zero spread everywhere -> 0
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert sx.metrics.davies_bouldin(X, [0, 0, 1, 1]) == 0.0 == davies_bouldin_score(X, [0, 0, 1, 1])


def test_scale_dense_and_sparse():
    rng = np.random.default_rng(0)
    X, labels = _blobs(rng, 16_000, 300, 20)
    X = X.astype(np.float32)
    t0 = time.perf_counter()
    for metric in ("euclidean", "pearson"):
        sx.metrics.davies_bouldin(X, labels, metric=metric)
    assert time.perf_counter() - t0 < 10

    S = sparse.random(2000, 5000, density=0.05, format="csr", random_state=0, dtype=np.float64)
    S = S + sparse.eye(2000, 5000, format="csr")  # no constant rows
    lab = rng.integers(0, 10, 2000)
    dense_bytes = 2000 * 5000 * 8
    tracemalloc.start()
    t0 = time.perf_counter()
    got = {m: sx.metrics.davies_bouldin(S, lab, metric=m) for m in ("euclidean", "pearson")}
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 10
    # working memory grows with the stored values (~50 bytes each here), far below a dense copy (80 MB)
    assert peak < min(dense_bytes / 2, 64 * S.nnz), f"peak {peak / 1e6:.1f} MB: was the matrix densified?"
    assert got["euclidean"] == pytest.approx(davies_bouldin_score(S.toarray(), lab), rel=1e-9)


def test_bad_input():
    f = sx.metrics.davies_bouldin
    X = np.arange(12, dtype=float).reshape(6, 2) ** 2
    labels = [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match=r"1 cluster; .* at least 2"):
        f(X, [0] * 6)
    with pytest.raises(ValueError, match=r"6 clusters for 6 samples"):
        f(X, list("abcdef"))
    with pytest.raises(ValueError, match=r"`X` has 6 rows .* `labels` has 5"):
        f(X, labels[:5])
    with pytest.raises(ValueError, match=r"`metric` must be one of \['euclidean', 'pearson'\], got 'cosine'"):
        f(X, labels, metric="cosine")
    with pytest.raises(TypeError, match=r"`metric` must be a string"):
        f(X, labels, metric=None)
    Xn = X.copy()
    Xn[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN and 0 infinite"):
        f(Xn, labels)
    Xi = sparse.csr_matrix(X)
    Xi.data[3] = np.inf
    with pytest.raises(ValueError, match=r"0 NaN and 1 infinite"):
        f(Xi, labels)
    with pytest.raises(ValueError, match=r"`labels` contains 1 missing"):
        f(X, [0, 0, None, 1, 1, 1])
    with pytest.raises(ValueError, match=r"must be 2-D"):
        f(np.arange(6.0), labels)
    with pytest.raises(TypeError, match=r"must be numeric"):
        f(np.array([["a", "b"]] * 6), labels)


def test_pearson_constant_rows_and_centroids():
    X = np.array([[1.0, 2, 3], [3, 3, 3], [0, 0, 0], [3, 2, 1], [1, 2, 4], [4, 1, 0]])
    with pytest.raises(
        ValueError, match=r"2 of 6 rows of `X` have zero variance across features \(e.g. rows \[1, 2\]\)"
    ):
        sx.metrics.davies_bouldin(X, [0, 0, 0, 1, 1, 1], metric="pearson")
    with pytest.raises(ValueError, match=r"2 of 6 rows"):
        sx.metrics.davies_bouldin(sparse.csr_matrix(X), [0, 0, 0, 1, 1, 1], metric="pearson")
    # euclidean does not care
    sx.metrics.davies_bouldin(X, [0, 0, 0, 1, 1, 1])
    # members [1, 0] and [0, 1] average to a constant centroid
    Y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
    with pytest.raises(ValueError, match=r"constant centroid.*\['a'\]"):
        sx.metrics.davies_bouldin(Y, ["a", "a", "b", "b"], metric="pearson")
    with pytest.raises(ValueError, match=r"constant centroid"):
        sx.metrics.davies_bouldin(sparse.csr_matrix(Y), ["a", "a", "b", "b"], metric="pearson")
