"""Data preparation for DARLC: spots x genes expression -> per-gene images, positive views, seeding graph.

Array-level helpers (no AnnData) used by :class:`~scomics_ext.model.DARLC` and :func:`~scomics_ext.tl.darlc`:

* :func:`log_normalize`: raw counts -> ``normalize_total`` (median library size, the reference code's
  ``normalize_per_cell``) + ``log1p``; anything else is taken as already log-normalised. The input is
  never modified.
* :func:`morans_i`: Moran's I of every gene on a spot graph, used to pick spatially variable genes.
* :func:`spot_graph`: the spatial kNN graph (6 neighbours: one ring on a Visium lattice) the GAT runs on.
* :func:`positive_views`: the GAT-denoised images (DARLC §1.2), or a one-hop graph smoothing for the
  ``gat_view=False`` ablation.
* :func:`default_gat_epochs`: the adaptive number of GAT epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse

from scomics_ext._validation import is_count_matrix

#: STAGATE's widths (attention layer, latent) for the GAT denoiser
GAT_HIDDEN = (512, 30)
#: GAT epochs are clipped to this range ...
GAT_EPOCHS_RANGE = (50, 300)
#: ... and chosen so that ``epochs * n_spots * n_genes * hidden`` stays below this budget (≈ 1-2 min on
#: one CPU core for a full Visium area with 2,000 genes; small data get the upper bound)
GAT_BUDGET = 2.6e11
#: neighbours of the spot graph (the first ring of a Visium lattice)
N_SPOT_NEIGHBORS = 6


@dataclass
class GeneImages:
    """Images of the modelled genes and how they were rasterised.

    Attributes
    ----------
    images
        ``(N, H, W)`` float32 log-normalised images, one per modelled gene.
    expression
        ``(n_spots, N)`` CSR float32 log-normalised expression of the modelled genes.
    pixel
        ``(n_spots,)`` flat pixel index ``row * W + col`` of every spot.
    shape
        Image shape ``(H, W)``.
    grid
        Grid used: ``"square"``, ``"hex"`` or ``"bin"``.
    gene_index
        ``(N,)`` positions of the modelled genes in ``adata.var_names``.
    counts_input
        Whether the input looked like raw counts (and was log-normalised here).
    """

    images: np.ndarray
    expression: sparse.csr_matrix
    pixel: np.ndarray
    shape: tuple[int, int]
    grid: str
    gene_index: np.ndarray
    counts_input: bool

    @property
    def occupied(self) -> np.ndarray:
        """Sorted flat indices of the pixels that hold at least one spot."""
        return np.unique(self.pixel)


def log_normalize(X: Any) -> tuple[sparse.csr_matrix, bool]:
    """Log-normalise raw counts (``normalize_total`` to the median library size, then ``log1p``).

    Non-count input (non-integer values) is returned as is, as a float32 CSR copy: it is taken to be
    log-normalised already. Spots without counts stay zero.

    Parameters
    ----------
    X
        ``(n_spots, n_genes)`` dense or sparse, non-negative.

    Returns
    -------
    matrix
        CSR float32 log-normalised matrix (a new object; ``X`` is not modified).
    was_counts
        Whether ``X`` looked like raw counts.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.model._darlc_data import log_normalize
    >>> Y, was_counts = log_normalize(np.array([[1.0, 3.0], [2.0, 2.0]]))
    >>> was_counts, np.round(Y.toarray().astype(float), 3).tolist()
    (True, [[0.693, 1.386], [1.099, 1.099]])
    """
    counts = is_count_matrix(X)
    Y = sparse.csr_matrix(X, dtype=np.float32, copy=True)
    if not counts:
        return Y, False
    total = np.asarray(Y.sum(axis=1), dtype=np.float64).ravel()
    positive = total > 0
    target = float(np.median(total[positive])) if positive.any() else 1.0
    scale = np.zeros_like(total)
    scale[positive] = target / total[positive]
    Y = sparse.csr_matrix(sparse.diags(scale.astype(np.float32)) @ Y, dtype=np.float32)
    np.log1p(Y.data, out=Y.data)
    return Y, True


def spot_graph(coords: np.ndarray, n_neighbors: int = N_SPOT_NEIGHBORS) -> sparse.csr_matrix:
    """Symmetric binary kNN graph of the spots (no self loops).

    Parameters
    ----------
    coords
        ``(n_spots, 2)`` coordinates.
    n_neighbors
        Neighbours per spot (clamped to ``n_spots - 1``).

    Returns
    -------
    ``(n_spots, n_spots)`` CSR float32 adjacency.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.model._darlc_data import spot_graph
    >>> xy = np.array([[x, y] for y in range(4) for x in range(4)], dtype=float)
    >>> spot_graph(xy, 4).shape
    (16, 16)
    """
    from scomics_ext.pp import knn_graph

    n = coords.shape[0]
    if n < 2:
        return sparse.csr_matrix((n, n), dtype=np.float32)
    conn, _ = knn_graph(np.asarray(coords, dtype=np.float64)[:, :2], n_neighs=min(n_neighbors, n - 1))
    return conn


def morans_i(X: Any, adjacency: sparse.spmatrix) -> np.ndarray:
    """Moran's I of every column of ``X`` on a spot graph (row-standardised weights).

    ``I_g = (n / S0) · x_gᵀ W x_g / x_gᵀ x_g`` with ``x_g`` the centred column and ``S0 = Σ W``;
    constant columns get ``NaN``.

    Parameters
    ----------
    X
        ``(n_spots, n_genes)`` dense or sparse.
    adjacency
        ``(n_spots, n_spots)`` spot graph.

    Returns
    -------
    ``(n_genes,)`` float64 array.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.model._darlc_data import morans_i, spot_graph
    >>> xy = np.array([[x, y] for y in range(10) for x in range(10)], dtype=float)
    >>> X = np.column_stack([xy[:, 0], np.random.default_rng(0).random(100)])
    >>> i = morans_i(X, spot_graph(xy, 4))
    >>> bool(i[0] > 0.8 > abs(i[1]))
    True
    """
    A = sparse.csr_matrix(adjacency, dtype=np.float64)
    deg = np.asarray(A.sum(axis=1)).ravel()
    W = sparse.diags(np.where(deg > 0, 1.0 / np.maximum(deg, 1e-300), 0.0)) @ A
    s0 = float(W.sum())
    n = A.shape[0]
    Xd = X.toarray() if sparse.issparse(X) else np.asarray(X)
    Xc = Xd.astype(np.float64) - Xd.mean(axis=0, dtype=np.float64)
    num = np.einsum("ij,ij->j", Xc, W @ Xc)
    den = np.einsum("ij,ij->j", Xc, Xc)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (n / s0) * num / den if s0 > 0 else np.full(Xc.shape[1], np.nan)
    out[den <= 1e-12 * max(1.0, float(den.max(initial=0.0)))] = np.nan
    return out


def standardize_images(images: np.ndarray, occupied: np.ndarray) -> np.ndarray:
    """Z-score every image over the pixels that hold a spot; the other pixels stay 0.

    Parameters
    ----------
    images
        ``(N, H, W)`` images.
    occupied
        Flat indices of the tissue pixels.

    Returns
    -------
    ``(N, H, W)`` float32 array; a constant image becomes all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.model._darlc_data import standardize_images
    >>> out = standardize_images(np.array([[[1.0, 3.0], [0.0, 0.0]]]), np.array([0, 1]))
    >>> out.tolist()
    [[[-1.0, 1.0], [0.0, 0.0]]]
    """
    n = images.shape[0]
    flat = images.reshape(n, -1)
    vals = flat[:, occupied].astype(np.float64)
    vals -= vals.mean(axis=1, keepdims=True)
    sd = vals.std(axis=1, keepdims=True)
    vals /= np.where(sd > 0, sd, 1.0)
    out = np.zeros(flat.shape, dtype=np.float32)
    out[:, occupied] = vals
    return out.reshape(images.shape)


def rasterize_columns(expression: sparse.csr_matrix, pixel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Dense ``(N, H, W)`` float32 images of the columns of a spots x genes matrix (pixels summed).

    Parameters
    ----------
    expression
        ``(n_spots, N)`` values (dense or sparse).
    pixel
        ``(n_spots,)`` flat pixel index of every spot.
    shape
        ``(H, W)``.

    Returns
    -------
    ``(N, H, W)`` float32 array; pixels without a spot are 0.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.model._darlc_data import rasterize_columns
    >>> rasterize_columns(np.eye(2, dtype=np.float32), np.array([0, 3]), (2, 2))[1].tolist()
    [[0.0, 0.0], [0.0, 1.0]]
    """
    h, w = shape
    n_spots = expression.shape[0]
    P = sparse.csr_matrix(
        (np.ones(n_spots, dtype=np.float32), (np.asarray(pixel), np.arange(n_spots))), shape=(h * w, n_spots)
    )
    img = P @ (expression if sparse.issparse(expression) else sparse.csr_matrix(expression))
    img = np.asarray(img.toarray() if sparse.issparse(img) else img, dtype=np.float32)
    return np.ascontiguousarray(img.T).reshape(-1, h, w)


