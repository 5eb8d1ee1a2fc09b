"""``sx.pl.gene_clusters``: gallery of DARLC gene clusters (mean pattern + member genes' images)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from anndata import AnnData

from scomics_ext._validation import check_anndata, check_positive_int, get_matrix

__all__ = ["gene_clusters"]


def _member_images(adata: AnnData, uns: dict[str, Any], columns: np.ndarray) -> np.ndarray:
    """Log-normalised images of the genes ``columns``, rasterised as in the clustering run."""
    from scomics_ext.model._darlc_data import log_normalize, rasterize_columns

    layer = uns.get("params", {}).get("layer")
    X = get_matrix(adata, layer=layer)
    Xlog, _ = log_normalize(X)  # normalisation uses all genes, as in the run
    h, w = (int(s) for s in uns["image_shape"])
    return rasterize_columns(Xlog[:, columns], np.asarray(uns["pixel"]), (h, w))


def _representatives(images: np.ndarray, mean: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` images most correlated with the cluster mean (most typical first)."""
    flat = images.reshape(images.shape[0], -1).astype(np.float64)
    m = mean.ravel().astype(np.float64)
    fc = flat - flat.mean(axis=1, keepdims=True)
    mc = m - m.mean()
    denom = np.linalg.norm(fc, axis=1) * np.linalg.norm(mc)
    r = np.divide(fc @ mc, denom, out=np.zeros(flat.shape[0]), where=denom > 0)
    return np.argsort(-r, kind="stable")[:n]


def gene_clusters(
    adata: AnnData,
    *,
    key: str = "darlc",
    n_genes: int = 4,
    clusters: Sequence[str] | None = None,
    cmap: str = "viridis",
    mean_cmap: str = "magma",
    panel_size: float = 1.8,
    show: bool | None = None,
    save: str | Path | None = None,
    dpi: int = 110,
) -> Any:
    """Gallery of gene clusters: per cluster, its mean spatial pattern and a few member genes' images.

    Rows are clusters; the first panel is the cluster's mean pattern (``uns[key]["cluster_images"]``: mean
    of the members' z-scored images), the next ``n_genes`` panels are the log-normalised images of the
    members most correlated with it (the most typical genes), recomputed from the expression the
    clustering used.

    Parameters
    ----------
    adata
        AnnData after :func:`~scomics_ext.tl.darlc`.
    key
        ``key_added`` of the run (``var[key]``, ``uns[key]``).
    n_genes
        Member genes shown per cluster.
    clusters
        Clusters to show, in this order (default: all).
    cmap
        Colour map of the gene images.
    mean_cmap
        Colour map of the mean patterns.
    panel_size
        Side of one panel in inches.
    show
        Call :func:`matplotlib.pyplot.show` (default: only when not saving).
    save
        File to save the figure to.
    dpi
        Resolution of the saved figure.

    Returns
    -------
    The :class:`matplotlib.figure.Figure`.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> adata = sx.datasets.gene_patterns(n_side=20, n_genes=120, n_patterns=4, random_state=0)
    >>> sx.tl.darlc(adata, n_clusters=4)  # doctest: +SKIP
    >>> fig = sx.pl.gene_clusters(adata, n_genes=3, show=False)  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    check_anndata(adata)
    n_genes = check_positive_int(n_genes, "n_genes", minimum=0)
    if key not in adata.uns or key not in adata.var:
        raise KeyError(
            f"adata.var[{key!r}] / adata.uns[{key!r}] are missing: run `sx.tl.darlc(adata, key_added={key!r})` "
            "first, or pass the `key` of an earlier run."
        )
    uns = adata.uns[key]
    for field in ("cluster_images", "cluster_names", "image_shape", "pixel"):
        if field not in uns:
            raise KeyError(f"adata.uns[{key!r}] has no {field!r}; it was not written by sx.tl.darlc.")
    names = [str(c) for c in uns["cluster_names"]]
    if clusters is None:
        shown = names
    else:
        shown = [str(c) for c in ([clusters] if isinstance(clusters, str) else clusters)]
        unknown = [c for c in shown if c not in names]
        if unknown:
            raise ValueError(f"`clusters` has unknown clusters {unknown}; available: {names}.")
        if not shown:
            raise ValueError("`clusters` is empty; pass cluster names or None for all.")
    labels = adata.var[key].astype(object).to_numpy()
    mean_images = np.asarray(uns["cluster_images"])

    members = {c: np.flatnonzero(labels == c) for c in shown}
    need = np.unique(np.concatenate([members[c] for c in shown])) if n_genes else np.zeros(0, dtype=int)
    images = _member_images(adata, uns, need) if need.size else np.zeros((0, *mean_images.shape[1:]))
    pos = {int(g): i for i, g in enumerate(need)}

    ncols = 1 + n_genes
    fig, axes = plt.subplots(
        len(shown), ncols, figsize=(panel_size * ncols, panel_size * len(shown)), squeeze=False
    )
    for r, c in enumerate(shown):
        mean = mean_images[names.index(c)]
        axes[r, 0].imshow(mean, cmap=mean_cmap)
        axes[r, 0].set_title(f"cluster {c} (mean)", fontsize=7)
        axes[r, 0].set_ylabel(f"{c}\n{members[c].size} genes", fontsize=8)
        idx = members[c]
        if n_genes and idx.size:
            own = images[[pos[int(g)] for g in idx]]
            for j, k in enumerate(_representatives(own, mean, n_genes)):
                axes[r, j + 1].imshow(own[k], cmap=cmap)
                axes[r, j + 1].set_title(str(adata.var_names[idx[k]]), fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.images:
                ax.set_axis_off()
    fig.suptitle(f"{key}: gene clusters (mean pattern, most typical members)", fontsize=9)
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=dpi, bbox_inches="tight")
    if show or (show is None and save is None and plt.get_backend().lower() != "agg"):
        plt.show()
    return fig
