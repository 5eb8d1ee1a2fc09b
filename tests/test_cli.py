"""The command line: help, demo (quick) and simulate."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import mudata as md
import pytest

from scomics_ext.cli import build_parser, main


def test_help_lists_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "demo" in out
    assert "simulate" in out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])


def test_demo_quick_writes_results_figures_and_metrics(tmp_path: Path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--quick", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "spatial_multiome.h5mu", "gene_patterns.h5ad", "open_world_query.h5ad"} <= names
    assert {"spatial_multiome.png", "gene_patterns.png", "open_world.png"} <= names
    summary = json.loads((out / "metrics.json").read_text())
    scores = summary["datasets"]["spatial_multiome"]["scores"]
    # every method row (baseline + tools) is scored against the planted truth, and the baseline finds structure
    assert scores["baseline_smoothed_pca_kmeans"]["ari"] > 0.5
    assert 0 <= summary["datasets"]["open_world"]["scores"]["baseline_knn_threshold"]["overall"] <= 1
    assert summary["datasets"]["gene_patterns"]["scores"]["baseline_image_kmeans"]["nmi"] > 0.5
    assert md.read_h5mu(out / "spatial_multiome.h5mu").n_obs == 30 * 30


@pytest.mark.parametrize(
    ("kind", "suffix", "extra"),
    [("spatial-multiome", ".h5mu", ["--n-side", "12"]), ("gene-patterns", ".h5ad", ["--n-side", "12"])],
)
def test_simulate_writes_file(tmp_path: Path, kind, suffix, extra):
    out = tmp_path / f"sim{suffix}"
    assert main(["simulate", kind, "-o", str(out), *extra]) == 0
    assert out.exists()


def test_simulate_open_world_writes_pair(tmp_path: Path):
    assert main(["simulate", "open-world", "-o", str(tmp_path / "ow.h5ad"), "--n-cells", "400"]) == 0
    ref = ad.read_h5ad(tmp_path / "ow_ref.h5ad")
    query = ad.read_h5ad(tmp_path / "ow_query.h5ad")
    assert "cell_type" in ref.obs
    assert ref.n_vars == query.n_vars


def test_bad_argument_is_a_clean_error(tmp_path: Path, capsys):
    code = main(["simulate", "spatial-multiome", "-o", str(tmp_path / "x.h5mu"), "--n-side", "1"])
    assert code == 2
    assert "error" in capsys.readouterr().err
