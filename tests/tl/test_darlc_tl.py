"""sx.tl.darlc: planted-pattern recovery, eigengap K, outputs, contracts, validation."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import scomics_ext as sx
from _helpers import assert_unchanged
from scomics_ext._baselines import image_kmeans
from scomics_ext.model import _darlc_data
from scomics_ext.model._darlc import DARLC
from scomics_ext.tl._darlc import darlc, select_spatial_genes


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def fast_gat(monkeypatch):
    monkeypatch.setattr(_darlc_data, "GAT_EPOCHS_RANGE", (20, 20))


def _small(n_genes=30, seed=0, **kw):
    return sx.datasets.gene_patterns(n_side=12, n_genes=n_genes, n_patterns=3, random_state=seed, **kw)


def _planted(n_side, n_genes, n_patterns):
    """One default-settings run on planted patterns (eigengap K, default schedule)."""
    torch.set_num_threads(1)
    adata = sx.datasets.gene_patterns(
        n_side=n_side, n_genes=n_genes, n_patterns=n_patterns, signal=1.5, random_state=0
    )
    out = darlc(adata, n_clusters=None, copy=True, progress_bar=False)
    return adata, out


def _image_kmeans_nmi(adata, k):
    import scanpy as sc

    logn = adata.copy()
    sc.pp.normalize_total(logn)
    sc.pp.log1p(logn)
    sx.pp.gene_images(logn)
    truth = adata.var["truth"].astype(str).to_numpy()
    nmi = sx.metrics.clustering_scores(truth, image_kmeans(logn.varm["gene_images"], k))["nmi"]
    torch.set_num_threads(1)  # scanpy / numba reset torch's thread count
    return nmi


@pytest.fixture(scope="module")
def planted_run():
    """Small default-settings run (60 genes, 3 patterns on 16 x 16: ~10 s on one core)."""
    return _planted(16, 60, 3)


def test_planted_patterns_recovered(planted_run):
    adata, out = planted_run
    truth = adata.var["truth"].astype(str).to_numpy()
    labels = out.var["darlc"].astype(str).to_numpy()
    assert out.uns["darlc"]["n_clusters_inferred"]
    assert out.uns["darlc"]["n_clusters_fitted"] == 3  # eigengap on the seeding similarity
    scores = sx.metrics.clustering_scores(truth, labels)
    # measured 0.84 (seed 0) / 0.90 (seed 1); chance is ~0
    assert scores["nmi"] >= 0.75
    assert scores["ari"] >= 0.7


@pytest.mark.slow
def test_planted_patterns_recovered_larger():
    """120 genes, 4 patterns on 20 x 20 (~30 s): DARLC matches k-means on the images."""
    adata, out = _planted(20, 120, 4)
    truth = adata.var["truth"].astype(str).to_numpy()
    labels = out.var["darlc"].astype(str).to_numpy()
    assert out.uns["darlc"]["n_clusters_fitted"] == 4
    score = sx.metrics.clustering_scores(truth, labels)["nmi"]
    assert score >= 0.8
    assert score >= _image_kmeans_nmi(adata, 4) - 0.02


def test_outputs_are_written_and_h5ad_writable(planted_run, tmp_path):
    adata, out = planted_run
    assert "darlc" not in adata.var  # copy=True left the input alone
    emb = out.varm["X_darlc"]
    assert emb.shape == (adata.n_vars, 32)
    assert emb.dtype == np.float32
    assert isinstance(out.var["darlc"].dtype, pd.CategoricalDtype)
    uns = out.uns["darlc"]
    for key in (
        "params",
        "n_clusters",
        "dbie",
        "dbip",
        "cluster_images",
        "image_shape",
        "history",
        "training",
    ):
        assert key in uns, key
    k = uns["n_clusters"]
    assert uns["cluster_images"].shape == (k, 16, 16)
    assert uns["cluster_images"].dtype == np.float32
    assert np.isfinite(uns["dbie"])
    assert np.isfinite(uns["dbip"])
    assert len(uns["history"]["epoch"]) == len(uns["history"]["mim"])
    assert list(out.var["darlc"].cat.categories) == [str(i) for i in range(k)]
    out.write(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(back.varm["X_darlc"], emb)


def test_gene_subset_leaves_other_genes_nan(fast_gat):
    adata = _small()
    genes = list(adata.var_names[:20])
    model = darlc(adata, n_clusters=3, genes=genes, max_epochs=2, return_model=True, progress_bar=False)
    assert isinstance(model, DARLC)
    assert adata.var["darlc"].iloc[:20].notna().all()
    assert adata.var["darlc"].iloc[20:].isna().all()
    assert np.isnan(adata.varm["X_darlc"][20:]).all()
    assert np.isfinite(adata.varm["X_darlc"][:20]).all()
    assert adata.uns["darlc"]["n_genes_clustered"] == 20


def test_copy_and_return_model_together(fast_gat):
    adata = _small()
    with assert_unchanged(adata):
        out, model = darlc(
            adata, n_clusters=3, max_epochs=2, copy=True, return_model=True, progress_bar=False
        )
    assert isinstance(model, DARLC)
    assert out.var["darlc"].notna().all()


def test_n_top_genes_picks_spatially_variable_genes():
    adata = sx.datasets.gene_patterns(n_side=14, n_genes=40, null_fraction=0.5, random_state=1)
    idx = select_spatial_genes(adata.X, adata.obsm["spatial"], 15)
    assert idx.size == 15
    assert (adata.var["truth"].iloc[idx] != "null").mean() >= 0.9


def test_log_normalised_dense_input_and_layer(fast_gat):
    adata = _small(n_genes=20)
    import scanpy as sc

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    torch.set_num_threads(1)  # scanpy / numba reset torch's thread count (oversubscription)
    adata.X = adata.X.toarray()
    darlc(adata, n_clusters=2, layer="counts", max_epochs=2, key_added="from_counts", progress_bar=False)
    darlc(adata, n_clusters=2, max_epochs=2, progress_bar=False)
    assert adata.uns["from_counts"]["input_was_counts"]
    assert not adata.uns["darlc"]["input_was_counts"]


def test_constant_genes_are_not_clustered(fast_gat):
    adata = _small(n_genes=20)
    X = adata.X.toarray()
    X[:, 0] = 0.0
    adata.X = X
    darlc(adata, n_clusters=2, max_epochs=2, progress_bar=False)
    assert pd.isna(adata.var["darlc"].iloc[0])
    assert adata.var["darlc"].iloc[1:].notna().all()


def test_bad_inputs_fail_early_and_leave_adata_unchanged():
    adata = _small()
    with assert_unchanged(adata):
        with pytest.raises(KeyError, match=r"obsm\['xy'\]"):
            darlc(adata, spatial_key="xy")
        with pytest.raises(ValueError, match="at least 2 genes"):
            darlc(adata, genes=["gene_0"])
        with pytest.raises(ValueError, match="exceeds the number of genes to cluster"):
            darlc(adata, n_clusters=31)
        with pytest.raises(TypeError, match="`n_clusters` must be an integer"):
            darlc(adata, n_clusters=2.5)
        with pytest.raises(KeyError, match=r"not in adata\.var_names"):
            darlc(adata, genes=["gene_0", "nope"])
        with pytest.raises(ValueError, match="`grid` must be one of"):
            darlc(adata, grid="triangle")
        with pytest.raises(ValueError, match="`n_top_genes` must be >= 2"):
            darlc(adata, n_top_genes=1)
        with pytest.raises(KeyError, match=r"layers\['counts'\]"):
            darlc(adata, layer="counts")
    nan = adata.copy()
    nan.X = nan.X.toarray()
    nan.X[0, 0] = np.nan
    with assert_unchanged(nan), pytest.raises(ValueError, match="NaN"):
        darlc(nan)
    neg = adata.copy()
    neg.X = neg.X.toarray() - 1.0
    with assert_unchanged(neg), pytest.raises(ValueError, match=r"negative values.*never scaled"):
        darlc(neg)
    dup = adata.copy()
    dup.obsm["spatial"] = np.asarray(dup.obsm["spatial"]).copy()
    dup.obsm["spatial"][1] = dup.obsm["spatial"][0]
    with assert_unchanged(dup), pytest.raises(ValueError, match=r"obsm\['spatial'\].*grid='bin'"):
        darlc(dup)
    one = adata[:, :1].copy()
    with assert_unchanged(one), pytest.raises(ValueError, match="at least 2 genes"):
        darlc(one)
    with pytest.raises(TypeError, match="AnnData"):
        darlc(adata.X)


def test_failure_during_training_leaves_adata_unchanged(monkeypatch, fast_gat):
    adata = _small()

    def boom(self, *args, **kwargs):
        raise FloatingPointError("diverged")

    monkeypatch.setattr(DARLC, "train", boom)
    with assert_unchanged(adata), pytest.raises(FloatingPointError, match="diverged"):
        darlc(adata, n_clusters=3)


def test_binned_free_coordinates(fast_gat):
    adata = _small(n_genes=20)
    rng = np.random.default_rng(0)
    adata.obsm["spatial"] = np.asarray(adata.obsm["spatial"]) + rng.uniform(-0.5, 0.5, (adata.n_obs, 2))
    darlc(adata, n_clusters=2, grid="bin", max_epochs=2, progress_bar=False)
    assert adata.uns["darlc"]["grid"] == "bin"
    assert adata.var["darlc"].notna().all()
