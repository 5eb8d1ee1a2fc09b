"""CRCT spatial multi-omics clustering: quality, rare regions, time and memory, side by side with its peers.

Datasets (real data from ``$SCOMICS_DATA``, see ``_common.data_dir``):

- ``sg3`` / ``sg2``: the SpatialGlue simulation (1,296 spots, 5 classes), RNA + ADT + ATAC / RNA + ADT;
- ``hln``: human lymph node A1, protein (31 ADT) only (3,484 spots, 10 classes, five of them < 100 spots);
- ``--scaling``: :func:`scomics_ext.datasets.spatial_multiome` grids (RNA + ADT) of 10^3 ... 10^5 spots.

Methods, all clustered into the true number of classes:

- ``crct``: :func:`scomics_ext.tl.crct` with its defaults (end to end: preprocessing, graphs, training,
  Leiden clustering of the embedding);
- ``baseline``: k-means on spatially smoothed, concatenated per-modality PCA / LSI
  (:func:`scomics_ext._baselines.smoothed_pca_kmeans`, the same 3-NN spatial graph as CRCT);
- ``spatialglue``: SpatialGlue with its defaults on the two-modality data only (``sg2`` and, with
  ``--peer-datasets``, anything with two modalities), clustered by the shared tied GMM (``gmm_labels``),
  and ``spatialglue_leiden``: the same embeddings clustered by CRCT's default final step (Leiden; its
  ``seconds`` are the clustering alone);
  slow (~9 min per run on one core), so by default one seed (``--peer-seeds``);
- ablations (``--ablations``): CRCT without the augmentation (``augmentation=False``, ~PRAGA), without the
  clustering loss (``cluster_loss=False``), without graph learning (``learn_graph=False``) and with the
  paper's fixed start of the clustering loss at 1/3 of the run (``cluster_start="fixed"``), and with the
  published pipelines' tied-GMM final clustering instead of Leiden (``method="gmm"``).

Scores: ARI / NMI / AMI / FMI / F1 / Jaccard (:func:`scomics_ext.metrics.clustering_scores`) and the mean
recall of the classes with < 100 spots (:func:`scomics_ext.metrics.per_class_recall`), mean ± sd over
seeds; wall time and peak extra memory (RSS) of each call. Prints one JSON line (progress on stderr) and
writes it to ``--out`` (default ``benchmarks/results/crct.json``).

Usage::

    python benchmarks/crct.py                       # full acceptance run (3 seeds, SpatialGlue 1 seed, scaling)
    python benchmarks/crct.py --quick               # smoke run: 1 seed, 60 epochs, no peers, scaling 10^3
    python benchmarks/crct.py --datasets sg3 hln --skip-peers --no-scaling
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from _common import REPO_ROOT, data_dir, emit, log, mean_sd, measure, save

import scomics_ext as sx
from scomics_ext._baselines import smoothed_pca_kmeans
from scomics_ext.pp import knn_graph, preprocess_matrix

DATASETS = ("sg3", "sg2", "hln")
SCORES = ("ari", "nmi", "ami", "fmi", "f1", "jaccard")
RARE_MAX = 100
ABLATIONS = {
    "no_augmentation": {"augmentation": False},
    "no_cluster_loss": {"cluster_loss": False},
    "no_graph_learning": {"learn_graph": False},
    # the paper's fixed switch-on of the clustering loss at 1/3 of the run (the default waits for stable labels)
    "fixed_cluster_start": {"train_kwargs": {"cluster_start": "fixed"}},
    # the published pipelines' final step (tied GMM on PCA(20) of Z) instead of the default Leiden
    "gmm_final": {"method": "gmm"},
    # the clustering of Z alone, without the boundary refinement by the spots' own features
    "no_refinement": {"refine": False},
}
#: the spatial graph CRCT builds by default (its ``n_spatial_neighbors``); the baseline smooths over it too
SPATIAL_K = 3


# --------------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------------
def load(name: str, *, seed: int = 0) -> tuple[Any, list[str]]:
    """``(mdata, modalities)`` of a benchmark dataset; truth in ``mdata.obs["truth"]``."""
    if name in ("sg3", "sg2"):
        mdata = sx.datasets.spatialglue_simulation(path=data_dir() / "spatialglue_simulation")
        return mdata, (["rna", "adt", "atac"] if name == "sg3" else ["rna", "adt"])
    if name == "hln":
        mdata = sx.datasets.human_lymph_node(path=data_dir() / "hln_a1_adt")
        return mdata, ["adt"]
    if name.startswith("sim"):
        n = int(float(name[3:]))
        n_side = round(float(np.sqrt(n)))
        mdata = sx.datasets.spatial_multiome(
            n_side=n_side, modalities=("rna", "adt"), counts_layer=False, random_state=seed
        )
        return mdata, ["rna", "adt"]
    raise ValueError(f"unknown dataset {name!r}; use one of {DATASETS} or simN (e.g. sim10000).")


def truth_of(mdata: Any) -> np.ndarray:
    return mdata.obs["truth"].astype(str).to_numpy()


def rare_classes(truth: np.ndarray) -> list[str]:
    values, counts = np.unique(truth, return_counts=True)
    return sorted(str(v) for v, c in zip(values, counts) if c < RARE_MAX)


def score(truth: np.ndarray, labels: np.ndarray, rare: list[str]) -> dict[str, float]:
    out = {k: float(v) for k, v in sx.metrics.clustering_scores(truth, labels).items() if k in SCORES}
    if rare:
        recall = sx.metrics.per_class_recall(truth, labels)
        out["rare_recall"] = float(recall.loc[rare].mean())
    return out


def _coords(mdata: Any, mods: list[str]) -> np.ndarray:
    if "spatial" in mdata.obsm:
        return np.asarray(mdata.obsm["spatial"], dtype=np.float64)
    return np.asarray(mdata.mod[mods[0]].obsm["spatial"], dtype=np.float64)


def _reps(mdata: Any, mods: list[str], n_comps: int | None, seed: int) -> list[np.ndarray]:
    return [preprocess_matrix(mdata.mod[m].X, kind=m, n_comps=n_comps, random_state=seed) for m in mods]


# --------------------------------------------------------------------------------------------------------
# methods: each returns labels
# --------------------------------------------------------------------------------------------------------
def run_crct(
    mdata: Any, mods: list[str], k: int, seed: int, max_epochs: int | None, **kwargs: Any
) -> np.ndarray:
    view = mdata.mod[mods[0]] if len(mods) == 1 else mdata
    sx.tl.crct(
        view,
        n_clusters=k,
        modalities=None if len(mods) == 1 else mods,
        kind="adt" if len(mods) == 1 and mods[0] == "adt" else None,
        random_state=seed,
        max_epochs=max_epochs,
        progress_bar=False,
        accelerator="cpu",
        **kwargs,
    )
    labels = view.obs["crct"].astype(int).to_numpy()
    del view.obs["crct"], view.obsm["X_crct"], view.uns["crct"]
    return labels


def run_baseline(mdata: Any, mods: list[str], k: int, seed: int) -> np.ndarray:
    reps = _reps(mdata, mods, None, seed)
    adjacency, _ = knn_graph(_coords(mdata, mods), n_neighs=SPATIAL_K, method="exact")
    return smoothed_pca_kmeans(reps, adjacency, k, random_state=seed)


_SPATIALGLUE_Z: dict[tuple[int, int], np.ndarray] = {}


def run_spatialglue(mdata: Any, mods: list[str], k: int, seed: int, final: str = "gmm") -> np.ndarray:
    """SpatialGlue's embedding clustered by the tied GMM (``final="gmm"``) or CRCT's default Leiden.

    The embedding of a (dataset, seed) is computed once and reused by the second clustering.
    """
    from _peers import gmm_labels, spatialglue_embedding

    from scomics_ext.model._crct_train import cluster_embedding

    key = (id(mdata), seed)
    if key in _SPATIALGLUE_Z:
        z = _SPATIALGLUE_Z.pop(key)
        if final == "leiden":
            return cluster_embedding(z, k, method="leiden", random_state=seed)
        return gmm_labels(z, k, random_state=seed)

    if len(mods) != 2:
        raise ValueError("SpatialGlue takes exactly two modalities")
    # its tutorials: PCA of both modalities with n_proteins - 1 components when a protein modality is there
    n_comps = None
    if "adt" in mods:
        n_comps = min(100, mdata.mod["adt"].n_vars - 1)
    feats = _reps(mdata, mods, n_comps, seed)
    z = spatialglue_embedding(feats[0], feats[1], _coords(mdata, mods), random_state=seed)
    _SPATIALGLUE_Z[key] = z
    if final == "leiden":
        return cluster_embedding(z, k, method="leiden", random_state=seed)
    return gmm_labels(z, k, random_state=seed)


def repeat(
    fn: Callable[[int], np.ndarray], seeds: list[int], truth: np.ndarray, rare: list[str], what: str
) -> dict[str, Any]:
    """Run ``fn(seed)`` per seed: scores (mean ± sd), seconds and peak MB per run."""
    per_seed: list[dict[str, float]] = []
    secs, mems = [], []
    for s in seeds:
        labels, sec, mb = measure(fn, s)
        sc = score(truth, labels, rare)
        per_seed.append(sc)
        secs.append(sec)
        mems.append(mb)
        log(
            f"  {what} seed {s}: "
            + ", ".join(f"{k}={v:.4f}" for k, v in sc.items())
            + f" ({sec:.1f} s, {mb:.0f} MB)"
        )
    out: dict[str, Any] = {k: mean_sd(r[k] for r in per_seed) for k in per_seed[0]}
    out["seconds"] = mean_sd(secs)
    out["peak_mb"] = round(max(mems), 1)
    out["seeds"] = seeds
    out["per_seed_ari"] = [round(r["ari"], 4) for r in per_seed]
    return out


# --------------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------------
def summarize_scaling(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows plus the fitted growth exponents of time and peak memory (``y ~ N^a``)."""
    scaling: dict[str, Any] = {"rows": rows}
    if len(rows) > 1:
        ns = [r["n_spots"] for r in rows]
        scaling["time_exponent"] = round(_exponent(ns, [r["crct_seconds"] for r in rows]), 2)
        scaling["memory_exponent"] = round(_exponent(ns, [max(r["crct_peak_mb"], 1.0) for r in rows]), 2)
    return scaling


