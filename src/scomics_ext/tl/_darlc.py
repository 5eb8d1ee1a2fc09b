"""``sx.tl.darlc``: cluster genes by their spatial expression patterns with DARLC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from scomics_ext._constants import Key
from scomics_ext._docs import inject_docs
from scomics_ext._utils import as_categorical, write_results
from scomics_ext._validation import (
    check_anndata,
    check_finite,
    check_in,
    check_n_clusters,
    check_nonnegative,
    check_positive_int,
    get_matrix,
    get_spatial,
)

__all__ = ["darlc", "select_spatial_genes"]

GRIDS = ("auto", "square", "hex", "bin")


def select_spatial_genes(
    X: Any, coords: np.ndarray, n_top_genes: int, *, candidates: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the ``n_top_genes`` most spatially autocorrelated genes (Moran's I, log-normalised).

    Raw counts are log-normalised first (``normalize_total`` to the median library size + ``log1p``);
    Moran's I is computed on the 6-nearest-neighbour spot graph. Constant genes are never selected.

    Parameters
    ----------
    X
        ``(n_spots, n_genes)`` counts or log-normalised expression.
    coords
        ``(n_spots, 2)`` spot coordinates.
    n_top_genes
        How many genes to keep (fewer when fewer genes vary).
    candidates
        Column indices to choose from (default: all).

    Returns
    -------
    Sorted integer indices into the columns of ``X``.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> from scomics_ext.tl._darlc import select_spatial_genes
    >>> adata = sx.datasets.gene_patterns(n_side=20, n_genes=60, null_fraction=0.5, random_state=0)
    >>> idx = select_spatial_genes(adata.X, adata.obsm["spatial"], 20)
    >>> bool((adata.var["truth"].iloc[idx] != "null").mean() > 0.8)
    True
    """
    from scomics_ext.model._darlc_data import log_normalize, morans_i, spot_graph

    Xlog, _ = log_normalize(X)
    cand = np.arange(Xlog.shape[1]) if candidates is None else np.asarray(candidates, dtype=np.int64)
    score = morans_i(Xlog[:, cand], spot_graph(np.asarray(coords, dtype=np.float64)[:, :2]))
    ok = np.flatnonzero(np.isfinite(score))
    order = ok[np.argsort(-score[ok], kind="stable")][:n_top_genes]
    return np.sort(cand[order])


def _constant_columns(X: Any) -> np.ndarray:
    """Boolean mask of the columns with a single value across spots."""
    from scipy import sparse

    if sparse.issparse(X):
        Xc = sparse.csc_matrix(X)
        return np.ravel(Xc.max(axis=0).toarray()) == np.ravel(Xc.min(axis=0).toarray())
    X = np.asarray(X)
    return np.ptp(X, axis=0) == 0 if X.shape[0] else np.ones(X.shape[1], dtype=bool)


def _history_arrays(history: dict[str, pd.DataFrame] | None) -> dict[str, np.ndarray]:
    """Training history as ``{"epoch": int array, term: float array (NaN where not recorded)}``."""
    if not history:
        return {}
    epochs = sorted({int(e) for df in history.values() for e in df.index})
    pos = {e: i for i, e in enumerate(epochs)}
    out: dict[str, np.ndarray] = {"epoch": np.asarray(epochs, dtype=np.int64)}
    for name, df in history.items():
        arr = np.full(len(epochs), np.nan)
        for e, v in zip(df.index, df.iloc[:, 0]):
            arr[pos[int(e)]] = float(v)
        out[str(name)] = arr
    return out


def _davies_bouldin(X: Any, labels: np.ndarray, metric: str) -> float:
    from scomics_ext.metrics import davies_bouldin

    if np.unique(labels).size < 2:
        return float("nan")
    return float(davies_bouldin(X, labels, metric=metric))


