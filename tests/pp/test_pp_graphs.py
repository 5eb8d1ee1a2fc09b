"""sx.pp.spatial_graph / feature_graph / knn_graph / normalize_adjacency."""

from __future__ import annotations

import time

import _pp_data as _data
import mudata as mu
import numpy as np
import pytest
from _pp_data import make_adata, square_coords
from anndata import AnnData, read_h5ad
from scipy import sparse
from scipy.spatial.distance import cdist

import scomics_ext as sx
from _helpers import assert_unchanged
from scomics_ext.pp import knn_graph, normalize_adjacency


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def grid_adata():
    return _data.grid_adata()


@pytest.fixture
def free_adata():
    return _data.free_adata()


def brute_knn_adjacency(D: np.ndarray, k: int) -> np.ndarray:
    """Union-symmetrised kNN adjacency from a dense distance matrix (self excluded)."""
    D = D.copy()
    np.fill_diagonal(D, np.inf)
    nn = np.argsort(D, axis=1, kind="stable")[:, :k]
    A = np.zeros_like(D, dtype=bool)
    A[np.repeat(np.arange(D.shape[0]), k), nn.ravel()] = True
    return A | A.T


def check_graph(conn, dist, n, k=None):
    for M in (conn, dist):
        assert sparse.isspmatrix_csr(M) or isinstance(M, sparse.csr_array)
        assert M.dtype == np.float32
        assert M.shape == (n, n)
    assert np.all(conn.data == 1)
    assert (conn != conn.T).nnz == 0
    assert conn.diagonal().sum() == 0
    np.testing.assert_array_equal(conn.indptr, dist.indptr)
    np.testing.assert_array_equal(conn.indices, dist.indices)
    if k is not None:
        assert np.diff(conn.indptr).min() >= k


# --------------------------------------------------------------------------------------- spatial_graph
def test_spatial_graph_matches_brute_force(free_adata):
    k = 6
    assert sx.pp.spatial_graph(free_adata, n_neighs=k) is None
    conn = free_adata.obsp["spatial_connectivities"]
    dist = free_adata.obsp["spatial_distances"]
    check_graph(conn, dist, free_adata.n_obs, k)
    coords = free_adata.obsm["spatial"]
    D = cdist(coords, coords)
    np.testing.assert_array_equal(conn.toarray().astype(bool), brute_knn_adjacency(D, k))
    r, c = conn.nonzero()
    np.testing.assert_allclose(np.asarray(dist[r, c]).ravel(), D[r, c], rtol=1e-5)
    uns = free_adata.uns["spatial_neighbors"]
    assert uns["connectivities_key"] == "spatial_connectivities"
    assert uns["distances_key"] == "spatial_distances"
    assert uns["params"]["n_neighbors"] == k
    assert uns["params"]["radius"] is None


def test_spatial_graph_square_lattice_four_neighbours():
    adata = make_adata(square_coords(8, 5))
    sx.pp.spatial_graph(adata, n_neighs=4)
    conn = adata.obsp["spatial_connectivities"]
    # interior spots of a clean lattice: exactly the 4 lattice neighbours (ties resolved by symmetrisation)
    assert np.all(np.asarray(adata.obsp["spatial_distances"][conn.nonzero()]) > 0)
    assert np.diff(conn.indptr).min() >= 4


def test_spatial_graph_libraries_are_blocks(rng):
    coords = rng.uniform(0, 100, size=(300, 2))  # both libraries overlap in space
    adata = make_adata(coords)
    lib = np.array(["a", "b", "c"])[rng.integers(0, 3, 300)]
    adata.obs["library"] = lib
    sx.pp.spatial_graph(adata, n_neighs=5, library_key="library")
    conn = adata.obsp["spatial_connectivities"]
    check_graph(conn, adata.obsp["spatial_distances"], 300, 5)
    r, c = conn.nonzero()
    assert np.all(lib[r] == lib[c])  # no edge across libraries
    for name in "abc":
        idx = np.flatnonzero(lib == name)
        D = cdist(coords[idx], coords[idx])
        block = conn[idx][:, idx].toarray().astype(bool)
        np.testing.assert_array_equal(block, brute_knn_adjacency(D, 5))
    assert adata.uns["spatial_neighbors"]["params"]["library_key"] == "library"


