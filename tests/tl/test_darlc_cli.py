"""The DARLC command-line pieces (wired into `scomics-ext` by cli.py) and the demo step."""

from __future__ import annotations

import argparse

import anndata as ad
import numpy as np
import pytest
import torch

import scomics_ext as sx
from scomics_ext import _cli_darlc
from scomics_ext.model import _darlc_data


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(_darlc_data, "GAT_EPOCHS_RANGE", (20, 20))
    yield
    torch.set_num_threads(n)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    _cli_darlc.add_arguments(p)
    return p


def test_cli_run_writes_results(tmp_path, capsys):
    adata = sx.datasets.gene_patterns(n_side=12, n_genes=20, n_patterns=2, random_state=0)
    adata.write(tmp_path / "in.h5ad")
    args = _parser().parse_args(
        [
            str(tmp_path / "in.h5ad"),
            "-o",
            str(tmp_path / "out.h5ad"),
            "--n-clusters",
            "2",
            "--max-epochs",
            "2",
        ]
    )
    assert _cli_darlc.run(args) == 0
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert out.var["darlc"].notna().all()
    assert out.varm["X_darlc"].shape == (20, 32)
    assert "2 clusters" in capsys.readouterr().out


def test_cli_missing_input(tmp_path):
    args = _parser().parse_args([str(tmp_path / "nope.h5ad"), "-o", str(tmp_path / "out.h5ad")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _cli_darlc.run(args)


def test_demo_step_returns_labels_per_gene(monkeypatch):
    import scanpy as sc

    from scomics_ext.tl import _darlc as tl_darlc

    original = tl_darlc.darlc
    monkeypatch.setattr(tl_darlc, "darlc", lambda a, **kw: original(a, **{**kw, "max_epochs": 2}))
    adata = sx.datasets.gene_patterns(n_side=12, n_genes=20, n_patterns=2, random_state=0)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    torch.set_num_threads(1)  # scanpy / numba reset torch's thread count (oversubscription)
    before = adata.copy()
    out = _cli_darlc.demo_step(adata, n_clusters=2, random_state=0)
    assert set(out) == {"darlc"}
    assert out["darlc"].shape == (20,)
    assert out["darlc"].dtype.kind == "U"
    assert "darlc" not in adata.var
    np.testing.assert_array_equal(adata.X.toarray(), before.X.toarray())