def _exponent(ns: list[int], ys: list[float]) -> float:
    return float(np.polyfit(np.log(ns), np.log(np.maximum(ys, 1e-6)), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), help=f"of {DATASETS}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=None, help="CRCT epochs (default: its own)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-peers", action="store_true", help="no SpatialGlue")
    parser.add_argument("--peer-seeds", type=int, nargs="+", default=[0], help="SpatialGlue seeds")
    parser.add_argument(
        "--peer-datasets", nargs="*", default=["sg2"], help="two-modality data for SpatialGlue"
    )
    parser.add_argument("--ablations", action="store_true", help="one row per removed term")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", default=None, help="default: --seeds")
    parser.add_argument("--scaling", type=int, nargs="*", default=[1_000, 10_000, 100_000], help="grid sizes")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--scaling-baseline", action="store_true", help="also time the baseline on the grids")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (BLAS: set OMP_NUM_THREADS)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 60 epochs, no peers, scaling 10^3 only")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "crct.json"))
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="combine the records of earlier (partial) runs instead of running anything",
    )
    args = parser.parse_args()
    if args.merge:
        record = merge(args.merge)
        if not args.no_save:
            save(record, args.out)
        emit(record)
        return
    if args.quick:
        args.seeds = args.seeds[:1]
        args.max_epochs = args.max_epochs or 60
        args.skip_peers = True
        args.scaling = [1_000]
    torch.set_num_threads(args.threads)
    sx.settings.progress_bar = False
    abl_seeds = args.ablation_seeds or args.seeds

    record: dict[str, Any] = {
        "benchmark": "crct",
        "config": {
            "seeds": args.seeds,
            "max_epochs": args.max_epochs or "default",
            "peer_seeds": None if args.skip_peers else args.peer_seeds,
            "ablation_seeds": abl_seeds if args.ablations else None,
            "torch_threads": args.threads,
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "quick": args.quick,
        },
        "datasets": {},
    }
    t_start = time.perf_counter()
    for name in args.datasets:
        mdata, mods = load(name)
        truth = truth_of(mdata)
        k = int(np.unique(truth).size)
        rare = rare_classes(truth)
        log(f"[{name}] {mdata.n_obs} spots, modalities {mods}, {k} classes, rare (< {RARE_MAX}): {rare}")
        entry: dict[str, Any] = {
            "n_spots": int(mdata.n_obs),
            "modalities": mods,
            "n_classes": k,
            "rare_classes": rare,
        }
        methods: dict[str, Any] = {}
        methods["crct"] = repeat(
            partial(run_crct, mdata, mods, k, max_epochs=args.max_epochs),
            args.seeds,
            truth,
            rare,
            f"{name} crct",
        )
        if not args.skip_baseline:
            methods["baseline_smoothed_pca_kmeans"] = repeat(
                partial(run_baseline, mdata, mods, k), args.seeds, truth, rare, f"{name} baseline"
            )
        if not args.skip_peers and name in args.peer_datasets and len(mods) == 2:
            methods["spatialglue"] = repeat(
                partial(run_spatialglue, mdata, mods, k),
                args.peer_seeds,
                truth,
                rare,
                f"{name} spatialglue",
            )
            # the same embeddings (cached per seed) clustered by CRCT's default final step; seconds = clustering only
            methods["spatialglue_leiden"] = repeat(
                partial(run_spatialglue, mdata, mods, k, final="leiden"),
                args.peer_seeds,
                truth,
                rare,
                f"{name} spatialglue_leiden",
            )
        if args.ablations:
            for abl, kwargs in ABLATIONS.items():
                methods[f"crct_{abl}"] = repeat(
                    partial(run_crct, mdata, mods, k, max_epochs=args.max_epochs, **kwargs),
                    abl_seeds,
                    truth,
                    rare,
                    f"{name} crct_{abl}",
                )
        entry["methods"] = methods
        compare_spatialglue(entry)
        record["datasets"][name] = entry
        checkpoint(record, args)

    if not args.no_scaling and args.scaling:
        rows = []
        for n in args.scaling:
            mdata, mods = load(f"sim{n}", seed=0)
            truth = truth_of(mdata)
            k = int(np.unique(truth).size)
            log(f"[scaling] {mdata.n_obs} spots, {k} classes")
            labels, sec, mb = measure(run_crct, mdata, mods, k, 0, args.max_epochs)
            sc = score(truth, labels, [])
            row = {
                "n_spots": int(mdata.n_obs),
                "max_epochs": args.max_epochs or sx.model._crct.default_max_epochs(mdata.n_obs),
                "crct_seconds": round(sec, 1),
                "crct_peak_mb": round(mb, 1),
                "crct_ari": round(sc["ari"], 4),
            }
            if args.scaling_baseline:
                labels, sec, mb = measure(run_baseline, mdata, mods, k, 0)
                row |= {
                    "baseline_seconds": round(sec, 1),
                    "baseline_peak_mb": round(mb, 1),
                    "baseline_ari": round(score(truth, labels, [])["ari"], 4),
                }
            log(f"  {row}")
            rows.append(row)
            record["scaling"] = {"rows": rows}
            checkpoint(record, args)
            del mdata
        record["scaling"] = summarize_scaling(rows)

    record["acceptance"] = acceptance(record)
    record["total_seconds"] = round(time.perf_counter() - t_start, 1)
    if not args.no_save:
        save(record, args.out)
        if os.path.exists(args.out + ".partial"):
            os.remove(args.out + ".partial")
    emit(record)