def test_spatial_graph_small_library_is_clamped(rng):
    adata = make_adata(rng.uniform(size=(50, 2)))
    adata.obs["library"] = ["big"] * 47 + ["small"] * 3
    sx.pp.spatial_graph(adata, n_neighs=6, library_key="library")
    conn = adata.obsp["spatial_connectivities"]
    small = conn[47:][:, 47:].toarray()
    np.testing.assert_array_equal(small, 1 - np.eye(3))
    assert conn[47:, :47].nnz == 0


def test_spatial_graph_radius_mode(free_adata):
    radius = 60.0
    sx.pp.spatial_graph(free_adata, radius=radius)
    conn = free_adata.obsp["spatial_connectivities"]
    check_graph(conn, free_adata.obsp["spatial_distances"], free_adata.n_obs)
    D = cdist(free_adata.obsm["spatial"], free_adata.obsm["spatial"])
    expected = (radius >= D) & ~np.eye(free_adata.n_obs, dtype=bool)
    np.testing.assert_array_equal(conn.toarray().astype(bool), expected)
    assert free_adata.obsp["spatial_distances"].data.max() <= radius
    assert free_adata.uns["spatial_neighbors"]["params"]["radius"] == radius


def test_spatial_graph_duplicate_coordinates_allowed(rng):
    coords = rng.uniform(size=(60, 2))
    coords[10] = coords[11] = coords[12]  # three spots on the same position
    adata = make_adata(coords)
    sx.pp.spatial_graph(adata, n_neighs=4)
    conn, dist = adata.obsp["spatial_connectivities"], adata.obsp["spatial_distances"]
    check_graph(conn, dist, 60, 4)
    assert conn[10, 11] == 1
    assert conn[11, 12] == 1
    assert dist.nnz == conn.nnz  # zero-length edges are kept as explicit zeros
    assert dist[10, 11] == 0


def test_spatial_graph_3d_coordinates(rng):
    adata = make_adata(rng.uniform(size=(80, 3)))
    sx.pp.spatial_graph(adata, n_neighs=5)
    D = cdist(adata.obsm["spatial"], adata.obsm["spatial"])
    np.testing.assert_array_equal(
        adata.obsp["spatial_connectivities"].toarray().astype(bool), brute_knn_adjacency(D, 5)
    )


def test_spatial_graph_100k_fast_and_sparse(rng):
    n, k = 100_000, 6
    adata = AnnData(np.zeros((n, 1), dtype=np.float32))
    adata.obsm["spatial"] = rng.uniform(0, 1000, size=(n, 2))
    start = time.perf_counter()
    sx.pp.spatial_graph(adata, n_neighs=k)
    elapsed = time.perf_counter() - start
    conn = adata.obsp["spatial_connectivities"]
    assert elapsed < 30, f"100k-spot spatial graph took {elapsed:.1f}s"
    assert sparse.issparse(conn)
    assert sparse.issparse(adata.obsp["spatial_distances"])
    assert k * n <= conn.nnz <= 2 * k * n  # O(N·k), not N²
    mem = conn.data.nbytes + conn.indices.nbytes + conn.indptr.nbytes
    assert mem < 20e6


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_spatial_graph_mudata(rng):
    coords = rng.uniform(size=(50, 2))
    rna, adt = make_adata(coords), make_adata(coords, n_vars=5)
    del adt.obsm["spatial"]
    mdata = mu.MuData({"rna": rna, "adt": adt}, axis=0)
    # coordinates only in a modality: found there, the graph goes to the MuData
    sx.pp.spatial_graph(mdata, n_neighs=4)
    assert mdata.obsp["spatial_connectivities"].shape == (50, 50)
    mdata.obsm["spatial"] = coords
    out = sx.pp.spatial_graph(mdata, n_neighs=4, key_added="sg", copy=True)
    assert "sg_connectivities" in out.obsp
    assert "sg_connectivities" not in mdata.obsp
    assert (out.obsp["sg_connectivities"] != mdata.obsp["spatial_connectivities"]).nnz == 0


