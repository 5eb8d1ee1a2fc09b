import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scomics_ext import _validation as v


@pytest.fixture
def adata():
    rng = np.random.default_rng(0)
    a = AnnData(rng.poisson(2, size=(20, 5)).astype(np.float32))
    a.obsm["spatial"] = rng.uniform(size=(20, 2))
    a.layers["counts"] = a.X.copy()
    a.obs["ct"] = ["a", "b"] * 10
    return a


def test_type_checks(adata):
    with pytest.raises(TypeError, match="AnnData"):
        v.check_anndata(np.zeros(3))
    with pytest.raises(TypeError, match="MuData"):
        v.check_mudata(adata)


def test_get_spatial(adata):
    coords = v.get_spatial(adata)
    assert coords.dtype == np.float64
    assert coords.shape == (20, 2)
    with pytest.raises(KeyError, match=r"obsm\['xy'\] is missing"):
        v.get_spatial(adata, "xy")
    adata.obsm["bad"] = np.zeros((20, 4))
    with pytest.raises(ValueError, match=r"shape \(n_obs, 2\)"):
        v.get_spatial(adata, "bad")
    adata.obsm["nan"] = np.full((20, 2), np.nan)
    with pytest.raises(ValueError, match="NaN"):
        v.get_spatial(adata, "nan")
    adata.obsm["df"] = pd.DataFrame(coords, index=adata.obs_names)
    np.testing.assert_array_equal(v.get_spatial(adata, "df"), coords)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_finite_and_counts(fmt):
    X = np.array([[0, 1.0], [2, 3]])
    conv = sparse.csr_matrix if fmt == "csr" else np.asarray
    v.check_finite(conv(X), "X")
    v.check_counts(conv(X), "X")
    with pytest.raises(ValueError, match="1 NaN and 0 infinite"):
        v.check_finite(conv(np.array([[np.nan, 1.0]])), "adata.X")
    with pytest.raises(ValueError, match="negative values"):
        v.check_nonnegative(conv(np.array([[-1.0, 1.0]])), "adata.X")
    with pytest.raises(ValueError, match="raw counts"):
        v.check_counts(conv(np.array([[0.5, 1.0]])), "adata.X")
    assert not v.is_count_matrix(conv(np.array([[0.5]])))


def test_get_matrix(adata):
    assert v.get_matrix(adata) is adata.X
    assert v.get_matrix(adata, layer="counts") is adata.layers["counts"]
    np.testing.assert_array_equal(v.get_matrix(adata, use_rep="spatial"), adata.obsm["spatial"])
    with pytest.raises(KeyError, match=r"layers\['nope'\]"):
        v.get_matrix(adata, layer="nope")
    with pytest.raises(KeyError, match=r"obsm\['nope'\]"):
        v.get_matrix(adata, use_rep="nope")
    with pytest.raises(ValueError, match="only one"):
        v.get_matrix(adata, layer="counts", use_rep="spatial")


def test_n_clusters_and_ints():
    assert v.check_n_clusters(3, 10) == 3
    with pytest.raises(ValueError, match="at least 2"):
        v.check_n_clusters(1, 10)
    with pytest.raises(ValueError, match="exceeds the number of observations"):
        v.check_n_clusters(11, 10)
    with pytest.raises(TypeError, match="integer"):
        v.check_n_clusters(2.5, 10)
    with pytest.raises(TypeError, match="integer"):
        v.check_positive_int(True, "k")
    with pytest.raises(ValueError, match=">= 1"):
        v.check_positive_int(0, "k")
    with pytest.raises(ValueError, match="one of"):
        v.check_in("x", ["a", "b"], "kind")


def test_labels(adata):
    assert v.check_labels(adata, "ct").shape == (20,)
    with pytest.raises(KeyError, match=r"obs\['cell_type'\] is missing"):
        v.check_labels(adata, "cell_type")
    adata.obs["empty"] = np.nan
    with pytest.raises(ValueError, match="only missing values"):
        v.check_labels(adata, "empty")


def test_modalities(adata):
    other = adata.copy()
    mdata = MuData({"rna": adata, "adt": other})
    assert v.check_modalities(mdata, None) == ["rna", "adt"]
    with pytest.raises(KeyError, match=r"'atac' is not in mdata\.mod"):
        v.check_modalities(mdata, ["rna", "atac"])
    shuffled = other[::-1].copy()
    with pytest.raises(ValueError, match="same observations in the same order"):
        v.check_modalities(MuData({"rna": adata, "adt": shuffled}), None)
    with pytest.raises(ValueError, match="empty"):
        v.check_modalities(mdata, [])


def test_unique_coords_and_zero():
    v.check_unique_coordinates(np.array([[0, 0], [0, 1]]))
    with pytest.raises(ValueError, match="1 duplicated coordinates"):
        v.check_unique_coordinates(np.array([[0, 0], [0, 0]]))
    with pytest.raises(ValueError, match="all zeros"):
        v.check_not_all_zero(sparse.csr_matrix((3, 3)), "adata.X")


@pytest.mark.parametrize("fmt", ["lil", "dok", "csc", "coo"])
def test_finite_on_all_sparse_formats(fmt):
    X = sparse.random(5, 4, density=0.5, format=fmt, random_state=0)
    v.check_finite(X, "X")
    v.check_nonnegative(X, "X")
