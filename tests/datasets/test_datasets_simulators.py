"""The simulators: shapes, dtypes, seeding, planted truth that can be recovered, argument checks."""

from __future__ import annotations

import time

import mudata
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData, read_h5ad
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import cross_val_predict

import scomics_ext as sx
from _helpers import fingerprint
from scomics_ext.datasets._gene_patterns import grid_coordinates
from scomics_ext.datasets._open_world import long_tail_sizes
from scomics_ext.datasets._sampling import nb_csr, nb_dense
from scomics_ext.datasets._spatial_multiome import ggblocks_template


def _dense(X) -> np.ndarray:
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


def _assert_counts(X) -> None:
    vals = X.data if sparse.issparse(X) else np.asarray(X)
    assert vals.dtype == np.float32
    assert np.all(vals >= 0)
    assert np.array_equal(vals, np.round(vals))


def _log_pca(X, n_comps: int = 20) -> np.ndarray:
    X = _dense(X)
    X = np.log1p(X / np.maximum(X.sum(1, keepdims=True), 1) * 1e4)
    Z = PCA(n_comps, random_state=0).fit_transform(X)
    return Z / Z[:, 0].std()


# --------------------------------------------------------------------------------------------- kernels
def test_nb_samplers_match_moments():
    rng = np.random.default_rng(0)
    mu = np.full((400, 500), 3.0, dtype=np.float32)
    theta = 2.0
    for X in (
        _dense(nb_csr(lambda a, b: mu[a:b], 400, 500, theta, rng)),
        nb_dense(lambda a, b: mu[a:b], 400, 500, theta, rng),
    ):
        assert X.mean() == pytest.approx(3.0, rel=0.02)
        assert X.var() == pytest.approx(3.0 + 9.0 / theta, rel=0.05)
        assert (X == 0).mean() == pytest.approx((theta / (theta + 3.0)) ** theta, abs=0.01)
    P = _dense(nb_csr(lambda a, b: mu[a:b], 400, 500, np.inf, rng))  # Poisson
    assert P.var() == pytest.approx(3.0, rel=0.05)


def test_nb_csr_is_csr_with_sorted_int32_indices():
    rng = np.random.default_rng(1)
    mu = rng.uniform(0, 2, size=(300, 40)).astype(np.float32)
    X = nb_csr(lambda a, b: mu[a:b], 300, 40, 1.0, rng, chunk_entries=1000)
    assert sparse.isspmatrix_csr(X)
    assert X.indices.dtype == np.int32
    assert X.has_sorted_indices
    X.check_format(full_check=True)


# ---------------------------------------------------------------------------------- spatial_multiome
@pytest.fixture(scope="module")
def mdata():
    return sx.datasets.spatial_multiome(n_side=36, random_state=0)


def test_spatial_multiome_structure(mdata):
    assert isinstance(mdata, mudata.MuData)
    assert list(mdata.mod) == ["rna", "adt", "atac"]
    assert mdata.mod["rna"].shape == (1296, 1000)
    assert mdata.mod["adt"].shape == (1296, 100)
    assert mdata.mod["atac"].shape == (1296, 1000)
    names = mdata.mod["rna"].obs_names
    for name, mod in mdata.mod.items():
        assert mod.obs_names.equals(names)
        _assert_counts(mod.X)
        assert sparse.isspmatrix_csr(mod.X) == (name != "adt")
        assert np.array_equal(_dense(mod.layers["counts"]), _dense(mod.X))
        assert mod.layers["counts"] is not mod.X
        assert mod.obsm["spatial"].shape == (1296, 2)
        assert mod.obsm["spatial"].dtype == np.float64
        assert isinstance(mod.obs["truth"].dtype, pd.CategoricalDtype)
        assert np.array_equal(
            mod.obs["truth"].astype(str).to_numpy(), mdata.obs["truth"].astype(str).to_numpy()
        )
    assert mdata.obs_names.equals(names)
    assert np.array_equal(mdata.obsm["spatial"], mdata.mod["rna"].obsm["spatial"])
    assert isinstance(mdata.obs["truth"].dtype, pd.CategoricalDtype)
    assert list(mdata.obs["truth"].cat.categories) == [
        "background",
        "block_1",
        "block_2",
        "block_3",
        "block_4",
        "rare_1",
        "rare_2",
    ]
    sim = mdata.uns["simulation"]
    assert sim["params"]["n_side"] == 36
    assert sim["params"]["random_state"] == 0
    assert sim["params"]["modalities"] == ["rna", "adt", "atac"]
    assert sum(sim["class_sizes"].values()) == 1296