@inject_docs()
def darlc(
    adata: AnnData,
    *,
    n_clusters: int | None = None,
    layer: str | None = None,
    spatial_key: str = "spatial",
    grid: Literal["auto", "square", "hex", "bin"] = "auto",
    genes: Sequence[str] | None = None,
    n_top_genes: int | None = None,
    key_added: str = "darlc",
    random_state: int = 0,
    max_epochs: int | None = None,
    accelerator: str = "auto",
    copy: bool = False,
    return_model: bool = False,
    progress_bar: bool | None = None,
) -> AnnData | Any | tuple[AnnData, Any] | None:
    """Cluster genes by their spatial expression patterns with DARLC.

    Every gene becomes an image of its log-normalised expression on the spot grid; DARLC
    (:class:`~scomics_ext.model.DARLC`) learns gene embeddings (masked image modelling + momentum
    contrast against GAT-denoised images) and clusters them with a Student's t mixture, jointly.
    Accepts raw counts (log-normalised internally: ``normalize_total`` to the median library size, then
    ``log1p``) or log-normalised data; negative (e.g. scaled) data are refused. Dense or sparse.

    Genes that are constant across spots, or not selected by ``genes`` / ``n_top_genes``, are not
    clustered (``NaN`` in the outputs).

    Parameters
    ----------
    {adata}
    n_clusters
        Number of gene clusters; ``None`` estimates it from the largest eigengap of the seeding gene-gene
        similarity (positive Pearson correlation of the denoised images, 15 nearest genes).
    {layer}
    {spatial_key}
    grid
        How spots become pixels (:func:`~scomics_ext.pp.gene_images`): ``"auto"`` (square lattice, else
        Visium hex lattice, else binning), ``"square"``, ``"hex"`` or ``"bin"``.
    genes
        Names of the genes to cluster (default: all non-constant genes).
    n_top_genes
        Cluster only the ``n_top_genes`` most **spatially variable** genes (highest Moran's I of the
        log-normalised expression on the 6-nearest-neighbour spot graph), among ``genes`` if given.
    {key_added}
    {random_state}
    max_epochs
        Total training epochs (warm-up + joint); ``None`` adapts them to the data size
        (:meth:`~scomics_ext.model.DARLC.train`).
    accelerator
        Lightning accelerator; ``"auto"`` uses a GPU when available.
    {copy}
    return_model
        Also return the trained :class:`~scomics_ext.model.DARLC`.
    {progress_bar}

    Returns
    -------
    ``None`` (in place), the modified copy (``copy=True``), the model (``return_model=True``) or
    ``(copy, model)`` (both). Writes, only once everything has been computed:

    - ``varm[f"X_{{key_added}}"]``: ``(n_vars, 32)`` float32 gene embeddings (``NaN`` rows for genes not
      clustered);
    - ``var[key_added]``: categorical cluster of every gene (``"0"`` is the largest cluster; ``NaN`` for
      genes not clustered);
    - ``uns[key_added]``: ``params``, ``n_clusters`` (used), ``n_clusters_inferred``, ``eigenvalues``
      (eigengap search, when inferred), ``dbie`` / ``dbip`` (Davies-Bouldin index, Euclidean / Pearson,
      of the clusters on the genes' own log-normalised expression), ``cluster_names``,
      ``cluster_images`` (``(K, H, W)`` float32 mean pattern per cluster: the mean of the members'
      log-normalised images, each z-scored over the tissue pixels; 0 outside the tissue), ``image_shape``,
      ``grid``, ``pixel`` (flat pixel of every spot), ``n_genes_clustered``, ``training`` (schedule) and
      ``history`` (``epoch`` and one float array per loss term).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> adata = sx.datasets.gene_patterns(n_side=20, n_genes=120, n_patterns=4, random_state=0)
    >>> sx.tl.darlc(adata, n_clusters=4)  # doctest: +SKIP
    >>> adata.var["darlc"].value_counts()  # doctest: +SKIP
    """
    from scomics_ext.model._darlc import DARLC
    from scomics_ext.model._darlc_data import check_genes_and_grid, standardize_images

    start = logg.info("clustering genes with DARLC")
    # -- validation (nothing is computed or written before this passes) ---------------------------------
    check_anndata(adata)
    check_in(grid, GRIDS, "grid")
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"`key_added` must be a non-empty string, got {key_added!r}.")
    if n_top_genes is not None:
        n_top_genes = check_positive_int(n_top_genes, "n_top_genes", minimum=2)
    if max_epochs is not None:
        max_epochs = check_positive_int(max_epochs, "max_epochs")
    check_positive_int(random_state, "random_state", minimum=0)
    X = get_matrix(adata, layer=layer)
    what = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    check_finite(X, what)
    check_nonnegative(
        X,
        what,
        hint="DARLC needs raw counts or log-normalised expression, never scaled or centred data. Pass the "
        "counts with `layer=` (e.g. layer='counts').",
    )
    coords = get_spatial(adata, spatial_key)
    if coords.shape[1] != 2:
        raise ValueError(
            f"adata.obsm[{spatial_key!r}] has {coords.shape[1]} columns; gene images need 2-D coordinates "
            "(x, y). Pass the 2-D coordinates or `spatial_key=` naming them."
        )
    genes = check_genes_and_grid(adata, genes, coords, grid, spatial_key)
    if genes is not None:
        candidates = np.unique(adata.var_names.get_indexer(genes))
    else:
        candidates = np.arange(adata.n_vars)
    candidates = candidates[~_constant_columns(X[:, candidates] if candidates.size else X[:, :0])]
    if candidates.size < 2:
        raise ValueError(
            f"DARLC clusters genes and needs at least 2 genes that vary across spots; {what} has "
            f"{candidates.size} (of {adata.n_vars if genes is None else len(genes)} requested). Pass more "
            "genes (`genes=`) or the expression layer with `layer=`."
        )
    if n_top_genes is not None and n_top_genes < candidates.size:
        selected = select_spatial_genes(X, coords, n_top_genes, candidates=candidates)
    else:
        selected = candidates
    if n_clusters is not None:
        n_clusters = check_n_clusters(n_clusters, int(selected.size), what="genes to cluster")

    # -- compute (on an internal AnnData that shares the data; the user's object is not touched) ---------
    internal = AnnData(
        X=X,
        obs=pd.DataFrame(index=adata.obs_names.copy()),
        var=pd.DataFrame(index=adata.var_names.copy()),
    )
    internal.obsm[Key.obsm.spatial] = coords
    gene_names = list(adata.var_names[selected].astype(str))
    DARLC.setup_anndata(internal, spatial_key=Key.obsm.spatial, grid=grid, genes=gene_names)
    model = DARLC(internal, n_clusters=n_clusters, random_state=random_state)
    model.train(max_epochs=max_epochs, accelerator=accelerator, progress_bar=progress_bar)
    z = model.get_latent_representation()
    raw = model.predict()
    data = model.gene_images

    # clusters named by size: "0" is the largest
    used, counts = np.unique(raw, return_counts=True)
    order = used[np.argsort(-counts, kind="stable")]
    rank = {int(c): i for i, c in enumerate(order)}
    labels = np.array([rank[int(c)] for c in raw])
    names = [str(i) for i in range(order.size)]
    expr = data.expression.T.tocsr()  # genes x spots, log-normalised
    h, w = data.shape
    patterns = standardize_images(data.images, data.occupied)
    cluster_images = np.stack([patterns[labels == i].mean(axis=0) for i in range(order.size)]).astype(
        np.float32
    )

    embedding = np.full((adata.n_vars, z.shape[1]), np.nan, dtype=np.float32)
    embedding[data.gene_index] = z
    per_gene = np.full(adata.n_vars, None, dtype=object)
    per_gene[data.gene_index] = np.asarray(names, dtype=object)[labels]
    summary = model.training_summary_
    uns = {
        "params": {
            "n_clusters": n_clusters,
            "layer": layer,
            "spatial_key": spatial_key,
            "grid": grid,
            "genes": None if genes is None else list(genes),
            "n_top_genes": n_top_genes,
            "random_state": int(random_state),
            "max_epochs": max_epochs,
            "key_added": key_added,
        },
        "n_clusters": int(order.size),
        "n_clusters_fitted": int(summary["n_clusters"]),
        "n_clusters_inferred": bool(summary["n_clusters_inferred"]),
        "dbie": _davies_bouldin(expr, labels, "euclidean"),
        "dbip": _davies_bouldin(expr, labels, "pearson"),
        "cluster_names": names,
        "cluster_images": cluster_images,
        "image_shape": np.array([h, w], dtype=np.int64),
        "grid": data.grid,
        "pixel": np.asarray(data.pixel, dtype=np.int64),
        "n_genes_clustered": int(data.gene_index.size),
        "input_was_counts": bool(data.counts_input),
        "training": {
            k: v for k, v in summary.items() if k not in ("eigenvalues", "n_clusters", "n_clusters_inferred")
        },
        "history": _history_arrays(model.history_),
    }
    if summary.get("eigenvalues") is not None:
        uns["eigenvalues"] = np.asarray(summary["eigenvalues"], dtype=np.float64)

    # -- write (last) -----------------------------------------------------------------------------------
    target = adata.copy() if copy else adata
    write_results(
        target,
        var={key_added: as_categorical(per_gene, index=target.var_names)},
        varm={Key.varm.embedding(key_added): embedding},
        uns={key_added: uns},
    )
    logg.info(f"    finished: {data.gene_index.size} genes in {order.size} clusters", time=start)
    if copy and return_model:
        return target, model
    if copy:
        return target
    return model if return_model else None