def default_gat_epochs(n_spots: int, n_genes: int, hidden: int = GAT_HIDDEN[0]) -> int:
    """Adaptive number of GAT epochs: a compute budget, clipped to :data:`GAT_EPOCHS_RANGE`.

    On planted patterns, the correlation between the denoised images and the truth was 0.71 after 50
    epochs, 0.74 after 200 and 0.72 after STAGATE's 1,000 (mild overfitting to the noise), so few
    epochs lose little while 1,000 would take ~40 min for a full Visium area with 2,000 genes on CPU.

    Parameters
    ----------
    n_spots
        Number of spots.
    n_genes
        Number of genes the GAT reconstructs.
    hidden
        Width of the attention layer.

    Returns
    -------
    Number of epochs.

    Examples
    --------
    >>> from scomics_ext.model._darlc_data import default_gat_epochs
    >>> default_gat_epochs(400, 150), default_gat_epochs(4992, 2000)
    (300, 50)
    """
    lo, hi = GAT_EPOCHS_RANGE
    return int(np.clip(GAT_BUDGET // max(1, n_spots * n_genes * hidden), lo, hi))


def positive_views(
    gene_images: GeneImages,
    coords: np.ndarray,
    *,
    method: Literal["gat", "smooth"] = "gat",
    epochs: int | None = None,
    seed: int = 0,
    device: Any = None,
) -> np.ndarray:
    """Positive views for the contrastive branch: denoised images of every modelled gene.

    ``"gat"`` trains the graph attention autoencoder (:func:`~scomics_ext.module.fit_gat_denoiser`) once,
    full batch, on the spots x modelled-genes matrix over :func:`spot_graph`, and rasterises its
    reconstruction ``X̂`` exactly like the input. ``"smooth"`` (the ``gat_view=False`` ablation) averages
    every spot with its graph neighbours instead.

    Parameters
    ----------
    gene_images
        The rasterised data (:class:`GeneImages`).
    coords
        ``(n_spots, 2)`` spot coordinates.
    method
        ``"gat"`` or ``"smooth"``.
    epochs
        GAT epochs (default: :func:`default_gat_epochs`).
    seed
        GAT initialisation seed.
    device
        Torch device of the GAT.

    Returns
    -------
    ``(N, H, W)`` float32 images.
    """
    from scomics_ext.module import fit_gat_denoiser

    X = gene_images.expression
    A = spot_graph(coords)
    if method == "gat":
        n_epochs = default_gat_epochs(*X.shape) if epochs is None else int(epochs)
        Xhat = fit_gat_denoiser(X, A, hidden=GAT_HIDDEN, epochs=n_epochs, seed=seed, device=device)
        Xhat = np.maximum(Xhat, 0.0)  # expression is non-negative; clip reconstruction undershoot
    elif method == "smooth":
        S = sparse.csr_matrix(A, dtype=np.float32) + sparse.identity(
            A.shape[0], dtype=np.float32, format="csr"
        )
        deg = np.asarray(S.sum(axis=1)).ravel()
        Xhat = sparse.diags(1.0 / deg) @ S @ X
    else:  # pragma: no cover - validated by the model
        raise ValueError(f"method must be 'gat' or 'smooth', got {method!r}")
    return rasterize_columns(sparse.csr_matrix(Xhat, dtype=np.float32), gene_images.pixel, gene_images.shape)


def check_genes_and_grid(
    adata: Any, genes: Any, coords: np.ndarray, grid: str, spatial_key: str
) -> list[str] | None:
    """Validate ``genes`` (names in ``adata.var_names``) and that ``coords`` rasterise on ``grid``.

    Parameters
    ----------
    adata
        The spots x genes AnnData.
    genes
        A gene name, a sequence of names or ``None``.
    coords
        ``(n_spots, 2)`` coordinates.
    grid
        Grid kind for :func:`scomics_ext.pp.grid_pixels`.
    spatial_key
        Key of the coordinates (for the error message).

    Returns
    -------
    The gene names as a list of strings (``None`` when ``genes`` is ``None``).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> from scomics_ext.model._darlc_data import check_genes_and_grid
    >>> adata = sx.datasets.gene_patterns(n_side=12, n_genes=30, random_state=0)
    >>> check_genes_and_grid(adata, "gene_0", adata.obsm["spatial"], "auto", "spatial")
    ['gene_0']
    """
    from scomics_ext.pp import grid_pixels

    try:
        grid_pixels(coords, grid=grid)
    except ValueError as err:
        raise ValueError(f"adata.obsm[{spatial_key!r}]: {err}") from None
    if genes is None:
        return None
    genes = [genes] if isinstance(genes, str) else [str(g) for g in genes]
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        raise KeyError(
            f"`genes` names {len(missing)} genes not in adata.var_names (first: {missing[:5]}); "
            "pass names from adata.var_names."
        )
    return genes