def test_spatial_multiome_blocks_match_spatialglue_sizes():
    tpl = ggblocks_template()
    assert np.bincount(tpl.ravel()).tolist() == [12, 5, 8, 6, 5]
    m = sx.datasets.spatial_multiome(n_side=36, modalities=("adt",), n_rare=0)
    counts = m.obs["truth"].value_counts()
    assert counts.to_dict() == {
        "background": 432,
        "block_2": 288,
        "block_3": 216,
        "block_1": 180,
        "block_4": 180,
    }


@pytest.mark.parametrize(("n_side", "n_rare", "fraction"), [(50, 3, 0.02), (36, 2, 0.02), (80, 1, 0.05)])
def test_spatial_multiome_rare_classes_have_requested_size_and_are_compact(n_side, n_rare, fraction):
    m = sx.datasets.spatial_multiome(
        n_side=n_side, modalities=("adt",), n_rare=n_rare, rare_fraction=fraction
    )
    truth = m.obs["truth"].astype(str).to_numpy()
    coords = m.obsm["spatial"]
    size = round(fraction * n_side**2)
    radius = np.sqrt(size / np.pi)
    for k in range(1, n_rare + 1):
        members = truth == f"rare_{k}"
        assert members.sum() == size
        centre = coords[members].mean(axis=0)
        assert np.linalg.norm(coords[members] - centre, axis=1).max() <= radius + 1.5  # a compact disc
        assert np.all(coords[members] >= 0)
        assert np.all(coords[members] <= n_side - 1)


def test_spatial_multiome_seeding():
    a = sx.datasets.spatial_multiome(n_side=20, modalities=("rna", "adt"), random_state=3)
    b = sx.datasets.spatial_multiome(n_side=20, modalities=("rna", "adt"), random_state=3)
    c = sx.datasets.spatial_multiome(n_side=20, modalities=("rna", "adt"), random_state=4)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)
    assert not np.array_equal(_dense(a.mod["rna"].X), _dense(c.mod["rna"].X))
    assert not np.array_equal(a.uns["simulation"]["rare_centres"], c.uns["simulation"]["rare_centres"])


def test_spatial_multiome_names_aliases_and_feature_counts():
    m = sx.datasets.spatial_multiome(
        n_side=12, modalities=("protein", "gex"), n_features={"gex": 50}, counts_layer=False, n_rare=0
    )
    assert list(m.mod) == ["protein", "gex"]
    assert m.mod["gex"].n_vars == 50
    assert m.mod["protein"].n_vars == 100
    assert isinstance(m.mod["protein"].X, np.ndarray)
    assert sparse.issparse(m.mod["gex"].X)
    assert "counts" not in m.mod["gex"].layers
    assert m.uns["simulation"]["params"]["kinds"] == {"protein": "adt", "gex": "rna"}


def test_spatial_multiome_visibility_is_complementary(mdata):
    visible = mdata.uns["simulation"]["visible"]
    classes = [c for c in mdata.obs["truth"].cat.categories if c != "background"]
    for c in classes:  # every class is marked somewhere, but no modality marks all classes
        assert any(c in v for v in visible.values())
    for v in visible.values():
        assert set(v) != set(classes)
    for name, mod in mdata.mod.items():
        markers = set(mod.var["marker_of"].astype(str)) - {""}
        assert markers == set(visible[name])


