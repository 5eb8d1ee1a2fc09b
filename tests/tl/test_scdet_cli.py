"""The scDET command-line pieces (add_arguments / run) and the demo step, on tiny files."""

from __future__ import annotations

import argparse

import anndata as ad
import numpy as np
import pytest
import torch

import scomics_ext as sx
from scomics_ext import _cli_scdet


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_cli_run_writes_annotated_query(tmp_path, capsys):
    ref, query = sx.datasets.open_world(n_cells=300, n_genes=60, n_types=5, n_novel=2, random_state=0)
    ref.write_h5ad(tmp_path / "ref.h5ad")
    query.write_h5ad(tmp_path / "query.h5ad")
    parser = argparse.ArgumentParser()
    _cli_scdet.add_arguments(parser)
    args = parser.parse_args(
        [
            str(tmp_path / "ref.h5ad"),
            str(tmp_path / "query.h5ad"),
            "--labels-key",
            "cell_type",
            "-o",
            str(tmp_path / "out" / "q.h5ad"),
            "--ref-out",
            str(tmp_path / "out" / "r.h5ad"),
            "--n-novel",
            "2",
            "--max-epochs",
            "2",
            "--n-top-genes",
            "50",
            "--seed",
            "1",
        ]
    )
    assert _cli_scdet.run(args) == 0
    out = ad.read_h5ad(tmp_path / "out" / "q.h5ad")
    assert {"scdet", "scdet_novel", "scdet_confidence"} <= set(out.obs.columns)
    assert out.uns["scdet"]["params"]["random_state"] == 1
    assert "X_scdet" in ad.read_h5ad(tmp_path / "out" / "r.h5ad").obsm
    printed = capsys.readouterr().out
    assert f"annotated {query.n_obs} query cells" in printed
    assert "written to" in printed


def test_cli_run_missing_file(tmp_path):
    parser = argparse.ArgumentParser()
    _cli_scdet.add_arguments(parser)
    args = parser.parse_args(["nope.h5ad", "nope2.h5ad", "--labels-key", "x", "-o", str(tmp_path / "o.h5ad")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _cli_scdet.run(args)


def test_demo_step_returns_query_labels(monkeypatch):
    ref, query = sx.datasets.open_world(n_cells=300, n_genes=60, n_types=5, n_novel=2, random_state=0)
    from scomics_ext.tl import _scdet as tl_mod

    real = tl_mod.scdet

    def fast(*args, **kwargs):  # a test keeps the demo's training short
        kwargs.update(max_epochs=2, n_top_genes=50)
        return real(*args, **kwargs)

    monkeypatch.setattr(tl_mod, "scdet", fast)
    out = _cli_scdet.demo_step(ref, query, n_novel=2, random_state=0)
    assert set(out) == {"scdet"}
    labels = out["scdet"]
    assert labels.shape == (query.n_obs,)
    assert labels.dtype == object
    assert np.array_equal(labels, query.obs["scdet"].astype(str).to_numpy())
