"""SCDET model class: setup, training, prediction, latent, save/load (tiny data, a few epochs)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch

import scomics_ext as sx
from scomics_ext.model._scdet import SCDET, default_epoch_length, default_max_epochs


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _joint(counts: bool = True) -> ad.AnnData:
    ref, query = sx.datasets.open_world(n_cells=300, n_genes=60, n_types=5, n_novel=2, random_state=0)
    joint = ad.concat({"ref": ref, "query": query}, label="dataset", index_unique="-")
    joint.layers["counts"] = joint.X.copy()
    sc.pp.normalize_total(joint, target_sum=1e4)
    sc.pp.log1p(joint)
    joint.X = sc.pp.scale(joint.X.toarray(), copy=True).astype(np.float32)
    lab = joint.obs["cell_type"].astype(str).to_numpy().copy()
    lab[(joint.obs["dataset"] == "query").to_numpy()] = "unlabelled"
    joint.obs["label"] = pd.Categorical(lab)
    SCDET.setup_anndata(
        joint,
        labels_key="label",
        unlabeled_category="unlabelled",
        batch_key="dataset",
        counts_layer="counts" if counts else None,
    )
    return joint


@pytest.fixture(scope="module")
def trained():
    joint = _joint()
    model = SCDET(joint, n_novel=2, n_hidden=(64, 32), n_latent=16, n_proj=16)
    model.train(max_epochs=4, n_warmup_epochs=1, estimate_every=1, batch_size=128, progress_bar=False)
    return model, joint


def test_train_predict_latent(trained):
    model, joint = trained
    assert model.is_trained_
    assert model.module.likelihood == "zinb"
    seen = sorted(set(joint.obs["label"].astype(str)) - {"unlabelled"})
    assert model.seen_types_ == seen
    assert model.class_names[: len(seen)] == seen
    assert sorted(model.class_names[len(seen) :]) == ["novel_1", "novel_2"]
    pred = model.predict()
    assert isinstance(pred, pd.Series)
    assert pred.index.equals(joint.obs_names)
    assert set(pred) <= set(model.class_names)
    proba = model.predict(soft=True)
    assert list(proba.columns) == model.class_names
    assert np.allclose(proba.sum(1), 1.0, atol=1e-5)
    assert (proba.to_numpy().argmax(1) == pd.Index(model.class_names).get_indexer(pred)).all()
    z = model.get_latent_representation()
    assert z.shape == (joint.n_obs, 16)
    assert z.dtype == np.float32
    v = model.get_latent_representation(representation="projection")
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert model.predict(indices=[0, 1, 2]).shape == (3,)
    assert "loss_train" in model.history_
    assert len(model.history_["loss_train"]) == 4
    assert len(model.estimates_) >= 1
    assert set(model.class_distribution_) == set(model.class_names)
    assert sum(model.class_distribution_.values()) == pytest.approx(1.0)


def test_novel_names_ranked_by_size(trained):
    model, joint = trained
    pred = model.predict()[(joint.obs["dataset"] == "query").to_numpy()]
    counts = [int((pred == f"novel_{k}").sum()) for k in (1, 2)]
    assert counts[0] >= counts[1]


def test_save_load_round_trip(trained, tmp_path):
    model, joint = trained
    model.save(tmp_path / "scdet", overwrite=True)
    loaded = SCDET.load(tmp_path / "scdet", adata=joint)
    assert loaded.class_names == model.class_names
    assert loaded.module.likelihood == "zinb"
    assert loaded.module.n_novel == 2
    pd.testing.assert_series_equal(loaded.predict(), model.predict())
    np.testing.assert_array_equal(loaded.get_latent_representation(), model.get_latent_representation())
    assert torch.equal(loaded.module.pi, model.module.pi)
    assert loaded.class_distribution_ == model.class_distribution_


def test_mse_without_counts_and_bad_n_novel():
    joint = _joint(counts=False)
    model = SCDET(joint, n_novel=0, n_hidden=(32,), n_latent=8, n_proj=8)
    assert model.module.likelihood == "mse"
    assert model.module.n_classes == 3
    model.train(max_epochs=2, n_warmup_epochs=1, estimate_every=1, progress_bar=False)
    assert not model.predict().str.startswith("novel_").any()
    with pytest.raises(ValueError, match="n_novel"):
        SCDET(joint, n_novel=-1)


def test_default_max_epochs_adapts_to_size():
    assert default_max_epochs(100) == 500
    assert default_max_epochs(1_000_000) == 50
    assert default_max_epochs(20_000) < default_max_epochs(2_000)


def test_default_budget_is_a_fixed_number_of_steps_for_large_data():
    # up to 30 mini-batches per pass: full passes, as before (small data keep their schedule)
    assert default_epoch_length(7_680) is None
    assert default_max_epochs(7_680) == 50
    # beyond: 50 epochs of 30 mini-batches, 1500 steps whatever the number of cells
    for n in (10_000, 100_000, 1_000_000):
        assert default_epoch_length(n) == 30
        assert default_max_epochs(n) * default_epoch_length(n) == 1500


def test_epoch_length_caps_the_batches_of_an_epoch():
    joint = _joint()
    model = SCDET(joint, n_novel=2, n_hidden=(32,), n_latent=8, n_proj=8)
    model.train(
        max_epochs=3, n_warmup_epochs=1, estimate_every=1, batch_size=64, epoch_length=2, progress_bar=False
    )
    assert model.n_steps_ == 6  # 3 epochs x 2 mini-batches (a full pass would be 4)
    assert len(model.history_["loss_train"]) == 3
    assert [e["epoch"] for e in model.estimates_] == [1, 2]
    with pytest.raises(ValueError, match="epoch_length"):
        model.train(max_epochs=1, epoch_length=0, progress_bar=False)