def _recover(m, seed=0) -> tuple[float, dict[str, float]]:
    y = m.obs["truth"].astype(str).to_numpy()
    Zs = {name: _log_pca(mod.X) for name, mod in m.mod.items()}
    clf = LogisticRegression(max_iter=3000)
    single = {name: float((cross_val_predict(clf, Z, y, cv=3) == y).mean()) for name, Z in Zs.items()}
    pred = cross_val_predict(clf, np.hstack(list(Zs.values())), y, cv=3)
    return adjusted_rand_score(y, pred), single


@pytest.mark.parametrize(("modalities", "seed"), [(("rna", "adt", "atac"), 0), (("rna", "adt"), 1)])
def test_spatial_multiome_truth_recoverable_only_with_all_modalities(modalities, seed):
    m = sx.datasets.spatial_multiome(n_side=36, modalities=modalities, random_state=seed)
    ari_all, single = _recover(m, seed)
    assert ari_all > 0.9
    for acc in single.values():  # each modality alone confuses the classes it does not see
        assert acc < 0.85


def test_spatial_multiome_kmeans_recovers_blocks_with_all_modalities():
    m = sx.datasets.spatial_multiome(n_side=36, n_rare=0, random_state=2)
    y = m.obs["truth"].astype(str).to_numpy()
    Z = np.hstack([_log_pca(mod.X) for mod in m.mod.values()])
    labels = KMeans(5, n_init=10, random_state=0).fit_predict(Z)
    assert adjusted_rand_score(y, labels) > 0.8


def test_spatial_multiome_redundant_modalities_each_suffice():
    m = sx.datasets.spatial_multiome(n_side=30, modalities=("rna", "adt"), complementary=False, n_rare=0)
    _, single = _recover(m)
    assert all(acc > 0.95 for acc in single.values())


def test_spatial_multiome_writes_h5mu(tmp_path):
    m = sx.datasets.spatial_multiome(n_side=12, modalities=("rna", "adt"), n_rare=1, rare_fraction=0.05)
    m.write(tmp_path / "sim.h5mu")
    back = mudata.read_h5mu(tmp_path / "sim.h5mu")
    assert back.uns["simulation"]["params"]["n_side"] == 12
    assert np.array_equal(back.obs["truth"].astype(str), m.obs["truth"].astype(str))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_side": 3}, ValueError, "n_side"),
        ({"n_side": 10.5}, TypeError, "n_side"),
        ({"modalities": ("rna", "spliced")}, ValueError, "modalities"),
        ({"modalities": "rna"}, TypeError, "modalities"),
        ({"modalities": ()}, ValueError, "modalities"),
        ({"modalities": ("rna", "rna")}, ValueError, "duplicated"),
        ({"n_features": {"foo": 10}}, ValueError, "n_features"),
        ({"n_features": {"adt": 2}}, ValueError, "n_features"),
        ({"n_features": [10]}, TypeError, "n_features"),
        ({"rare_fraction": 0.5}, ValueError, "rare_fraction"),
        ({"rare_fraction": 0.0001}, ValueError, "rare_fraction"),
        ({"n_rare": -1}, ValueError, "n_rare"),
        ({"n_rare": 20, "rare_fraction": 0.05}, ValueError, "n_rare"),
        ({"signal": 0}, ValueError, "signal"),
        ({"noise": -1}, ValueError, "noise"),
        ({"complementary": "yes"}, TypeError, "complementary"),
        ({"random_state": -1}, ValueError, "random_state"),
        ({"random_state": 1.5}, TypeError, "random_state"),
    ],
)
def test_spatial_multiome_bad_arguments(kwargs, error, match):
    kwargs = {"n_side": 12, **kwargs}
    with pytest.raises(error, match=match):
        sx.datasets.spatial_multiome(**kwargs)


def test_spatial_multiome_scale_100k_spots():
    start = time.perf_counter()
    m = sx.datasets.spatial_multiome(n_side=317, modalities=("rna", "adt"))
    elapsed = time.perf_counter() - start
    assert m.n_obs == 317**2 == 100_489
    rna = m.mod["rna"].X
    assert sparse.isspmatrix_csr(rna)
    assert rna.dtype == np.float32
    assert rna.indices.dtype == np.int32
    assert m.mod["adt"].X.dtype == np.float32
    assert (m.obs["truth"] == "rare_1").sum() == round(0.02 * 317**2)
    assert elapsed < 60, f"100k spots took {elapsed:.1f} s"


