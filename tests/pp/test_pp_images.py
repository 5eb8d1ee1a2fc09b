"""sx.pp.gene_images and its kernels (rasterize, grid_pixels)."""

from __future__ import annotations

import time

import _pp_data as _data
import numpy as np
import pytest
from _pp_data import hex_coords, make_adata, square_coords
from anndata import AnnData, read_h5ad
from scipy import sparse

import scomics_ext as sx
from _helpers import assert_unchanged
from scomics_ext.pp import grid_pixels, rasterize


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def grid_adata():
    return _data.grid_adata()


@pytest.fixture
def hex_adata():
    return _data.hex_adata()


@pytest.fixture
def free_adata():
    return _data.free_adata()


def image(adata: AnnData, gene: str, key: str = "gene_images") -> np.ndarray:
    H, W = adata.uns[key]["shape"]
    return adata.varm[key][adata.var_names.get_loc(gene)].toarray().reshape(H, W)


def dense(X) -> np.ndarray:
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


# --------------------------------------------------------------------------------------- lattices
@pytest.mark.parametrize("sparse_x", [False, True])
def test_square_grid_round_trip(sparse_x):
    n_x, n_y = 21, 16  # non-square, ST-like (mouse olfactory bulb)
    adata = make_adata(square_coords(n_x, n_y, jitter=0.15), sparse_x=sparse_x)
    keep = np.ones(adata.n_obs, dtype=bool)
    keep[[0, 30, 100]] = False  # spots missing from the tissue leave empty pixels
    adata = adata[keep].copy()
    sx.pp.gene_images(adata)
    uns = adata.uns["gene_images"]
    assert uns["grid"] == "square"
    assert tuple(uns["shape"]) == (n_y, n_x)
    assert np.unique(uns["pixel"]).size == adata.n_obs  # one spot per pixel
    images = adata.varm["gene_images"]
    assert sparse.isspmatrix_csr(images)
    assert images.dtype == np.float32
    assert images.shape == (adata.n_vars, n_x * n_y)
    X = dense(adata.X)
    # image pixel == value at that spot; expected pixel from the known lattice position
    xy = np.rint((adata.obsm["spatial"] - 500.0) / 100.0).astype(int)
    np.testing.assert_array_equal(uns["pixel"], xy[:, 1] * n_x + xy[:, 0])
    for j, g in enumerate(adata.var_names[:4]):
        img = image(adata, g)
        np.testing.assert_allclose(img[xy[:, 1], xy[:, 0]], X[:, j])
        assert img[0, 0] == 0  # spot 0 was removed
    assert images.nnz == np.count_nonzero(X)  # sparse: nothing stored for empty pixels


def test_small_non_square_grids():
    for n_x, n_y in [(3, 7), (7, 3), (1, 5), (5, 1), (2, 2)]:
        adata = make_adata(square_coords(n_x, n_y))
        sx.pp.gene_images(adata)
        assert tuple(adata.uns["gene_images"]["shape"]) == (n_y, n_x)
        assert adata.uns["gene_images"]["grid"] == "square"


