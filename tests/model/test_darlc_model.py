"""DARLC model class: setup, data preparation, schedule, training outputs, save/load, determinism, grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse

import scomics_ext as sx
from scomics_ext.model import _darlc_data
from scomics_ext.model._darlc import DARLC, _plan_epochs
from scomics_ext.model._darlc_data import (
    default_gat_epochs,
    log_normalize,
    morans_i,
    rasterize_columns,
    spot_graph,
    standardize_images,
)
from scomics_ext.model._darlc_module import DARLCModule
from scomics_ext.model._darlc_training import (
    DARLCTrainingPlan,
    embedding_scaling,
    laplacian_rayleigh,
    make_mixture,
)
from scomics_ext.module import seeding_similarity, similarity_laplacian, smm_posterior


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(_darlc_data, "GAT_EPOCHS_RANGE", (20, 20))  # the GAT is tested in tests/module
    yield
    torch.set_num_threads(n)


def _data(n_side=12, n_genes=30, n_patterns=3, seed=0, **kw):
    return sx.datasets.gene_patterns(
        n_side=n_side, n_genes=n_genes, n_patterns=n_patterns, random_state=seed, **kw
    )


def _trained(adata, *, max_epochs=3, seed=0, **init):
    DARLC.setup_anndata(adata)
    model = DARLC(adata, random_state=seed, **init)
    model.train(max_epochs=max_epochs, progress_bar=False, batch_size=16)
    return model


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    _darlc_data_range = _darlc_data.GAT_EPOCHS_RANGE
    _darlc_data.GAT_EPOCHS_RANGE = (20, 20)
    try:
        adata = _data(n_genes=40)
        model = _trained(adata, n_clusters=3, max_epochs=4)
    finally:
        _darlc_data.GAT_EPOCHS_RANGE = _darlc_data_range
    return adata, model


# -- data helpers -------------------------------------------------------------------------------------------
def test_log_normalize_counts_and_passthrough():
    X = sparse.csr_matrix(np.array([[1.0, 3.0, 0.0], [2.0, 2.0, 4.0], [0.0, 0.0, 0.0]]))
    before = X.toarray().copy()
    Y, was_counts = log_normalize(X)
    assert was_counts
    np.testing.assert_array_equal(X.toarray(), before)  # input untouched
    totals = np.expm1(Y.toarray()).sum(axis=1)
    np.testing.assert_allclose(totals[:2], [6.0, 6.0], rtol=1e-5)  # median library size of non-empty spots
    assert totals[2] == 0
    logged = np.log1p(X.toarray() / 2.0)
    Z, was_counts = log_normalize(logged)
    assert not was_counts
    np.testing.assert_allclose(Z.toarray(), logged, rtol=1e-6)


def test_standardize_and_rasterize():
    images = rasterize_columns(np.array([[1.0, 0.0], [3.0, 5.0]], dtype=np.float32), np.array([0, 3]), (2, 2))
    assert images.shape == (2, 2, 2)
    assert images[0].tolist() == [[1.0, 0.0], [0.0, 3.0]]
    z = standardize_images(images, np.array([0, 3]))
    np.testing.assert_allclose(z[:, [0, 1], [0, 1]].mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(z[:, [0, 1], [0, 1]].std(axis=1), 1.0, atol=1e-6)
    assert z[0, 0, 1] == 0
    assert z[0, 1, 0] == 0


def test_morans_i_ranks_patterned_genes():
    adata = _data(n_side=14, n_genes=40, null_fraction=0.5)
    X, _ = log_normalize(adata.X)
    score = morans_i(X, spot_graph(adata.obsm["spatial"]))
    null = (adata.var["truth"] == "null").to_numpy()
    assert abs(np.nanmean(score[null])) < 0.03  # no autocorrelation without a pattern
    top = np.argsort(-score)[: int((~null).sum())]
    assert (~null[top]).mean() >= 0.65  # low-count patterned genes look like noise


def test_gat_epochs_budget():
    assert default_gat_epochs(100, 10) == 20  # the fixture's clip range
    _darlc_data.GAT_EPOCHS_RANGE = (50, 300)
    assert default_gat_epochs(400, 150) == 300
    assert default_gat_epochs(4992, 2000) == 50


def test_laplacian_rayleigh_gradient_and_scale_invariance():
    rng = np.random.default_rng(0)
    lap = similarity_laplacian(seeding_similarity(rng.normal(size=(25, 6)), n_neighbors=4))
    z = rng.normal(size=(25, 3))
    value, grad = laplacian_rayleigh(z, lap)
    eps, num = 1e-6, np.zeros_like(z)
    for i in range(25):
        for d in range(3):
            zp, zm = z.copy(), z.copy()
            zp[i, d] += eps
            zm[i, d] -= eps
            num[i, d] = (laplacian_rayleigh(zp, lap)[0] - laplacian_rayleigh(zm, lap)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, num, atol=1e-8)
    assert laplacian_rayleigh(5.0 * z + 3.0, lap)[0] == pytest.approx(value)  # shrinking Z does not help
    assert 0.0 <= value <= 2.0


def test_epoch_schedule():
    warm, joint = _plan_epochs(150, (22, 22), 32, max_epochs=None, warmup_epochs=None, warmup=True)
    assert warm == 250
    assert joint == 30
    warm_big, joint_big = _plan_epochs(2000, (78, 64), 32, max_epochs=None, warmup_epochs=None, warmup=True)
    assert 5 <= warm_big < 20
    assert 3 <= joint_big < 10
    assert _plan_epochs(150, (22, 22), 32, max_epochs=10, warmup_epochs=None, warmup=True)[1] >= 1
    assert sum(_plan_epochs(150, (22, 22), 32, max_epochs=10, warmup_epochs=None, warmup=True)) == 10
    assert _plan_epochs(150, (22, 22), 32, max_epochs=10, warmup_epochs=4, warmup=True) == (4, 6)
    assert _plan_epochs(150, (22, 22), 32, max_epochs=10, warmup_epochs=None, warmup=False) == (0, 10)


# -- setup and construction --------------------------------------------------------------------------------
def test_setup_validation_errors():
    from _helpers import assert_unchanged

    adata = _data()
    with assert_unchanged(adata):
        with pytest.raises(KeyError, match="obsm\\['nope'\\]"):
            DARLC.setup_anndata(adata, spatial_key="nope")
        with pytest.raises(KeyError, match=r"not in adata\.var_names"):
            DARLC.setup_anndata(adata, genes=["gene_0", "missing_gene"])
        with pytest.raises(ValueError, match="at least 2"):
            DARLC.setup_anndata(adata, genes=["gene_0"])
        with pytest.raises(ValueError, match="`grid`"):
            DARLC.setup_anndata(adata, grid="triangle")
    bad = adata.copy()
    bad.X = bad.X.toarray() - 1.0
    with pytest.raises(ValueError, match="negative values"):
        DARLC.setup_anndata(bad)
    dup = adata.copy()
    dup.obsm["spatial"] = dup.obsm["spatial"].copy()
    dup.obsm["spatial"][1] = dup.obsm["spatial"][0]
    with pytest.raises(ValueError, match="grid='bin'"):
        DARLC.setup_anndata(dup)


def test_construction_builds_gene_images():
    adata = _data(n_genes=20)
    DARLC.setup_anndata(adata, genes=list(adata.var_names[:8]))
    model = DARLC(adata, n_clusters=2)
    assert model.n_genes == 8
    assert model.image_shape_ == (12, 12)
    assert model.gene_images.images.shape == (8, 12, 12)
    assert model.gene_images.counts_input
    assert list(model.gene_names_) == list(adata.var_names[:8])
    with pytest.raises(ValueError, match="exceeds the number of modelled genes"):
        DARLC(adata, n_clusters=9)
    with pytest.raises(RuntimeError, match="not trained"):
        model.predict()


# -- training outputs --------------------------------------------------------------------------------------
def test_training_outputs(trained):
    _adata, model = trained
    assert model.is_trained_
    z = model.get_latent_representation()
    assert z.shape == (40, 32)
    assert z.dtype == np.float32
    assert np.isfinite(z).all()
    labels = model.predict()
    assert labels.shape == (40,)
    assert labels.min() >= 0
    assert labels.max() < 3
    proba = model.predict(soft=True)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(proba.argmax(axis=1), labels)
    history = model.history_
    for term in ("mim", "contrastive", "kl", "nll", "laplacian", "size", "mim_epoch", "loss_epoch"):
        assert term in history, term
    assert len(history["mim"]) == model.training_summary_["epochs_run"] + 1 or len(history["mim"]) >= 3
    summary = model.training_summary_
    assert summary["n_clusters"] == 3
    assert not summary["n_clusters_inferred"]
    assert summary["warmup_epochs"] + summary["cluster_epochs_planned"] == 4


def test_save_load_roundtrip(trained, tmp_path):
    adata, model = trained
    model.save(tmp_path / "darlc", overwrite=True)
    loaded = DARLC.load(tmp_path / "darlc", adata=adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(), model.get_latent_representation())
    np.testing.assert_array_equal(loaded.predict(), model.predict())
    assert loaded.n_clusters_ == model.n_clusters_
    assert loaded.mixture == model.mixture


def test_deterministic_given_seed():
    a = _trained(_data(n_genes=24), n_clusters=3, max_epochs=3, seed=5)
    b = _trained(_data(n_genes=24), n_clusters=3, max_epochs=3, seed=5)
    np.testing.assert_array_equal(a.get_latent_representation(), b.get_latent_representation())
    np.testing.assert_array_equal(a.predict(), b.predict())


@pytest.mark.parametrize(
    ("n_side", "grid", "shape"),
    [((21, 16), "square", (21, 16)), ((10, 8), "hex", (10, 9))],  # hex: col = ceil(array_col / 2)
)
def test_non_square_and_hex_grids(n_side, grid, shape):
    adata = _data(n_side=n_side, n_genes=20, grid=grid)
    model = _trained(adata, n_clusters=2, max_epochs=2)
    assert model.image_shape_ == shape
    assert model.grid_ == grid
    assert model.get_latent_representation().shape == (20, 32)


@pytest.mark.parametrize(
    "init",
    [
        {"gat_view": False},
        {"mixture": "gmm"},
        {"warmup": False},
        {"scale_free_mixture": False},
        {"contrastive_neighbors": "none", "online_view": "masked"},  # the paper's contrastive branch
        {"contrastive_neighbors": "exclude"},
    ],
)
def test_ablations_train(init):
    model = _trained(_data(n_genes=20), n_clusters=2, max_epochs=2, **init)
    assert model.predict().shape == (20,)
    if init.get("warmup") is False:
        assert model.training_summary_["warmup_epochs"] == 0
    if init.get("mixture") == "gmm":
        assert float(model.smm_state_["dof"].min()) >= 1e5


def test_contrastive_options_validated():
    adata = _data(n_genes=12)
    DARLC.setup_anndata(adata)
    with pytest.raises(ValueError, match="contrastive_neighbors"):
        DARLC(adata, n_clusters=2, contrastive_neighbors="all")
    with pytest.raises(ValueError, match="online_view"):
        DARLC(adata, n_clusters=2, online_view="half")


def test_batch_neighbors_block_and_contrastive_graph():
    adata = _data(n_genes=20)
    DARLC.setup_anndata(adata)
    model = DARLC(adata, n_clusters=2, contrastive_neighbors="positive")
    images = model.gene_images.images
    flat = images.reshape(20, -1)[:, model.gene_images.occupied]
    similarity, graph = model._seeding_graphs(images)
    # one correlation sweep gives exactly what separate calls give
    assert (similarity != seeding_similarity(flat, n_neighbors=15)).nnz == 0
    assert (graph != seeding_similarity(flat, n_neighbors=15, mode="mutual")).nnz == 0
    assert graph.shape == (20, 20)
    assert (graph != graph.T).nnz == 0
    assert graph.diagonal().sum() == 0
    no_graph = DARLC(adata, n_clusters=2, contrastive_neighbors="none")._seeding_graphs(images)
    assert no_graph[1] is None
    assert (no_graph[0] != similarity).nnz == 0
    plan = DARLCTrainingPlan(
        model.module,
        images=torch.zeros(20, 12, 12),
        views=torch.zeros(20, 12, 12),
        laplacian=similarity_laplacian(similarity),
        n_clusters=2,
        warmup_epochs=1,
        neighbors=graph,
    )
    idx = torch.tensor([3, 0, 7, 11])
    block = plan.batch_neighbors(idx)
    dense = graph.toarray() > 0
    np.testing.assert_array_equal(block.numpy(), dense[np.ix_(idx.numpy(), idx.numpy())])
    plan.neighbors = None
    assert plan.batch_neighbors(idx) is None


def test_full_online_view_costs_epochs_under_the_budget():
    masked = _plan_epochs(2000, (78, 64), 32, max_epochs=None, warmup_epochs=None, warmup=True)
    full = _plan_epochs(
        2000, (78, 64), 32, max_epochs=None, warmup_epochs=None, warmup=True, extra_passes=1.0
    )
    assert sum(full) <= sum(masked)
    small = _plan_epochs(
        150, (22, 22), 32, max_epochs=None, warmup_epochs=None, warmup=True, extra_passes=1.0
    )
    assert small == (250, 30)  # far below the budget: the step targets decide


def test_dec_loss_reaches_encoder():
    torch.manual_seed(0)
    module = DARLCModule((12, 12))
    module.set_head_mode(False)
    z = module.embed(torch.rand(8, 12, 12)).double()
    smm = make_mixture(2, "smm", 0).fit(z.detach().numpy())
    logq = torch.log(smm_posterior(z, smm.params))
    target = torch.softmax(torch.randn(8, 2, dtype=torch.float64), dim=1)
    torch.nn.functional.kl_div(logq, target, reduction="batchmean").backward()
    grad = module.vit.patch_embed.weight.grad
    assert grad is not None
    assert float(grad.abs().sum()) > 0


def test_full_online_pass_is_reused_as_the_embedding():
    """With the full online view, ``head(pooled_full)`` of the contrastive pass is exactly ``embed``."""
    torch.manual_seed(0)
    x = torch.rand(6, 12, 12)
    full = DARLCModule((12, 12), online_view="full")
    full.set_head_mode(False)
    out = full.ssl_forward(x, x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(full.vit.head(out.pooled_full), full.embed(x), rtol=0, atol=0)
    masked = DARLCModule((12, 12), online_view="masked")
    assert masked.ssl_forward(x, x, generator=torch.Generator().manual_seed(0)).pooled_full is None


def test_mixture_lives_on_standardised_embeddings(trained):
    """The final mixture is fitted to the embeddings standardised over all genes (scale-free default)."""
    _adata, model = trained
    state = model.smm_state_
    z = model.get_latent_representation().astype(np.float64)
    shift, scale = embedding_scaling(z)
    np.testing.assert_allclose(state["shift"], shift, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(state["scale"], scale, rtol=1e-6)
    zs = (z - shift) / scale
    np.testing.assert_array_equal(
        model.predict(), make_mixture(3, "smm", 0).load_state_dict(state).predict(zs)
    )


def test_scale_free_mixture_space_ignores_embedding_scale():
    """Shrinking every embedding (the collapse route) leaves the standardised embeddings unchanged."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 4))
    plan = DARLCTrainingPlan.__new__(DARLCTrainingPlan)
    plan.scale_free = True
    plan.set_scaling(z)
    a = plan.to_mixture_space(z)
    plan.set_scaling(0.01 * z + 3.0)
    b = plan.to_mixture_space(0.01 * z + 3.0)
    np.testing.assert_allclose(a, b, atol=1e-10)
    np.testing.assert_allclose(plan.to_mixture_space(torch.as_tensor(z)).numpy(), plan.to_mixture_space(z))
    plan.scale_free = False
    plan.set_scaling(z)
    np.testing.assert_allclose(plan.to_mixture_space(z), z)
