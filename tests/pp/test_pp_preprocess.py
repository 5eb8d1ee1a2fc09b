"""sx.pp.preprocess_modality and its kernels (preprocess_matrix, clr, tfidf)."""

from __future__ import annotations

import numpy as np
import pytest
from anndata import AnnData, read_h5ad
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.extmath import svd_flip

import scomics_ext as sx
from _helpers import assert_unchanged
from scomics_ext.pp import clr, preprocess_matrix, resolve_kind, tfidf


def planted(kind: str, n: int = 240, n_groups: int = 3, seed: int = 0, sparse_x: bool = False) -> AnnData:
    """Counts with ``n_groups`` groups of cells that differ in the means of a block of features each."""
    rng = np.random.default_rng(seed)
    n_feat, base, high, block = {
        "rna": (400, 1.0, 6.0, 15),
        "adt": (15, 10.0, 80.0, 3),
        "atac": (600, 0.05, 0.6, 60),
    }[kind]
    groups = np.repeat(np.arange(n_groups), n // n_groups)
    rate = np.full((n, n_feat), base)
    if kind == "rna":  # gene means spread over two orders of magnitude, as in real data
        rate *= np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=n_feat))
    for g in range(n_groups):
        cols = np.arange(g * block, (g + 1) * block)
        rate[np.ix_(groups == g, cols)] = rate[np.ix_(groups == g, cols)] * (high / base)
    depth = rng.uniform(0.5, 2.0, size=(n, 1))  # varying library size
    X = rng.poisson(rate * depth).astype(np.float32)
    if kind == "atac":
        X = np.minimum(X, 1)
        X[X.sum(1) == 0, -1] = 1
    adata = AnnData(sparse.csr_matrix(X) if sparse_x else X)
    adata.obs["group"] = groups.astype(str)
    adata.layers["counts"] = X.copy()
    return adata


def ari_kmeans(Z: np.ndarray, labels: np.ndarray) -> float:
    k = len(np.unique(labels))
    return adjusted_rand_score(labels, KMeans(k, n_init=10, random_state=0).fit_predict(Z))


# --------------------------------------------------------------------------------------- shapes / contract
@pytest.mark.parametrize(
    ("kind", "n_comps", "key", "expected"),
    [
        ("rna", 10, "X_pca", 10),
        ("rna", None, "X_pca", 50),
        ("adt", None, "X_pca", 14),  # n_proteins - 1
        ("atac", 8, "X_lsi", 8),
        ("atac", None, "X_lsi", 50),
    ],
)
def test_preprocess_shapes_and_data_untouched(kind, n_comps, key, expected):
    adata = planted(kind)
    X_before, layer_before = adata.X.copy(), adata.layers["counts"].copy()
    assert sx.pp.preprocess_modality(adata, kind=kind, n_comps=n_comps) is None
    Z = adata.obsm[key]
    assert Z.shape == (adata.n_obs, expected)
    assert Z.dtype == np.float32
    assert np.all(np.isfinite(Z))
    np.testing.assert_array_equal(adata.X, X_before)
    np.testing.assert_array_equal(adata.layers["counts"], layer_before)
    uns = adata.uns[key]
    assert uns["params"]["kind"] == kind
    assert uns["params"]["n_comps"] == expected
    if kind == "rna":
        assert adata.var["highly_variable"].dtype == bool
        assert 0 < adata.var["highly_variable"].sum() <= 3000
        assert len(uns["variance_ratio"]) == expected
    else:
        assert "highly_variable" not in adata.var
    if kind == "atac":
        assert len(uns["singular_values"]) == expected + 1


@pytest.mark.parametrize("kind", ["rna", "adt", "atac"])
def test_preprocess_separates_planted_groups(kind):
    adata = planted(kind, sparse_x=kind != "adt")
    sx.pp.preprocess_modality(adata, kind=kind, n_comps=10)
    Z = adata.obsm["X_lsi" if kind == "atac" else "X_pca"]
    assert ari_kmeans(Z, adata.obs["group"].to_numpy()) > 0.95