def test_spatial_graph_copy_and_h5ad_roundtrip(free_adata, tmp_path):
    with assert_unchanged(free_adata):
        out = sx.pp.spatial_graph(free_adata, n_neighs=5, key_added="sp", copy=True)
    assert isinstance(out, AnnData)
    assert out is not free_adata
    assert "sp_connectivities" in out.obsp
    assert "sp_neighbors" in out.uns
    out.write_h5ad(tmp_path / "g.h5ad")
    back = read_h5ad(tmp_path / "g.h5ad")
    assert (back.obsp["sp_connectivities"] != out.obsp["sp_connectivities"]).nnz == 0
    assert back.uns["sp_neighbors"]["params"]["library_key"] is None


@pytest.mark.parametrize(
    ("mutate", "kwargs", "exc", "match"),
    [
        (lambda a: a.obsm.pop("spatial"), {}, KeyError, r"obsm\['spatial'\] is missing"),
        (None, {"spatial_key": "xy"}, KeyError, r"obsm\['xy'\]"),
        (lambda a: a.obsm["spatial"].__setitem__((3, 0), np.nan), {}, ValueError, r"obsm\['spatial'\].*NaN"),
        (lambda a: a.obsm.__setitem__("spatial", a.obsm["spatial"][:, :1]), {}, ValueError, "shape"),
        (None, {"n_neighs": 0}, ValueError, "n_neighs"),
        (None, {"n_neighs": 2.5}, TypeError, "n_neighs"),
        (None, {"n_neighs": 400}, ValueError, "n_neighs"),
        (None, {"radius": -1.0}, ValueError, "radius"),
        (None, {"radius": "big"}, TypeError, "radius"),
        (None, {"library_key": "nope"}, KeyError, r"obs\['nope'\]"),
        (
            lambda a: a.obs.__setitem__("lib", [None] + ["x"] * (a.n_obs - 1)),
            {"library_key": "lib"},
            ValueError,
            "missing",
        ),
    ],
)
def test_spatial_graph_bad_input_leaves_object_unchanged(free_adata, mutate, kwargs, exc, match):
    if mutate is not None:
        mutate(free_adata)
    with assert_unchanged(free_adata), pytest.raises(exc, match=match):
        sx.pp.spatial_graph(free_adata, **kwargs)


def test_spatial_graph_rejects_non_anndata():
    with pytest.raises(TypeError, match="AnnData"):
        sx.pp.spatial_graph(np.zeros((5, 2)))


# --------------------------------------------------------------------------------------- feature_graph
def test_feature_graph_correlation_equals_brute_force_pearson(rng):
    n, k = 250, 10
    Z = rng.normal(size=(n, 8)) + rng.normal(size=(n, 1)) * 3  # row offsets: correlation != euclidean
    adata = make_adata(rng.uniform(size=(n, 2)))
    adata.obsm["X_pca"] = Z
    sx.pp.feature_graph(adata, n_neighs=k)
    conn, dist = adata.obsp["feature_connectivities"], adata.obsp["feature_distances"]
    check_graph(conn, dist, n, k)
    R = np.corrcoef(Z)
    np.testing.assert_array_equal(conn.toarray().astype(bool), brute_knn_adjacency(1 - R, k))
    r, c = conn.nonzero()
    np.testing.assert_allclose(np.asarray(dist[r, c]).ravel(), 1 - R[r, c], atol=1e-6)
    # and it differs from the euclidean graph on these data
    sx.pp.feature_graph(adata, n_neighs=k, metric="euclidean", key_added="eu")
    assert (adata.obsp["eu_connectivities"] != conn).nnz > 0
    params = adata.uns["feature_neighbors"]["params"]
    assert params["metric"] == "correlation"
    assert params["n_neighbors"] == k
    assert params["use_rep"] == "X_pca"


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_feature_graph_other_metrics_equal_brute_force(rng, metric):
    n, k = 200, 7
    Z = rng.normal(size=(n, 6))
    adata = make_adata(rng.uniform(size=(n, 2)))
    adata.obsm["X_pca"] = Z
    sx.pp.feature_graph(adata, n_neighs=k, metric=metric)
    D = cdist(Z, Z, metric=metric)
    conn = adata.obsp["feature_connectivities"]
    np.testing.assert_array_equal(conn.toarray().astype(bool), brute_knn_adjacency(D, k))
    r, c = conn.nonzero()
    np.testing.assert_allclose(np.asarray(adata.obsp["feature_distances"][r, c]).ravel(), D[r, c], atol=1e-5)