# ------------------------------------------------------------------------------------- gene_patterns
def _normalised_genes(adata: AnnData) -> np.ndarray:
    X = _dense(adata.X)
    X = np.log1p(X / np.maximum(X.sum(1, keepdims=True), 1) * 1e4).T
    return (X - X.mean(1, keepdims=True)) / (X.std(1, keepdims=True) + 1e-8)


def test_gene_patterns_structure():
    a = sx.datasets.gene_patterns(n_side=(20, 25), n_genes=120, n_patterns=6, random_state=0)
    assert a.shape == (500, 120)
    assert sparse.isspmatrix_csr(a.X)
    _assert_counts(a.X)
    assert a.obsm["spatial"].shape == (500, 2)
    truth = a.var["truth"]
    assert isinstance(truth.dtype, pd.CategoricalDtype)
    assert list(truth.cat.categories) == [f"pattern_{k}" for k in range(1, 7)]
    assert set(truth.value_counts()) == {20}
    info = a.uns["gene_patterns"]
    assert info["patterns"].shape == (6, 500)
    assert info["patterns"].dtype == np.float32
    assert info["pattern_kinds"] == ["blob", "gradient", "stripes", "ring", "field", "band"]
    assert info["patterns"].min() >= 0
    assert np.allclose(info["patterns"].max(axis=1), 1)
    corr = np.corrcoef(info["patterns"])
    assert np.abs(corr - np.eye(6)).max() <= 0.6 + 1e-9
    assert list(a.var["pattern_kind"].astype(str)[truth == "pattern_3"].unique()) == ["stripes"]


def test_gene_patterns_hex_grid_is_visium_like():
    coords, row, col = grid_coordinates(6, 5, "hex")
    assert np.all((col - row) % 2 == 0)  # Visium: array_col and array_row have the same parity
    d = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert np.allclose(d.min(axis=1), 1.0)
    interior = (row > 0) & (row < 5) & (col > 1) & (col < 8)
    assert np.all(np.isclose(d[interior], 1.0).sum(axis=1) == 6)
    a = sx.datasets.gene_patterns(n_side=(78, 64), n_genes=50, grid="hex")
    assert a.n_obs == 4992
    assert a.obs["array_col"].max() == 127
    assert a.obs["array_row"].max() == 77


def test_gene_patterns_visium_size_is_fast():
    start = time.perf_counter()
    a = sx.datasets.gene_patterns(n_side=(78, 64), n_genes=2000, n_patterns=8, grid="hex", random_state=1)
    assert time.perf_counter() - start < 20
    assert a.shape == (4992, 2000)


@pytest.mark.parametrize("seed", [0, 1])
def test_gene_patterns_kmeans_recovers_planted_patterns(seed):
    a = sx.datasets.gene_patterns(n_side=30, n_genes=300, n_patterns=6, random_state=seed)
    y = a.var["truth"].astype(str).to_numpy()
    labels = KMeans(6, n_init=10, random_state=0).fit_predict(_normalised_genes(a))
    assert normalized_mutual_info_score(y, labels) > 0.7


def test_gene_patterns_genes_follow_their_pattern():
    a = sx.datasets.gene_patterns(n_side=25, n_genes=60, n_patterns=3, noise=0.0, dropout=0.0, signal=2.0)
    G = _normalised_genes(a)
    P = a.uns["gene_patterns"]["patterns"]
    best = np.argmax(np.corrcoef(G, P)[: a.n_vars, a.n_vars :], axis=1)
    assert np.mean(np.char.add("pattern_", (best + 1).astype(str)) == a.var["truth"].astype(str)) > 0.95


