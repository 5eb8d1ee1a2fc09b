import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData

from scomics_ext._utils import as_categorical, progress, seed_everything, write_results


def test_seed_everything_repeatable():
    a = (seed_everything(3).normal(size=3), np.random.rand(), torch.rand(2))  # noqa: NPY002 - checks the legacy global seed
    b = (seed_everything(3).normal(size=3), np.random.rand(), torch.rand(2))  # noqa: NPY002 - checks the legacy global seed
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert torch.equal(a[2], b[2])


def test_as_categorical_natsorted_strings():
    cat = as_categorical([10, 2, 1, None, 2])
    assert list(cat.categories) == ["1", "2", "10"]
    assert pd.isna(cat[3])
    ser = as_categorical(["b", "a"], index=pd.Index(["x", "y"]))
    assert isinstance(ser, pd.Series)
    assert ser.dtype == "category"


def test_progress_can_be_disabled():
    assert list(progress(range(3), enabled=False)) == [0, 1, 2]


def test_write_results_all_or_nothing():
    adata = AnnData(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="expected 4"):
        write_results(adata, obs={"ok": np.arange(4)}, obsm={"bad": np.zeros((5, 2))})
    assert "ok" not in adata.obs  # nothing written when one entry is wrong
    write_results(
        adata,
        obs={"lab": as_categorical([0, 1, 0, 1])},
        obsm={"X_emb": np.ones((4, 2), dtype=np.float32)},
        varm={"X_g": np.ones((3, 2))},
        uns={"key": {"params": {"a": 1}}},
    )
    assert adata.obs["lab"].dtype == "category"
    assert adata.obsm["X_emb"].shape == (4, 2)
    assert adata.uns["key"]["params"]["a"] == 1