def checkpoint(record: dict[str, Any], args: argparse.Namespace) -> None:
    """Write what has been measured so far to ``<out>.partial`` (usable with ``--merge`` after a crash)."""
    if not args.no_save:
        save(record, args.out + ".partial")


def compare_spatialglue(entry: dict[str, Any]) -> None:
    """Time ratio and ARI difference of CRCT against SpatialGlue, when both ran on a dataset."""
    methods = entry["methods"]
    if "spatialglue" in methods and "crct" in methods:
        sg, cr = methods["spatialglue"], methods["crct"]
        entry["crct_vs_spatialglue"] = {
            "time_ratio_spatialglue_over_crct": round(sg["seconds"]["mean"] / cr["seconds"]["mean"], 2),
            "ari_difference_crct_minus_spatialglue": round(cr["ari"]["mean"] - sg["ari"]["mean"], 4),
        }


def merge(paths: list[str]) -> dict[str, Any]:
    """One record from the records of partial runs (later files win on a clash of method or scaling)."""
    record: dict[str, Any] = {"benchmark": "crct", "config": {"merged_from": []}, "datasets": {}}
    for path in paths:
        with open(path) as fh:
            part = json.loads(fh.readline())
        record["config"]["merged_from"].append({"file": os.path.basename(path), **part["config"]})
        for name, entry in part.get("datasets", {}).items():
            if name not in record["datasets"]:
                record["datasets"][name] = {k: v for k, v in entry.items() if k != "crct_vs_spatialglue"}
            else:
                record["datasets"][name]["methods"].update(entry["methods"])
        if "scaling" in part:
            record["scaling"] = summarize_scaling(part["scaling"]["rows"])
        record["total_seconds"] = round(record.get("total_seconds", 0.0) + part.get("total_seconds", 0.0), 1)
    for entry in record["datasets"].values():
        compare_spatialglue(entry)
    record["acceptance"] = acceptance(record)
    return record


