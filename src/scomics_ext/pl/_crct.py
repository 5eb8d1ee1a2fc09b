"""``sx.pl.crct``: spatial map of the CRCT domains, UMAP of the embedding, training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from scomics_ext._constants import Key
from scomics_ext._validation import check_in, get_spatial

try:
    from mudata import MuData
except ImportError:  # pragma: no cover
    MuData = None  # type: ignore[assignment,misc]

__all__ = ["crct"]

_LOSS_COLUMNS = ("loss", "loss_rec", "loss_aug", "loss_graph", "loss_cluster")
#: backends without a window: ``show=None`` returns the figure there instead of showing it
_NON_INTERACTIVE = ("agg", "pdf", "ps", "svg", "pgf", "cairo", "template")


def _coords(data: Any, spatial_key: str) -> np.ndarray:
    if spatial_key in data.obsm or MuData is None or not isinstance(data, MuData):
        return get_spatial(data, spatial_key, name="data")
    for name, mod in data.mod.items():
        if spatial_key in mod.obsm and mod.n_obs == data.n_obs and mod.obs_names.equals(data.obs_names):
            return get_spatial(mod, spatial_key, name=f"mdata.mod[{name!r}]")
    return get_spatial(data, spatial_key, name="data")  # raises the standard KeyError


def _palette(categories: Sequence[str], palette: Any) -> dict[str, Any]:
    if isinstance(palette, Mapping):
        missing = [c for c in categories if c not in palette]
        if missing:
            raise ValueError(f"`palette` lacks colours for the clusters {missing}.")
        return {c: palette[c] for c in categories}
    cmap = plt.get_cmap(palette if palette is not None else ("tab10" if len(categories) <= 10 else "tab20"))
    n = getattr(cmap, "N", 20)
    return {c: cmap(i % n) for i, c in enumerate(categories)}


def _scatter(ax: Any, xy: np.ndarray, labels: pd.Categorical, colors: dict[str, Any], size: float) -> None:
    for c in labels.categories:
        m = np.asarray(labels == c)
        ax.scatter(xy[m, 0], xy[m, 1], s=size, color=colors[c], label=str(c), linewidths=0, rasterized=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _pca2(z: np.ndarray) -> np.ndarray:
    zc = np.asarray(z, dtype=np.float64)
    zc = zc - zc.mean(axis=0)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    return zc @ vt[:2].T


def _embed(z: np.ndarray, basis: str, random_state: int, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """2-D embedding of ``z`` (rows ``idx``): UMAP on a private AnnData (never the user's), or PCA."""
    rng = np.random.default_rng(random_state)
    idx = np.arange(z.shape[0])
    if z.shape[0] > max_points:
        idx = np.sort(rng.choice(z.shape[0], max_points, replace=False))
    if basis == "pca":
        return idx, _pca2(z[idx])
    return idx, _umap(z[idx], random_state)


def _umap(z: np.ndarray, random_state: int) -> np.ndarray:
    import scanpy as sc

    idx = np.arange(z.shape[0])
    tmp = AnnData(np.zeros((idx.size, 1), dtype=np.float32))
    tmp.obsm["X_z"] = np.asarray(z[idx], dtype=np.float32)
    sc.pp.neighbors(tmp, use_rep="X_z", n_neighbors=min(15, idx.size - 1), random_state=random_state)
    sc.tl.umap(tmp, random_state=random_state)
    return np.asarray(tmp.obsm["X_umap"])


def crct(
    data: MuData | AnnData,
    *,
    key: str = "crct",
    spatial_key: str = "spatial",
    panels: Sequence[str] = ("spatial", "embedding", "loss"),
    basis: str = "umap",
    palette: str | Mapping[str, Any] | None = None,
    size: float | None = None,
    max_points: int = 50_000,
    random_state: int = 0,
    figsize: tuple[float, float] | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure | None:
    """Plot CRCT results: domains in space, a UMAP of the embedding, and the training losses.

    Reads what :func:`scomics_ext.tl.crct` wrote (``obs[key]``, ``obsm["X_" + key]``, ``uns[key]``);
    the data object is not modified (the UMAP is computed on a private copy of the embedding).

    Parameters
    ----------
    data
        MuData or AnnData after :func:`scomics_ext.tl.crct`.
    key
        The ``key_added`` of :func:`~scomics_ext.tl.crct`.
    spatial_key
        Key of the coordinates in ``obsm`` (of the MuData or one of its modalities).
    panels
        Which panels, in order: any of ``"spatial"``, ``"embedding"``, ``"loss"``.
    basis
        2-D view of the embedding: ``"umap"`` (computed on a private copy; the first call in a session
        compiles UMAP's numba code, ~1 min) or ``"pca"`` (first two principal components; instant).
    palette
        Matplotlib colormap name or a dict ``{cluster: colour}``.
    size
        Marker size (default: scaled to the number of spots).
    max_points
        Subsample the embedding panel to at most this many spots (UMAP is the slow part on large data).
    random_state
        Seed of the UMAP (and its subsample).
    figsize
        Figure size (default: 4.6 x 4 inches per panel).
    show
        Show the figure (``None``: only with an interactive matplotlib backend).
    save
        Save the figure to this path (format from the suffix, e.g. ``.png`` / ``.pdf``).

    Returns
    -------
    The :class:`~matplotlib.figure.Figure` (``None`` if ``show=True``, as scanpy).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> mdata = sx.datasets.spatial_multiome(n_side=24, modalities=("rna", "adt"))
    >>> sx.tl.crct(mdata, n_clusters=7, max_epochs=60, progress_bar=False)  # doctest: +SKIP
    >>> fig = sx.pl.crct(mdata, show=False)  # doctest: +SKIP
    """
    if not isinstance(data, AnnData) and (MuData is None or not isinstance(data, MuData)):
        raise TypeError(f"`data` must be a MuData or AnnData object, got {type(data).__name__}.")
    allowed = ("spatial", "embedding", "loss")
    check_in(basis, ("umap", "pca"), "basis")
    panels = list(panels)
    bad = [p for p in panels if p not in allowed]
    if bad or not panels:
        raise ValueError(f"`panels` must be a non-empty list of {list(allowed)}, got {panels}.")
    emb_key = Key.obsm.embedding(key)
    needs = {"spatial": ("obs", key), "embedding": ("obsm", emb_key), "loss": ("uns", key)}
    for p in panels:
        attr, k = needs[p]
        if k not in getattr(data, attr):
            raise KeyError(
                f"data.{attr}[{k!r}] is missing: run `sx.tl.crct(data, key_added={key!r})` first (or pass the "
                "`key` it was run with)."
            )
    if "spatial" in panels or "embedding" in panels:
        if key not in data.obs:
            raise KeyError(f"data.obs[{key!r}] is missing: run `sx.tl.crct(data, key_added={key!r})` first.")
        labels = pd.Categorical(data.obs[key].astype(str))
        colors = _palette(list(labels.categories), palette)
    n = data.n_obs
    size = float(size) if size is not None else float(np.clip(12000 / max(n, 1), 0.5, 40))

    figsize = figsize or (4.6 * len(panels), 4.0)
    fig, axes = plt.subplots(1, len(panels), figsize=figsize, squeeze=False)
    for ax, p in zip(axes[0], panels):
        if p == "spatial":
            xy = _coords(data, spatial_key)
            _scatter(ax, xy[:, :2], labels, colors, size)
            ax.set_aspect("equal")
            ax.set_title(f"{key}: domains in space")
        elif p == "embedding":
            z = np.asarray(data.obsm[emb_key])
            idx, xy = _embed(z, basis, random_state, max_points)
            _scatter(ax, xy, labels[idx], colors, size)
            name = basis.upper()
            ax.set_title(f"{name} of {emb_key}")
            ax.set_xlabel(f"{name}1")
            ax.set_ylabel(f"{name}2")
        else:
            hist = data.uns[key].get("history", {}) if isinstance(data.uns[key], Mapping) else {}
            cols = [c for c in _LOSS_COLUMNS if c in hist]
            if not cols:
                ax.text(0.5, 0.5, "no training history", ha="center", va="center", transform=ax.transAxes)
            for c in cols:
                y = np.asarray(hist[c], dtype=np.float64)
                ax.plot(np.arange(y.size), y, label=c.replace("loss_", ""), lw=1.4 if c == "loss" else 1.0)
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss")
            ax.set_title("training losses")
            if cols:
                ax.legend(fontsize=8, frameon=False)
    if "spatial" in panels or "embedding" in panels:
        handles, names = next(
            ax.get_legend_handles_labels() for ax, p in zip(axes[0], panels) if p in ("spatial", "embedding")
        )
        fig.legend(
            handles, names, loc="center right", fontsize=8, frameon=False, markerscale=max(1.0, 30 / size)
        )
        fig.tight_layout(rect=(0, 0, 0.93, 1))
    else:
        fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")
    if show is None:
        show = mpl.get_backend().lower() not in _NON_INTERACTIVE
    if show:
        plt.show()
        return None
    return fig
