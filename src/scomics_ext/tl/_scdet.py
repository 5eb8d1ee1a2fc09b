"""``sx.tl.scdet``: open-world, long-tailed cell-type annotation of a query against a labelled reference."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from natsort import natsorted
from scanpy import logging as logg
from scipy import sparse

from scomics_ext._constants import Key
from scomics_ext._settings import settings
from scomics_ext._utils import as_categorical, seed_everything, write_results
from scomics_ext._validation import (
    check_anndata,
    check_finite,
    check_labels,
    check_nonnegative,
    check_positive_int,
    get_matrix,
    is_count_matrix,
)

__all__ = ["scdet"]

#: fewest genes shared by reference and query
MIN_SHARED_GENES = 20
#: a gene is kept when it has at least this many counts over all cells (counts input; scGAD's filter)
MIN_GENE_COUNTS = 10
#: a gene is kept when it is non-zero in at least this many cells (log-normalised input)
MIN_GENE_CELLS = 3
#: scaled values are clipped to +-SCALE_CLIP
SCALE_CLIP = 10.0
#: the value marking query cells in the joint object's label column
_UNLABELED = "__scdet_unlabeled__"
_DATASET = "_scdet_dataset"
_LABEL = "_scdet_label"


def _to_csr(X: Any) -> sparse.csr_matrix:
    return sparse.csr_matrix(X, dtype=np.float32) if not sparse.issparse(X) else X.tocsr().astype(np.float32)


def _validate(
    ref: AnnData,
    query: AnnData,
    labels_key: str,
    n_novel: Any,
    layer: str | None,
    n_top_genes: Any,
    key_added: Any,
) -> dict[str, Any]:
    """Every check up front; returns the shared genes, the matrices and the input kind."""
    check_anndata(ref, "ref")
    check_anndata(query, "query")
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"`key_added` must be a non-empty string, got {key_added!r}.")
    if not isinstance(labels_key, str):
        raise TypeError(
            f"`labels_key` must be the name of a column of ref.obs, got {type(labels_key).__name__}."
        )
    labels = check_labels(ref, labels_key, name="ref")
    if n_novel is not None:
        n_novel = check_positive_int(n_novel, "n_novel", minimum=0)
    n_top_genes = check_positive_int(n_top_genes, "n_top_genes", minimum=2)
    if ref.n_obs == 0 or query.n_obs == 0:
        raise ValueError(f"ref ({ref.n_obs} cells) and query ({query.n_obs} cells) must both hold cells.")
    for name, obj in (("ref", ref), ("query", query)):
        if not obj.var_names.is_unique:
            raise ValueError(
                f"{name}.var_names has duplicates; make them unique first ({name}.var_names_make_unique())."
            )
    shared = ref.var_names[ref.var_names.isin(query.var_names)]
    if len(shared) < MIN_SHARED_GENES:
        raise ValueError(
            f"ref and query share only {len(shared)} genes (var_names); scDET needs at least {MIN_SHARED_GENES}. "
            "Use the same gene identifiers in both (e.g. both gene symbols or both Ensembl IDs)."
        )
    what = "X" if layer is None else f"layers[{layer!r}]"
    mats = {}
    for name, obj in (("ref", ref), ("query", query)):
        X = get_matrix(obj, layer=layer, name=name)
        X = X[:, obj.var_names.get_indexer(shared)]
        check_finite(X, f"{name}.{what}")
        check_nonnegative(
            X,
            f"{name}.{what}",
            hint="scDET needs raw counts or log-normalised expression (not scaled or centred data). "
            "Pass the counts layer with `layer=` (e.g. layer='counts').",
        )
        mats[name] = _to_csr(X)
    kinds = {name: is_count_matrix(X) for name, X in mats.items()}
    if kinds["ref"] != kinds["query"]:
        which = {True: "raw counts", False: "normalised values"}
        raise ValueError(
            f"ref.{what} holds {which[kinds['ref']]} but query.{what} holds {which[kinds['query']]}; pass the same kind "
            "of data for both (e.g. the raw counts of both with `layer=`)."
        )
    lab = labels.to_numpy(dtype=object)
    labelled = ~pd.isna(lab)
    seen = natsorted({str(v) for v in lab[labelled]})
    if len(seen) < 1:  # pragma: no cover - check_labels already refuses all-NaN
        raise ValueError(f"ref.obs[{labels_key!r}] holds no label.")
    if _UNLABELED in seen:
        raise ValueError(f"ref.obs[{labels_key!r}] uses the reserved value {_UNLABELED!r}; rename it.")
    identical = _query_within_reference(ref, query, mats)
    if identical and n_novel:
        raise ValueError(
            f"query holds only cells of the reference (same obs_names and expression), so it cannot contain "
            f"novel types, but n_novel={n_novel}. Pass the real query, or n_novel=0 to re-annotate the reference."
        )
    return {
        "shared": shared,
        "mats": mats,
        "counts": kinds["ref"],
        "labels": np.where(labelled, lab.astype(str), None),
        "seen": seen,
        "n_novel": n_novel,
        "n_top_genes": n_top_genes,
        "identical": identical,
    }


def _query_within_reference(ref: AnnData, query: AnnData, mats: dict[str, sparse.csr_matrix]) -> bool:
    """Whether every query cell is a reference cell: same obs_name and the same values on the shared genes."""
    pos = ref.obs_names.get_indexer(query.obs_names)
    if (pos < 0).any():
        return False
    diff = mats["ref"][pos] - mats["query"]
    return diff.nnz == 0 or not np.any(diff.data)


def _preprocess(
    mats: dict[str, sparse.csr_matrix], counts: bool, n_top_genes: int
) -> tuple[AnnData, dict[str, Any]]:
    """Joint object of reference + query: filtering, log-normalisation, HVGs on the union, scaling."""
    n_ref = mats["ref"].shape[0]
    X = sparse.vstack([mats["ref"], mats["query"]], format="csr")
    joint = AnnData(X=X)
    joint.obs_names = [f"c{i}" for i in range(joint.n_obs)]
    joint.var_names = [f"g{j}" for j in range(joint.n_vars)]
    if counts:
        keep = np.asarray(X.sum(0)).ravel() >= MIN_GENE_COUNTS
    else:
        keep = np.asarray((X > 0).sum(0)).ravel() >= MIN_GENE_CELLS
    if keep.sum() < MIN_SHARED_GENES:
        raise ValueError(
            f"Only {int(keep.sum())} shared genes are expressed enough (>= {MIN_GENE_COUNTS} counts or "
            f">= {MIN_GENE_CELLS} cells); scDET needs at least {MIN_SHARED_GENES}. Check the input layer."
        )
    joint = joint[:, keep].copy()
    gene_idx = np.flatnonzero(keep)
    if counts:
        joint.layers["counts"] = joint.X.copy()
        sc.pp.normalize_total(joint, target_sum=1e4)
        sc.pp.log1p(joint)
    n_hvg = min(n_top_genes, joint.n_vars)
    if n_hvg < joint.n_vars:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.pp.highly_variable_genes(joint, n_top_genes=n_hvg, flavor="seurat")
        hv = joint.var["highly_variable"].to_numpy()
        joint = joint[:, hv].copy()
        gene_idx = gene_idx[hv]
    Xs = joint.X.toarray() if sparse.issparse(joint.X) else np.asarray(joint.X)
    Xs = Xs.astype(np.float32, copy=False)  # already float32: no second dense copy
    mean = Xs.mean(0)
    sd = Xs.std(0)
    Xs -= mean
    Xs /= np.where(sd > 0, sd, 1.0)
    np.clip(Xs, -SCALE_CLIP, SCALE_CLIP, out=Xs)
    joint.X = Xs
    joint.obs[_DATASET] = pd.Categorical(
        ["ref"] * n_ref + ["query"] * (joint.n_obs - n_ref), categories=["ref", "query"]
    )
    return joint, {"gene_idx": gene_idx}


def _estimate_n_novel(joint: AnnData, info: dict[str, Any], n_ref: int, random_state: int) -> dict[str, Any]:
    """``estimate_n_novel`` on a 50-component PCA of the preprocessed joint object."""
    from sklearn.decomposition import PCA

    from scomics_ext.module._scdet_estimate import estimate_n_novel

    n_comp = int(min(50, joint.n_vars - 1, joint.n_obs - 1))
    pcs = PCA(n_comp, random_state=random_state).fit_transform(joint.X)
    codes = {t: i for i, t in enumerate(info["seen"])}
    ref_codes = np.full(joint.n_obs, -1, dtype=np.int64)
    ref_codes[:n_ref] = [-1 if lab is None else codes[lab] for lab in info["labels"]]
    return estimate_n_novel(pcs, ref_codes, random_state=random_state)


def estimated_n_novel(
    ref: AnnData,
    query: AnnData,
    *,
    labels_key: str,
    layer: str | None = None,
    n_top_genes: int = 2000,
    random_state: int = 0,
) -> int:
    """The number of novel types :func:`scdet` would use with ``n_novel=None`` (no training).

    Parameters
    ----------
    ref, query, labels_key, layer, n_top_genes, random_state
        As in :func:`scdet`.

    Returns
    -------
    The estimated number of novel types in the query.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> from scomics_ext.tl._scdet import estimated_n_novel
    >>> ref, query = sx.datasets.open_world(n_cells=600, n_genes=100, n_types=4, n_novel=1, random_state=0)
    >>> estimated_n_novel(ref, query, labels_key="cell_type") >= 0
    True
    """
    info = _validate(ref, query, labels_key, None, layer, n_top_genes, "scdet")
    joint, _ = _preprocess(info["mats"], info["counts"], info["n_top_genes"])
    return int(_estimate_n_novel(joint, info, ref.n_obs, int(random_state))["n_novel"])


def scdet(
    ref: AnnData,
    query: AnnData,
    *,
    labels_key: str,
    n_novel: int | None = None,
    layer: str | None = None,
    n_top_genes: int = 2000,
    key_added: str = "scdet",
    random_state: int = 0,
    max_epochs: int | None = None,
    accelerator: str = "auto",
    copy: bool = False,
    return_model: bool = False,
    progress_bar: bool | None = None,
):
    """Annotate a query against a labelled reference, discovering and clustering novel types (scDET).

    Every query cell gets the name of a reference ("seen") type or the label of a novel cluster
    (``novel_1 … novel_k``, by decreasing size); the model handles long-tailed class sizes. The
    reference and query are preprocessed together (genes shared by both, HVGs chosen on the union,
    log-normalised and scaled), one :class:`~scomics_ext.model.SCDET` is trained on both, and the results
    are written at the very end.

    Parameters
    ----------
    ref
        Labelled reference (cells x genes). Cells with a missing label are used as unlabelled cells.
    query
        Query to annotate (cells x genes); its labels, if any, are never read.
    labels_key
        Column of ``ref.obs`` with the cell-type labels.
    n_novel
        Number of novel types in the query; ``None`` estimates it from the data
        (:func:`~scomics_ext.module._scdet_estimate.estimate_n_novel`: query clusters that the reference
        does not explain, clustered at the granularity of the reference annotation and counted).
    layer
        Layer of both objects to use instead of ``X``. Raw counts (non-negative integers; the
        reconstruction then uses a ZINB likelihood with size factors) or log-normalised expression (MSE
        reconstruction). Both objects must hold the same kind; scaled/centred data (negative values) are
        refused.
    n_top_genes
        Highly variable genes (seurat flavour) chosen on reference + query.
    key_added
        Name of the outputs (see Returns).
    random_state
        Seed; the same seed gives the same result on CPU.
    max_epochs
        Training epochs (full passes over the cells); ``None`` adapts to the data size: about 1500 gradient
        steps whatever the number of cells (see :func:`~scomics_ext.model._scdet.default_max_epochs`; above
        7,680 cells, 50 epochs of 30 mini-batches), and training stops earlier once the query predictions
        are stable.
    accelerator
        Lightning accelerator (``"auto"``: a GPU when available).
    copy
        Work on and return copies of ``ref`` and ``query``; the inputs are left untouched.
    return_model
        Also return the trained model.
    progress_bar
        Show a progress bar (default: ``scomics_ext.settings.progress_bar``).

    Returns
    -------
    ``None`` (``copy=False``), ``(ref, query)`` copies (``copy=True``), with the model appended when
    ``return_model=True`` (``model`` alone when ``copy=False``). Written:

    ``query.obs[key_added]``
        Categorical: reference type names and ``novel_1 … novel_k``.
    ``query.obs[key_added + "_novel"]``
        Bool, the cell was put in a novel cluster.
    ``query.obs[key_added + "_confidence"]``
        Float, the highest class probability.
    ``query.obsm["X_" + key_added]``, ``ref.obsm["X_" + key_added]``
        The 128-d latent representation (float32).
    ``query.uns[key_added]``
        ``params``, ``n_novel`` (and whether it was estimated), ``class_distribution`` (estimated ``π`` by
        class name), ``input`` (``"counts"`` or ``"log-normalised"``), ``n_genes``, the training
        ``history``, ``n_epochs`` and ``n_steps`` (gradient steps).

    Raises
    ------
    KeyError
        ``labels_key`` or ``layer`` missing.
    ValueError
        Labels all missing, fewer than 20 shared genes, negative / NaN / infinite values, counts in one
        object but normalised values in the other, or ``n_novel > 0`` with a query made of reference
        cells only (same ``obs_names`` and expression: it cannot hold novel types).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> ref, query = sx.datasets.open_world(n_cells=1000, n_genes=200, random_state=0)
    >>> sx.tl.scdet(ref, query, labels_key="cell_type", n_novel=3, max_epochs=20)  # doctest: +SKIP
    >>> query.obs["scdet"].value_counts()  # doctest: +SKIP
    """
    import torch

    from scomics_ext.model._scdet import SCDET

    t0 = time.perf_counter()
    start = logg.info("running scDET")
    info = _validate(ref, query, labels_key, n_novel, layer, n_top_genes, key_added)
    if max_epochs is not None:
        max_epochs = check_positive_int(max_epochs, "max_epochs")
    random_state = int(random_state)
    kind = "counts" if info["counts"] else "log-normalised"
    logg.info(
        f"    input: {kind} ({'ZINB' if info['counts'] else 'MSE'} reconstruction), "
        f"{len(info['shared'])} shared genes, {ref.n_obs} reference + {query.n_obs} query cells"
    )
    seed_everything(random_state)
    joint, _prep = _preprocess(info["mats"], info["counts"], info["n_top_genes"])
    n_ref = ref.n_obs
    is_ref = np.arange(joint.n_obs) < n_ref

    n_novel = info["n_novel"]
    estimate: dict[str, Any] = {}
    if n_novel is None:
        estimate = _estimate_n_novel(joint, info, n_ref, random_state)
        n_novel = int(estimate["n_novel"])
        logg.info(
            f"    estimated n_novel={n_novel} ({estimate['n_candidates']} query cells unexplained by the reference)"
        )

    labels = np.asarray(list(info["labels"]) + [None] * query.n_obs, dtype=object)
    labels[pd.isna(labels)] = _UNLABELED
    joint.obs[_LABEL] = pd.Categorical(labels, categories=[*info["seen"], _UNLABELED])
    SCDET.setup_anndata(
        joint,
        labels_key=_LABEL,
        unlabeled_category=_UNLABELED,
        batch_key=_DATASET,
        counts_layer="counts" if info["counts"] else None,
    )
    model = SCDET(joint, n_novel=n_novel)
    model.train(
        max_epochs=max_epochs,
        accelerator=accelerator,
        progress_bar=settings.progress_bar if progress_bar is None else progress_bar,
        random_state=random_state,
    )

    # one inference pass for the predictions and the latent (``model.predict`` and
    # ``model.get_latent_representation`` would each run one)
    out = model._embed()
    names = np.asarray(model.class_names, dtype=object)
    P = torch.softmax(torch.as_tensor(out["logits"]), dim=1).numpy()
    pred = names[P.argmax(1)]
    conf = P.max(1).astype(np.float64)
    z = out["z"].astype(np.float32)
    q = ~is_ref
    pred_q = pred[q]
    novel_flag = np.array([str(p).startswith("novel_") for p in pred_q], dtype=bool)
    history = {k: np.asarray(v.iloc[:, 0], dtype=np.float64) for k, v in (model.history_ or {}).items()}
    uns = {
        "params": {
            "labels_key": labels_key,
            "n_novel": -1 if info["n_novel"] is None else int(info["n_novel"]),
            "layer": "X" if layer is None else layer,
            "n_top_genes": int(info["n_top_genes"]),
            "random_state": random_state,
            "max_epochs": -1 if max_epochs is None else int(max_epochs),
        },
        "n_novel": int(n_novel),
        "n_novel_estimated": info["n_novel"] is None,
        "class_distribution": dict(model.class_distribution_ or {}),
        "seen_types": list(model.seen_types_),
        "input": kind,
        "n_genes": int(joint.n_vars),
        "history": history,
        "estimate_epochs": np.asarray([e["epoch"] for e in model.estimates_], dtype=np.int64),
        "estimate_changed": np.asarray(
            [np.nan if e["changed"] is None else e["changed"] for e in model.estimates_], dtype=np.float64
        ),
        "n_epochs": int(model.history_["loss_train"].shape[0]) if model.history_ else 0,
        "n_steps": int(model.n_steps_ or 0),
        "runtime_s": float(time.perf_counter() - t0),
    }
    if estimate:
        uns["n_novel_estimate"] = {
            "n_candidates": int(estimate["n_candidates"]),
            "resolution": float(estimate["resolution"]),
            "ari_reference": float(estimate["ari_reference"]),
        }

    if copy:
        ref, query = ref.copy(), query.copy()
    write_results(
        query,
        obs={
            key_added: as_categorical(pred_q),
            Key.obs.novel(key_added): novel_flag,
            Key.obs.confidence(key_added): conf[q],
        },
        obsm={Key.obsm.embedding(key_added): z[q]},
        uns={key_added: uns},
    )
    write_results(ref, obsm={Key.obsm.embedding(key_added): z[is_ref]})
    logg.info("    finished", time=start)
    if copy:
        return (ref, query, model) if return_model else (ref, query)
    return model if return_model else None