def test_preprocess_sparse_equals_dense_and_is_repeatable():
    dense, sp = planted("rna"), planted("rna", sparse_x=True)
    a = preprocess_matrix(dense.X, kind="rna", n_comps=5, n_top_genes=100)
    b = preprocess_matrix(sp.X, kind="rna", n_comps=5, n_top_genes=100)
    c = preprocess_matrix(sp.X, kind="rna", n_comps=5, n_top_genes=100)
    np.testing.assert_array_equal(b, c)
    np.testing.assert_allclose(np.abs(a), np.abs(b), atol=1e-3)


def test_preprocess_aliases_key_added_and_copy(tmp_path):
    adata = planted("adt")
    with assert_unchanged(adata):
        out = sx.pp.preprocess_modality(adata, kind="Protein", key_added="X_adt", copy=True)
    assert isinstance(out, AnnData)
    assert out is not adata
    assert out.obsm["X_adt"].shape == (adata.n_obs, 14)
    assert out.uns["X_adt"]["params"]["kind"] == "adt"
    out.write_h5ad(tmp_path / "p.h5ad")  # uns is serialisable
    assert read_h5ad(tmp_path / "p.h5ad").uns["X_adt"]["params"]["layer"] is None
    assert [resolve_kind(k) for k in ("gex", "peaks", "prot", "RNA")] == ["rna", "atac", "adt", "rna"]


def test_rna_on_normalised_x_needs_counts_layer():
    adata = planted("rna")
    adata.X = np.log1p(adata.X)
    with (
        assert_unchanged(adata),
        pytest.raises(ValueError, match=r"adata\.X does not hold raw counts.*layer="),
    ):
        sx.pp.preprocess_modality(adata, kind="rna")
    sx.pp.preprocess_modality(adata, kind="rna", layer="counts", n_comps=5)
    assert adata.obsm["X_pca"].shape == (adata.n_obs, 5)
    assert adata.uns["X_pca"]["params"]["layer"] == "counts"


def test_rna_hvg_and_min_cells():
    adata = planted("rna")
    adata.X[:, -5:] = 0  # undetected genes are filtered and never highly variable
    adata.X[:3, -5:] = 1
    sx.pp.preprocess_modality(adata, kind="rna", n_top_genes=50, n_comps=5)
    hvg = adata.var["highly_variable"].to_numpy()
    assert hvg.sum() == 50
    assert not hvg[-5:].any()
    assert hvg[:45].sum() >= 40  # the planted marker genes are the variable ones


# --------------------------------------------------------------------------------------- kernels
def test_clr_equals_hand_formula():
    X = np.random.default_rng(0).poisson(4.0, size=(20, 6)).astype(float)
    expected = np.log1p(X / np.exp(np.log1p(X).mean(axis=1, keepdims=True)))
    np.testing.assert_allclose(clr(X), expected, rtol=1e-6)
    np.testing.assert_allclose(clr(sparse.csr_matrix(X)), expected, rtol=1e-6)


def test_adt_is_pca_of_scaled_clr():
    adata = planted("adt")
    Z = preprocess_matrix(adata.X, kind="adt", n_comps=4, max_value=None)
    C = clr(adata.X).astype(np.float64)
    S = (C - C.mean(0)) / C.std(0)
    ref = PCA(4, svd_solver="full").fit_transform(S)
    for j in range(4):
        assert abs(np.corrcoef(Z[:, j], ref[:, j])[0, 1]) > 0.999


