"""``scomics-ext demo``: every available tool on built-in simulated data.

Each dataset step simulates data with planted truth, runs the package's preprocessing, runs every tool
that exists for that kind of data next to a simple baseline, scores both against the truth with
:mod:`scomics_ext.metrics`, and writes the data (h5ad/h5mu), PNG figures and one ``metrics.json``.
Tools register themselves in :data:`TOOL_STEPS` as they land.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scanpy import logging as logg

from . import _baselines, datasets, metrics, pp

#: tool runners per dataset: ``{"spatial_multiome": [fn(mdata, ctx) -> {name: labels}], ...}``
TOOL_STEPS: dict[str, list[Callable[..., dict[str, Any]]]] = {
    "spatial_multiome": [],
    "gene_patterns": [],
    "open_world": [],
}


def _match_to_truth(truth: np.ndarray, pred: Any) -> np.ndarray:
    """Rename predicted clusters to the truth class they overlap most (Hungarian), for readable figures."""
    from scipy.optimize import linear_sum_assignment

    pred = np.asarray(pred).astype(str)
    t_cats, t_idx = np.unique(truth, return_inverse=True)
    p_cats, p_idx = np.unique(pred, return_inverse=True)
    table = np.zeros((p_cats.size, t_cats.size))
    np.add.at(table, (p_idx, t_idx), 1)
    rows, cols = linear_sum_assignment(-table)
    names = np.array([f"cluster_{c}" for c in p_cats], dtype=object)
    names[rows] = t_cats[cols]
    return names[p_idx]


def _palette(*label_sets: Any) -> dict[str, Any]:
    cats = sorted(set().union(*[set(np.asarray(x).astype(str)) for x in label_sets]))
    cmap = plt.get_cmap("tab20")
    return {c: cmap(i % 20) for i, c in enumerate(cats)}


def _scatter(ax, coords: np.ndarray, labels: Any, title: str, size: float, palette: dict[str, Any]) -> None:
    labels = np.asarray(labels).astype(str)
    for c in sorted(np.unique(labels)):
        m = labels == c
        ax.scatter(coords[m, 0], coords[m, 1], s=size, color=palette[c], label=c, linewidths=0)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False, markerscale=2)


def _spatial_multiome(out: Path, seed: int, quick: bool) -> dict[str, Any]:
    n_side = 30 if quick else 36
    mdata = datasets.spatial_multiome(n_side=n_side, modalities=("rna", "adt", "atac"), random_state=seed)
    truth = mdata.obs["truth"].astype(str).to_numpy()
    n_clusters = len(np.unique(truth))
    reps = []
    for name, mod in mdata.mod.items():
        pp.preprocess_modality(mod, kind=name, random_state=seed)
        reps.append(mod.obsm["X_lsi" if name == "atac" else "X_pca"])
    rna = mdata.mod["rna"]
    pp.spatial_graph(rna, n_neighs=6)
    predictions = {
        "baseline_smoothed_pca_kmeans": _baselines.smoothed_pca_kmeans(
            reps, rna.obsp["spatial_connectivities"], n_clusters, random_state=seed
        )
    }
    for step in TOOL_STEPS["spatial_multiome"]:
        predictions.update(step(mdata, n_clusters=n_clusters, random_state=seed))
    scores = {name: metrics.clustering_scores(truth, lab) for name, lab in predictions.items()}
    for name, lab in predictions.items():
        scores[name]["recall_per_class"] = metrics.per_class_recall(truth, lab).to_dict()
    mdata.write(out / "spatial_multiome.h5mu")

    coords = np.asarray(mdata.obsm["spatial"])
    shown = [("truth", truth), *((k, _match_to_truth(truth, v)) for k, v in predictions.items())]
    palette = _palette(*(lab for _, lab in shown))
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 4.2), squeeze=False)
    for ax, (name, lab) in zip(axes[0], shown):
        ari = "" if name == "truth" else f"\n(ARI {scores[name]['ari']:.2f}; clusters named by best match)"
        _scatter(ax, coords, lab, f"{name}{ari}", size=8, palette=palette)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "spatial_multiome.png", dpi=110)
    plt.close(fig)
    return {"n_spots": mdata.n_obs, "n_clusters": n_clusters, "scores": scores}


def _gene_patterns(out: Path, seed: int, quick: bool) -> dict[str, Any]:
    adata = datasets.gene_patterns(n_genes=200 if quick else 400, random_state=seed)
    truth = adata.var["truth"].astype(str).to_numpy()
    n_clusters = len(np.unique(truth))
    import scanpy as sc

    logn = adata.copy()
    sc.pp.normalize_total(logn, target_sum=1e4)
    sc.pp.log1p(logn)
    pp.gene_images(logn)
    images = logn.varm["gene_images"]
    adata.uns["gene_images"] = logn.uns["gene_images"]
    adata.varm["gene_images"] = images
    predictions = {"baseline_image_kmeans": _baselines.image_kmeans(images, n_clusters, random_state=seed)}
    for step in TOOL_STEPS["gene_patterns"]:
        predictions.update(step(logn, n_clusters=n_clusters, random_state=seed))
    X = logn.X.T.toarray() if hasattr(logn.X, "toarray") else np.asarray(logn.X).T
    scores = {}
    for name, lab in predictions.items():
        scores[name] = metrics.clustering_scores(truth, lab)
        scores[name]["dbie"] = metrics.davies_bouldin(X, lab, metric="euclidean")
        scores[name]["dbip"] = metrics.davies_bouldin(X, lab, metric="pearson")
    adata.write(out / "gene_patterns.h5ad")

    H, W = (int(x) for x in logn.uns["gene_images"]["shape"])
    pixel = np.asarray(logn.uns["gene_images"]["pixel"])
    planted = dict(
        zip(adata.uns["gene_patterns"]["pattern_names"], np.asarray(adata.uns["gene_patterns"]["patterns"]))
    )
    cats = sorted(np.unique(truth))
    n_show = 4
    fig, axes = plt.subplots(
        len(cats), n_show + 1, figsize=(1.8 * (n_show + 1), 1.8 * len(cats)), squeeze=False
    )
    for r, c in enumerate(cats):
        img = np.zeros(H * W)
        img[pixel] = planted[c]
        axes[r, 0].imshow(img.reshape(H, W), cmap="magma")
        axes[r, 0].set_title("planted", fontsize=7)
        members = np.flatnonzero(truth == c)[:n_show]
        for j in range(n_show):
            ax = axes[r, j + 1]
            if j < members.size:
                ax.imshow(images[members[j]].toarray().reshape(H, W), cmap="viridis")
                ax.set_title(str(adata.var_names[members[j]]), fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(c, fontsize=8)
    fig.suptitle("planted patterns and member genes' images (log-normalised)")
    fig.tight_layout()
    fig.savefig(out / "gene_patterns.png", dpi=110)
    plt.close(fig)
    return {"n_genes": adata.n_vars, "n_clusters": n_clusters, "scores": scores}


def _open_world(out: Path, seed: int, quick: bool) -> dict[str, Any]:
    import anndata as ad
    import scanpy as sc

    ref, query = datasets.open_world(n_cells=2000 if quick else 4000, random_state=seed)
    seen = list(ref.uns["open_world"]["seen_types"])
    n_novel = len(ref.uns["open_world"]["novel_types"])
    joint = ad.concat({"ref": ref, "query": query}, label="dataset", index_unique="-")
    sc.pp.normalize_total(joint, target_sum=1e4)
    sc.pp.log1p(joint)
    sc.pp.pca(joint, n_comps=30, random_state=seed)
    is_ref = (joint.obs["dataset"] == "ref").to_numpy()
    Z = joint.obsm["X_pca"]
    pred, _ = _baselines.knn_threshold_annotate(
        Z[is_ref], ref.obs["cell_type"].astype(str).to_numpy(), Z[~is_ref], n_novel=n_novel, random_state=seed
    )
    predictions = {"baseline_knn_threshold": pred}
    for step in TOOL_STEPS["open_world"]:
        predictions.update(step(ref, query, n_novel=n_novel, random_state=seed))
    truth = query.obs["cell_type"].astype(str).to_numpy()
    scores = {name: metrics.open_world_accuracy(truth, lab, seen) for name, lab in predictions.items()}
    ref.write(out / "open_world_ref.h5ad")
    query.write(out / "open_world_query.h5ad")

    Zq = Z[~is_ref]
    shown = [("truth", truth), *predictions.items()]
    palette = _palette(*(lab for _, lab in shown))
    fig, axes = plt.subplots(1, len(shown), figsize=(5.6 * len(shown), 4.2), squeeze=False)
    for ax, (name, lab) in zip(axes[0], shown):
        extra = "" if name == "truth" else f" (overall acc {scores[name]['overall']:.2f})"
        _scatter(ax, Zq[:, :2], lab, f"query: {name}{extra}", size=4, palette=palette)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
    fig.tight_layout()
    fig.savefig(out / "open_world.png", dpi=110)
    plt.close(fig)
    return {"n_ref": ref.n_obs, "n_query": query.n_obs, "n_novel": n_novel, "scores": scores}


STEPS: dict[str, Callable[[Path, int, bool], dict[str, Any]]] = {
    "spatial_multiome": _spatial_multiome,
    "gene_patterns": _gene_patterns,
    "open_world": _open_world,
}


def _register_tools() -> None:
    from . import _cli_crct, _cli_darlc, _cli_scdet

    TOOL_STEPS["spatial_multiome"].append(_cli_crct.demo_step)
    TOOL_STEPS["gene_patterns"].append(_cli_darlc.demo_step)
    TOOL_STEPS["open_world"].append(_cli_scdet.demo_step)


_register_tools()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def run_demo(
    out: str | Path = "demo_output", *, random_state: int = 0, quick: bool = False
) -> dict[str, Any]:
    """Run every available tool on built-in simulated data and write results, figures and ``metrics.json``.

    Parameters
    ----------
    out
        Output folder (created if needed).
    random_state
        Seed for the simulators, preprocessing and tools.
    quick
        Smaller data, for tests.

    Returns
    -------
    The content written to ``metrics.json``.

    Examples
    --------
    >>> from scomics_ext._demo import run_demo
    >>> summary = run_demo("demo_output", quick=True)  # doctest: +SKIP
    """
    from . import __version__

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "scomics_ext": __version__,
        "python": platform.python_version(),
        "random_state": random_state,
        "quick": quick,
        "tools": {k: [f.__name__ for f in v] for k, v in TOOL_STEPS.items()},
        "datasets": {},
    }
    for name, step in STEPS.items():
        start = time.perf_counter()
        logg.warning(f"demo: {name} ...")
        result = step(out, random_state, quick)
        result["seconds"] = round(time.perf_counter() - start, 2)
        summary["datasets"][name] = result
    summary = _jsonable(summary)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    logg.warning(f"demo: wrote {sorted(p.name for p in out.iterdir())} to {out}")
    return summary
