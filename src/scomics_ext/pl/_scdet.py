"""``sx.pl.scdet``: the embedding coloured by scDET's prediction, novelty and confidence (+ confusion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from scomics_ext._constants import Key
from scomics_ext._validation import check_anndata

__all__ = ["scdet"]


def _embedding_2d(query: AnnData, key: str, basis: str | None, random_state: int) -> tuple[np.ndarray, str]:
    """2-d coordinates: ``obsm[basis]`` (first two columns) or a UMAP of ``obsm["X_" + key]`` (not stored)."""
    if basis is not None:
        if basis not in query.obsm:
            raise KeyError(
                f"query.obsm[{basis!r}] is missing (available: {sorted(query.obsm.keys())}). "
                "Pass an existing `basis` or `basis=None` to compute a UMAP of the scDET embedding."
            )
        coords = np.asarray(query.obsm[basis])
        if coords.ndim != 2 or coords.shape[1] < 2:
            raise ValueError(f"query.obsm[{basis!r}] must have at least 2 columns, got shape {coords.shape}.")
        return coords[:, :2].astype(np.float64), basis
    emb_key = Key.obsm.embedding(key)
    if emb_key not in query.obsm:
        raise KeyError(
            f"query.obsm[{emb_key!r}] is missing: run `sx.tl.scdet(ref, query, key_added={key!r})` first, or "
            "pass `basis=` naming a 2-d embedding."
        )
    import scanpy as sc

    tmp = AnnData(
        obsm={"X": np.asarray(query.obsm[emb_key], dtype=np.float32)}, obs=pd.DataFrame(index=query.obs_names)
    )
    sc.pp.neighbors(tmp, use_rep="X", random_state=random_state)
    sc.tl.umap(tmp, random_state=random_state)
    return np.asarray(tmp.obsm["X_umap"]), "UMAP"


def _scatter_categorical(ax, coords: np.ndarray, labels: np.ndarray, title: str, size: float) -> None:
    cats = list(pd.unique(labels))
    seen = sorted(c for c in cats if not str(c).startswith("novel_"))
    novel = sorted((c for c in cats if str(c).startswith("novel_")), key=lambda c: int(str(c).split("_")[-1]))
    cmap_seen, cmap_novel = plt.get_cmap("tab20"), plt.get_cmap("Dark2")
    colours = {c: cmap_seen(i % 20) for i, c in enumerate(seen)}
    colours.update({c: cmap_novel(i % 8) for i, c in enumerate(novel)})
    for c in seen + novel:
        m = labels == c
        ax.scatter(
            coords[m, 0],
            coords[m, 1],
            s=size,
            color=colours[c],
            label=str(c),
            linewidths=0,
            marker="^" if str(c).startswith("novel_") else "o",
        )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False, markerscale=2)
    ax.set_title(title, fontsize=10)


def _confusion(ax, truth: np.ndarray, pred: np.ndarray) -> None:
    table = pd.crosstab(pd.Series(truth, name="truth"), pd.Series(pred, name="prediction"))
    norm = table.div(table.sum(1), axis=0)
    im = ax.imshow(norm.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(norm.shape[1]), [str(c) for c in norm.columns], rotation=90, fontsize=7)
    ax.set_yticks(range(norm.shape[0]), [str(c) for c in norm.index], fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title("confusion (row-normalised)", fontsize=10)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def scdet(
    query: AnnData,
    *,
    key: str = "scdet",
    truth_key: str | None = None,
    basis: str | None = None,
    size: float | None = None,
    random_state: int = 0,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure:
    """Plot scDET's results on the query: prediction, novelty flag, confidence and (optionally) a confusion map.

    Parameters
    ----------
    query
        The query annotated by :func:`scomics_ext.tl.scdet`.
    key
        ``key_added`` of that run.
    truth_key
        Column of ``query.obs`` with known labels (e.g. in a benchmark): adds a truth panel and the
        row-normalised confusion heatmap truth x prediction.
    basis
        ``obsm`` key of a 2-d embedding to draw on; ``None`` computes a UMAP of ``obsm["X_" + key]``
        (nothing is stored in ``query``).
    size
        Marker size (default from the number of cells).
    random_state
        Seed of the UMAP.
    show
        Call :func:`matplotlib.pyplot.show` (default: only when not saving).
    save
        File to write the figure to (format from the suffix).

    Returns
    -------
    The :class:`~matplotlib.figure.Figure`.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> sx.tl.scdet(ref, query, labels_key="cell_type")  # doctest: +SKIP
    >>> fig = sx.pl.scdet(query, truth_key="cell_type", show=False)  # doctest: +SKIP
    """
    check_anndata(query, "query")
    novel_key, conf_key = Key.obs.novel(key), Key.obs.confidence(key)
    for col in (key, novel_key, conf_key):
        if col not in query.obs:
            raise KeyError(
                f"query.obs[{col!r}] is missing: run `sx.tl.scdet(ref, query, key_added={key!r})` first "
                "or pass the `key` used then."
            )
    if truth_key is not None and truth_key not in query.obs:
        raise KeyError(
            f"query.obs[{truth_key!r}] is missing (available: {list(query.obs.columns)}); pass an existing "
            "`truth_key` or None."
        )
    coords, basis_name = _embedding_2d(query, key, basis, random_state)
    size = size if size is not None else float(np.clip(20000 / max(query.n_obs, 1), 1, 30))
    pred = query.obs[key].astype(str).to_numpy()
    n_panels = 3 + (2 if truth_key is not None else 0)
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 4.4), squeeze=False)
    axes = list(axes[0])
    ax = axes.pop(0)
    _scatter_categorical(ax, coords, pred, f"scDET prediction ({key})", size)
    if truth_key is not None:
        truth = query.obs[truth_key].astype(str).to_numpy()
        _scatter_categorical(axes.pop(0), coords, truth, f"truth ({truth_key})", size)
    ax = axes.pop(0)
    flag = query.obs[novel_key].to_numpy().astype(bool)
    ax.scatter(coords[~flag, 0], coords[~flag, 1], s=size, color="lightgrey", label="seen type", linewidths=0)
    ax.scatter(coords[flag, 0], coords[flag, 1], s=size, color="crimson", label="novel", linewidths=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False, markerscale=2)
    ax.set_title(f"novel ({int(flag.sum())} of {flag.size} cells)", fontsize=10)
    ax = axes.pop(0)
    sca = ax.scatter(
        coords[:, 0],
        coords[:, 1],
        s=size,
        c=query.obs[conf_key].to_numpy(dtype=float),
        cmap="viridis",
        vmin=0,
        vmax=1,
        linewidths=0,
    )
    plt.colorbar(sca, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("confidence", fontsize=10)
    if truth_key is not None:
        _confusion(axes.pop(0), query.obs[truth_key].astype(str).to_numpy(), pred)
    for a in fig.axes:
        if a.get_title() and a.get_title() != "confusion (row-normalised)" and a.get_label() != "<colorbar>":
            a.set_xticks([])
            a.set_yticks([])
            a.set_xlabel(f"{basis_name} 1")
            a.set_ylabel(f"{basis_name} 2")
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=120, bbox_inches="tight")
    if show or (show is None and save is None):
        plt.show()
    return fig
