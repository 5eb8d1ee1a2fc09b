"""Per-modality preprocessing pipelines (RNA, protein/ADT, ATAC) to a reduced representation.

:func:`preprocess_matrix` is the array-level kernel (it never sees the user's AnnData and never modifies its
input); :func:`preprocess_modality` validates an AnnData, runs the kernel on a private copy of the chosen
matrix and writes only the reduced representation (plus ``var["highly_variable"]`` for RNA).

The pipelines are the published ones (SpatialGlue / PRAGA / CRCT):

- RNA: ``filter_genes(min_cells)`` → HVG ``seurat_v3`` on counts → ``normalize_total(1e4)`` → ``log1p`` →
  ``scale(max_value=10)`` on the HVGs → PCA (arpack, seeded).
- ADT: per-cell CLR (Seurat style) → ``scale`` → PCA with ``n_proteins - 1`` components (at most 50).
- ATAC: TF-IDF → log → LSI (randomised SVD, ``n_comps + 1`` components) → drop the first component
  (it tracks sequencing depth) → standardise each cell's row.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

from scomics_ext._constants import MODALITY_ALIASES, MODALITY_KINDS
from scomics_ext._docs import inject_docs
from scomics_ext._utils import write_results
from scomics_ext._validation import (
    check_anndata,
    check_counts,
    check_finite,
    check_nonnegative,
    check_not_all_zero,
    check_positive_int,
    get_matrix,
)

#: default number of components per kind (ADT: ``n_proteins - 1``, capped at this value)
DEFAULT_N_COMPS = {"rna": 50, "adt": 50, "atac": 50}
#: default ``key_added`` per kind
DEFAULT_KEYS = {"rna": "X_pca", "adt": "X_pca", "atac": "X_lsi"}


def resolve_kind(kind: Any) -> str:
    """Canonical modality kind (``"rna"``, ``"adt"`` or ``"atac"``) from a kind or a common alias.

    Parameters
    ----------
    kind
        ``"rna"``, ``"adt"``, ``"atac"`` or an alias such as ``"gex"``, ``"protein"``, ``"peaks"``
        (case-insensitive).

    Returns
    -------
    The canonical kind.

    Examples
    --------
    >>> from scomics_ext.pp import resolve_kind
    >>> resolve_kind("Protein")
    'adt'
    """
    if not isinstance(kind, str) or kind.lower() not in MODALITY_ALIASES:
        raise ValueError(
            f"`kind` must be one of {list(MODALITY_KINDS)} (or an alias: {sorted(MODALITY_ALIASES)}), got {kind!r}."
        )
    return MODALITY_ALIASES[kind.lower()]


def _to_float(X: Any) -> Any:
    """A private float32 copy (CSR if sparse)."""
    if sparse.issparse(X):
        return sparse.csr_matrix(X, dtype=np.float32, copy=True)
    return np.array(X, dtype=np.float32, copy=True)


def _n_comps_for(kind: str, n_comps: int | None, n_obs: int, n_feat: int, what: str) -> int:
    """Validate ``n_comps`` against what the data allow; choose the default when ``None``."""
    # PCA (arpack) needs n_comps < min(n_obs, n_features); LSI computes n_comps + 1 <= min(...) components
    limit = min(n_obs, n_feat) - 1
    if limit < 1:
        raise ValueError(
            f"{what} has shape ({n_obs}, {n_feat}) after filtering: too small for a {kind.upper()} reduction "
            "(need at least 2 observations and 2 features)."
        )
    if kind == "atac" and limit < 2:
        raise ValueError(f"{what} is too small for LSI: need at least 3 observations and 3 features.")
    if n_comps is None:
        default = DEFAULT_N_COMPS[kind]
        if kind == "adt":
            default = min(default, n_feat - 1)
        return max(2 if kind == "atac" else 1, min(default, limit))
    n_comps = check_positive_int(n_comps, "n_comps", minimum=2 if kind == "atac" else 1)
    if n_comps > limit:
        feats = {"rna": "highly variable genes", "adt": "proteins", "atac": "peaks"}[kind]
        raise ValueError(
            f"`n_comps`={n_comps} is too large for {what}: with {n_obs} observations and {n_feat} {feats} "
            f"at most {limit} components can be computed. Lower `n_comps`."
        )
    return n_comps


def _pca(X: np.ndarray, n_comps: int, random_state: int) -> tuple[np.ndarray, dict[str, Any]]:
    import scanpy as sc

    Z, _, ratio, var = sc.pp.pca(
        X, n_comps=n_comps, svd_solver="arpack", random_state=random_state, return_info=True, dtype="float32"
    )
    return np.asarray(Z, dtype=np.float32), {
        "variance_ratio": np.asarray(ratio, dtype=np.float64),
        "variance": np.asarray(var, dtype=np.float64),
    }


def _scale(X: Any, max_value: float | None) -> np.ndarray:
    import scanpy as sc

    X = X.toarray() if sparse.issparse(X) else X
    return np.asarray(sc.pp.scale(X, max_value=max_value, copy=True), dtype=np.float32)


def clr(X: Any) -> np.ndarray:
    """Per-cell centred log-ratio, Seurat style: ``log1p(x / exp(mean_j log1p(x_j)))`` row by row.

    Parameters
    ----------
    X
        ``(n_cells, n_proteins)`` non-negative counts, dense or sparse.

    Returns
    -------
    Dense float32 array of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.pp import clr
    >>> clr(np.array([[0.0, 3.0, 7.0]])).round(3)
    array([[0.   , 0.665, 1.165]], dtype=float32)
    """
    X = X.toarray() if sparse.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    geo = np.exp(np.log1p(X).mean(axis=1, keepdims=True))
    return np.log1p(X / geo).astype(np.float32)


def tfidf(X: Any) -> sparse.csr_matrix:
    """TF-IDF of a cell x peak count matrix as in SpatialGlue / GLUE, followed by the usual log transform.

    ``tf = x / rowsum``, ``idf = n_cells / colsum``; rows of ``tf·idf`` are L1-normalised and transformed as
    ``log1p(1e4 · ·)``. Peaks without counts get 0.

    Parameters
    ----------
    X
        ``(n_cells, n_peaks)`` non-negative counts (every cell with at least one count).

    Returns
    -------
    CSR float64 matrix of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.pp import tfidf
    >>> tfidf(np.array([[1.0, 0.0], [1.0, 1.0]])).shape
    (2, 2)
    """
    X = sparse.csr_matrix(X, dtype=np.float64, copy=True)
    col = np.asarray(X.sum(axis=0)).ravel()
    idf = np.zeros_like(col)
    np.divide(X.shape[0], col, out=idf, where=col > 0)
    X = X @ sparse.diags(idf)
    row = np.asarray(X.sum(axis=1)).ravel()
    inv = np.zeros_like(row)
    np.divide(1.0, row, out=inv, where=row > 0)
    X = sparse.diags(inv) @ X  # tf (row-normalised) x idf, then L1 rows: both reduce to one row scaling
    X = sparse.csr_matrix(X)
    X.data = np.log1p(X.data * 1e4)
    return X


def _standardize_rows(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.mean(axis=1, keepdims=True)
    sd = Z.std(axis=1, ddof=1, keepdims=True)
    sd[sd == 0] = 1.0
    return Z / sd


def _rna(X, n_comps, n_top_genes, min_cells, max_value, random_state, what):
    import scanpy as sc

    n_cells = np.asarray((X > 0).sum(axis=0)).ravel()
    keep = n_cells >= min_cells
    if keep.sum() < 2:
        raise ValueError(
            f"Only {int(keep.sum())} genes of {what} are detected in >= min_cells={min_cells} cells; "
            "lower `min_cells`."
        )
    tmp = AnnData(X[:, keep])
    n_top = min(n_top_genes, tmp.n_vars)
    if n_top < tmp.n_vars:
        sc.pp.highly_variable_genes(tmp, flavor="seurat_v3", n_top_genes=n_top)
        hvg_kept = tmp.var["highly_variable"].to_numpy(dtype=bool)
    else:
        hvg_kept = np.ones(tmp.n_vars, dtype=bool)
    n_comps = _n_comps_for("rna", n_comps, tmp.n_obs, int(hvg_kept.sum()), what)
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    Xs = _scale(tmp.X[:, hvg_kept], max_value)
    Z, info = _pca(Xs, n_comps, random_state)
    hvg = np.zeros(X.shape[1], dtype=bool)
    hvg[np.flatnonzero(keep)[hvg_kept]] = True
    info.update(highly_variable=hvg, n_comps=n_comps)
    return Z, info


def _adt(X, n_comps, max_value, random_state, what):
    n_comps = _n_comps_for("adt", n_comps, X.shape[0], X.shape[1], what)
    Xs = _scale(clr(X), max_value)
    Z, info = _pca(Xs, n_comps, random_state)
    info["n_comps"] = n_comps
    return Z, info


def _atac(X, n_comps, random_state, what):
    from sklearn.utils.extmath import randomized_svd

    depth = np.asarray(X.sum(axis=1)).ravel()
    empty = np.flatnonzero(depth == 0)
    if empty.size:
        raise ValueError(
            f"{empty.size} cells of {what} have no counts (first: {empty[:5].tolist()}); TF-IDF is undefined "
            "for them. Remove them first, e.g. `sc.pp.filter_cells(adata, min_counts=1)`."
        )
    Xt = tfidf(X)
    n_feat = int((np.asarray(X.sum(axis=0)).ravel() > 0).sum())
    n_comps = _n_comps_for("atac", n_comps, X.shape[0], n_feat, what)
    U, S, _ = randomized_svd(Xt, n_components=n_comps + 1, n_iter=15, random_state=random_state)
    Z = _standardize_rows(U[:, 1:]).astype(np.float32)
    return Z, {"singular_values": S.astype(np.float64), "n_comps": n_comps}


def preprocess_matrix(
    X: Any,
    *,
    kind: Literal["rna", "adt", "atac"] = "rna",
    n_comps: int | None = None,
    n_top_genes: int = 3000,
    min_cells: int = 10,
    max_value: float | None = 10.0,
    random_state: int = 0,
    return_info: bool = False,
    what: str = "X",
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Array-level kernel of :func:`preprocess_modality`: counts matrix → reduced representation.

    Works on a private float32 copy; ``X`` is never modified. See :func:`preprocess_modality` for the
    pipelines and the checks (non-negative finite input, counts for RNA, not all zeros, ``n_comps`` within
    what the data allow).

    Parameters
    ----------
    X
        ``(n_obs, n_features)`` dense or sparse matrix (raw counts for RNA; non-negative for ADT/ATAC).
    kind
        ``"rna"``, ``"adt"`` or ``"atac"`` (or an alias, see :func:`resolve_kind`).
    n_comps
        Number of components; ``None`` for the default (50; ADT: ``n_proteins - 1``, at most 50).
    n_top_genes
        Number of highly variable genes (RNA).
    min_cells
        Keep genes detected in at least this many cells (RNA).
    max_value
        Clip scaled values at this absolute value (RNA and ADT); ``None`` to not clip.
    random_state
        Seed of the PCA / randomised SVD.
    return_info
        Also return a dict with ``variance_ratio`` / ``variance`` (PCA) or ``singular_values`` (LSI),
        ``n_comps`` and, for RNA, the boolean ``highly_variable`` mask over the input genes.
    what
        How to name ``X`` in error messages.

    Returns
    -------
    ``(n_obs, n_comps)`` float32 array, and the info dict if ``return_info``.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.pp import preprocess_matrix
    >>> X = np.random.default_rng(0).poisson(2.0, size=(100, 12))
    >>> preprocess_matrix(X, kind="adt").shape
    (100, 11)
    """
    kind = resolve_kind(kind)
    if not (sparse.issparse(X) or hasattr(X, "shape")):
        raise TypeError(f"{what} must be a numpy array or scipy sparse matrix, got {type(X).__name__}.")
    if len(X.shape) != 2:
        raise ValueError(f"{what} must be 2-D (n_obs, n_features), got shape {X.shape}.")
    min_cells = check_positive_int(min_cells, "min_cells", minimum=0)
    n_top_genes = check_positive_int(n_top_genes, "n_top_genes")
    if kind == "rna":
        check_counts(X, what)
    else:
        check_finite(X, what)
        check_nonnegative(X, what)
    check_not_all_zero(X, what)
    Xc = _to_float(X)
    if kind == "rna":
        Z, info = _rna(Xc, n_comps, n_top_genes, min_cells, max_value, random_state, what)
    elif kind == "adt":
        Z, info = _adt(Xc, n_comps, max_value, random_state, what)
    else:
        Z, info = _atac(Xc, n_comps, random_state, what)
    if not np.all(np.isfinite(Z)):  # pragma: no cover - guarded by the checks above
        raise ValueError(f"The {kind.upper()} reduction of {what} produced non-finite values.")
    return (Z, info) if return_info else Z


