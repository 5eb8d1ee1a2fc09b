"""open_world_accuracy against a brute-force reference and hand-checked cases."""

from __future__ import annotations

import math
import warnings
from itertools import permutations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scomics_ext as sx

SEEN = ["B", "T", "NK"]
NOVEL = ["DC", "Mono", "Plasma"]
PRED_NOVEL = ["novel_1", "novel_2", "novel_3", "novel_4"]


def _bruteforce(y_true, y_pred, seen):
    """Try every one-to-one (partial) map of novel clusters to novel types; keep the best."""
    seen = set(seen)
    clusters = sorted({p for p in y_pred if p not in seen})
    novel_types = sorted({t for t in y_true if t not in seen})
    size = max(len(clusters), len(novel_types))
    padded = novel_types + [None] * (size - len(novel_types))
    best = None
    for perm in permutations(padded, len(clusters)) if clusters else [()]:
        mapping = dict(zip(clusters, perm))
        correct = [(p == t) if p in seen else (mapping[p] == t) for t, p in zip(y_true, y_pred)]
        if best is None or sum(correct) > sum(best):
            best = correct
    is_seen = [t in seen for t in y_true]
    n_seen = sum(is_seen)
    n_novel = len(y_true) - n_seen
    return {
        "seen": sum(c for c, s in zip(best, is_seen) if s) / n_seen if n_seen else math.nan,
        "novel": sum(c for c, s in zip(best, is_seen) if not s) / n_novel if n_novel else math.nan,
        "overall": sum(best) / len(y_true),
        "n_seen": n_seen,
        "n_novel": n_novel,
    }


def _assert_same(ours, ref):
    assert set(ours) == {"seen", "novel", "overall", "n_seen", "n_novel"}
    for key in ("seen", "novel", "overall"):
        if math.isnan(ref[key]):
            assert math.isnan(ours[key]), key
        else:
            assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
    assert ours["n_seen"] == ref["n_seen"]
    assert ours["n_novel"] == ref["n_novel"]
    assert isinstance(ours["n_seen"], int)
    assert isinstance(ours["n_novel"], int)


@st.composite
def open_world_case(draw):
    n = draw(st.integers(1, 40))
    n_seen_types = draw(st.integers(1, 3))
    seen = SEEN[:n_seen_types]
    truth_pool = draw(st.sampled_from([SEEN + NOVEL, seen, NOVEL, seen + NOVEL[:1]]))
    pred_pool = SEEN + PRED_NOVEL
    y_true = draw(st.lists(st.sampled_from(truth_pool), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.sampled_from(pred_pool), min_size=n, max_size=n))
    return y_true, y_pred, seen


@settings(max_examples=120, deadline=None)
@given(open_world_case())
def test_equals_bruteforce(case):
    y_true, y_pred, seen = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # cases where no seen label occurs at all
        ours = sx.metrics.open_world_accuracy(y_true, y_pred, seen)
    _assert_same(ours, _bruteforce(y_true, y_pred, seen))


def test_perfect_prediction():
    truth = ["B", "T", "B", "DC", "DC", "Mono"]
    pred = ["B", "T", "B", "novel_7", "novel_7", "novel_0"]
    res = sx.metrics.open_world_accuracy(truth, pred, ["B", "T"])
    assert res == {"seen": 1.0, "novel": 1.0, "overall": 1.0, "n_seen": 3, "n_novel": 3}


def test_swapping_novel_cluster_ids_does_not_change_scores():
    rng = np.random.default_rng(1)
    truth = rng.choice(SEEN + NOVEL, 200)
    pred = np.where(rng.random(200) < 0.7, truth, rng.choice(SEEN + NOVEL, 200)).astype(object)
    # rename novel types to cluster ids
    ids = {"DC": "novel_1", "Mono": "novel_2", "Plasma": "novel_3"}
    pred_a = np.array([ids.get(p, p) for p in pred], dtype=object)
    swap = {"novel_1": "novel_3", "novel_2": "novel_1", "novel_3": "novel_2"}
    pred_b = np.array([swap.get(p, p) for p in pred_a], dtype=object)
    a = sx.metrics.open_world_accuracy(truth, pred_a, SEEN)
    b = sx.metrics.open_world_accuracy(truth, pred_b, SEEN)
    assert a == b
    assert 0.5 < a["overall"] < 1.0


