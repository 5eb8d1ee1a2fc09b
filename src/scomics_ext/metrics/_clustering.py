"""External clustering scores: information-theoretic, pair-counting and Hungarian-matched."""

from __future__ import annotations

from math import log
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_mutual_info_score, mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from ._labels import check_same_length, encode_labels, natural_order

__all__ = ["cluster_accuracy", "clustering_scores", "per_class_recall"]


def _encode_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, pd.Index, np.ndarray, pd.Index]:
    """Validate both label vectors and return ``(codes_true, classes, codes_pred, clusters)``."""
    codes_true, classes = encode_labels(y_true, "y_true")
    codes_pred, clusters = encode_labels(y_pred, "y_pred")
    check_same_length(codes_true.size, codes_pred.size, "y_true", "y_pred")
    return codes_true, classes, codes_pred, clusters


def _contingency(codes_true: np.ndarray, codes_pred: np.ndarray) -> sparse.csr_matrix:
    """Sparse ``(n_classes, n_clusters)`` contingency table of two code vectors (sklearn's)."""
    return contingency_matrix(codes_true, codes_pred, sparse=True, dtype=np.int64)


def _entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of a labelling given its class sizes, as :mod:`sklearn` computes it."""
    if counts.size <= 1:
        return 0.0
    pi = counts.astype(np.float64)
    pi_sum = pi.sum()
    return float(-np.sum((pi / pi_sum) * (np.log(pi) - log(pi_sum))))


def _pair_counts(contingency: sparse.csr_matrix, n: int) -> tuple[int, int, int, int]:
    """Unordered pair counts ``(tp, fp, fn, tn)`` from a contingency table, in O(size of the table).

    ``tp``: pairs in the same class and the same cluster; ``fp``: same cluster, different classes;
    ``fn``: same class, different clusters; ``tn``: the remaining pairs. Exact Python integers.
    """
    nij = contingency.data.astype(np.int64)
    a = np.ravel(np.asarray(contingency.sum(axis=1), dtype=np.int64))
    b = np.ravel(np.asarray(contingency.sum(axis=0), dtype=np.int64))
    tp = int((nij * (nij - 1)).sum()) // 2
    same_class = int((a * (a - 1)).sum()) // 2
    same_cluster = int((b * (b - 1)).sum()) // 2
    fn = same_class - tp
    fp = same_cluster - tp
    tn = n * (n - 1) // 2 - tp - fp - fn
    return tp, fp, fn, tn


def clustering_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    r"""External clustering scores of a predicted labelling against the truth.

    All scores are computed from one contingency table (and pair counts derived from it), so the cost
    is linear in the number of observations; label ids need not match between ``y_true`` and
    ``y_pred``, and the numbers of classes and clusters may differ.

    Parameters
    ----------
    y_true
        Ground-truth labels, one per observation: any 1-D array-like of hashable values (strings,
        integers, a categorical, a :class:`pandas.Series` — whose index is ignored; the order of
        values is what counts). Missing values are not allowed.
    y_pred
        Predicted cluster labels for the same observations in the same order.

    Returns
    -------
    Scores as plain Python floats:

    ``mi``
        Mutual information in nats (:func:`sklearn.metrics.mutual_info_score`); not bounded by 1.
    ``nmi``
        Normalized mutual information, arithmetic normalisation
        (:func:`sklearn.metrics.normalized_mutual_info_score`).
    ``ami``
        Adjusted mutual information (:func:`sklearn.metrics.adjusted_mutual_info_score`).
    ``fmi``
        Fowlkes–Mallows index (:func:`sklearn.metrics.fowlkes_mallows_score`).
    ``ari``
        Adjusted Rand index (:func:`sklearn.metrics.adjusted_rand_score`).
    ``v_measure``, ``homogeneity``, ``completeness``
        As :func:`sklearn.metrics.homogeneity_completeness_v_measure` (``beta=1``).
    ``f1``, ``jaccard``
        Pair-counting F1 and Jaccard index (see Notes).

    Raises
    ------
    ValueError
        If an input is empty, not 1-D, holds missing values, or the lengths differ.
    TypeError
        If an input is a string or scalar, or holds unhashable values.

    Notes
    -----
    Pair counting looks at the :math:`\binom{N}{2}` unordered pairs of observations. With TP the pairs
    in the same class and the same cluster, FP the pairs in the same cluster but different classes and
    FN the pairs in the same class but different clusters,

    .. math::

        F_1 = \frac{2\,TP}{2\,TP + FP + FN}, \qquad J = \frac{TP}{TP + FP + FN}.

    The counts come from the contingency table :math:`n_{ij}` with row sums :math:`a_i` and column sums
    :math:`b_j`: :math:`TP = \sum_{ij} \binom{n_{ij}}{2}`,
    :math:`FN = \sum_i \binom{a_i}{2} - TP`, :math:`FP = \sum_j \binom{b_j}{2} - TP`. When
    :math:`TP + FP + FN = 0` (no pair shares a class nor a cluster, e.g. both labellings are all
    singletons) the two labellings agree on every pair and F1 and Jaccard are 1.0. The other scores keep
    scikit-learn's conventions for degenerate inputs (e.g. ``fmi`` is 0.0 in that case).

    The information-theoretic scores are computed as scikit-learn computes them and agree with the
    scikit-learn functions named above to floating-point precision; ``ami`` calls
    :func:`sklearn.metrics.adjusted_mutual_info_score` on the integer-encoded labels (its expected mutual
    information has no public entry point taking a contingency table).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> truth = ["B", "B", "T", "T", "NK", "NK"]
    >>> pred = [1, 1, 0, 0, 0, 2]
    >>> scores = sx.metrics.clustering_scores(truth, pred)
    >>> sorted(scores)
    ['ami', 'ari', 'completeness', 'f1', 'fmi', 'homogeneity', 'jaccard', 'mi', 'nmi', 'v_measure']
    >>> round(scores["ari"], 4), round(scores["f1"], 4), round(scores["jaccard"], 4)
    (0.4444, 0.5714, 0.4)
    >>> sx.metrics.clustering_scores(truth, ["x", "x", "y", "y", "z", "z"])["nmi"]
    1.0
    """
    codes_true, _, codes_pred, _ = _encode_pair(y_true, y_pred)
    n = int(codes_true.size)
    cont = _contingency(codes_true, codes_pred)
    n_classes, n_clusters = cont.shape

    a = np.ravel(np.asarray(cont.sum(axis=1)))
    b = np.ravel(np.asarray(cont.sum(axis=0)))
    h_true, h_pred = _entropy(a), _entropy(b)
    mi = float(mutual_info_score(None, None, contingency=cont))

    # sklearn's conventions for one class and one cluster (no split at all: perfect match)
    if n_classes == n_clusters == 1:
        nmi = 1.0
    elif mi == 0:
        nmi = 0.0
    else:
        nmi = float(mi / np.mean([h_true, h_pred]))
    ami = float(adjusted_mutual_info_score(codes_true, codes_pred))
    homogeneity = float(mi / h_true) if h_true else 1.0
    completeness = float(mi / h_pred) if h_pred else 1.0
    if homogeneity + completeness == 0.0:
        v_measure = 0.0
    else:
        v_measure = float(2.0 * homogeneity * completeness / (homogeneity + completeness))

    tp, fp, fn, tn = _pair_counts(cont, n)
    # sklearn's ARI formula (on ordered pairs; the ratio is the same on unordered ones)
    ari = (
        1.0
        if fn == 0 and fp == 0
        else 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    )
    fmi = float(np.sqrt(tp / (tp + fp)) * np.sqrt(tp / (tp + fn))) if tp != 0 else 0.0
    denom = tp + fp + fn
    f1 = 2.0 * tp / (2 * tp + fp + fn) if denom else 1.0
    jaccard = tp / denom if denom else 1.0

    return {
        "mi": mi,
        "nmi": nmi,
        "ami": ami,
        "fmi": fmi,
        "ari": float(ari),
        "v_measure": v_measure,
        "homogeneity": homogeneity,
        "completeness": completeness,
        "f1": float(f1),
        "jaccard": float(jaccard),
    }


def _hungarian(contingency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of rows (classes) to columns (clusters) maximising the matched counts."""
    return linear_sum_assignment(contingency, maximize=True)


