"""Boundary refinement of spatial domains by the spots' own features.

The GCN encoders smooth every spot with its spatial neighbours, so a spot on the edge of a domain is pulled
towards the domain next to it; the clustering of ``Z`` then gives edge spots to the wrong side. The spot's own
(unsmoothed) features often still say where it belongs. :func:`refine_boundaries` trains a classifier on the
*interior* spots (those whose whole spatial neighbourhood shares their domain) and lets each *boundary* spot take,
among the domains present in its neighbourhood, the one the classifier gives a clearly higher probability;
rounds repeat on the new labels until nothing moves.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "DEFAULT_REFINE_MAX_ITER",
    "DEFAULT_REFINE_MIN_PROB",
    "DEFAULT_REFINE_NEIGHBORS",
    "refine_boundaries",
]

#: spatial neighbours that decide whether a spot is interior (the first ring of a hexagonal grid)
DEFAULT_REFINE_NEIGHBORS = 6
#: a boundary spot changes domain only when the classifier gives the new domain at least this probability
#: (renormalised over the domains of its neighbourhood)
DEFAULT_REFINE_MIN_PROB = 0.99
#: rounds of refinement (each refits the classifier on the new interior); stops early when nothing moves
DEFAULT_REFINE_MAX_ITER = 10
#: the classifier is fitted on at most this many interior spots (a random subset above it)
MAX_FIT_SPOTS = 20_000


def refine_boundaries(
    labels: np.ndarray,
    coords: np.ndarray,
    features: np.ndarray,
    *,
    n_neighbors: int = DEFAULT_REFINE_NEIGHBORS,
    min_prob: float = DEFAULT_REFINE_MIN_PROB,
    max_iter: int = DEFAULT_REFINE_MAX_ITER,
    random_state: int = 0,
) -> np.ndarray:
    """Reassign boundary spots to the neighbouring domain their own features support.

    Each round:

    1. A spot is *interior* when all its ``n_neighbors`` nearest spots (by ``coords``) share its label,
       *boundary* otherwise.
    2. A multinomial logistic regression (scikit-learn defaults, classes weighted inversely to their
       size so that a small domain is modelled as well as a large one) is trained on the interior spots'
       ``features`` with their labels (on a random subset of 20,000 of them when there are more).
    3. A boundary spot's candidates are the labels of itself and its neighbours; it takes the candidate
       with the highest predicted probability (renormalised over the candidates) when that probability
       is at least ``min_prob``, and keeps its label otherwise.

    Rounds repeat, each on the labels of the one before, until no spot moves or after ``max_iter``
    rounds: a boundary that the encoders shifted by several spots moves back one ring per round.
    Only boundary spots change, and only to a domain that touches them, so domains are never created;
    a domain left without interior spots keeps its spots, so none vanishes.

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
    max_iter
        Most rounds (``1``: a single pass).
    random_state
        Seed of the subset the classifier is fitted on (only used above 20,000 interior spots).

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
    >>> (refine_boundaries(labels, xy, feats) == truth).mean()
    np.float64(1.0)
    """
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels, dtype=np.int64)
    coords = np.asarray(coords, dtype=np.float64)
    features = np.asarray(features, dtype=np.float64)
    if not 0 < min_prob <= 1:
        raise ValueError(f"`min_prob` must be in (0, 1], got {min_prob!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive integer, got {max_iter!r}.")
    out = labels.copy()
    k = int(min(n_neighbors, labels.size - 1))
    if k < 1:
        return out
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)
    rng = np.random.default_rng(random_state)
    for _ in range(int(max_iter)):
        new = _refine_round(out, idx, features, min_prob, rng)
        if np.array_equal(new, out):
            break
        out = new
    return out


def _refine_round(
    labels: np.ndarray, idx: np.ndarray, features: np.ndarray, min_prob: float, rng: np.random.Generator
) -> np.ndarray:
    """One round of :func:`refine_boundaries` on the neighbour indices ``idx`` (each spot first)."""
    from sklearn.linear_model import LogisticRegression

    out = labels.copy()
    hood = labels[idx]  # the spot itself and its neighbours
    interior = (hood == labels[:, None]).all(axis=1)
    classes = np.unique(labels[interior])
    boundary = np.flatnonzero(~interior)
    if classes.size < 2 or boundary.size == 0:
        return out
    fit = np.flatnonzero(interior)
    if fit.size > MAX_FIT_SPOTS:
        fit = np.sort(rng.choice(fit, MAX_FIT_SPOTS, replace=False))
        classes = np.unique(labels[fit])
        if classes.size < 2:
            return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the probabilities are still usable
        clf = LogisticRegression(max_iter=1000, class_weight="balanced").fit(features[fit], labels[fit])
    n_labels = int(labels.max()) + 1
    prob = np.zeros((boundary.size, n_labels))
    prob[:, classes] = clf.predict_proba(features[boundary])
    cand = np.zeros((boundary.size, n_labels), dtype=bool)
    cand[np.repeat(np.arange(boundary.size), idx.shape[1]), hood[boundary].ravel()] = True
    prob = np.where(cand, prob, 0.0)
    total = prob.sum(axis=1)
    best = prob.argmax(axis=1)
    conf = prob[np.arange(boundary.size), best] / np.where(total > 0, total, 1.0)
    # a domain without interior spots is not a class of the classifier: its spots stay, so none vanishes
    move = (total > 0) & (conf >= min_prob) & np.isin(labels[boundary], classes)
    out[boundary[move]] = best[move]
    return out
