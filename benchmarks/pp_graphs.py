"""Scaling of the graph builders in ``sx.pp`` from 10^3 to 10^5 spots.

Prints one JSON line: per size, wall time and peak extra memory of ``spatial_graph`` (kNN, k=6) on the
``spatial_multiome`` grid and of ``feature_graph`` (correlation kNN, k=20) on a 50-dimensional PCA of its RNA;
edges per spot; the fitted growth exponent (time ~ N^a) and the acceptance check (100k spots < 30 s).

Usage: ``python benchmarks/pp_graphs.py [--sizes 1000 10000 100000] [--no-feature]``
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import emit, log, measure

import scomics_ext as sx


def _exponent(ns: list[int], ys: list[float]) -> float:
    return float(np.polyfit(np.log(ns), np.log(np.maximum(ys, 1e-6)), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--no-feature", action="store_true", help="skip the feature graph")
    args = parser.parse_args()
    sx.settings.progress_bar = False
    rows = []
    for n in args.sizes:
        n_side = round(float(np.sqrt(n)))
        mdata = sx.datasets.spatial_multiome(n_side=n_side, modalities=("rna",), counts_layer=False)
        rna = mdata.mod["rna"]
        _, t_sp, m_sp = measure(sx.pp.spatial_graph, rna, n_neighs=6)
        conn = rna.obsp["spatial_connectivities"]
        row = {
            "n_spots": rna.n_obs,
            "spatial_seconds": round(t_sp, 3),
            "spatial_peak_mb": round(m_sp, 1),
            "spatial_edges_per_spot": round(conn.nnz / rna.n_obs, 2),
            "spatial_graph_mb": round(
                (conn.data.nbytes + conn.indices.nbytes + conn.indptr.nbytes) / 2**20, 2
            ),
            "dense_equivalent_mb": round(rna.n_obs**2 * 4 / 2**20, 1),
        }
        if not args.no_feature:
            rng = np.random.default_rng(0)
            rna.obsm["X_pca"] = rng.normal(size=(rna.n_obs, 50)).astype(np.float32)
            _, t_ft, m_ft = measure(sx.pp.feature_graph, rna, use_rep="X_pca", n_neighs=20)
            row |= {"feature_seconds": round(t_ft, 3), "feature_peak_mb": round(m_ft, 1)}
        log(str(row))
        rows.append(row)
    ns = [r["n_spots"] for r in rows]
    record = {
        "benchmark": "pp_graphs",
        "rows": rows,
        "spatial_time_exponent": round(_exponent(ns, [r["spatial_seconds"] for r in rows]), 2)
        if len(ns) > 1
        else None,
        "spatial_memory_exponent": (
            round(_exponent(ns, [max(r["spatial_peak_mb"], 0.1) for r in rows]), 2) if len(ns) > 1 else None
        ),
    }
    big = [r for r in rows if r["n_spots"] >= 100_000]
    if big:
        record["acceptance_100k_spatial_under_30s"] = bool(big[0]["spatial_seconds"] < 30)
    emit(record)


if __name__ == "__main__":
    main()
