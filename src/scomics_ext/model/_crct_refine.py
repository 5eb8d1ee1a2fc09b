"""Boundary refinement of spatial domains by the spots' own features.

The GCN encoders smooth every spot with its spatial neighbours, so a spot on the edge of a domain is pulled
towards the domain next to it; the clustering of ``Z`` then gives edge spots to the wrong side. The spot's own
(unsmoothed) features often still say where it belongs. :func:`refine_boundaries` trains a classifier on the
*interior* spots (those whose whole spatial neighbourhood shares their domain) and lets each *boundary* spot take,
among the domains present in its neighbourhood, the one the classifier gives a clearly higher probability.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["DEFAULT_REFINE_MIN_PROB", "DEFAULT_REFINE_NEIGHBORS", "refine_boundaries"]

#: spatial neighbours that decide whether a spot is interior (the first ring of a hexagonal grid)
DEFAULT_REFINE_NEIGHBORS = 6
#: a boundary spot changes domain only when the classifier gives the new domain at least this probability
#: (renormalised over the domains of its neighbourhood)
DEFAULT_REFINE_MIN_PROB = 0.999


def refine_boundaries(
    labels: np.ndarray,
    coords: np.ndarray,
    features: np.ndarray,
    *,
    n_neighbors: int = DEFAULT_REFINE_NEIGHBORS,
    min_prob: float = DEFAULT_REFINE_MIN_PROB,
) -> np.ndarray:
    """Reassign boundary spots to the neighbouring domain their own features support.

    1. A spot is *interior* when all its ``n_neighbors`` nearest spots (by ``coords``) share its label,
       *boundary* otherwise.
    2. A multinomial logistic regression (scikit-learn defaults) is trained on the interior spots'
       ``features`` with their labels.
    3. A boundary spot's candidates are the labels of itself and its neighbours; it takes the candidate
       with the highest predicted probability (renormalised over the candidates) when that probability
       is at least ``min_prob``, and keeps its label otherwise.

    Only boundary spots can change, and only to a domain that touches them, so domains are never
    created, and a small domain loses a spot only where the classifier is confident.

    Parameters
    ----------
    labels
        ``(n_obs,)`` integer domain labels.
    coords
        ``(n_obs, 2)`` spatial coordinates.
    features
        ``(n_obs, d)`` the spots' own features (e.g. the per-modality PCA, concatenated).
    n_neighbors
        Spatial neighbours of the interior test.
    min_prob
        Probability a boundary spot's new domain needs, in ``(0, 1]``.

    Returns
    -------
    ``(n_obs,)`` int64 labels (a copy; unchanged when fewer than two domains have interior spots).

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.model._crct_refine import refine_boundaries
    >>> xy = np.array([(i, j) for i in range(10) for j in range(10)], dtype=float)
    >>> truth = (xy[:, 0] >= 5).astype(int)
    >>> rng = np.random.default_rng(0)
    >>> feats = truth[:, None] * 8.0 + rng.normal(size=(100, 3))
    >>> labels = (xy[:, 0] >= 6).astype(int)  # the column x = 5 is on the wrong side
    >>> (refine_boundaries(labels, xy, feats, min_prob=0.99) == truth).mean()
    np.float64(1.0)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels, dtype=np.int64)
    coords = np.asarray(coords, dtype=np.float64)
    features = np.asarray(features, dtype=np.float64)
    if not 0 < min_prob <= 1:
        raise ValueError(f"`min_prob` must be in (0, 1], got {min_prob!r}.")
    out = labels.copy()
    n = labels.size
    k = int(min(n_neighbors, n - 1))
    if k < 1:
        return out
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)
    hood = labels[idx]  # the spot itself and its neighbours
    interior = (hood == labels[:, None]).all(axis=1)
    classes = np.unique(labels[interior])
    boundary = np.flatnonzero(~interior)
    if classes.size < 2 or boundary.size == 0:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the probabilities are still usable
        clf = LogisticRegression(max_iter=1000).fit(features[interior], labels[interior])
    n_labels = int(labels.max()) + 1
    prob = np.zeros((boundary.size, n_labels))
    prob[:, classes] = clf.predict_proba(features[boundary])
    cand = np.zeros((boundary.size, n_labels), dtype=bool)
    cand[np.repeat(np.arange(boundary.size), k + 1), hood[boundary].ravel()] = True
    prob = np.where(cand, prob, 0.0)
    total = prob.sum(axis=1)
    best = prob.argmax(axis=1)
    conf = prob[np.arange(boundary.size), best] / np.where(total > 0, total, 1.0)
    move = (total > 0) & (conf >= min_prob)
    out[boundary[move]] = best[move]
    return out
