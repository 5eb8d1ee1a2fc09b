"""sx.pl.scdet: figure panels, saving, errors; the object is never modified."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from _helpers import assert_unchanged
from scomics_ext.pl._scdet import scdet as plot_scdet


@pytest.fixture
def annotated():
    rng = np.random.default_rng(0)
    n = 60
    pred = np.array(["B", "T", "novel_1", "novel_2"])[rng.integers(0, 4, n)]
    obs = pd.DataFrame(
        {
            "scdet": pd.Categorical(pred),
            "scdet_novel": np.char.startswith(pred.astype(str), "novel_"),
            "scdet_confidence": rng.random(n),
            "truth": pd.Categorical(np.array(["B", "T", "NK"])[rng.integers(0, 3, n)]),
        },
        index=[f"c{i}" for i in range(n)],
    )
    adata = AnnData(obs=obs)
    adata.obsm["X_scdet"] = rng.normal(size=(n, 8)).astype(np.float32)
    return adata


def test_panels_and_save(annotated, tmp_path):
    with assert_unchanged(annotated):
        fig = plot_scdet(annotated, basis="X_scdet", show=False)
    assert isinstance(fig, Figure)
    titles = [a.get_title() for a in fig.axes]
    assert any("prediction" in t for t in titles)
    assert any("novel" in t for t in titles)
    assert "confidence" in titles
    plt.close(fig)
    out = tmp_path / "scdet.png"
    with assert_unchanged(annotated):
        fig = plot_scdet(annotated, basis="X_scdet", truth_key="truth", save=out, show=False)
    assert out.is_file()
    assert out.stat().st_size > 0
    assert any("confusion" in a.get_title() for a in fig.axes)
    assert any("truth" in a.get_title() for a in fig.axes)
    plt.close(fig)


def test_errors(annotated):
    with pytest.raises(KeyError, match=r"query\.obs\['other'\] is missing"):
        plot_scdet(annotated, key="other", basis="X_scdet", show=False)
    with pytest.raises(KeyError, match=r"query\.obs\['nope'\] is missing"):
        plot_scdet(annotated, truth_key="nope", basis="X_scdet", show=False)
    with pytest.raises(KeyError, match=r"query\.obsm\['X_umap'\] is missing"):
        plot_scdet(annotated, basis="X_umap", show=False)
    with pytest.raises(TypeError, match="AnnData"):
        plot_scdet(annotated.obs, show=False)
