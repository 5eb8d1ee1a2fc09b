"""scDET (``sx.tl.scdet``) against scANVI-with-threshold and kNN-with-threshold, open-world annotation.

The paper's intra-dataset protocol: per seed, half of the cell types (at random) are "seen"; half of the
seen types' cells form the labelled reference; everything else (the other half of the seen cells and all
cells of the novel types) is the query. Methods get the true number of novel types; the ``n_novel=None``
estimator of scDET is reported separately (estimated vs true count). Metrics: seen / novel / overall
accuracy (:func:`scomics_ext.metrics.open_world_accuracy`), wall time and peak extra memory of each method.

Datasets: Baron human pancreas (``cell_type1``), Cao worm neurons (``cell_type``) from ``$SCOMICS_DATA``, and
``scanpy.datasets.pbmc68k_reduced()`` (``bulk_labels``; its ``X`` is scaled, so the counts are recovered from
``.raw``: ``expm1`` divided by the cell's smallest non-zero value, i.e. its normalisation factor).
Scaling: ``sx.datasets.open_world`` with 10^3, 10^4, 10^5 cells x 2000 genes, default epochs (about 1500
gradient steps at any size); each row has the wall time, peak extra memory, epochs, steps, torch threads
(``--threads``) and the seen / novel / overall accuracy against the simulator's truth.

Peers: kNN-with-threshold (:func:`scomics_ext._baselines.knn_threshold_annotate` on a 30-PC PCA of the
log-normalised, scaled 2000 HVGs) and scANVI-with-threshold (``_peers.scanvi_threshold_annotate``: scVI
``--scvi-epochs`` then scANVI ``--scanvi-epochs`` on the raw counts of the same genes; confidence < 0.5 ->
unassigned -> k-means into ``n_novel`` clusters).

Usage::

    python benchmarks/scdet.py                                   # full: 3 datasets x 3 seeds, peers, scaling
    python benchmarks/scdet.py --quick                           # pbmc, 1 seed, 20 epochs, 10^3 scaling
    python benchmarks/scdet.py --datasets cao --seeds 0 1 2 --skip-peers scanvi --no-scaling
    python benchmarks/scdet.py --datasets --scaling 1000 10000 100000 --out benchmarks/results/scdet_scaling.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from _common import REPO_ROOT, data_dir, emit, log, mean_sd, measure, save

import scomics_ext as sx
from scomics_ext._baselines import knn_threshold_annotate
from scomics_ext.tl._scdet import estimated_n_novel

DATASETS = ("baron", "cao", "pbmc")
PEERS = ("knn", "scanvi")
METRICS = ("seen", "novel", "overall")


def load(name: str):
    """AnnData with raw counts in ``X`` and the labels in ``obs["_label"]`` (strings)."""
    import scanpy as sc
    from scipy import sparse

    if name == "baron":
        adata = sx.datasets.baron_pancreas(path=data_dir() / "pancreas_baron_human" / "baron_human.h5ad")
        key = "cell_type1" if "cell_type1" in adata.obs else "cell_type"
    elif name == "cao":
        adata = sx.datasets.worm_neurons(path=data_dir() / "worm_neuron_cao" / "worm_neuron.h5ad")
        key = "cell_type"
    elif name == "pbmc":
        raw = sc.datasets.pbmc68k_reduced()
        X = raw.raw.X
        X = X.toarray() if sparse.issparse(X) else np.asarray(X)
        E = np.expm1(X.astype(np.float64))
        unit = np.where(E > 0, E, np.inf).min(1, keepdims=True)  # the cell's scale factor (one count)
        counts = np.rint(E / np.where(np.isfinite(unit), unit, 1.0)).astype(np.float32)
        adata = sc.AnnData(sparse.csr_matrix(counts), obs=raw.obs[["bulk_labels"]].copy())
        adata.var_names = raw.raw.var_names
        key = "bulk_labels"
    else:
        raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}")
    adata.obs["_label"] = adata.obs[key].astype(str).to_numpy()
    adata.var_names_make_unique()
    return adata


def split(adata, seed: int):
    """The intra-dataset split: (reference, query with truth in obs['_label'], seen types)."""
    rng = np.random.default_rng(seed)
    types = np.array(sorted(adata.obs["_label"].unique()))
    perm = rng.permutation(types)
    seen = sorted(perm[: len(types) // 2].tolist())
    lab = adata.obs["_label"].to_numpy()
    is_seen = np.isin(lab, seen)
    to_ref = is_seen & (rng.random(adata.n_obs) < 0.5)
    ref = adata[to_ref].copy()
    query = adata[~to_ref].copy()
    return ref, query, seen


def _hvg_space(ref, query, n_top_genes: int = 2000):
    """Joint log-normalised, scaled HVGs: PCA(30) and the raw counts of those genes (for the peers)."""
    import anndata as ad
    import scanpy as sc

    joint = ad.concat({"ref": ref, "query": query}, label="_ds", index_unique="-")
    joint.layers["counts"] = joint.X.copy()
    sc.pp.filter_genes(joint, min_counts=10)
    sc.pp.normalize_total(joint, target_sum=1e4)
    sc.pp.log1p(joint)
    sc.pp.highly_variable_genes(joint, n_top_genes=min(n_top_genes, joint.n_vars - 1), flavor="seurat")
    joint = joint[:, joint.var["highly_variable"]].copy()
    counts = joint.layers["counts"]
    sc.pp.scale(joint, max_value=10)
    sc.pp.pca(joint, n_comps=30, random_state=0)
    is_ref = (joint.obs["_ds"] == "ref").to_numpy()
    return joint.obsm["X_pca"], counts, is_ref


def run_dataset(name: str, seeds: list[int], args) -> dict:
    adata = load(name)
    log(f"[{name}] {adata.n_obs} cells x {adata.n_vars} genes, {adata.obs['_label'].nunique()} types")
    per_seed = []
    for seed in seeds:
        ref, query, seen = split(adata, seed)
        truth = query.obs["_label"].to_numpy()
        n_novel = len(set(truth) - set(seen))
        blind = query.copy()
        blind.obs = blind.obs[[]]  # the methods never see the query's truth
        row: dict = {"seed": seed, "n_ref": ref.n_obs, "n_query": query.n_obs, "n_novel_true": n_novel}
        _, secs, mb = measure(
            sx.tl.scdet,
            ref,
            blind,
            labels_key="_label",
            n_novel=n_novel,
            max_epochs=args.max_epochs,
            random_state=seed,
            progress_bar=False,
        )
        res = sx.metrics.open_world_accuracy(truth, blind.obs["scdet"].astype(str).to_numpy(), seen)
        row["scdet"] = {m: res[m] for m in METRICS} | {"seconds": secs, "peak_mb": mb}
        row["scdet"]["n_epochs"] = int(blind.uns["scdet"]["n_epochs"])
        row["n_novel_estimated"] = estimated_n_novel(ref, blind, labels_key="_label", random_state=seed)
        log(f"[{name} s={seed}] scdet {row['scdet']} est n_novel {row['n_novel_estimated']}/{n_novel}")
        if not set(PEERS) <= set(args.skip_peers):
            Z, counts, is_ref = _hvg_space(ref, query)
            ref_lab = ref.obs["_label"].to_numpy()
        if "knn" not in args.skip_peers:
            (pred, _), secs, mb = measure(
                knn_threshold_annotate, Z[is_ref], ref_lab, Z[~is_ref], n_novel=n_novel, random_state=seed
            )
            res = sx.metrics.open_world_accuracy(truth, pred, seen)
            row["knn"] = {m: res[m] for m in METRICS} | {"seconds": secs, "peak_mb": mb}
            log(f"[{name} s={seed}] knn {row['knn']}")
        if "scanvi" not in args.skip_peers:
            from _peers import scanvi_threshold_annotate

            (pred, _), secs, mb = measure(
                scanvi_threshold_annotate,
                counts[is_ref],
                ref_lab,
                counts[~is_ref],
                n_novel=n_novel,
                scvi_epochs=args.scvi_epochs,
                scanvi_epochs=args.scanvi_epochs,
                random_state=seed,
            )
            res = sx.metrics.open_world_accuracy(truth, pred, seen)
            row["scanvi"] = {m: res[m] for m in METRICS} | {"seconds": secs, "peak_mb": mb}
            log(f"[{name} s={seed}] scanvi {row['scanvi']}")
        per_seed.append(row)
    summary = {}
    for method in ("scdet", *PEERS):
        rows = [r[method] for r in per_seed if method in r]
        if rows:
            summary[method] = {k: mean_sd([r[k] for r in rows]) for k in (*METRICS, "seconds", "peak_mb")}
    summary["n_novel_estimate"] = [
        {"seed": r["seed"], "estimated": r["n_novel_estimated"], "true": r["n_novel_true"]} for r in per_seed
    ]
    return {"summary": summary, "per_seed": per_seed}


def run_scaling(sizes: list[int], args) -> list[dict]:
    rows = []
    for n in sizes:
        ref, query = sx.datasets.open_world(n_cells=n, n_genes=2000, random_state=0)
        info = ref.uns["open_world"]
        n_novel = len(info["novel_types"])
        truth = query.obs["cell_type"].astype(str).to_numpy()
        blind = query.copy()
        blind.obs = blind.obs[[]]
        cpu0, load0 = time.process_time(), os.getloadavg()[0]
        _, secs, mb = measure(
            sx.tl.scdet, ref, blind, labels_key="cell_type", n_novel=n_novel, progress_bar=False
        )
        cpu = time.process_time() - cpu0  # CPU time of all threads: timing that other load inflates less
        res = sx.metrics.open_world_accuracy(
            truth, blind.obs["scdet"].astype(str).to_numpy(), list(info["seen_types"])
        )
        row = {
            "n_cells": n,
            "n_genes": 2000,
            "threads": torch.get_num_threads(),
            "seconds": round(secs, 1),
            "cpu_seconds": round(cpu, 1),
            "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],  # at start, at end
            "peak_mb": round(mb, 1),
            "n_epochs": int(blind.uns["scdet"]["n_epochs"]),
            "n_steps": int(blind.uns["scdet"].get("n_steps", 0)),
            **{m: round(float(res[m]), 4) for m in METRICS},
        }
        log(f"[scaling] {row}")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets", nargs="*", default=list(DATASETS), choices=DATASETS, help="none: scaling only"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--skip-peers", nargs="*", default=[], choices=PEERS, help="peers not to run")
    parser.add_argument("--max-epochs", type=int, default=None, help="scDET epochs (default: adaptive)")
    parser.add_argument("--scvi-epochs", type=int, default=50)
    parser.add_argument("--scanvi-epochs", type=int, default=20)
    parser.add_argument("--scaling", nargs="*", type=int, default=[1_000, 10_000, 100_000])
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    parser.add_argument("--quick", action="store_true", help="pbmc, seed 0, 20 epochs, 10^3 scaling")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "scdet.json"))
    args = parser.parse_args()
    if args.quick:
        args.datasets, args.seeds, args.max_epochs = ["pbmc"], [0], args.max_epochs or 20
        args.scvi_epochs, args.scanvi_epochs, args.scaling = 10, 5, [1_000]
    torch.set_num_threads(args.threads)
    sx.settings.progress_bar = False
    record: dict = {
        "benchmark": "scdet",
        "argv": sys.argv[1:],
        "protocol": "intra-dataset: 50% of types seen, 50% of seen cells reference, the rest query",
        "scdet_epochs": args.max_epochs or "adaptive (default_max_epochs, label-free early stopping)",
        "scanvi_epochs": {"scvi": args.scvi_epochs, "scanvi": args.scanvi_epochs, "threshold": 0.5},
        "threads": args.threads,
        "datasets": {},
    }
    for name in args.datasets:
        record["datasets"][name] = run_dataset(name, args.seeds, args)
        s = record["datasets"][name]["summary"]
        if "scanvi" in s:
            s["overall_margin_vs_scanvi"] = round(
                s["scdet"]["overall"]["mean"] - s["scanvi"]["overall"]["mean"], 4
            )
        if "knn" in s:
            s["overall_margin_vs_knn"] = round(s["scdet"]["overall"]["mean"] - s["knn"]["overall"]["mean"], 4)
    if not args.no_scaling and args.scaling:
        record["scaling"] = run_scaling(args.scaling, args)
    save(record, args.out)
    emit(record)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