def test_feature_graph_on_layer_and_x(grid_adata):
    out_layer = sx.pp.feature_graph(grid_adata, layer="counts", n_neighs=5, copy=True)
    out_x = sx.pp.feature_graph(grid_adata, use_rep="X", n_neighs=5, copy=True)
    ref = knn_graph(np.asarray(grid_adata.layers["counts"]), n_neighs=5, metric="correlation")[0]
    assert (out_layer.obsp["feature_connectivities"] != ref).nnz == 0
    assert out_layer.uns["feature_neighbors"]["params"]["layer"] == "counts"
    assert out_x.obsp["feature_connectivities"].shape == (grid_adata.n_obs,) * 2


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({}, KeyError, r"obsm\['X_pca'\] is missing"),
        ({"use_rep": "X_rep", "metric": "manhattan"}, ValueError, "metric"),
        ({"use_rep": "X_rep", "method": "annoy"}, ValueError, "method"),
        ({"use_rep": "X_rep", "n_neighs": 0}, ValueError, "n_neighs"),
        ({"use_rep": "X_rep", "n_neighs": 1000}, ValueError, "n_neighs"),
        ({"use_rep": "X_nan"}, ValueError, r"obsm\['X_nan'\].*NaN"),
        ({"use_rep": "X_const"}, ValueError, r"obsm\['X_const'\].*constant"),
        ({"use_rep": "X_rep", "layer": "counts"}, ValueError, "only one of `layer`"),
        ({"layer": "nope"}, KeyError, r"layers\['nope'\]"),
    ],
)
def test_feature_graph_bad_input_leaves_object_unchanged(grid_adata, kwargs, exc, match):
    n = grid_adata.n_obs
    rep = np.random.default_rng(1).normal(size=(n, 5))
    grid_adata.obsm["X_rep"] = rep
    nan = rep.copy()
    nan[2, 1] = np.nan
    grid_adata.obsm["X_nan"] = nan
    const = rep.copy()
    const[4] = 1.0
    grid_adata.obsm["X_const"] = const
    with assert_unchanged(grid_adata), pytest.raises(exc, match=match):
        sx.pp.feature_graph(grid_adata, **kwargs)


def test_feature_graph_copy_contract(grid_adata):
    grid_adata.obsm["X_pca"] = np.random.default_rng(2).normal(size=(grid_adata.n_obs, 5))
    with assert_unchanged(grid_adata):
        out = sx.pp.feature_graph(grid_adata, n_neighs=5, copy=True)
    assert isinstance(out, AnnData)
    assert "feature_connectivities" in out.obsp
    assert sx.pp.feature_graph(grid_adata, n_neighs=5) is None
    assert (grid_adata.obsp["feature_connectivities"] != out.obsp["feature_connectivities"]).nnz == 0


