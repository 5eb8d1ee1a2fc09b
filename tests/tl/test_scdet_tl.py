"""sx.tl.scdet: write-back contract, validation, determinism, copy semantics (tiny data, few epochs)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch

import scomics_ext as sx
from _helpers import assert_unchanged
from scomics_ext.model._scdet import SCDET
from scomics_ext.tl._scdet import scdet

FAST = {"max_epochs": 3, "n_top_genes": 50, "progress_bar": False}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def data():
    return sx.datasets.open_world(n_cells=300, n_genes=60, n_types=5, n_novel=2, random_state=0)


def test_writes_results_in_place(data, tmp_path):
    ref, query = data
    assert scdet(ref, query, labels_key="cell_type", n_novel=2, **FAST) is None
    pred = query.obs["scdet"]
    assert isinstance(pred.dtype, pd.CategoricalDtype)
    assert all(isinstance(c, str) for c in pred.cat.categories)
    seen = set(ref.obs["cell_type"].astype(str))
    assert set(pred.astype(str)) <= seen | {"novel_1", "novel_2"}
    novel = query.obs["scdet_novel"]
    assert novel.dtype == bool
    assert (novel.to_numpy() == pred.astype(str).str.startswith("novel_").to_numpy()).all()
    conf = query.obs["scdet_confidence"].to_numpy()
    assert conf.dtype == np.float64
    assert ((conf > 0) & (conf <= 1)).all()
    for obj in (ref, query):
        z = obj.obsm["X_scdet"]
        assert z.dtype == np.float32
        assert z.shape == (obj.n_obs, 128)
    uns = query.uns["scdet"]
    assert uns["n_novel"] == 2
    assert not uns["n_novel_estimated"]
    assert uns["input"] == "counts"
    assert uns["params"]["labels_key"] == "cell_type"
    assert sum(uns["class_distribution"].values()) == pytest.approx(1.0)
    assert len(uns["history"]["loss_train"]) == 3
    assert "scdet" not in ref.uns
    assert "scdet" not in ref.obs
    query.write_h5ad(tmp_path / "q.h5ad")  # everything written is serialisable
    back = ad.read_h5ad(tmp_path / "q.h5ad")
    assert back.uns["scdet"]["n_novel"] == 2


def test_copy_and_return_model(data):
    ref, query = data
    with assert_unchanged(ref, query):
        out = scdet(ref, query, labels_key="cell_type", n_novel=2, copy=True, key_added="s2", **FAST)
    ref2, query2 = out
    assert "s2" in query2.obs
    assert "X_s2" in ref2.obsm
    assert "s2_novel" in query2.obs
    with assert_unchanged(ref, query):
        _ref3, _query3, model = scdet(
            ref, query, labels_key="cell_type", n_novel=2, copy=True, return_model=True, **FAST
        )
    assert isinstance(model, SCDET)
    assert model.is_trained_
    model = scdet(ref, query, labels_key="cell_type", n_novel=2, return_model=True, **FAST)
    assert isinstance(model, SCDET)
    assert "scdet" in query.obs


def test_deterministic(data):
    ref, query = data
    _r1, q1 = scdet(ref, query, labels_key="cell_type", n_novel=2, copy=True, random_state=3, **FAST)
    _r2, q2 = scdet(ref, query, labels_key="cell_type", n_novel=2, copy=True, random_state=3, **FAST)
    assert (q1.obs["scdet"].astype(str) == q2.obs["scdet"].astype(str)).all()
    np.testing.assert_array_equal(q1.obsm["X_scdet"], q2.obsm["X_scdet"])
    np.testing.assert_array_equal(q1.obs["scdet_confidence"], q2.obs["scdet_confidence"])


def test_log_normalised_input_and_layer(data):
    ref, query = data
    for obj in (ref, query):
        obj.layers["counts"] = obj.X.copy()
        sc.pp.normalize_total(obj, target_sum=1e4)
        sc.pp.log1p(obj)
    _, q = scdet(ref, query, labels_key="cell_type", n_novel=2, copy=True, **FAST)
    assert q.uns["scdet"]["input"] == "log-normalised"
    _, q = scdet(ref, query, labels_key="cell_type", n_novel=2, layer="counts", copy=True, **FAST)
    assert q.uns["scdet"]["input"] == "counts"
    assert q.uns["scdet"]["params"]["layer"] == "counts"


def test_n_novel_estimated_and_recorded(data):
    ref, query = data
    _, q = scdet(ref, query, labels_key="cell_type", copy=True, **FAST)
    uns = q.uns["scdet"]
    assert uns["n_novel_estimated"]
    assert uns["params"]["n_novel"] == -1
    assert uns["n_novel"] >= 0
    assert "n_candidates" in uns["n_novel_estimate"]


def test_query_gene_subset_and_order(data):
    ref, query = data
    query = query[:, query.var_names[::-1][:50]].copy()  # other order, fewer genes
    _, q = scdet(ref, query, labels_key="cell_type", n_novel=2, copy=True, **FAST)
    assert q.obs["scdet"].notna().all()


def _bad_inputs(ref, query):
    neg = query.copy()
    neg.X = neg.X.toarray()
    neg.X[0, 0] = -1.0
    nan = query.copy()
    nan.X = nan.X.toarray()
    nan.X[1, 2] = np.nan
    lognorm = query.copy()
    sc.pp.normalize_total(lognorm)
    sc.pp.log1p(lognorm)
    other_genes = query.copy()
    other_genes.var_names = [f"x{i}" for i in range(query.n_vars)]
    nan_labels = ref.copy()
    nan_labels.obs["cell_type"] = np.nan
    return [
        (
            {"ref": ref, "query": query, "labels_key": "missing"},
            KeyError,
            r"ref\.obs\['missing'\] is missing",
        ),
        ({"ref": nan_labels, "query": query, "labels_key": "cell_type"}, ValueError, "only missing values"),
        ({"ref": ref, "query": other_genes, "labels_key": "cell_type"}, ValueError, "share only 0 genes"),
        (
            {"ref": ref, "query": neg, "labels_key": "cell_type"},
            ValueError,
            r"query\.X contains negative values",
        ),
        ({"ref": ref, "query": nan, "labels_key": "cell_type"}, ValueError, r"query\.X contains 1 NaN"),
        ({"ref": ref, "query": lognorm, "labels_key": "cell_type"}, ValueError, "holds raw counts but query"),
        (
            {"ref": ref, "query": query, "labels_key": "cell_type", "layer": "nope"},
            KeyError,
            r"ref\.layers\['nope'\]",
        ),
        (
            {"ref": ref, "query": ref, "labels_key": "cell_type", "n_novel": 2},
            ValueError,
            "cannot contain novel",
        ),
        ({"ref": ref, "query": query, "labels_key": "cell_type", "n_novel": -1}, ValueError, "n_novel"),
        ({"ref": ref, "query": query, "labels_key": "cell_type", "key_added": ""}, TypeError, "key_added"),
        (
            {"ref": ref.to_df(), "query": query, "labels_key": "cell_type"},
            TypeError,
            "`ref` must be an AnnData",
        ),
    ]


def test_bad_inputs_raise_and_leave_objects_unchanged(data):
    ref, query = data
    for kwargs, exc, match in _bad_inputs(ref, query):
        objs = [o for o in (kwargs["ref"], kwargs["query"]) if isinstance(o, ad.AnnData)]
        with assert_unchanged(*objs), pytest.raises(exc, match=match):
            scdet(kwargs.pop("ref"), kwargs.pop("query"), **kwargs, **FAST)


def test_failure_during_training_leaves_objects_unchanged(data, monkeypatch):
    ref, query = data

    def boom(self, *args, **kwargs):
        raise RuntimeError("diverged")

    monkeypatch.setattr(SCDET, "train", boom)
    with assert_unchanged(ref, query), pytest.raises(RuntimeError, match="diverged"):
        scdet(ref, query, labels_key="cell_type", n_novel=2, **FAST)


def test_identical_query_allowed_without_novel(data):
    ref, _ = data
    with assert_unchanged(ref):
        _, q = scdet(ref, ref, labels_key="cell_type", n_novel=0, copy=True, **FAST)
    assert not q.obs["scdet_novel"].any()