@inject_docs()
def preprocess_modality(
    adata: AnnData,
    *,
    kind: Literal["rna", "adt", "atac"] = "rna",
    layer: str | None = None,
    n_comps: int | None = None,
    n_top_genes: int = 3000,
    min_cells: int = 10,
    max_value: float | None = 10.0,
    key_added: str | None = None,
    random_state: int = 0,
    copy: bool = False,
) -> AnnData | None:
    """Standard preprocessing of one modality to a reduced representation, leaving the data untouched.

    The pipeline runs on a private copy of the matrix: ``adata.X`` and the layers are never modified.
    Only the representation (and, for RNA, the HVG flags) is written.

    - ``"rna"``: keep genes detected in ``>= min_cells`` cells; ``n_top_genes`` highly variable genes
      (``seurat_v3``, on counts); ``normalize_total(1e4)``; ``log1p``; ``scale(max_value)`` on the HVGs;
      PCA (arpack, seeded; 50 components by default). Needs **raw counts**.
    - ``"adt"`` (protein): per-cell CLR, Seurat style ``log1p(x / exp(mean(log1p(x))))``; ``scale``; PCA
      with ``n_proteins - 1`` components by default (at most 50). Needs non-negative data (counts or not).
    - ``"atac"`` (peaks): TF-IDF, ``log1p(1e4·)``; LSI by randomised SVD with ``n_comps + 1`` components;
      the first (depth-driven) component is dropped and each cell's row is standardised. Needs non-negative
      data; every cell needs at least one count.

    Parameters
    ----------
    {adata}
    kind
        ``"rna"``, ``"adt"`` or ``"atac"``; aliases such as ``"gex"``, ``"protein"``, ``"peaks"`` work too.
    {layer} Use the counts layer (e.g. ``layer="counts"``) when ``X`` holds normalised data.
    n_comps
        Number of components; ``None`` for the default (see above). An explicit value larger than the data
        allow is an error.
    n_top_genes
        Number of highly variable genes (RNA).
    min_cells
        Keep genes detected in at least this many cells (RNA).
    max_value
        Clip scaled values at this absolute value (RNA and ADT); ``None`` to not clip.
    key_added
        ``obsm`` / ``uns`` key of the result; default ``"X_pca"`` (RNA, ADT) or ``"X_lsi"`` (ATAC).
    {random_state}
    {copy}

    Returns
    -------
    ``None``, or a modified copy if ``copy=True``. Writes

    - ``obsm[key_added]``: ``(n_obs, n_comps)`` float32 representation.
    - ``var["highly_variable"]`` (RNA only): the genes used.
    - ``uns[key_added]``: ``params`` and ``variance_ratio`` / ``variance`` (PCA) or ``singular_values``
      (LSI, including the dropped first component).

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> import scomics_ext as sx
    >>> rng = np.random.default_rng(0)
    >>> adt = ad.AnnData(rng.poisson(5.0, size=(200, 20)).astype(np.float32))
    >>> sx.pp.preprocess_modality(adt, kind="protein")
    >>> adt.obsm["X_pca"].shape
    (200, 19)
    """
    start = logg.info("preprocessing modality")
    check_anndata(adata)
    kind = resolve_kind(kind)
    X = get_matrix(adata, layer=layer)
    what = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    if key_added is None:
        key_added = DEFAULT_KEYS[kind]
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"`key_added` must be a non-empty string, got {key_added!r}.")
    Z, info = preprocess_matrix(
        X,
        kind=kind,
        n_comps=n_comps,
        n_top_genes=n_top_genes,
        min_cells=min_cells,
        max_value=max_value,
        random_state=random_state,
        return_info=True,
        what=what,
    )
    params = {
        "kind": kind,
        "layer": layer,
        "n_comps": int(info.pop("n_comps")),
        "n_top_genes": n_top_genes if kind == "rna" else None,
        "min_cells": min_cells if kind == "rna" else None,
        "max_value": max_value if kind != "atac" else None,
        "random_state": random_state,
    }
    hvg = info.pop("highly_variable", None)
    target = adata.copy() if copy else adata
    write_results(
        target,
        obsm={key_added: Z},
        var={"highly_variable": hvg} if hvg is not None else None,
        uns={key_added: {"params": params, **info}},
    )
    logg.info("    finished", time=start)
    return target if copy else None