def test_novel_cell_labelled_with_seen_name_is_wrong():
    # the DC cell predicted "B" is wrong even though B is a real (seen) type
    res = sx.metrics.open_world_accuracy(["B", "DC", "DC"], ["B", "B", "novel_1"], ["B"])
    assert res["seen"] == 1.0
    assert res["novel"] == 0.5
    assert res["overall"] == pytest.approx(2 / 3)


def test_seen_cell_in_novel_cluster_is_wrong():
    # a novel cluster can only map to a novel type: the B cell in it is wrong, the majority B is irrelevant
    res = sx.metrics.open_world_accuracy(["B", "B", "DC"], ["novel_1", "novel_1", "novel_1"], ["B", "T"])
    assert res["seen"] == 0.0
    assert res["novel"] == 1.0
    assert res["overall"] == pytest.approx(1 / 3)


def test_seen_name_must_match_exactly():
    res = sx.metrics.open_world_accuracy(["B", "T"], ["T", "B"], ["B", "T"])
    assert res["seen"] == 0.0
    assert math.isnan(res["novel"])
    assert res["n_novel"] == 0


def test_no_seen_cells_gives_nan_seen():
    res = sx.metrics.open_world_accuracy(["DC", "DC", "Mono"], ["n1", "n1", "B"], ["B"])
    assert math.isnan(res["seen"])
    assert res["novel"] == pytest.approx(2 / 3)
    assert res["overall"] == pytest.approx(2 / 3)


def test_more_novel_clusters_than_novel_types():
    # two clusters split the DC cells: only one can be matched
    res = sx.metrics.open_world_accuracy(["DC"] * 4 + ["B"], ["n1", "n1", "n1", "n2", "B"], ["B"])
    assert res["novel"] == 0.75
    assert res["overall"] == 0.8


def test_label_containers_and_categories():
    truth = pd.Series(
        pd.Categorical(["B", "T", "DC", "DC"], categories=["T", "B", "DC", "unused"]), index=[9, 8, 7, 6]
    )
    pred = pd.Categorical(["B", "B", "c1", "c1"])
    res = sx.metrics.open_world_accuracy(truth, pred, seen_labels=pd.Index(["B", "T"]))
    assert res["seen"] == 0.5
    assert res["novel"] == 1.0
    # integer labels work too, compared exactly
    res = sx.metrics.open_world_accuracy([0, 1, 5, 5], [0, 1, 100, 100], seen_labels=np.array([0, 1]))
    assert res["overall"] == 1.0


def test_inputs_not_modified():
    truth = np.array(["B", "T", "DC"], dtype=object)
    pred = pd.Series(["B", "x", "y"])
    seen = ["B", "T"]
    t0, p0 = truth.copy(), pred.copy()
    sx.metrics.open_world_accuracy(truth, pred, seen)
    np.testing.assert_array_equal(truth, t0)
    pd.testing.assert_series_equal(pred, p0)
    assert seen == ["B", "T"]


def test_warns_when_no_seen_label_occurs():
    with pytest.warns(UserWarning, match="None of `seen_labels`"):
        sx.metrics.open_world_accuracy(["B", "T"], ["B", "T"], seen_labels=[0, 1])


def test_bad_input():
    f = sx.metrics.open_world_accuracy
    with pytest.raises(ValueError, match=r"`seen_labels` is empty"):
        f(["B"], ["B"], [])
    with pytest.raises(TypeError, match=r"`seen_labels` must be a collection"):
        f(["B"], ["B"], "B")
    with pytest.raises(TypeError, match=r"`seen_labels` must be a collection"):
        f(["B"], ["B"], None)
    with pytest.raises(ValueError, match=r"`seen_labels` contains missing"):
        f(["B"], ["B"], ["B", np.nan])
    with pytest.raises(ValueError, match=r"same length, got 2 and 1"):
        f(["B", "T"], ["B"], ["B"])
    with pytest.raises(ValueError, match=r"`y_true` contains 1 missing"):
        f(["B", None], ["B", "T"], ["B"])
    with pytest.raises(ValueError, match=r"`y_pred` contains 1 missing"):
        f(["B", "T"], ["B", np.nan], ["B"])
    with pytest.raises(ValueError, match=r"`y_true` is empty"):
        f([], [], ["B"])