def test_tfidf_formula():
    X = np.random.default_rng(0).poisson(0.5, size=(30, 40)).astype(float)
    X[:, 3] = 0  # peak without counts
    X[X.sum(1) == 0, 0] = 1
    tf = X / X.sum(1, keepdims=True)
    idf = np.divide(X.shape[0], X.sum(0), out=np.zeros(40), where=X.sum(0) > 0)
    T = tf * idf
    expected = np.log1p(1e4 * T / T.sum(1, keepdims=True))
    np.testing.assert_allclose(tfidf(X).toarray(), expected, rtol=1e-10)


def test_atac_drops_first_lsi_component_and_standardises_rows():
    adata = planted("atac", n=150)
    k = 2  # components 1-2 carry the planted groups: well separated singular values
    Z = preprocess_matrix(adata.X, kind="atac", n_comps=k)
    U, _S, Vt = np.linalg.svd(tfidf(adata.X).toarray(), full_matrices=False)
    U, Vt = svd_flip(U, Vt)  # the sign convention of sklearn's randomized_svd
    ref = U[:, 1 : k + 1]
    ref = (ref - ref.mean(1, keepdims=True)) / ref.std(1, ddof=1, keepdims=True)
    np.testing.assert_allclose(Z, ref, atol=2e-3)
    np.testing.assert_allclose(Z.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(Z.std(1, ddof=1), 1, atol=1e-4)
    # the first (depth) component is not part of the output
    first = U[:, 0]
    assert max(abs(np.corrcoef(first, Z[:, j])[0, 1]) for j in range(k)) < 0.99


# --------------------------------------------------------------------------------------- bad input
def _with(adata: AnnData, X) -> AnnData:
    adata.X = X
    return adata


@pytest.mark.parametrize(
    ("kind", "prepare", "kwargs", "exc", "match"),
    [
        ("rna", lambda a: _with(a, a.X - 1), {}, ValueError, r"adata\.X contains negative values"),
        ("adt", lambda a: _with(a, a.X - 1), {}, ValueError, r"adata\.X contains negative values.*layer="),
        ("atac", lambda a: _with(a, -a.X), {}, ValueError, "negative"),
        (
            "adt",
            lambda a: _with(a, np.where(a.X > 50, np.nan, a.X)),
            {},
            ValueError,
            r"adata\.X contains .* NaN",
        ),
        ("rna", lambda a: _with(a, np.zeros_like(a.X)), {}, ValueError, "all zeros"),
        ("adt", lambda a: _with(a, np.zeros_like(a.X)), {}, ValueError, "all zeros"),
        ("rna", None, {"n_comps": 500}, ValueError, "n_comps"),
        ("adt", None, {"n_comps": 15}, ValueError, r"`n_comps`=15 is too large"),
        ("atac", None, {"n_comps": 1}, ValueError, "n_comps"),
        ("rna", None, {"n_comps": 2.0}, TypeError, "n_comps"),
        ("rna", None, {"kind": "metabolome"}, ValueError, "kind"),
        ("rna", None, {"layer": "raw"}, KeyError, r"layers\['raw'\]"),
        ("rna", None, {"min_cells": 10_000}, ValueError, "min_cells"),
        ("rna", None, {"n_top_genes": 0}, ValueError, "n_top_genes"),
        (
            "atac",
            lambda a: _with(a, np.vstack([np.zeros((1, a.n_vars), np.float32), a.X[1:]])),
            {},
            ValueError,
            "no counts",
        ),
        ("rna", lambda a: _with(a, a.X.astype(str)), {}, TypeError, "numeric"),
    ],
)
def test_preprocess_bad_input_leaves_object_unchanged(kind, prepare, kwargs, exc, match):
    adata = planted(kind, n=60)
    if prepare is not None:
        adata = prepare(adata)
    kwargs = {"kind": kind, **kwargs}
    with assert_unchanged(adata), pytest.raises(exc, match=match):
        sx.pp.preprocess_modality(adata, **kwargs)


def test_preprocess_rejects_non_anndata():
    with pytest.raises(TypeError, match="AnnData"):
        sx.pp.preprocess_modality(np.ones((4, 4)), kind="adt")
