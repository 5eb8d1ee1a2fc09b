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
    out = refine_boundaries(labels, xy, feats, min_prob=0.99)
    np.testing.assert_array_equal(out, truth)
    strict = refine_boundaries(labels, xy, feats)  # the default 0.999 moves fewer, never a wrong one
    assert (strict != truth).sum() < 12
    assert np.all((strict == truth) | (strict == labels))
    assert labels[xy[:, 0] == 6].tolist() == [0] * 12  # input untouched


def test_uninformative_features_change_nothing_and_interior_never_moves():
    xy = _grid()
    labels = _blocks(xy)
    feats = np.random.default_rng(1).normal(size=(labels.size, 5))  # no domain signal
    np.testing.assert_array_equal(refine_boundaries(labels, xy, feats), labels)
    # even with a permissive threshold, only boundary spots move, and only to a touching domain
    out = refine_boundaries(labels, xy, feats, min_prob=0.34)
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=7).fit(xy).kneighbors(xy)
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
