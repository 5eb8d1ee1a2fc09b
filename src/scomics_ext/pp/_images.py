"""Rasterise genes into images (DARLC's spatial gene expression patterns, darlc.md §1.1).

Each spot is mapped to one pixel of an ``H x W`` grid; the image of a gene holds the gene's value at each
spot's pixel (0 where there is no spot). Images are stored as one sparse CSR matrix, genes x pixels
(row-major pixel index ``row * W + col``), so 16,000 genes x 5,000 spots stay small.

Grids:

- ``"square"`` (ST, simulations): coordinates on a regular lattice; ``(row, col) = (coord - origin) / pitch``,
  rounded. The pitch per axis is inferred from nearest-neighbour spacing and refined by least squares, so
  jitter (99% of the spots within 0.25 pitch of a node, all within 0.45) and small rotations (< 20°)
  are tolerated.
- ``"hex"`` (Visium): the offset lattice (columns at half-pitch, alternating per row) is collapsed onto a
  square grid as in DARLC: ``row = array_row - min``, ``col = ceil((array_col - min) / 2)``.
- ``"bin"``: free coordinates (Slide-seq, Stereo-seq, imaging) binned onto an ``H x W`` grid; observations
  that fall in the same pixel are summed.
- ``"auto"``: square if the coordinates fit a square lattice, else hex if they fit a hex lattice, else bin.

Row index increases with ``y`` (the second coordinate column), column index with ``x``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse
from sklearn.neighbors import NearestNeighbors

from scomics_ext._constants import Key
from scomics_ext._docs import inject_docs
from scomics_ext._utils import write_results
from scomics_ext._validation import check_anndata, check_finite, get_matrix, get_spatial, is_count_matrix

GRIDS = ("auto", "square", "hex", "bin")
#: largest side of an automatically sized ``"bin"`` grid
MAX_BIN_SIDE = 128
#: coordinates fit a lattice when 99% of them lie within this distance of a node (in lattice steps) ...
LATTICE_TOL = 0.25
#: ... and all of them within this one
LATTICE_MAX = 0.45


class LatticeError(ValueError):
    """Coordinates do not fit the requested lattice."""


# ---------------------------------------------------------------------------------------------------
# lattice detection
# ---------------------------------------------------------------------------------------------------
def _neighbour_vectors(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors from each point to its neighbours within 1.6x the median nearest-neighbour distance.

    Also returns a mask of the first shell (within 1.25x), which carries the lattice's directions.
    """
    k = min(9, c.shape[0])
    nn = NearestNeighbors(n_neighbors=k).fit(c)
    dist, idx = nn.kneighbors(c)
    dist, idx = dist[:, 1:], idx[:, 1:]
    d0 = np.median(dist[:, 0])
    if not d0 > 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=bool)
    close = dist <= 1.6 * d0
    src = np.repeat(np.arange(c.shape[0]), close.sum(axis=1))
    return c[idx[close]] - c[src], dist[close] <= 1.25 * d0