def per_class_recall(y_true: Any, y_pred: Any) -> pd.Series:
    """Recall of each true class after Hungarian matching of clusters to classes.

    Predicted clusters are matched one-to-one to true classes so that the number of observations whose
    cluster is matched to their class is maximal (:func:`scipy.optimize.linear_sum_assignment` on the
    contingency table). The recall of class :math:`c` is the fraction of its observations that fall in
    the cluster matched to :math:`c`; a class left without a cluster (more classes than clusters) has
    recall 0. Unlike a global score, this makes poorly recovered rare classes visible.

    Parameters
    ----------
    y_true
        Ground-truth labels, one per observation (any 1-D array-like of hashable values; no missing
        values; a :class:`pandas.Series`' index is ignored).
    y_pred
        Predicted cluster labels for the same observations. Ids are arbitrary and their number may differ
        from the number of classes.

    Returns
    -------
    Recall per class, a float :class:`pandas.Series` named ``"recall"`` indexed by the true class labels
    in natural sort order (``"c2"`` before ``"c10"``).

    Notes
    -----
    When several matchings reach the same maximum, one of them is used (deterministically); the
    recalls of tied classes then depend on that choice, while :func:`cluster_accuracy`,
    i.e. the size-weighted mean of these recalls, does not.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> truth = ["B", "B", "B", "T", "T", "NK"]
    >>> pred = [7, 7, 3, 3, 3, 3]
    >>> sx.metrics.per_class_recall(truth, pred)
    B     0.666667
    NK    0.000000
    T     1.000000
    Name: recall, dtype: float64
    """
    codes_true, classes, codes_pred, _ = _encode_pair(y_true, y_pred)
    cont = _contingency(codes_true, codes_pred).toarray()
    rows, cols = _hungarian(cont)
    matched = np.zeros(cont.shape[0], dtype=np.float64)
    matched[rows] = cont[rows, cols]
    recall = matched / cont.sum(axis=1)
    order = natural_order(classes)
    index = pd.Index([classes[i] for i in order], tupleize_cols=False)
    return pd.Series(recall[order], index=index, name="recall", dtype=np.float64)


