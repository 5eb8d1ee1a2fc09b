"""sx.tl.crct: write-back contract, validation with clear messages, interrupts, determinism."""

from __future__ import annotations

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from scipy import sparse

import scomics_ext as sx
from _helpers import assert_unchanged

FAST = {"n_comps": 12, "n_hidden": 16, "n_latent": 12, "max_epochs": 10, "progress_bar": False}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def base():
    mdata = sx.datasets.spatial_multiome(n_side=14, modalities=("rna", "adt"), n_rare=0, random_state=5)
    mdata.mod["adt"].obsm["X_pca_given"] = np.random.default_rng(0).normal(size=(mdata.n_obs, 5))
    return mdata


@pytest.fixture
def mdata(base):
    return base.copy()


@pytest.fixture(scope="module")
def result(base):
    mdata = base.copy()
    model = sx.tl.crct(mdata, n_clusters=5, random_state=3, return_model=True, **FAST)
    return mdata, model


def test_writes_every_output(result, tmp_path):
    mdata, model = result
    z = mdata.obsm["X_crct"]
    assert z.dtype == np.float32
    assert z.shape == (mdata.n_obs, 12)
    labels = mdata.obs["crct"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    assert all(isinstance(c, str) for c in labels.cat.categories)
    assert labels.nunique() == 5
    uns = mdata.uns["crct"]
    assert uns["params"]["n_clusters"] == 5
    assert uns["params"]["modalities"] == ["rna", "adt"]
    assert uns["params"]["kinds"] == ["rna", "adt"]
    assert uns["params"]["max_epochs"] == 10
    for term in ("loss", "loss_rec", "loss_aug", "loss_graph", "loss_cluster"):
        assert len(uns["history"][term]) == 10
    assert sum(uns["cluster_sizes"].values()) == mdata.n_obs
    assert uns["cluster_start_epoch"] == model.cluster_start_epoch_
    assert 3 <= uns["cluster_start_epoch"] <= 7  # between 1/3 and 2/3 of the 10 epochs
    assert (uns["history"]["beta_cluster"][uns["cluster_start_epoch"] :] == 1).all()
    assert isinstance(model, sx.model.CRCT)
    assert model.is_trained_
    np.testing.assert_array_equal(model.get_latent_representation(), z)
    assert "_scvi_uuid" not in mdata.uns, "registration must not touch the user's object"
    mdata.write(tmp_path / "out.h5mu")  # h5mu-writable
    back = mudata.read_h5mu(tmp_path / "out.h5mu")
    np.testing.assert_array_equal(back.obsm["X_crct"], z)
    np.testing.assert_allclose(back.uns["crct"]["history"]["loss"], uns["history"]["loss"])


def test_same_seed_same_labels(result, base):
    mdata, _ = result
    again = sx.tl.crct(base, n_clusters=5, random_state=3, copy=True, **FAST)
    np.testing.assert_array_equal(again.obs["crct"].to_numpy(), mdata.obs["crct"].to_numpy())
    np.testing.assert_array_equal(again.obsm["X_crct"], mdata.obsm["X_crct"])


def test_copy_returns_new_object_and_leaves_input(base):
    with assert_unchanged(base):
        out = sx.tl.crct(
            base, n_clusters=4, modalities=["adt"], copy=True, key_added="dom", method="kmeans", **FAST
        )
    assert out is not base
    assert "dom" in out.obs
    assert "X_dom" in out.obsm
    assert "dom" not in base.obs


def test_one_modality_anndata_with_kind_and_use_rep(base):
    adt = base.mod["adt"].copy()
    adt.obsm["spatial"] = np.asarray(base.obsm["spatial"])
    with assert_unchanged(adt), pytest.raises(ValueError, match=r"Pass kind="):
        sx.tl.crct(adt, n_clusters=4, **FAST)
    assert sx.tl.crct(adt, n_clusters=4, kind="protein", **FAST) is None
    assert adt.obs["crct"].nunique() == 4
    assert adt.uns["crct"]["params"]["kinds"] == ["adt"]
    sx.tl.crct(adt, n_clusters=3, use_rep="X_pca_given", key_added="rep", **FAST)
    assert adt.uns["rep"]["params"]["use_rep"] == {"X": "X_pca_given"}


def _drop_coords(mdata):
    del mdata.obsm["spatial"]
    for mod in mdata.mod.values():
        del mod.obsm["spatial"]


@pytest.mark.parametrize(
    ("mutate", "kwargs", "exc", "match"),
    [
        (_drop_coords, {}, KeyError, r"obsm\['spatial'\] is missing"),
        (None, {"spatial_key": "xy"}, KeyError, r"obsm\['xy'\] is missing"),
        (None, {"modalities": ["rna", "protein"]}, KeyError, "'protein' is not in mdata.mod"),
        (None, {"n_clusters": 1}, ValueError, "`n_clusters` must be at least 2"),
        (None, {"n_clusters": 10_000}, ValueError, "exceeds the number of spots"),
        (None, {"n_clusters": 2.5}, TypeError, "`n_clusters` must be an integer"),
        (None, {"layer": {"rna": "nope"}}, KeyError, r"layers\['nope'\] is missing"),
        (None, {"use_rep": {"adt": "X_none"}}, KeyError, r"obsm\['X_none'\] is missing"),
        (None, {"kind": {"rna": "methylation"}}, ValueError, "`kind` must be one of"),
        (None, {"n_latnt": 3}, TypeError, r"unexpected keyword argument\(s\) \['n_latnt'\]"),
        (None, {"method": "mclust"}, ValueError, "`method` must be one of"),
        (None, {"refine": "yes"}, TypeError, "`refine` must be a bool"),
        (None, {"key_added": ""}, TypeError, "`key_added` must be a non-empty string"),
    ],
    ids=[
        "no-coords",
        "wrong-spatial-key",
        "unknown-modality",
        "k<2",
        "k>n",
        "k-float",
        "no-layer",
        "no-rep",
        "bad-kind",
        "bad-kwarg",
        "bad-method",
        "bad-refine",
        "bad-key",
    ],
)
def test_bad_input_raises_and_leaves_data(mdata, mutate, kwargs, exc, match):
    if mutate is not None:
        mutate(mdata)
    args = {"n_clusters": 4, **FAST, **kwargs}
    with assert_unchanged(mdata), pytest.raises(exc, match=match):
        sx.tl.crct(mdata, **args)


def test_bad_values_raise_and_leave_data(mdata):
    rna = mdata.mod["rna"]
    X = rna.X.toarray()
    X[3, 4] = np.nan
    rna.layers["nan"] = X
    with (
        assert_unchanged(mdata),
        pytest.raises(ValueError, match=r"mod\['rna'\].layers\['nan'\] contains 1 NaN"),
    ):
        sx.tl.crct(mdata, n_clusters=4, layer={"rna": "nan"}, **FAST)
    X[3, 4] = np.inf
    rna.layers["inf"] = X
    with assert_unchanged(mdata), pytest.raises(ValueError, match="0 NaN and 1 infinite"):
        sx.tl.crct(mdata, n_clusters=4, layer={"rna": "inf"}, **FAST)
    rna.layers["neg"] = sparse.csr_matrix(-np.abs(rna.X.toarray()))
    with (
        assert_unchanged(mdata),
        pytest.raises(ValueError, match=r"layers\['neg'\] contains negative values"),
    ):
        sx.tl.crct(mdata, n_clusters=4, layer={"rna": "neg"}, **FAST)
    rna.layers["lognorm"] = np.log1p(rna.X.toarray())
    with assert_unchanged(mdata), pytest.raises(ValueError, match="does not hold raw counts"):
        sx.tl.crct(mdata, n_clusters=4, layer={"rna": "lognorm"}, **FAST)
    mdata.mod["adt"].layers["zero"] = np.zeros(mdata.mod["adt"].shape, dtype=np.float32)
    with assert_unchanged(mdata), pytest.raises(ValueError, match=r"layers\['zero'\] is all zeros"):
        sx.tl.crct(mdata, n_clusters=4, layer={"adt": "zero"}, **FAST)


def test_modalities_with_different_spots_raise(base):
    rna = base.mod["rna"][:-5].copy()
    with mudata.set_options(pull_on_update=False):
        mdata = mudata.MuData({"rna": rna, "adt": base.mod["adt"].copy()})
    mdata.obsm["spatial"] = np.asarray(base.mod["adt"].obsm["spatial"])
    with assert_unchanged(mdata), pytest.raises(ValueError, match="do not hold the same observations"):
        sx.tl.crct(mdata, n_clusters=4, **FAST)


class _Raise(Callback):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 2:
            raise self.exc


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt(), FloatingPointError("diverged")], ids=["ctrl-c", "divergence"]
)
def test_interrupt_during_training_leaves_data(mdata, exc):
    with assert_unchanged(mdata), pytest.raises(type(exc)):
        sx.tl.crct(mdata, n_clusters=4, train_kwargs={"callbacks": [_Raise(exc)]}, **FAST)
    assert "crct" not in mdata.obs
    assert "X_crct" not in mdata.obsm
    assert "crct" not in mdata.uns


def test_not_an_object():
    with pytest.raises(TypeError, match="must be a MuData or AnnData"):
        sx.tl.crct(np.zeros((3, 3)), n_clusters=2)
    with pytest.raises(TypeError, match="`kind` must be a string for an AnnData"):
        sx.tl.crct(ad.AnnData(np.ones((5, 3))), n_clusters=2, kind={"x": "rna"})