@pytest.mark.slow
def test_feature_graph_100k_by_50(rng):
    n = 100_000
    centres = rng.normal(size=(20, 50)) * 3
    Z = (centres[rng.integers(0, 20, n)] + rng.normal(size=(n, 50))).astype(np.float32)
    adata = AnnData(np.zeros((n, 1), dtype=np.float32))
    adata.obsm["X_pca"] = Z
    start = time.perf_counter()
    sx.pp.feature_graph(adata, n_neighs=20)
    elapsed = time.perf_counter() - start
    conn = adata.obsp["feature_connectivities"]
    assert 20 * n <= conn.nnz <= 40 * n
    assert elapsed < 120, f"100k x 50 feature graph took {elapsed:.1f}s"


@pytest.mark.slow
def test_knn_graph_pynndescent_high_recall(rng):
    Z = rng.normal(size=(3000, 20))
    exact = knn_graph(Z, n_neighs=10, method="exact")[0]
    approx = knn_graph(Z, n_neighs=10, method="pynndescent")[0]
    recall = exact.multiply(approx).nnz / exact.nnz
    assert recall > 0.9
    assert np.diff(approx.indptr).min() >= 10


# --------------------------------------------------------------------------------------- kernels
def test_knn_graph_groups_and_errors(rng):
    X = rng.normal(size=(40, 3))
    groups = np.repeat([0, 1], 20)
    conn, _ = knn_graph(X, n_neighs=3, groups=groups)
    assert conn[:20, 20:].nnz == 0
    with pytest.raises(ValueError, match="2-D"):
        knn_graph(X[:, 0])
    with pytest.raises(ValueError, match="groups"):
        knn_graph(X, groups=groups[:5])
    with pytest.raises(ValueError, match="missing"):
        knn_graph(X, groups=np.where(groups == 0, np.nan, 1.0))
    with pytest.raises(ValueError, match="radius"):
        knn_graph(X, radius=1.0, metric="cosine")
    with pytest.raises(ValueError, match="n_neighs"):
        knn_graph(X, n_neighs=0)
    with pytest.raises(ValueError, match="NaN"):
        knn_graph(np.where(X > 2, np.nan, X))


def test_feature_graph_duplicated_rows(rng):
    Z = rng.normal(size=(50, 4))
    Z[1] = Z[2] = Z[3] = Z[0]  # identical profiles: correlation 1, distance 0
    conn, dist = knn_graph(Z, n_neighs=5, metric="correlation")
    check_graph(conn, dist, 50, 5)
    assert conn[0, 1] == 1
    assert conn[0, 3] == 1
    assert dist[0, 1] == pytest.approx(0, abs=1e-6)


def test_normalize_adjacency_equals_dense_formula(rng):
    dense = sparse.random(30, 30, density=0.2, random_state=0).toarray()
    dense = dense + dense.T
    np.fill_diagonal(dense, 0)
    dense[5, :] = dense[:, 5] = 0  # isolated node
    A = sparse.csr_matrix(dense)
    for self_loops in (True, False):
        M = dense + np.eye(30) if self_loops else dense
        deg = M.sum(1)
        inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
        expected = inv[:, None] * M * inv[None, :]
        out = normalize_adjacency(A, self_loops=self_loops)
        assert sparse.isspmatrix_csr(out)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out.toarray(), expected, rtol=1e-6, atol=1e-7)
    # dense input, and the symmetric normalisation keeps the spectrum in [-1, 1]
    out = normalize_adjacency(dense)
    assert np.abs(np.linalg.eigvalsh(out.toarray())).max() <= 1 + 1e-5


@pytest.mark.parametrize(
    ("A", "exc", "match"),
    [
        (np.ones((3, 4)), ValueError, "square"),
        (-np.eye(3), ValueError, "negative"),
        (np.array([[0, np.nan], [np.nan, 0]]), ValueError, "NaN"),
        ([[0, 1], [1, 0]], TypeError, "sparse"),
    ],
)
def test_normalize_adjacency_bad_input(A, exc, match):
    with pytest.raises(exc, match=match):
        normalize_adjacency(A)