def cluster_accuracy(y_true: Any, y_pred: Any) -> float:
    r"""Clustering accuracy (ACC) after Hungarian matching of clusters to classes.

    The fraction of observations whose predicted cluster is matched to their true class, under the
    one-to-one matching of clusters to classes that maximises it — the "ACC" of clustering papers.

    Parameters
    ----------
    y_true
        Ground-truth labels, one per observation (any 1-D array-like of hashable values; no missing
        values; a :class:`pandas.Series`' index is ignored).
    y_pred
        Predicted cluster labels for the same observations. Ids are arbitrary and their number may differ
        from the number of classes (surplus clusters or classes stay unmatched and count as errors).

    Returns
    -------
    Accuracy in ``[0, 1]``.

    Notes
    -----
    .. math::

        \mathrm{ACC} = \max_{m} \frac{1}{N} \sum_{i=1}^{N} \mathbb{1}[\, y_i = m(\hat y_i) \,],

    the maximum taken over one-to-one (partial) maps :math:`m` from clusters to classes, found with
    :func:`scipy.optimize.linear_sum_assignment` on the contingency table.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> sx.metrics.cluster_accuracy(["a", "a", "b", "b", "c"], [2, 2, 0, 0, 0])
    0.8
    """
    codes_true, _, codes_pred, _ = _encode_pair(y_true, y_pred)
    cont = _contingency(codes_true, codes_pred).toarray()
    rows, cols = _hungarian(cont)
    return float(cont[rows, cols].sum() / codes_true.size)