def acceptance(record: dict[str, Any]) -> dict[str, Any]:
    """The issue's acceptance checks on what this run measured (absent when not measured)."""
    out: dict[str, Any] = {}
    ds = record["datasets"]
    if "sg3" in ds:
        out["sg3_ari_mean_ge_0.99"] = bool(ds["sg3"]["methods"]["crct"]["ari"]["mean"] >= 0.99)
    if "hln" in ds and "baseline_smoothed_pca_kmeans" in ds["hln"]["methods"]:
        cr, bl = ds["hln"]["methods"]["crct"], ds["hln"]["methods"]["baseline_smoothed_pca_kmeans"]
        out["hln_ari_above_baseline_by_0.05"] = bool(cr["ari"]["mean"] - bl["ari"]["mean"] >= 0.05)
        out["hln_nmi_above_baseline_by_0.05"] = bool(cr["nmi"]["mean"] - bl["nmi"]["mean"] >= 0.05)
        out["hln_rare_recall_above_baseline"] = bool(cr["rare_recall"]["mean"] > bl["rare_recall"]["mean"])
    for name, entry in ds.items():
        if "crct_vs_spatialglue" in entry:
            c = entry["crct_vs_spatialglue"]
            out[f"{name}_faster_than_spatialglue_at_ge_ari"] = bool(
                c["time_ratio_spatialglue_over_crct"] > 1 and c["ari_difference_crct_minus_spatialglue"] >= 0
            )
    rows = record.get("scaling", {}).get("rows", [])
    big = [r for r in rows if r["n_spots"] >= 99_000]  # 317 x 317 = 99,856 spots
    if big:
        out["100k_under_15_min"] = bool(big[0]["crct_seconds"] < 900)
        out["100k_peak_under_8_gb"] = bool(big[0]["crct_peak_mb"] < 8 * 1024)
    return out


if __name__ == "__main__":
    main()
