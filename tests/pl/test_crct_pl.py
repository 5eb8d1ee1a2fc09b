"""sx.pl.crct: a figure with the spatial domains, a UMAP of the embedding and the loss curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import scomics_ext as sx
from _helpers import assert_unchanged


@pytest.fixture(scope="module")
def mdata():
    """A MuData carrying fake CRCT outputs (plotting does not need a trained model)."""
    md = sx.datasets.spatial_multiome(n_side=12, modalities=("adt",), n_rare=0, random_state=0)
    rng = np.random.default_rng(0)
    md.obsm["X_crct"] = rng.normal(size=(md.n_obs, 8)).astype(np.float32)
    md.obs["crct"] = pd.Categorical(md.obs["truth"].astype(str))
    md.uns["crct"] = {"history": {"loss": np.linspace(2, 1, 20), "loss_rec": np.linspace(1.5, 1, 20)}}
    return md


def test_returns_figure_with_three_panels(mdata, tmp_path, monkeypatch):
    from scomics_ext.pl import _crct

    # the real UMAP is exercised by the slow tests; its numba compilation alone takes ~1 min
    monkeypatch.setattr(_crct, "_umap", lambda z, random_state: _crct._pca2(z))
    with assert_unchanged(mdata):
        fig = sx.pl.crct(mdata, save=tmp_path / "crct.png")
    assert isinstance(fig, Figure)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 3
    assert (tmp_path / "crct.png").stat().st_size > 0
    plt.close(fig)


def test_panels_palette_and_anndata(mdata):
    adata = mdata.mod["adt"].copy()
    adata.obs["crct"] = mdata.obs["crct"].values
    adata.uns["crct"] = mdata.uns["crct"]
    adata.obsm["X_crct"] = mdata.obsm["X_crct"]
    cats = list(adata.obs["crct"].cat.categories)
    fig = sx.pl.crct(adata, panels=["spatial", "loss"], palette=dict.fromkeys(cats, "k"), show=False)
    assert len(fig.axes) == 2
    plt.close(fig)
    fig = sx.pl.crct(adata, panels=["embedding"], basis="pca", show=False)
    assert fig.axes[0].get_title() == "PCA of X_crct"
    plt.close(fig)


@pytest.mark.slow
def test_real_umap(mdata):
    fig = sx.pl.crct(mdata, panels=["embedding"], show=False)
    assert fig.axes[0].get_title() == "UMAP of X_crct"
    plt.close(fig)


def test_missing_results_raise(mdata):
    with pytest.raises(KeyError, match=r"run `sx.tl.crct\(data, key_added='other'\)` first"):
        sx.pl.crct(mdata, key="other")
    with pytest.raises(ValueError, match="`panels` must be"):
        sx.pl.crct(mdata, panels=["heatmap"])
