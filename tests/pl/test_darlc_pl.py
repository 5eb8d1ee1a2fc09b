"""sx.pl.gene_clusters gallery."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import scomics_ext as sx
from scomics_ext.model import _darlc_data
from scomics_ext.pl._darlc import gene_clusters
from scomics_ext.tl._darlc import darlc


@pytest.fixture(scope="module")
def clustered():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    saved = _darlc_data.GAT_EPOCHS_RANGE
    _darlc_data.GAT_EPOCHS_RANGE = (20, 20)
    try:
        adata = sx.datasets.gene_patterns(n_side=(14, 10), n_genes=24, n_patterns=3, random_state=0)
        darlc(adata, n_clusters=3, max_epochs=2, progress_bar=False)
    finally:
        _darlc_data.GAT_EPOCHS_RANGE = saved
        torch.set_num_threads(n)
    return adata


def test_gallery_layout_and_save(clustered, tmp_path):
    k = clustered.uns["darlc"]["n_clusters"]
    fig = gene_clusters(clustered, n_genes=2, show=False, save=tmp_path / "gallery.png")
    assert (tmp_path / "gallery.png").stat().st_size > 0
    axes = np.asarray(fig.axes).reshape(k, 3)
    first = axes[0, 0].images[0].get_array()
    assert first.shape == (14, 10)
    shown = [ax.get_title() for ax in axes[0, 1:]]
    members = set(clustered.var_names[clustered.var["darlc"] == "0"])
    assert set(shown) <= members
    plt.close(fig)


def test_gallery_subset_of_clusters_and_errors(clustered):
    fig = gene_clusters(clustered, clusters=["1"], n_genes=1, show=False)
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="unknown clusters"):
        gene_clusters(clustered, clusters=["99"], show=False)
    with pytest.raises(KeyError, match=r"run `sx\.tl\.darlc"):
        gene_clusters(clustered, key="other", show=False)
