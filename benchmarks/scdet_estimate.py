"""scDET's open-world distribution estimate on its own, without training (seconds per dataset and seed).

The first estimate decides which query cells start in which novel slot (they anchor the slots' pseudo-labels),
so how well it groups the novel types bounds what training can recover. Per dataset and seed, on the split of
``benchmarks/scdet.py`` (Baron, Cao, pbmc68k) or ``sx.datasets.open_world(n_cells=3000)`` (``sim``), with the
true number of novel types:

- ``grouped``: share of the novel-type query cells that the estimate puts in their own type's novel slot (novel
  types and slots matched one to one, Hungarian). This is the score the estimate's design choices were made on
  (``docs/methods/scdet.md``).
- ``oracle``: the same when the unexplained fine clusters are grouped by their majority true type instead of
  by their connectivity: the headroom of the grouping step, given the fine clusters.
- ``n_novel_estimated``: the ``n_novel=None`` estimate (:func:`scomics_ext.tl._scdet.estimated_n_novel`), with its
  absolute error.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/scdet_estimate.py         # 4 datasets x seeds 0-4 (k-means moves with threads)
    OMP_NUM_THREADS=1 python benchmarks/scdet_estimate.py --datasets cao --seeds 1
"""

from __future__ import annotations

import argparse
import sys
from unittest import mock

import numpy as np
from _common import REPO_ROOT, emit, log, mean_sd, save
from sklearn.decomposition import PCA

import scomics_ext as sx
import scomics_ext.module._scdet_estimate as estimate_mod
from scomics_ext.tl._scdet import _preprocess, _validate, estimated_n_novel

DATASETS = ("sim", "pbmc", "baron", "cao")


def load_split(name: str, seed: int):
    """``(ref, query, seen types)`` with the labels in ``obs["_label"]``."""
    if name == "sim":
        ref, query = sx.datasets.open_world(n_cells=3000, n_genes=2000, random_state=seed)
        for obj in (ref, query):
            obj.obs["_label"] = obj.obs["cell_type"].astype(str)
        return ref, query, list(ref.uns["open_world"]["seen_types"])
    import scdet  # the benchmark's loaders and split

    return scdet.split(scdet.load(name), seed)


def grouped_share(slot: np.ndarray, truth: np.ndarray, ref_types: list[str], seen: list[str]) -> float:
    """Share of the novel-type cells in their own type's novel slot: the novel accuracy of the slots.

    Seen slots (``0..len(ref_types)-1``) take their reference type's name and novel slots a ``novel_<id>``
    label, so :func:`scomics_ext.metrics.open_world_accuracy` matches slots to novel types one to one
    (Hungarian). ``seen`` are the split's seen types (a seen type may have no reference cell); a cell in no
    slot (``-1``) gets a seen name, which is wrong for every novel-type cell.
    """
    n_ref = len(ref_types)
    names = np.where(
        slot >= n_ref,
        np.char.add("novel_", slot.astype(str)),
        np.asarray(ref_types)[np.clip(slot, 0, n_ref - 1)],
    )
    return float(sx.metrics.open_world_accuracy(truth, names, seen)["novel"])


def majority_groups(truth_all: np.ndarray):
    """A stand-in for ``connectivity_groups`` that groups fine clusters by their majority true type."""

    def groups(X, clusters, members, n_groups, **_):
        majority = []
        for c in members:
            values, counts = np.unique(truth_all[clusters == c], return_counts=True)
            majority.append(values[np.argmax(counts)])
        _, ids = np.unique(np.asarray(majority), return_inverse=True)
        return ids % n_groups

    return groups


def run_one(name: str, seed: int) -> dict:
    ref, query, seen = load_split(name, seed)
    truth_q = query.obs["_label"].astype(str).to_numpy()
    novel_types = sorted(set(truth_q) - set(seen))
    info = _validate(ref, query, "_label", len(novel_types), None, 2000, "scdet")
    joint, _ = _preprocess(info["mats"], info["counts"], 2000)
    # the model's first estimate clusters a 50-component PCA of its input
    n_comps = int(min(50, joint.n_vars - 1, joint.n_obs - 1))
    pcs = PCA(n_comps, random_state=seed).fit_transform(np.asarray(joint.X, dtype=np.float32))
    codes = {t: i for i, t in enumerate(info["seen"])}
    labels = np.full(joint.n_obs, -1, dtype=np.int64)
    labels[: ref.n_obs] = [codes[lab] for lab in info["labels"]]
    n_seen = len(info["seen"])
    n_classes = n_seen + len(novel_types)
    est = estimate_mod.estimate_distribution(pcs, labels, n_seen, n_classes, random_state=seed)
    truth_all = np.r_[ref.obs["_label"].astype(str).to_numpy(), truth_q]
    with mock.patch.object(estimate_mod, "connectivity_groups", majority_groups(truth_all)):
        oracle = estimate_mod.estimate_distribution(pcs, labels, n_seen, n_classes, random_state=seed)
    q = slice(ref.n_obs, None)
    n_est = estimated_n_novel(ref, query, labels_key="_label", random_state=seed)
    return {
        "seed": seed,
        "n_novel": len(novel_types),
        "novel_type_sizes": [int((truth_q == t).sum()) for t in novel_types],
        "novel_slot_sizes": np.bincount(
            est.slot[q][est.slot[q] >= n_seen] - n_seen, minlength=n_classes - n_seen
        ).tolist(),
        "grouped": round(grouped_share(est.slot[q], truth_q, info["seen"], seen), 4),
        "oracle": round(grouped_share(oracle.slot[q], truth_q, info["seen"], seen), 4),
        "n_novel_estimated": n_est,
        "n_novel_abs_error": abs(n_est - len(novel_types)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "scdet_estimate.json"))
    args = parser.parse_args()
    sx.settings.progress_bar = False
    record: dict = {"benchmark": "scdet_estimate", "argv": sys.argv[1:], "datasets": {}}
    for name in args.datasets:
        rows = []
        for seed in args.seeds:
            rows.append(run_one(name, seed))
            log(f"{name} seed {seed}: {rows[-1]}")
        record["datasets"][name] = {
            "summary": {k: mean_sd(r[k] for r in rows) for k in ("grouped", "oracle", "n_novel_abs_error")},
            "per_seed": rows,
        }
    s = record["datasets"]
    record["mean_over_datasets"] = {
        k: round(float(np.mean([d["summary"][k]["mean"] for d in s.values()])), 4)
        for k in ("grouped", "oracle", "n_novel_abs_error")
    }
    save(record, args.out)
    emit(record)


if __name__ == "__main__":
    main()
