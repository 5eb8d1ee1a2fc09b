"""``scomics-ext darlc`` and the DARLC step of ``scomics-ext demo``.

``cli.py`` registers the sub-command with ``register("darlc", HELP, add_arguments, run)``; the demo adds
:func:`demo_step` to ``TOOL_STEPS["gene_patterns"]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HELP", "add_arguments", "demo_step", "run"]

#: one-line help of the sub-command
HELP = "cluster genes by spatial expression pattern with DARLC (h5ad in, h5ad out)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``scomics-ext darlc``.

    Parameters
    ----------
    parser
        The sub-command's parser.

    Examples
    --------
    >>> import argparse
    >>> from scomics_ext._cli_darlc import add_arguments
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> p.parse_args(["in.h5ad", "-o", "out.h5ad", "--n-clusters", "8"]).n_clusters
    8
    """
    parser.add_argument("input", help="spots x genes AnnData (.h5ad) with obsm['spatial']")
    parser.add_argument("--out", "-o", required=True, help="output .h5ad (var['darlc'], varm['X_darlc'])")
    parser.add_argument(
        "--n-clusters", type=int, default=None, help="number of gene clusters (default: eigengap estimate)"
    )
    parser.add_argument("--max-epochs", type=int, default=None, help="training epochs (default: adaptive)")
    parser.add_argument("--seed", type=int, default=0, help="random_state (default: 0)")
    parser.add_argument("--layer", default=None, help="layer with counts/log-normalised data (default: X)")
    parser.add_argument("--spatial-key", default="spatial", help="obsm key of the coordinates")
    parser.add_argument(
        "--n-top-genes", type=int, default=None, help="cluster only the N most spatially variable genes"
    )
    parser.add_argument("--key-added", default="darlc", help="name of the outputs (default: darlc)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (default: auto)")


def run(args: argparse.Namespace) -> int:
    """Run ``scomics-ext darlc``: read, cluster the genes, write; returns the exit code.

    Parameters
    ----------
    args
        Parsed arguments (see :func:`add_arguments`).

    Returns
    -------
    0 on success.

    Examples
    --------
    >>> import argparse
    >>> from scomics_ext._cli_darlc import add_arguments, run
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> run(p.parse_args(["in.h5ad", "-o", "out.h5ad"]))  # doctest: +SKIP
    0
    """
    import anndata as ad

    from scomics_ext._settings import settings
    from scomics_ext.tl._darlc import darlc

    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    adata = ad.read_h5ad(path)
    darlc(
        adata,
        n_clusters=args.n_clusters,
        layer=args.layer,
        spatial_key=args.spatial_key,
        n_top_genes=args.n_top_genes,
        key_added=args.key_added,
        random_state=args.seed,
        max_epochs=args.max_epochs,
        accelerator=args.accelerator,
        progress_bar=settings.progress_bar,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    adata.write(out)
    uns = adata.uns[args.key_added]
    print(
        f"darlc: {uns['n_genes_clustered']} genes in {uns['n_clusters']} clusters "
        f"(DBIE {uns['dbie']:.3f}, DBIP {uns['dbip']:.3f}); wrote {out}"
    )
    return 0


def demo_step(adata: Any, *, n_clusters: int, random_state: int) -> dict[str, np.ndarray]:
    """The demo's DARLC step: cluster the genes of the log-normalised ``gene_patterns`` data.

    Runs on a copy; ``adata`` is not modified.

    Parameters
    ----------
    adata
        Spots x genes AnnData (log-normalised, with ``obsm['spatial']``).
    n_clusters
        Number of planted patterns.
    random_state
        Seed.

    Returns
    -------
    ``{"darlc": labels}`` with one label (string) per gene, in the order of ``adata.var_names``.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> from scomics_ext._cli_darlc import demo_step
    >>> adata = sx.datasets.gene_patterns(n_side=20, n_genes=120, n_patterns=4, random_state=0)
    >>> demo_step(adata, n_clusters=4, random_state=0)["darlc"].shape  # doctest: +SKIP
    (120,)
    """
    from scomics_ext.tl._darlc import darlc

    out = darlc(adata, n_clusters=n_clusters, random_state=random_state, copy=True, progress_bar=False)
    labels = out.var["darlc"].astype(object)
    return {"darlc": np.asarray(labels.where(labels.notna(), "unclustered"), dtype=str)}
