"""Simple baselines users would run instead of the methods.

They give the demo and the benchmarks a reference point computed the same way every time. Each one is
array-level (no AnnData) and deterministic given ``random_state``; none uses evaluation labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler


def smoothed_pca_kmeans(
    reps: Sequence[np.ndarray],
    adjacency: sparse.spmatrix,
    n_clusters: int,
    *,
    n_hops: int = 2,
    random_state: int = 0,
) -> np.ndarray:
    """K-means on spatially smoothed, concatenated per-modality representations.

    Each representation is standardised and divided by the square root of its width (so every modality
    weighs the same), the concatenation is averaged over ``n_hops`` hops of the row-normalised spatial
    graph (self loops included), then clustered by k-means.

    Parameters
    ----------
    reps
        Per-modality representations, each ``(n_obs, d_m)`` (e.g. PCA / LSI).
    adjacency
        Spatial adjacency ``(n_obs, n_obs)``.
    n_clusters
        Number of clusters.
    n_hops
        Number of smoothing steps.
    random_state
        Seed for k-means.

    Returns
    -------
    Integer labels ``(n_obs,)``.
    """
    blocks = [
        StandardScaler().fit_transform(np.asarray(r, dtype=np.float64)) / np.sqrt(r.shape[1]) for r in reps
    ]
    X = np.hstack(blocks)
    A = sparse.csr_matrix(adjacency, dtype=np.float64) + sparse.identity(X.shape[0], format="csr")
    deg = np.asarray(A.sum(axis=1)).ravel()
    P = sparse.diags(1.0 / deg) @ A
    for _ in range(n_hops):
        X = P @ X
    return KMeans(n_clusters, n_init=10, random_state=random_state).fit_predict(X)


def knn_threshold_annotate(
    ref_X: np.ndarray,
    ref_labels: Sequence[str],
    query_X: np.ndarray,
    *,
    n_novel: int,
    n_neighbors: int = 15,
    threshold: float = 0.5,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Transfer labels by kNN with a confidence threshold; unassigned cells are clustered into novel types.

    Confidence is the fraction of the ``n_neighbors`` reference neighbours that vote for the winning
    label. Cells below ``threshold`` are "unassigned" and split by k-means into ``n_novel`` clusters
    named ``novel_1..n_novel`` (ordered by size). The threshold is a fixed default, never tuned on labels.

    Parameters
    ----------
    ref_X, query_X
        Reference and query cells in one shared representation.
    ref_labels
        Reference labels.
    n_novel
        Number of novel clusters to form from the unassigned cells.
    n_neighbors
        Neighbours in the vote.
    threshold
        Minimal vote fraction to keep a reference label.
    random_state
        Seed for k-means.

    Returns
    -------
    Predicted labels (object array) and the confidence of each query cell.
    """
    clf = KNeighborsClassifier(n_neighbors=min(n_neighbors, len(ref_labels))).fit(
        ref_X, np.asarray(ref_labels)
    )
    proba = clf.predict_proba(query_X)
    pred = clf.classes_[proba.argmax(axis=1)].astype(object)
    conf = proba.max(axis=1)
    unassigned = np.flatnonzero(conf < threshold)
    if n_novel > 0 and unassigned.size >= n_novel:
        km = KMeans(n_novel, n_init=10, random_state=random_state).fit_predict(query_X[unassigned])
        order = np.argsort(-np.bincount(km, minlength=n_novel), kind="stable")
        rank = np.empty(n_novel, dtype=int)
        rank[order] = np.arange(n_novel)
        pred[unassigned] = [f"novel_{rank[k] + 1}" for k in km]
    return pred, conf


def image_kmeans(
    images: sparse.spmatrix | np.ndarray, n_clusters: int, *, random_state: int = 0
) -> np.ndarray:
    """K-means on flattened gene images (each image z-scored), the simplest image-clustering baseline.

    Parameters
    ----------
    images
        ``(n_genes, n_pixels)`` images.
    n_clusters
        Number of gene clusters.
    random_state
        Seed for k-means.

    Returns
    -------
    Integer labels ``(n_genes,)``.
    """
    X = images.toarray() if sparse.issparse(images) else np.asarray(images)
    X = X.astype(np.float64)
    X = X - X.mean(axis=1, keepdims=True)
    sd = X.std(axis=1, keepdims=True)
    X = X / np.where(sd > 0, sd, 1.0)
    return KMeans(n_clusters, n_init=10, random_state=random_state).fit_predict(X)