def test_rectangular_and_rotated_lattices():
    rect = square_coords(9, 6)
    rect[:, 1] *= 2.5  # row pitch 2.5x the column pitch
    pixel, shape, kind = grid_pixels(rect)
    assert (shape, kind) == ((6, 9), "square")
    theta = np.deg2rad(2.0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pixel, shape, kind = grid_pixels(square_coords(30, 20, jitter=0.1) @ rot.T)
    assert (shape, kind) == ((20, 30), "square")
    assert np.unique(pixel).size == 600


@pytest.mark.parametrize("odd_first", [False, True])
def test_hex_grid_collapses_to_documented_shape(odd_first):
    n_rows, n_cols = 10, 12
    rows, cols, xy = hex_coords(n_rows, n_cols, odd_first=odd_first)
    adata = make_adata(xy)
    sx.pp.gene_images(adata)
    uns = adata.uns["gene_images"]
    assert uns["grid"] == "hex"
    exp_row = rows - rows.min()
    exp_col = np.ceil((cols - cols.min()) / 2).astype(int)
    H, W = exp_row.max() + 1, exp_col.max() + 1
    assert tuple(uns["shape"]) == (H, W) == (n_rows, int(np.ceil((cols.max() - cols.min()) / 2)) + 1)
    np.testing.assert_array_equal(uns["pixel"], exp_row * W + exp_col)
    img = image(adata, "g3")
    np.testing.assert_allclose(img[exp_row, exp_col], adata.X[:, 3])
    # explicit grid="hex" and the transposed orientation give the same grid
    assert sx.pp.gene_images(adata, grid="hex", copy=True).uns["gene_images"]["grid"] == "hex"
    _, shape_t, kind_t = grid_pixels(xy[:, ::-1])
    assert (shape_t, kind_t) == ((W, H), "hex")


def test_hex_fixture_auto(hex_adata):
    sx.pp.gene_images(hex_adata)
    assert hex_adata.uns["gene_images"]["grid"] == "hex"
    # 12 spots per row, array_col 0..23: ceil(23 / 2) + 1 = 13 columns
    assert tuple(hex_adata.uns["gene_images"]["shape"]) == (10, 13)


def test_lattice_padding_with_shape(grid_adata):
    sx.pp.gene_images(grid_adata, shape=(20, 24))
    assert tuple(grid_adata.uns["gene_images"]["shape"]) == (20, 24)
    img = image(grid_adata, "g0")
    assert img[16:].sum() == 0
    assert img[:, 21:].sum() == 0
    assert grid_adata.varm["gene_images"].shape == (grid_adata.n_vars, 20 * 24)


# --------------------------------------------------------------------------------------- binning
def test_bin_sums_spots_sharing_a_pixel():
    coords = np.array([[0.0, 0.0], [0.0, 0.0], [0.1, 0.1], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]])
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    images, shape, pixel = rasterize(X, coords, grid="bin", shape=(2, 2))
    assert shape == (2, 2)
    np.testing.assert_array_equal(pixel, [0, 0, 0, 3, 1, 2])
    np.testing.assert_allclose(images.toarray(), [[0 + 2 + 4, 8, 10, 6], [1 + 3 + 5, 9, 11, 7]])


def test_bin_default_shape_about_one_spot_per_pixel(free_adata):
    sx.pp.gene_images(free_adata)
    uns = free_adata.uns["gene_images"]
    assert uns["grid"] == "bin"
    H, W = uns["shape"]
    assert 0.7 * free_adata.n_obs <= H * W <= 1.3 * free_adata.n_obs
    X = dense(free_adata.X)
    total = np.asarray(free_adata.varm["gene_images"].sum(axis=1)).ravel()
    np.testing.assert_allclose(total, X.sum(0), rtol=1e-5)  # binning keeps every spot's value


def test_bin_shape_is_capped_and_follows_aspect(rng):
    coords = rng.uniform(size=(60_000, 2)) * [4.0, 1.0]
    _, (H, W), kind = grid_pixels(coords)
    assert kind == "bin"
    assert W == 128
    assert H <= 128
    assert W > H
    _, (H, W), _ = grid_pixels(coords, grid="bin", shape=(10, 30))
    assert (H, W) == (10, 30)


def test_genes_subset_leaves_other_rows_empty(grid_adata):
    sx.pp.gene_images(grid_adata, genes=["g5", "g2"], key_added="img")
    images = grid_adata.varm["img"]
    nnz = np.diff(images.indptr)
    assert set(np.flatnonzero(nnz)) == {2, 5}
    assert grid_adata.uns["img"]["genes"] == ["g2", "g5"]
    pixel = grid_adata.uns["img"]["pixel"]
    np.testing.assert_allclose(image(grid_adata, "g5", "img").ravel()[pixel], grid_adata.X[:, 5])


