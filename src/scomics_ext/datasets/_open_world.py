"""Open-world annotation simulator: a labelled reference and a query with seen and novel types."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from scomics_ext._constants import Key
from scomics_ext._utils import as_categorical

from ._args import check_float, check_int, check_seed
from ._sampling import nb_csr

#: minimum cells of a type (a seen type needs one in the reference and one in the query)
_MIN_SEEN = 2
#: latent model constants (see the docstring of :func:`open_world`)
_LINEAGE_SD, _TYPE_SD, _CELL_SD = 1.5, 0.7, 0.8
_INFORMATIVE, _LOADING_SD, _BACKGROUND_LOADING_SD = 0.3, 0.35, 0.05


def long_tail_sizes(n_cells: int, n_types: int, imbalance: float) -> np.ndarray:
    """Class sizes with a geometric long tail: ``size_k ∝ imbalance ** (-k / (n_types - 1))``.

    The largest class is ``imbalance`` times the smallest (up to rounding); sizes sum to ``n_cells``
    (largest-remainder rounding) and are sorted from largest to smallest.
    """
    if n_types == 1:
        return np.array([n_cells])
    w = imbalance ** (-np.arange(n_types) / (n_types - 1))
    exact = w / w.sum() * n_cells
    sizes = np.floor(exact).astype(np.int64)
    rest = n_cells - sizes.sum()
    sizes[np.argsort(-(exact - sizes), kind="stable")[:rest]] += 1
    return sizes


def open_world(
    n_cells: int = 5000,
    n_genes: int = 2000,
    n_types: int = 10,
    n_novel: int = 3,
    *,
    imbalance: float = 10.0,
    ref_fraction: float = 0.5,
    batch_shift: float = 0.0,
    n_latent: int = 10,
    separation: float = 1.0,
    library_size: float = 2000.0,
    dispersion: float = 0.2,
    random_state: int = 0,
) -> tuple[AnnData, AnnData]:
    """Simulate a labelled reference and an unlabelled query with seen and novel cell types.

    Cell types have long-tailed sizes (geometric: the largest is ``imbalance`` times the smallest;
    ``"type_1"`` is the largest). ``n_novel`` types, drawn at random from all sizes, are *novel*: all
    their cells go to the query. The others are *seen*: ``ref_fraction`` of their cells form the
    reference, the rest join the query.

    Expression follows a low-dimensional latent model. Types are grouped into ``round(sqrt(n_types))``
    lineages; a lineage centre is drawn from ``N(0, (2 * separation)**2 I)``, a type centroid from its
    lineage centre plus ``N(0, separation**2 I)``, and a cell's latent state ``z`` from its centroid
    plus ``N(0, 0.5**2 I)`` in ``n_latent`` dimensions, so sibling types overlap partly: a classifier
    learns them well but not trivially, and the types are not spherical clusters in expression space.
    Genes read the latent state through loadings ``W`` (half of the genes informative, loadings
    ``N(0, 0.5**2)``; the rest ``N(0, 0.05**2)``) and base levels ``b`` (``N(0, 1.5**2)``):
    counts ``NB(mean = L_i * softmax(W z_i + b)_j, dispersion)`` with library sizes ``L_i``
    (log-normal, median ``library_size``, sd of the log 0.3). With ``batch_shift > 0`` the query
    gets gene-wise multiplicative batch effects ``exp(batch_shift * N(0, 1))`` (applied to the
    logits, so that the compositions stay normalised).

    Parameters
    ----------
    n_cells
        Total number of cells (reference + query).
    n_genes
        Number of genes.
    n_types
        Number of cell types (``>= 2``).
    n_novel
        Number of novel types, present only in the query (``0 <= n_novel < n_types``).
    imbalance
        Ratio of the largest to the smallest type size (``>= 1``; 1 = balanced).
    ref_fraction
        Fraction of each seen type's cells that go to the reference, in ``(0, 1)``.
    batch_shift
        Scale of the query's gene-wise batch effects (``>= 0``; 0 = none).
    n_latent
        Dimension of the latent space (``>= 2``).
    separation
        Scale of the distances between type centroids (``> 0``); lower is harder.
    library_size
        Median total counts per cell (``> 0``).
    dispersion
        NB dispersion ``1 / size`` (``>= 0``; 0 = Poisson).
    random_state
        Seed of the :class:`numpy.random.Generator`; the same seed gives identical data.

    Returns
    -------
    ref : anndata.AnnData
        The labelled reference (cells x genes): counts in ``X`` (CSR float32, integer values),
        the labels (seen types only) in ``obs["cell_type"]``.
    query : anndata.AnnData
        The query (same ``var_names``): counts in ``X``; ``obs["cell_type"]`` holds the **true**
        types of the query cells, for evaluation only - a real query has no labels, so never pass
        it to a method; ``obs["novel"]`` says whether the cell's type is novel.

    Both also hold ``obs["batch"]`` (``"ref"``/``"query"``), ``obsm["X_latent"]`` (the true latent
    states), ``var["informative"]`` and ``uns["open_world"]`` with ``"seen_types"``,
    ``"novel_types"``, ``"type_sizes"``, ``"ref_sizes"``, ``"query_sizes"`` and ``"params"``.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> ref, query = sx.datasets.open_world(n_cells=2000, n_genes=500, n_types=8, n_novel=2, random_state=0)
    >>> ref.n_obs + query.n_obs
    2000
    >>> len(ref.uns["open_world"]["novel_types"])
    2
    >>> (
    ...     bool(query.obs["novel"].any()),
    ...     bool(ref.obs["cell_type"].isin(ref.uns["open_world"]["novel_types"]).any()),
    ... )
    (True, False)
    """
    n_cells = check_int(n_cells, "n_cells", minimum=2)
    n_genes = check_int(n_genes, "n_genes", minimum=2)
    n_types = check_int(n_types, "n_types", minimum=2)
    n_novel = check_int(n_novel, "n_novel", minimum=0)
    if n_novel >= n_types:
        raise ValueError(
            f"`n_novel`={n_novel} must be smaller than `n_types`={n_types} (at least one seen type)."
        )
    imbalance = check_float(imbalance, "imbalance", low=1.0, high=1e6)
    ref_fraction = check_float(ref_fraction, "ref_fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    batch_shift = check_float(batch_shift, "batch_shift", low=0.0, high=10.0)
    n_latent = check_int(n_latent, "n_latent", minimum=2, maximum=1000)
    separation = check_float(separation, "separation", low=0.0, high=100.0, low_open=True)
    library_size = check_float(library_size, "library_size", low=0.0, high=1e8, low_open=True)
    dispersion = check_float(dispersion, "dispersion", low=0.0, high=100.0)
    random_state = check_seed(random_state)

    sizes = long_tail_sizes(n_cells, n_types, imbalance)
    if sizes.min() < _MIN_SEEN:
        raise ValueError(
            f"With `n_cells`={n_cells}, `n_types`={n_types} and `imbalance`={imbalance:g} the smallest type gets "
            f"{sizes.min()} cell(s); every type needs at least {_MIN_SEEN}. Raise `n_cells` or lower `imbalance`."
        )

    start = logg.info(f"simulating {n_cells} cells x {n_genes} genes, {n_types} types ({n_novel} novel)")
    rng = np.random.default_rng(random_state)
    type_names = np.asarray([f"type_{k}" for k in range(1, n_types + 1)], dtype=object)
    novel = np.zeros(n_types, dtype=bool)
    novel[rng.choice(n_types, size=n_novel, replace=False)] = True

    # split: seen types -> ref_fraction to the reference, the rest (and all novel cells) to the query
    n_ref_k = np.where(novel, 0, np.clip(np.round(ref_fraction * sizes), 1, sizes - 1)).astype(np.int64)
    n_query_k = sizes - n_ref_k
    ref_type = rng.permutation(np.repeat(np.arange(n_types), n_ref_k))
    query_type = rng.permutation(np.repeat(np.arange(n_types), n_query_k))
    cell_type = np.concatenate([ref_type, query_type])
    n_ref = ref_type.size
    in_query = np.arange(n_cells) >= n_ref

    # latent model: lineages -> type centroids -> cells
    n_lineages = max(1, round(np.sqrt(n_types)))
    lineage_of = rng.permutation(np.arange(n_types) % n_lineages)
    lineage_centre = rng.normal(0.0, _LINEAGE_SD * separation, size=(n_lineages, n_latent))
    centroid = lineage_centre[lineage_of] + rng.normal(0.0, _TYPE_SD * separation, size=(n_types, n_latent))
    z = (centroid[cell_type] + rng.normal(0.0, _CELL_SD, size=(n_cells, n_latent))).astype(np.float32)

    informative = rng.random(n_genes) < _INFORMATIVE
    W = (
        rng.normal(0.0, 1.0, size=(n_genes, n_latent))
        * np.where(informative, _LOADING_SD, _BACKGROUND_LOADING_SD)[:, None]
    )
    W = W.astype(np.float32)
    b = rng.normal(0.0, 1.5, size=n_genes).astype(np.float32)
    shift = (batch_shift * rng.normal(0.0, 1.0, size=n_genes)).astype(np.float32)
    lib = np.exp(rng.normal(np.log(library_size), 0.3, size=n_cells)).astype(np.float32)

    def mean_fn(lo: int, hi: int) -> np.ndarray:
        logits = z[lo:hi] @ W.T + b
        if batch_shift > 0:
            logits += in_query[lo:hi, None] * shift
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits *= (lib[lo:hi] / logits.sum(axis=1))[:, None]
        return logits

    theta = np.inf if dispersion == 0 else 1.0 / dispersion
    X = nb_csr(mean_fn, n_cells, n_genes, theta, rng)

    seen_names = list(type_names[~novel])
    novel_names = list(type_names[novel])
    var = pd.DataFrame({"informative": informative}, index=pd.Index([f"gene_{j}" for j in range(n_genes)]))

    def _counts(types: np.ndarray) -> dict[str, int]:
        counts = np.bincount(types, minlength=n_types)
        return {str(type_names[k]): int(counts[k]) for k in range(n_types) if counts[k] > 0}

    info = {
        "seen_types": seen_names,
        "novel_types": novel_names,
        "type_sizes": {str(type_names[k]): int(sizes[k]) for k in range(n_types)},
        "ref_sizes": _counts(ref_type),
        "query_sizes": _counts(query_type),
        "params": {
            "n_cells": n_cells,
            "n_genes": n_genes,
            "n_types": n_types,
            "n_novel": n_novel,
            "imbalance": imbalance,
            "ref_fraction": ref_fraction,
            "batch_shift": batch_shift,
            "n_latent": n_latent,
            "separation": separation,
            "library_size": library_size,
            "dispersion": dispersion,
            "random_state": random_state,
        },
    }

    def _make(rows: slice, prefix: str, batch: str) -> AnnData:
        idx = pd.Index([f"{prefix}_cell_{i}" for i in range(rows.stop - rows.start)])
        labels = type_names[cell_type[rows]]
        obs = pd.DataFrame({Key.cell_type: as_categorical(labels, index=idx)}, index=idx)
        if batch == "query":
            obs[Key.novel] = novel[cell_type[rows]]
        obs["batch"] = pd.Categorical([batch] * len(idx))
        adata = AnnData(X=X[rows], obs=obs, var=var.copy())
        adata.obsm["X_latent"] = z[rows]
        adata.uns["open_world"] = copy.deepcopy(info)
        return adata

    ref = _make(slice(0, n_ref), "ref", "ref")
    query = _make(slice(n_ref, n_cells), "query", "query")
    logg.info("    finished", time=start)
    return ref, query
