"""sx.model.CRCT: registration, training through Lightning, history, determinism, save/load, ablations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

import scomics_ext as sx
from _helpers import assert_unchanged
from scomics_ext.model import CRCT

TERMS = ("loss", "loss_rec", "loss_aug", "loss_graph", "loss_cluster")
SMALL = {"n_comps": 12, "n_hidden": 16, "n_latent": 12}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: threads only add overhead on a busy machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def mdata():
    return sx.datasets.spatial_multiome(n_side=14, modalities=("rna", "adt"), n_rare=0, random_state=3)


@pytest.fixture(scope="module")
def trained(mdata):
    CRCT.setup_mudata(mdata, modalities={"rna": "rna", "protein": "adt"})
    model = CRCT(mdata, n_clusters=5, random_state=1, **SMALL)
    model.train(max_epochs=12, progress_bar=False)
    return model


def test_setup_registers_fields_without_touching_data(mdata):
    X_before = mdata.mod["rna"].X.copy()
    CRCT.setup_mudata(mdata, modalities=["rna", "adt"], layers={"rna": "counts"})
    manager = CRCT._setup_adata_manager_store[mdata.uns["_scvi_uuid"]]
    assert set(manager.data_registry) == {"crct_input_0", "crct_input_1", "crct_spatial"}
    assert (X_before != mdata.mod["rna"].X).nnz == 0


def test_setup_errors(mdata):
    with pytest.raises(KeyError, match=r"'prot' is not in mdata\.mod"):
        CRCT.setup_mudata(mdata, modalities=["rna", "prot"])
    with pytest.raises(KeyError, match=r"obsm\['xy'\] is missing"):
        CRCT.setup_mudata(mdata, spatial_key="xy")
    with pytest.raises(KeyError, match=r"layers\['raw'\] is missing"):
        CRCT.setup_mudata(mdata, layers={"rna": "raw"})
    with pytest.raises(TypeError, match="use `setup_anndata`"):
        CRCT.setup_mudata(mdata.mod["adt"])


def test_history_has_every_term_and_every_term_acts(trained):
    hist = trained.history_
    for term in (*TERMS, "lambda_aug", "beta_cluster", "rho"):
        assert term in hist, term
        assert len(hist[term]) == 12
    table = trained.get_loss_history()
    assert list(table.index) == list(range(12))
    assert np.isfinite(table[list(TERMS)].to_numpy()).all()
    assert (table["loss_cluster"] != 0).any(), "clustering loss never acted"
    assert (table["loss_graph"] > 0).any(), "graph regulariser never acted"
    assert (table["loss_aug"] != table["loss_rec"]).any(), "augmentation never perturbed Z"
    assert table["beta_cluster"].iloc[0] == 0
    assert table["beta_cluster"].iloc[-1] == 1
    assert trained.is_trained_


def test_stable_cluster_start_waits_for_consistent_pseudo_labels(mdata):
    CRCT.setup_mudata(mdata, modalities={"rna": "rna", "protein": "adt"})
    model = CRCT(mdata, n_clusters=5, random_state=1, **SMALL)
    model.train(max_epochs=24, progress_bar=False, cluster_start="stable")
    start = model.cluster_start_epoch_
    assert start is not None
    assert 8 <= start <= 16
    beta = model.get_loss_history()["beta_cluster"].to_numpy()
    assert (beta[:start] == 0).all()
    assert (beta[start:] == 1).all()
    epochs = [e for e, _ in model.refreshes_]
    assert epochs[0] == 0
    assert start in epochs
    # while waiting (from 1/3 of the run) the labels are refreshed every max_epochs / 12 = 2 epochs
    waiting = [e for e in epochs if 8 <= e <= start]
    assert waiting == list(range(8, start + 1, 2))
    agreement = dict(model.refreshes_)
    assert start == 16 or agreement[start] >= 0.95  # settled, or the latest start
    with pytest.raises(ValueError, match="cluster_start"):
        model.train(max_epochs=2, progress_bar=False, cluster_start="late")


def test_fixed_cluster_start_is_one_third_of_the_run(mdata):
    CRCT.setup_mudata(mdata, modalities={"rna": "rna", "protein": "adt"})
    model = CRCT(mdata, n_clusters=5, random_state=1, **SMALL)
    model.train(max_epochs=12, progress_bar=False, cluster_start="fixed")
    assert model.cluster_start_epoch_ == 4
    beta = model.get_loss_history()["beta_cluster"].to_numpy()
    assert (beta[:4] == 0).all()
    assert (beta[4:] == 1).all()


def test_latent_and_predict(trained, mdata):
    z = trained.get_latent_representation()
    assert z.dtype == np.float32
    assert z.shape == (mdata.n_obs, 12)
    for method in ("gmm", "kmeans", "leiden"):
        labels = trained.predict(method=method)
        assert labels.shape == (mdata.n_obs,)
        assert len(np.unique(labels)) == 5, method
    assert len(np.unique(trained.predict(n_clusters=3))) == 3
    with pytest.raises(ValueError, match="transductive"):
        trained.get_latent_representation(mdata.copy())
    with pytest.raises(ValueError, match="`method` must be one of"):
        trained.predict(method="mclust")


def test_save_load_round_trip(trained, mdata, tmp_path):
    z = trained.get_latent_representation()
    trained.save(tmp_path / "crct", save_anndata=False)
    loaded = CRCT.load(tmp_path / "crct", adata=mdata)
    np.testing.assert_array_equal(loaded.get_latent_representation(), z)
    np.testing.assert_array_equal(loaded.module.pseudo_labels.numpy(), trained.module.pseudo_labels.numpy())
    assert loaded.is_trained_
    assert set(TERMS) <= set(loaded.history_)


def test_same_seed_same_result_and_ablations(mdata):
    def fit(**kw):
        CRCT.setup_mudata(mdata)
        model = CRCT(mdata, n_clusters=5, random_state=7, **SMALL, **kw)
        model.train(max_epochs=9, progress_bar=False)
        return model

    a, b = fit(), fit()
    np.testing.assert_array_equal(a.get_latent_representation(), b.get_latent_representation())
    np.testing.assert_array_equal(a.predict(), b.predict())
    no_aug = fit(augmentation=False).get_loss_history()
    assert (no_aug["loss_aug"] == 0).all()
    assert (no_aug["rho"] == 0).all()
    no_cl = fit(cluster_loss=False).get_loss_history()
    assert (no_cl["loss_cluster"] == 0).all()
    fixed = fit(learn_graph=False)
    assert (fixed.get_loss_history()["loss_graph"] == 0).all()
    assert not any(p.requires_grad for f in fixed.module.network.fusions for p in f.parameters())


def test_single_modality_anndata_and_use_rep(mdata):
    adt = mdata.mod["adt"].copy()
    adt.obsm["spatial"] = np.asarray(mdata.obsm["spatial"])
    CRCT.setup_anndata(adt)
    with pytest.raises(ValueError, match="Pass kind="):
        CRCT(adt, n_clusters=4)
    adt.obsm["X_rep"] = np.random.default_rng(0).normal(size=(adt.n_obs, 6))
    CRCT.setup_anndata(adt, use_rep="X_rep")
    model = CRCT(adt, n_clusters=4, n_hidden=8, n_latent=6)
    assert [f.shape[1] for f in model._features] == [6]
    CRCT.setup_anndata(adt, kind="protein")
    model = CRCT(adt, n_clusters=4, **SMALL)
    model.train(max_epochs=4, progress_bar=False)
    assert model.get_latent_representation().shape == (adt.n_obs, 12)


def test_bad_model_arguments(mdata):
    CRCT.setup_mudata(mdata)
    with pytest.raises(ValueError, match="`n_clusters`=1000 exceeds the number of spots"):
        CRCT(mdata, n_clusters=1000)
    with pytest.raises(ValueError, match="`feature_scaling` must be one of"):
        CRCT(mdata, n_clusters=3, feature_scaling="zscore")
    with pytest.raises(ValueError, match="`modality_weights` needs 2"):
        CRCT(mdata, n_clusters=3, modality_weights=[1.0])
    with pytest.raises(ValueError, match="transductive"):
        CRCT(None, n_clusters=3)


class _Boom(Callback):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 1:
            raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("boom")], ids=["ctrl-c", "error"])
def test_interrupt_propagates_and_model_stays_untrained(mdata, exc):
    CRCT.setup_mudata(mdata)
    model = CRCT(mdata, n_clusters=3, **SMALL)
    with assert_unchanged(mdata), pytest.raises(type(exc)):
        model.train(max_epochs=5, progress_bar=False, callbacks=[_Boom(exc)])
    assert not model.is_trained_


def test_default_max_epochs():
    from scomics_ext.model._crct import default_max_epochs

    assert default_max_epochs(500) == 300
    assert 100 <= default_max_epochs(1_000_000) < default_max_epochs(50_000) < 300


def test_history_frame_is_plain(trained):
    table = trained.get_loss_history()
    assert isinstance(table, pd.DataFrame)
    assert table.dtypes.map(lambda d: d == np.float64).all()


def test_default_final_clustering_is_leiden(trained):
    np.testing.assert_array_equal(trained.predict(), trained.predict(method="leiden"))


def test_predict_refines_boundaries_by_default(trained):
    from scomics_ext.model._crct_refine import refine_boundaries
    from scomics_ext.model._crct_train import cluster_embedding

    raw = trained.predict(refine=False)
    z = trained.get_latent_representation()
    np.testing.assert_array_equal(raw, cluster_embedding(z, 5, method="leiden", random_state=1))
    coords = trained.adata_manager.get_from_registry("crct_spatial")
    feats = np.concatenate([f.numpy() for f in trained._features], axis=1)
    np.testing.assert_array_equal(trained.predict(), refine_boundaries(raw, coords, feats, random_state=1))
    with pytest.raises(TypeError, match="`refine` must be a bool"):
        trained.predict(refine="yes")


class _LearningRates(Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_cosine_learning_rate_schedule(mdata):
    CRCT.setup_mudata(mdata, modalities={"rna": "rna", "protein": "adt"})
    model = CRCT(mdata, n_clusters=5, random_state=1, **SMALL)
    seen = _LearningRates()
    model.train(max_epochs=10, lr=1e-2, progress_bar=False, lr_schedule="cosine", callbacks=[seen])
    lrs = np.array(seen.lrs)
    assert lrs[0] == pytest.approx(1e-2)
    assert (np.diff(lrs) < 0).all()
    assert lrs[-1] == pytest.approx(1e-2 * (1 + np.cos(np.pi * 9 / 10)) / 2)
    constant = _LearningRates()
    model.train(max_epochs=4, lr=1e-2, progress_bar=False, callbacks=[constant])
    assert constant.lrs == [pytest.approx(1e-2)] * 4
    with pytest.raises(ValueError, match="lr_schedule"):
        model.train(max_epochs=2, progress_bar=False, lr_schedule="step")


def test_leiden_pseudo_labels_and_gmm_fallback(monkeypatch, mdata):
    CRCT.setup_mudata(mdata, modalities={"rna": "rna", "protein": "adt"})
    with pytest.raises(ValueError, match="pseudo_labels"):
        CRCT(mdata, 3, pseudo_labels="spectral", **SMALL)  # type: ignore[arg-type]
    model = CRCT(mdata, n_clusters=5, random_state=1, pseudo_labels="leiden", **SMALL)
    model.train(max_epochs=6, progress_bar=False)
    assert np.unique(model.module.pseudo_labels.numpy()).size == 5

    from scomics_ext.model import _crct_train

    rng = np.random.default_rng(0)
    centres = np.eye(3, 6) * 6
    z = torch.as_tensor(np.concatenate([rng.normal(c, 0.3, (40, 6)) for c in centres]), dtype=torch.float32)
    truth = np.repeat(np.arange(3), 40)
    _, labels = _crct_train.pseudo_labels(z, 3, method="leiden", previous=None, random_state=0, n_init=2)
    assert sx.metrics.clustering_scores(truth, labels.numpy())["ari"] == pytest.approx(1.0)
    # Leiden without exactly K communities -> the GMM's labels, still K of them
    real = _crct_train.cluster_embedding
    calls = []

    def fake(x, k, *, method="gmm", **kw):
        calls.append(method)
        return np.zeros(len(x), dtype=np.int64) if method == "leiden" else real(x, k, method=method, **kw)

    monkeypatch.setattr(_crct_train, "cluster_embedding", fake)
    _, labels = _crct_train.pseudo_labels(z, 3, method="leiden", previous=None, random_state=0, n_init=2)
    assert calls == ["leiden", "gmm"]
    assert np.unique(labels.numpy()).size == 3