def test_gene_patterns_null_genes_kinds_and_dropout():
    a = sx.datasets.gene_patterns(
        n_side=15, n_genes=100, n_patterns=2, null_fraction=0.2, pattern_kinds=("band",), dropout=0.0
    )
    assert (a.var["truth"] == "null").sum() == 20
    assert a.uns["gene_patterns"]["pattern_kinds"] == ["band", "band"]
    b = sx.datasets.gene_patterns(
        n_side=15, n_genes=100, n_patterns=2, null_fraction=0.2, pattern_kinds=("band",), dropout=0.5
    )
    assert b.X.nnz < 0.7 * a.X.nnz


def test_gene_patterns_seeding_and_h5ad(tmp_path):
    a = sx.datasets.gene_patterns(n_side=12, n_genes=40, n_patterns=3, random_state=5)
    b = sx.datasets.gene_patterns(n_side=12, n_genes=40, n_patterns=3, random_state=5)
    c = sx.datasets.gene_patterns(n_side=12, n_genes=40, n_patterns=3, random_state=6)
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    a.write_h5ad(tmp_path / "gp.h5ad")
    back = read_h5ad(tmp_path / "gp.h5ad")
    assert np.array_equal(back.uns["gene_patterns"]["patterns"], a.uns["gene_patterns"]["patterns"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_side": 1}, ValueError, "n_side"),
        ({"n_side": (10, 10, 10)}, ValueError, "n_side"),
        ({"n_genes": 0}, ValueError, "n_genes"),
        ({"n_patterns": 50, "n_genes": 10}, ValueError, "n_patterns"),
        ({"grid": "triangle"}, ValueError, "grid"),
        ({"pattern_kinds": ("spiral",)}, ValueError, "pattern_kinds"),
        ({"pattern_kinds": "blob"}, TypeError, "pattern_kinds"),
        ({"noise": -0.1}, ValueError, "noise"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"null_fraction": 0.99, "n_genes": 10}, ValueError, "null_fraction"),
        ({"random_state": "0"}, TypeError, "random_state"),
    ],
)
def test_gene_patterns_bad_arguments(kwargs, error, match):
    kwargs = {"n_side": 10, "n_genes": 20, "n_patterns": 2, **kwargs}
    with pytest.raises(error, match=match):
        sx.datasets.gene_patterns(**kwargs)


# ---------------------------------------------------------------------------------------- open_world
def test_long_tail_sizes():
    sizes = long_tail_sizes(10_000, 10, 20.0)
    assert sizes.sum() == 10_000
    assert np.all(np.diff(sizes) <= 0)
    assert sizes[0] / sizes[-1] == pytest.approx(20.0, rel=0.02)
    assert set(long_tail_sizes(100, 4, 1.0)) == {25}


@pytest.fixture(scope="module")
def ow():
    return sx.datasets.open_world(
        n_cells=3000, n_genes=800, n_types=8, n_novel=3, imbalance=10, random_state=0
    )


def test_open_world_structure(ow):
    ref, query = ow
    info = ref.uns["open_world"]
    seen, novel = info["seen_types"], info["novel_types"]
    assert len(seen) == 5
    assert len(novel) == 3
    assert not set(seen) & set(novel)
    assert ref.n_obs + query.n_obs == 3000
    assert ref.var_names.equals(query.var_names)
    assert ref.n_vars == 800
    assert ref.obs_names.intersection(query.obs_names).empty
    for a in (ref, query):
        assert sparse.isspmatrix_csr(a.X)
        _assert_counts(a.X)
        assert isinstance(a.obs["cell_type"].dtype, pd.CategoricalDtype)
        assert a.obsm["X_latent"].shape == (a.n_obs, 10)
    assert set(ref.obs["cell_type"].astype(str)) == set(seen)
    assert set(query.obs["cell_type"].astype(str)) == set(seen) | set(novel)
    is_novel = query.obs["cell_type"].astype(str).isin(novel).to_numpy()
    assert np.array_equal(query.obs["novel"].to_numpy(), is_novel)
    sizes = info["type_sizes"]
    assert max(sizes.values()) / min(sizes.values()) == pytest.approx(10, rel=0.05)
    ref_sizes, query_sizes = info["ref_sizes"], info["query_sizes"]
    for t in seen:
        assert ref_sizes[t] + query_sizes[t] == sizes[t]
        assert ref_sizes[t] >= 1
        assert query_sizes[t] >= 1
        assert ref_sizes[t] == pytest.approx(0.5 * sizes[t], abs=1)
    for t in novel:
        assert t not in ref_sizes
        assert query_sizes[t] == sizes[t]
    assert query.uns["open_world"]["novel_types"] == novel