def test_copy_contract_and_h5ad_roundtrip(grid_adata, tmp_path):
    with assert_unchanged(grid_adata):
        out = sx.pp.gene_images(grid_adata, copy=True)
    assert isinstance(out, AnnData)
    assert "gene_images" in out.varm
    assert sx.pp.gene_images(grid_adata) is None
    assert (grid_adata.varm["gene_images"] != out.varm["gene_images"]).nnz == 0
    out.write_h5ad(tmp_path / "img.h5ad")
    back = read_h5ad(tmp_path / "img.h5ad")
    H, W = back.uns["gene_images"]["shape"]
    assert (H, W) == (16, 21)
    assert sparse.issparse(back.varm["gene_images"])


def test_large_gene_panel_is_fast_and_sparse(rng):
    n_obs, n_genes = 5_000, 16_000
    coords = square_coords(100, 50)
    nnz = n_obs * n_genes // 20  # 5% dense, as log-normalised ST data
    rows, cols = rng.integers(0, n_obs, nnz), rng.integers(0, n_genes, nnz)
    X = sparse.csr_matrix((rng.random(nnz, dtype=np.float32) + 0.1, (rows, cols)), shape=(n_obs, n_genes))
    adata = AnnData(X)
    adata.obsm["spatial"] = coords
    start = time.perf_counter()
    sx.pp.gene_images(adata)
    elapsed = time.perf_counter() - start
    images = adata.varm["gene_images"]
    assert elapsed < 5, f"16k genes x 5k spots took {elapsed:.1f}s"
    assert sparse.issparse(images)
    assert images.nnz == X.nnz
    assert tuple(adata.uns["gene_images"]["shape"]) == (50, 100)


@pytest.mark.realdata
def test_mouse_olfactory_bulb_one_pixel_per_spot(shared_data):
    import scanpy as sc

    adata = sc.read_h5ad(shared_data / "st_mouse_olfactory_bulb" / "mob.h5ad")
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sx.pp.gene_images(adata)
    uns = adata.uns["gene_images"]
    assert uns["grid"] == "square"
    assert tuple(uns["shape"]) == (16, 21)
    assert np.unique(uns["pixel"]).size == adata.n_obs
    assert adata.varm["gene_images"].nnz == adata.X.nnz


# --------------------------------------------------------------------------------------- bad input
def _dup(a):
    a.obsm["spatial"][1] = a.obsm["spatial"][0]


def _nan_x(a):
    a.X[3, 2] = np.nan


def _coords3d(a):
    a.obsm["spatial"] = np.column_stack([a.obsm["spatial"], np.zeros(a.n_obs)])


@pytest.mark.parametrize(
    ("mutate", "kwargs", "exc", "match"),
    [
        (_dup, {"grid": "square"}, ValueError, r"obsm\['spatial'\].*same pixel|grid='bin'"),
        (_dup, {}, ValueError, "grid='bin'"),
        (None, {"grid": "hexagonal"}, ValueError, "`grid` must be one of"),
        (None, {"grid": "hex"}, ValueError, r"grid='hex'.*lattice"),
        (lambda a: a.obsm.pop("spatial"), {}, KeyError, r"obsm\['spatial'\] is missing"),
        (lambda a: a.obsm["spatial"].__setitem__((0, 0), np.nan), {}, ValueError, "NaN"),
        (_coords3d, {}, ValueError, "2-D coordinates"),
        (_nan_x, {}, ValueError, r"adata\.X contains 1 NaN"),
        (None, {"layer": "nope"}, KeyError, r"layers\['nope'\]"),
        (None, {"genes": ["g1", "BRCA1"]}, KeyError, "BRCA1"),
        (None, {"genes": []}, ValueError, "genes"),
        (None, {"shape": (0, 5)}, ValueError, "shape"),
        (None, {"shape": "big"}, ValueError, "shape"),
        (None, {"shape": (5, 5)}, ValueError, r"`shape`=\(5, 5\) is smaller"),
    ],
)
def test_gene_images_bad_input_leaves_object_unchanged(grid_adata, mutate, kwargs, exc, match):
    if mutate is not None:
        mutate(grid_adata)
    with assert_unchanged(grid_adata), pytest.raises(exc, match=match):
        sx.pp.gene_images(grid_adata, **kwargs)


def test_rasterize_bad_input():
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="coords"):
        rasterize(X, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="coords"):
        grid_pixels(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        rasterize(np.ones(4), np.zeros((4, 2)))
