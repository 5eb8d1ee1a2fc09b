"""The ``scomics-ext crct`` sub-command (``_cli_crct``) and the demo step, without going through cli.py."""

from __future__ import annotations

import argparse

import anndata as ad
import mudata
import numpy as np
import pytest
import torch

import scomics_ext as sx
from scomics_ext import _cli_crct


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _cli_crct.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_h5mu_round_trip(tmp_path, capsys, monkeypatch):
    src, out = tmp_path / "in.h5mu", tmp_path / "out" / "res.h5mu"
    sx.datasets.spatial_multiome(n_side=12, modalities=("rna", "adt"), n_rare=0).write(src)
    monkeypatch.setattr(sx.settings, "progress_bar", False)
    args = _parse(str(src), "-o", str(out), "--n-clusters", "3", "--max-epochs", "6", "--seed", "2")
    assert _cli_crct.run(args) == 0
    res = mudata.read_h5mu(out)
    assert res.obs["crct"].nunique() == 3
    assert res.obsm["X_crct"].shape[0] == 144
    assert res.uns["crct"]["params"]["random_state"] == 2
    assert "3 domains" in capsys.readouterr().out


def test_cli_h5ad_needs_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(sx.settings, "progress_bar", False)
    md = sx.datasets.spatial_multiome(n_side=12, modalities=("adt",), n_rare=0)
    adt = md.mod["adt"]
    src, out = tmp_path / "adt.h5ad", tmp_path / "adt_out.h5ad"
    adt.write(src)
    with pytest.raises(ValueError, match="Pass kind="):
        _cli_crct.run(_parse(str(src), "-o", str(out), "-k", "3", "--max-epochs", "4"))
    assert (
        _cli_crct.run(_parse(str(src), "-o", str(out), "-k", "3", "--max-epochs", "4", "--kind", "protein"))
        == 0
    )
    assert ad.read_h5ad(out).obs["crct"].nunique() == 3
    with pytest.raises(ValueError, match="must have the input's format"):
        _cli_crct.run(_parse(str(src), "-o", str(tmp_path / "x.h5mu"), "-k", "3"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _cli_crct.run(_parse(str(tmp_path / "none.h5ad"), "-o", str(out), "-k", "3"))


def test_demo_step_returns_labels_and_leaves_data(monkeypatch):
    monkeypatch.setattr(sx.settings, "progress_bar", False)
    md = sx.datasets.spatial_multiome(n_side=12, modalities=("rna", "adt"), n_rare=0)
    out = _cli_crct.demo_step(md, n_clusters=3, random_state=0, max_epochs=6)
    assert set(out) == {"crct"}
    assert out["crct"].shape == (md.n_obs,)
    assert "crct" not in md.obs
    assert np.unique(out["crct"]).size == 3