def _axis_fit(v: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer lattice index of 1-D positions ``v`` with spacing ``~step``: (index - min, residuals in steps)."""
    phase = np.angle(np.mean(np.exp(2j * np.pi * v / step))) * step / (2 * np.pi)
    idx = np.round((v - phase) / step)
    for _ in range(2):  # least-squares refinement of origin and spacing (small corrections only)
        if np.ptp(idx) > 0:
            slope, offset = np.polyfit(idx, v, 1)
            if abs(slope / step - 1) < 0.05:
                step, phase = slope, offset
        idx = np.round((v - phase) / step)
    resid = np.abs((v - phase) / step - idx)
    idx = idx.astype(np.int64)
    return idx - idx.min(), resid


def _pitches(c: np.ndarray) -> tuple[float, float, float] | None:
    """Lattice angle and row / column spacing, from the neighbour vectors.

    A first estimate uses the first shell (horizontal neighbours give the x spacing, the others the y
    spacing); it is refined by averaging the x (y) offsets of all neighbour vectors that lie one column (row)
    apart, a window symmetric around the spacing and therefore unbiased under jitter.
    """
    vec, first = _neighbour_vectors(c)
    if vec.shape[0] == 0:
        return None
    vec = np.where(vec[:, :1] < 0, -vec, vec)  # fold directions to (-90°, 90°]
    ang = np.arctan2(vec[:, 1], vec[:, 0])
    near = first & (np.abs(ang) < np.deg2rad(20))  # small rotations only: from near-horizontal neighbours
    angle = float(np.median(ang[near])) if near.any() else 0.0
    vec = np.abs(_rotate(vec, angle))
    horiz = vec[:, 0] >= vec[:, 1]
    px = np.median(vec[first & horiz, 0]) if (first & horiz).any() else np.nan
    py = np.median(vec[first & ~horiz, 1]) if (first & ~horiz).any() else np.nan
    if np.isnan(px) or np.isnan(py):  # rectangular lattice: the other axis has no first-shell neighbour
        r = _rotate(c, angle)
        px = _gap_pitch(r[:, 0], py) if np.isnan(px) else px
        py = _gap_pitch(r[:, 1], px) if np.isnan(py) else py
    for _ in range(2):
        # one column apart and on the same row (hex: neighbours on a row are a full pitch apart) ...
        wx = (vec[:, 0] > 0.6 * px) & (vec[:, 0] < 1.4 * px) & (vec[:, 1] < 0.3 * py)
        # ... one row apart, straight above or (hex) half a pitch aside
        wy = (vec[:, 1] > 0.6 * py) & (vec[:, 1] < 1.4 * py) & (vec[:, 0] < 0.6 * px)
        px = float(vec[wx, 0].mean()) if wx.any() else px
        py = float(vec[wy, 1].mean()) if wy.any() else py
    return angle, float(px), float(py)


def _gap_pitch(v: np.ndarray, other: float) -> float:
    """Spacing of the rows of a 1-D projection: median gap between consecutive distinct positions."""
    gaps = np.diff(np.sort(v))
    gaps = gaps[gaps > 0.5 * other]
    return float(np.median(gaps)) if gaps.size else other


def _rotate(c: np.ndarray, angle: float) -> np.ndarray:
    ca, sa = np.cos(angle), np.sin(angle)
    return np.column_stack([ca * c[:, 0] + sa * c[:, 1], -sa * c[:, 0] + ca * c[:, 1]])


def _misfit(*resid: np.ndarray) -> float:
    """How far coordinates are from a lattice (<= 1: they fit it).

    The score is <= 1 when 99% of the residuals are within :data:`LATTICE_TOL` steps of a node and all
    within :data:`LATTICE_MAX`.
    """
    r = np.concatenate(resid)
    if r.size == 0:
        return 0.0
    return float(max(np.quantile(r, 0.99) / LATTICE_TOL, r.max() / LATTICE_MAX))


def _reduce(idx: np.ndarray) -> np.ndarray:
    """Divide lattice indices by their common step (e.g. a rectangular lattice seen with the short pitch)."""
    g = int(np.gcd.reduce(idx)) if idx.size else 0
    return idx // g if g > 1 else idx


def _fit_square(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Square (or rectangular) lattice: (row, col) and the misfit score."""
    p = _pitches(np.unique(c, axis=0))
    if p is None:
        raise LatticeError("all coordinates are identical")
    angle, px, py = p
    r = _rotate(c, angle)
    col, rx = _axis_fit(r[:, 0], px)
    row, ry = _axis_fit(r[:, 1], py)
    return _reduce(row), _reduce(col), _misfit(rx, ry)


def _fit_hex(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Offset (Visium) lattice with rows along x: returns DARLC's collapsed (row, col) and the residual."""
    p = _pitches(np.unique(c, axis=0))
    if p is None:
        raise LatticeError("all coordinates are identical")
    angle, px, py = p
    r = _rotate(c, angle)
    acol, rx = _axis_fit(r[:, 0], px / 2)
    arow, ry = _axis_fit(r[:, 1], py)
    parity = (acol + arow) % 2
    if np.unique(parity).size > 1 or np.all(acol % 2 == 0):
        return arow, acol, np.inf  # not an offset lattice
    return arow, (acol + 1) // 2, _misfit(rx, ry)


def _collision_error(pixel: np.ndarray, grid: str) -> None:
    uniq, counts = np.unique(pixel, return_counts=True)
    if uniq.size != pixel.size:
        n_dup = int((counts - 1).sum())
        raise ValueError(
            f"{n_dup} spots fall on a pixel already taken by another spot on the {grid} lattice inferred "
            "from obsm['spatial'] (duplicated or too-close coordinates). Use `grid='bin'` to sum spots "
            "that share a pixel, or remove the duplicates."
        )


def _lattice(c: np.ndarray, grid: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(row, col, kind) for ``grid`` in square/hex/auto; raises :class:`LatticeError` when it does not fit."""
    if c.shape[0] == 1:
        return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), "square" if grid == "auto" else grid
    fits = []
    if grid in ("square", "auto"):
        row, col, res = _fit_square(c)
        if res <= 1:
            return row, col, "square"
        fits.append(("square", res))
    if grid in ("hex", "auto"):
        row, col, res = _fit_hex(c)
        if res <= 1:
            return row, col, "hex"
        # columns of the offset lattice may run vertically: fit transposed, collapse along y
        row_t, col_t, res_t = _fit_hex(c[:, ::-1])
        if res_t <= 1:
            return col_t, row_t, "hex"
        fits.append(("hex", min(res, res_t)))
    desc = ", ".join(f"{g}: misfit {r:.2f}" for g, r in fits)
    raise LatticeError(
        f"the coordinates do not lie on a {grid} lattice ({desc}; a lattice needs 99% of the spots within "
        f"{LATTICE_TOL} pitch of a node and all within {LATTICE_MAX})"
    )


def _bin(c: np.ndarray, shape: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    lo = c.min(axis=0)
    ext = c.max(axis=0) - lo
    if shape is None:
        n = np.unique(c, axis=0).shape[0]
        ex, ey = ext
        if ex > 0 and ey > 0:
            W = round(np.sqrt(n * ex / ey))
            H = round(np.sqrt(n * ey / ex))
        else:
            W, H = (n, 1) if ex > 0 else ((1, n) if ey > 0 else (1, 1))
        shape = (int(np.clip(H, 1, MAX_BIN_SIDE)), int(np.clip(W, 1, MAX_BIN_SIDE)))
    H, W = shape
    scale = np.where(ext > 0, ext, 1.0)
    col = np.minimum(np.floor((c[:, 0] - lo[0]) / scale[0] * W), W - 1).astype(np.int64)
    row = np.minimum(np.floor((c[:, 1] - lo[1]) / scale[1] * H), H - 1).astype(np.int64)
    return row, col, (int(H), int(W))


def _check_shape(shape: Any) -> tuple[int, int] | None:
    if shape is None:
        return None
    try:
        H, W = (int(s) for s in shape)
        ok = all(float(s) == int(s) for s in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or H < 1 or W < 1:
        raise ValueError(f"`shape` must be None or a pair of positive integers (H, W), got {shape!r}.")
    return H, W


def grid_pixels(
    coords: np.ndarray,
    *,
    grid: Literal["auto", "square", "hex", "bin"] = "auto",
    shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, tuple[int, int], str]:
    """Pixel of each spot on an image grid (the geometric half of :func:`rasterize`).

    Parameters
    ----------
    coords
        ``(n, 2)`` finite coordinates (x, y).
    grid
        ``"auto"``, ``"square"``, ``"hex"`` or ``"bin"`` (see :func:`gene_images`).
    shape
        ``(H, W)``. For ``"bin"``: the grid to bin onto (default: about one spot per pixel, at most
        128 per side). For lattices: pad the image to this size (must be at least the lattice's size).

    Returns
    -------
    pixel
        ``(n,)`` int64 flat pixel index ``row * W + col``.
    shape
        ``(H, W)``.
    grid
        The grid used (``"square"``, ``"hex"`` or ``"bin"``).

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.pp import grid_pixels
    >>> xy = np.array([[x, y] for y in range(3) for x in range(4)], dtype=float)
    >>> pixel, shape, kind = grid_pixels(xy)
    >>> shape, kind
    ((3, 4), 'square')
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] == 0:
        raise ValueError(f"`coords` must be a non-empty (n, 2) array of (x, y), got shape {coords.shape}.")
    if grid not in GRIDS:
        raise ValueError(f"`grid` must be one of {list(GRIDS)}, got {grid!r}.")
    check_finite(coords, "`coords`")
    shape = _check_shape(shape)
    if grid == "bin":
        row, col, shape = _bin(coords, shape)
        return row * shape[1] + col, shape, "bin"
    try:
        row, col, kind = _lattice(coords, grid)
    except LatticeError as err:
        if grid == "auto":
            row, col, shape = _bin(coords, shape)
            return row * shape[1] + col, shape, "bin"
        raise ValueError(
            f"grid={grid!r}: {err}. Use `grid='bin'` (or 'auto') for free coordinates."
        ) from None
    lattice_shape = (int(row.max()) + 1, int(col.max()) + 1)
    if shape is None:
        shape = lattice_shape
    elif shape[0] < lattice_shape[0] or shape[1] < lattice_shape[1]:
        raise ValueError(
            f"`shape`={shape} is smaller than the {kind} lattice of the coordinates {lattice_shape}; "
            "pass a larger shape (it pads) or None."
        )
    pixel = row * shape[1] + col
    _collision_error(pixel, kind)
    return pixel, shape, kind


def _images(X: Any, pixel: np.ndarray, n_pixels: int, columns: np.ndarray | None) -> sparse.csr_matrix:
    """``(n_vars, n_pixels)`` CSR float32: summed values of the spots of each pixel, genes ``columns`` only."""
    n_obs, n_vars = X.shape
    P = sparse.csr_matrix(
        (np.ones(n_obs, dtype=np.float32), (pixel, np.arange(n_obs))), shape=(n_pixels, n_obs)
    )
    sel = np.arange(n_vars) if columns is None else np.sort(np.asarray(columns, dtype=np.int64))
    Xs = X[:, sel] if columns is not None else X
    Xs = sparse.csr_matrix(Xs, dtype=np.float32)
    img = (P @ Xs).T.tocsr().astype(np.float32)  # (n_sel, n_pixels)
    img.eliminate_zeros()
    img.sort_indices()
    if columns is None:
        return img
    nnz_row = np.zeros(n_vars, dtype=np.int64)
    nnz_row[sel] = np.diff(img.indptr)
    indptr = np.concatenate([[0], np.cumsum(nnz_row)])
    return sparse.csr_matrix((img.data, img.indices, indptr), shape=(n_vars, n_pixels))


def rasterize(
    X: Any,
    coords: np.ndarray,
    *,
    grid: Literal["auto", "square", "hex", "bin"] = "auto",
    shape: tuple[int, int] | None = None,
    columns: Sequence[int] | np.ndarray | None = None,
) -> tuple[sparse.csr_matrix, tuple[int, int], np.ndarray]:
    """Array-level kernel of :func:`gene_images`: one image per column of ``X``, as a sparse matrix.

    Parameters
    ----------
    X
        ``(n_spots, n_genes)`` values (dense or sparse), e.g. log-normalised expression.
    coords
        ``(n_spots, 2)`` spot coordinates (x, y).
    grid
        ``"auto"``, ``"square"``, ``"hex"`` or ``"bin"`` (see :func:`gene_images`).
    shape
        ``(H, W)``: the bin grid, or padding of a lattice image (see :func:`grid_pixels`).
    columns
        Integer indices of the genes to rasterise; the others get empty rows. ``None``: all.

    Returns
    -------
    images
        ``(n_genes, H * W)`` CSR float32; ``images[g].toarray().reshape(H, W)`` is gene ``g``'s image.
    shape
        ``(H, W)``.
    pixel
        ``(n_spots,)`` flat pixel index of each spot.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.pp import rasterize
    >>> xy = np.array([[x, y] for y in range(3) for x in range(4)], dtype=float)
    >>> X = np.arange(24, dtype=np.float32).reshape(12, 2)
    >>> images, shape, pixel = rasterize(X, xy)
    >>> bool(images[0].toarray().reshape(shape)[1, 2] == X[1 * 4 + 2, 0])
    True
    """
    if not (sparse.issparse(X) or hasattr(X, "shape")) or len(X.shape) != 2:
        raise ValueError("`X` must be a 2-D (n_spots, n_genes) array or sparse matrix.")
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[0] != X.shape[0]:
        raise ValueError(f"`coords` must have shape ({X.shape[0]}, 2), got {coords.shape}.")
    pixel, shape, _ = grid_pixels(coords, grid=grid, shape=shape)
    return (
        _images(X, pixel, shape[0] * shape[1], None if columns is None else np.asarray(columns)),
        shape,
        pixel,
    )


@inject_docs()
def gene_images(
    adata: AnnData,
    *,
    layer: str | None = None,
    spatial_key: str = "spatial",
    grid: Literal["auto", "square", "hex", "bin"] = "auto",
    shape: tuple[int, int] | None = None,
    genes: Sequence[str] | None = None,
    key_added: str = Key.gene_images,
    copy: bool = False,
) -> AnnData | None:
    """Rasterise each gene onto a 2-D image grid (DARLC's gene expression images).

    Each spot is mapped to a pixel; the image of a gene holds the gene's value at each spot's pixel, as
    given (no per-image rescaling): DARLC expects **log-normalised** data (``normalize_total`` + ``log1p``).
    Pixels without a spot are 0. Rows grow with ``y`` (second coordinate), columns with ``x``.

    - ``"square"``: coordinates on a regular lattice (ST); the pitch is inferred from nearest-neighbour
      spacing; jitter (99% of the spots within 0.25 pitch of a node) and small rotations are tolerated;
      one spot per pixel.
    - ``"hex"``: Visium's offset lattice, collapsed as in DARLC: ``row = array_row - min``,
      ``col = ceil((array_col - min) / 2)``; one spot per pixel.
    - ``"bin"``: free coordinates (Slide-seq, imaging) binned onto ``shape`` (default: about one spot per
      pixel, at most 128 per side, aspect ratio of the tissue); values of spots sharing a pixel are summed.
    - ``"auto"``: square, else hex, else bin.

    On a lattice, two spots on the same pixel (duplicated coordinates) are an error: use ``grid="bin"``.

    Parameters
    ----------
    {adata}
    {layer}
    {spatial_key}
    grid
        ``"auto"``, ``"square"``, ``"hex"`` or ``"bin"``.
    shape
        ``(H, W)``: the grid for ``"bin"``; for lattices, a larger size pads the image (e.g. to a multiple
        of the ViT patch size).
    genes
        Names of the genes to rasterise (default: all); the other genes get empty images.
    key_added
        ``varm`` / ``uns`` key of the result.
    {copy}

    Returns
    -------
    ``None``, or a modified copy if ``copy=True``. Writes

    - ``varm[key_added]``: ``(n_vars, H * W)`` CSR float32, row-major pixel index ``row * W + col``;
      ``adata.varm[key_added][g].toarray().reshape(H, W)`` is gene ``g``'s image.
    - ``uns[key_added]``: ``shape`` (int array ``[H, W]``), ``pixel`` (flat pixel of each spot), ``grid``
      (the grid used), ``genes`` (rasterised genes) and ``params``.

    Examples
    --------
    >>> import numpy as np, anndata as ad
    >>> import scomics_ext as sx
    >>> xy = np.array([[x, y] for y in range(16) for x in range(21)], dtype=float)
    >>> adata = ad.AnnData(np.random.default_rng(0).random((len(xy), 5), dtype=np.float32))
    >>> adata.obsm["spatial"] = xy
    >>> sx.pp.gene_images(adata)
    >>> H, W = adata.uns["gene_images"]["shape"]
    >>> (int(H), int(W)), adata.uns["gene_images"]["grid"]
    ((16, 21), 'square')
    """
    start = logg.info("rasterising gene images")
    check_anndata(adata)
    if grid not in GRIDS:
        raise ValueError(f"`grid` must be one of {list(GRIDS)}, got {grid!r}.")
    coords = get_spatial(adata, spatial_key)
    if coords.shape[1] != 2:
        raise ValueError(
            f"adata.obsm[{spatial_key!r}] has {coords.shape[1]} columns; gene images need 2-D coordinates (x, y)."
        )
    X = get_matrix(adata, layer=layer)
    what = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    check_finite(X, what)
    shape_in = _check_shape(shape)
    if genes is None:
        columns = None
        gene_names = list(adata.var_names.astype(str))
    else:
        if isinstance(genes, str):
            genes = [genes]
        if len(genes) == 0:
            raise ValueError("`genes` is empty; pass gene names from adata.var_names, or None for all genes.")
        missing = [g for g in genes if g not in adata.var_names]
        if missing:
            raise KeyError(
                f"`genes` names {len(missing)} genes not in adata.var_names (first: {missing[:5]}); "
                "pass names from adata.var_names."
            )
        columns = np.unique(adata.var_names.get_indexer(list(genes)))
        gene_names = list(adata.var_names[columns].astype(str))
    if is_count_matrix(X):
        logg.warning(
            f"{what} looks like raw counts; DARLC expects log-normalised images (normalize_total + log1p)."
        )
    try:
        pixel, shape_out, kind = grid_pixels(coords, grid=grid, shape=shape_in)
    except ValueError as err:
        raise ValueError(f"adata.obsm[{spatial_key!r}]: {err}") from None
    images = _images(X, pixel, shape_out[0] * shape_out[1], columns)

    uns = {
        "shape": np.array(shape_out, dtype=np.int64),
        "pixel": pixel,
        "grid": kind,
        "genes": gene_names,
        "params": {
            "layer": layer,
            "spatial_key": spatial_key,
            "grid": grid,
            "shape": None if shape_in is None else list(shape_in),
        },
    }
    target = adata.copy() if copy else adata
    write_results(target, varm={key_added: images}, uns={key_added: uns})
    logg.info(
        f"    finished: {adata.n_vars if columns is None else len(columns)} images of {shape_out}", time=start
    )
    return target if copy else None
