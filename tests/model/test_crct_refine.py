"""Boundary refinement of CRCT's domains by the spots' own features."""

from __future__ import annotations

import numpy as np
import pytest

from scomics_ext.model._crct_refine import refine_boundaries


def _grid(n: int = 12) -> np.ndarray:
    return np.array([(i, j) for i in range(n) for j in range(n)], dtype=float)


def _blocks(xy: np.ndarray) -> np.ndarray:
    """Three domains: left half, right-top quarter, right-bottom quarter."""
    return np.where(xy[:, 0] < 6, 0, np.where(xy[:, 1] < 6, 1, 2)).astype(np.int64)


def test_misplaced_edges_move_back_to_their_domain():
    xy = _grid()
    truth = _blocks(xy)
    rng = np.random.default_rng(0)
    centres = 10.0 * np.eye(3, 5)  # well separated domains
    feats = centres[truth] + rng.normal(size=(truth.size, 5))
    labels = truth.copy()
    labels[(xy[:, 0] == 6)] = 0  # the first column of the right half smoothed into the left domain
    assert (labels != truth).sum() == 12
    out = refine_boundaries(labels, xy, feats)
    np.testing.assert_array_equal(out, truth)
    # with weaker signal a strict threshold moves fewer spots, and never a wrong one
    weak = 1.5 * np.eye(3, 5)[truth] + rng.normal(size=(truth.size, 5))
    loose = refine_boundaries(labels, xy, weak, min_prob=0.5, max_iter=1)
    strict = refine_boundaries(labels, xy, weak, min_prob=0.99, max_iter=1)
    assert (strict != labels).sum() < (loose != labels).sum()
    assert np.all((strict == truth) | (strict == labels))
    assert labels[xy[:, 0] == 6].tolist() == [0] * 12  # input untouched


def test_rounds_move_a_boundary_shifted_by_several_spots():
    xy = _grid()
    truth = _blocks(xy)
    feats = 10.0 * np.eye(3, 5)[truth] + np.random.default_rng(2).normal(size=(truth.size, 5))
    labels = truth.copy()
    labels[(xy[:, 0] == 6) | (xy[:, 0] == 7)] = 0  # two columns of the right half in the left domain
    one = refine_boundaries(labels, xy, feats, max_iter=1)
    full = refine_boundaries(labels, xy, feats)
    # each round fixes the spots now on the boundary; later rounds reach deeper into the shifted band
    assert (full != truth).sum() < (one != truth).sum() < (labels != truth).sum() == 24
    assert np.all((full == truth) | (full == labels))


def test_classifier_subset_above_the_cap_is_seeded(monkeypatch):
    import scomics_ext.model._crct_refine as mod

    monkeypatch.setattr(mod, "MAX_FIT_SPOTS", 40)
    xy = _grid()
    truth = _blocks(xy)
    feats = 3.0 * np.eye(3, 5)[truth] + np.random.default_rng(3).normal(size=(truth.size, 5))
    labels = truth.copy()
    labels[(xy[:, 0] == 6)] = 0
    a = refine_boundaries(labels, xy, feats, random_state=1)
    np.testing.assert_array_equal(a, refine_boundaries(labels, xy, feats, random_state=1))
    assert (a != truth).sum() < 12


def test_uninformative_features_change_nothing_and_interior_never_moves():
    xy = _grid()
    labels = _blocks(xy)
    feats = np.random.default_rng(1).normal(size=(labels.size, 5))  # no domain signal
    np.testing.assert_array_equal(refine_boundaries(labels, xy, feats), labels)
    # even with a permissive threshold, one round moves only boundary spots, and only to a touching domain
    out = refine_boundaries(labels, xy, feats, min_prob=0.34, max_iter=1)
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=5).fit(xy).kneighbors(xy)
    interior = (labels[idx] == labels[:, None]).all(1)
    np.testing.assert_array_equal(out[interior], labels[interior])
    moved = np.flatnonzero(out != labels)
    assert all(out[i] in labels[idx[i]] for i in moved)


def test_degenerate_inputs_return_a_copy():
    xy = _grid(4)
    one = np.zeros(16, dtype=np.int64)
    out = refine_boundaries(one, xy, np.ones((16, 2)))
    np.testing.assert_array_equal(out, one)
    assert out is not one
    with pytest.raises(ValueError, match="min_prob"):
        refine_boundaries(one, xy, np.ones((16, 2)), min_prob=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        refine_boundaries(one, xy, np.ones((16, 2)), max_iter=0)