def test_open_world_classes_are_learnable_but_novel_types_are_not_in_ref(ow):
    ref, query = ow
    n_ref = ref.n_obs
    Z = _log_pca(sparse.vstack([ref.X, query.X]), n_comps=30)
    seen_q = ~query.obs["novel"].to_numpy()
    clf = LogisticRegression(max_iter=3000).fit(Z[:n_ref], ref.obs["cell_type"].astype(str))
    acc = (clf.predict(Z[n_ref:][seen_q]) == query.obs["cell_type"].astype(str).to_numpy()[seen_q]).mean()
    assert acc > 0.8
    novel_q = ~seen_q
    y_novel = query.obs["cell_type"].astype(str).to_numpy()[novel_q]
    labels = KMeans(3, n_init=10, random_state=0).fit_predict(Z[n_ref:][novel_q])
    assert adjusted_rand_score(y_novel, labels) > 0.5


def test_open_world_seeding_and_batch_shift():
    kw = {"n_cells": 600, "n_genes": 100, "n_types": 4, "n_novel": 1, "imbalance": 3}
    r1, q1 = sx.datasets.open_world(**kw, random_state=1)
    r2, q2 = sx.datasets.open_world(**kw, random_state=1)
    r3, _ = sx.datasets.open_world(**kw, random_state=2)
    assert fingerprint(r1) == fingerprint(r2)
    assert fingerprint(q1) == fingerprint(q2)
    assert fingerprint(r1) != fingerprint(r3)
    rb, qb = sx.datasets.open_world(**kw, batch_shift=1.0, random_state=1)
    assert np.array_equal(_dense(rb.X), _dense(r1.X))  # the reference is untouched
    assert not np.array_equal(_dense(qb.X), _dense(q1.X))
    assert qb.uns["open_world"]["params"]["batch_shift"] == 1.0


def test_open_world_moderate_scale_and_h5ad(tmp_path):
    ref, query = sx.datasets.open_world(n_cells=20_000, n_genes=1000, random_state=0)
    assert ref.n_obs + query.n_obs == 20_000
    assert ref.X.nnz / np.prod(ref.shape) < 0.5
    ref.write_h5ad(tmp_path / "ref.h5ad")
    back = read_h5ad(tmp_path / "ref.h5ad")
    assert list(back.uns["open_world"]["seen_types"]) == ref.uns["open_world"]["seen_types"]


@pytest.mark.slow
def test_open_world_scale_100k_cells():
    start = time.perf_counter()
    ref, query = sx.datasets.open_world(n_cells=100_000, n_genes=2000)
    assert time.perf_counter() - start < 120
    assert ref.n_obs + query.n_obs == 100_000
    assert sparse.isspmatrix_csr(ref.X)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_types": 1}, ValueError, "n_types"),
        ({"n_novel": 5, "n_types": 5}, ValueError, "n_novel"),
        ({"n_novel": -1}, ValueError, "n_novel"),
        ({"imbalance": 0.5}, ValueError, "imbalance"),
        ({"ref_fraction": 1.0}, ValueError, "ref_fraction"),
        ({"batch_shift": -1.0}, ValueError, "batch_shift"),
        ({"n_cells": 20, "imbalance": 100.0}, ValueError, "n_cells"),
        ({"dispersion": float("nan")}, ValueError, "dispersion"),
        ({"n_genes": True}, TypeError, "n_genes"),
    ],
)
def test_open_world_bad_arguments(kwargs, error, match):
    kwargs = {"n_cells": 400, "n_genes": 50, "n_types": 5, "n_novel": 2, **kwargs}
    with pytest.raises(error, match=match):
        sx.datasets.open_world(**kwargs)
