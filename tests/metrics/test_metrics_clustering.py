"""clustering_scores, per_class_recall and cluster_accuracy against sklearn and brute force."""

from __future__ import annotations

from itertools import combinations, permutations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

import scomics_ext as sx

KEYS = {"mi", "nmi", "ami", "fmi", "ari", "v_measure", "homogeneity", "completeness", "f1", "jaccard"}


@st.composite
def label_pairs(draw, min_size=2, max_size=60, max_classes=6):
    """Two integer label vectors of the same length with 1..max_classes distinct values each."""
    n = draw(st.integers(min_size, max_size))
    k_true = draw(st.integers(1, max_classes))
    k_pred = draw(st.integers(1, max_classes))
    y_true = draw(st.lists(st.integers(0, k_true - 1), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.integers(0, k_pred - 1), min_size=n, max_size=n))
    return np.array(y_true), np.array(y_pred)


def _sklearn_scores(y_true, y_pred) -> dict[str, float]:
    h, c, v = skm.homogeneity_completeness_v_measure(y_true, y_pred)
    return {
        "mi": skm.mutual_info_score(y_true, y_pred),
        "nmi": skm.normalized_mutual_info_score(y_true, y_pred),
        "ami": skm.adjusted_mutual_info_score(y_true, y_pred),
        "fmi": skm.fowlkes_mallows_score(y_true, y_pred),
        "ari": skm.adjusted_rand_score(y_true, y_pred),
        "v_measure": v,
        "homogeneity": h,
        "completeness": c,
    }


def _pair_f1_jaccard_bruteforce(y_true, y_pred) -> tuple[float, float]:
    tp = fp = fn = 0
    for i, j in combinations(range(len(y_true)), 2):
        same_t = y_true[i] == y_true[j]
        same_p = y_pred[i] == y_pred[j]
        tp += same_t and same_p
        fp += same_p and not same_t
        fn += same_t and not same_p
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)


def _matchings_bruteforce(y_true, y_pred):
    """All one-to-one (partial) cluster->class matchings: (n_correct, recall per class) for each."""
    classes = sorted(set(y_true))
    clusters = sorted(set(y_pred))
    size = max(len(classes), len(clusters))
    padded_clusters = clusters + [None] * (size - len(clusters))
    out = []
    for perm in permutations(padded_clusters):
        match = dict(zip(classes, perm))  # class -> cluster (or None)
        per_class = {}
        for c in classes:
            members = [p for t, p in zip(y_true, y_pred) if t == c]
            per_class[c] = sum(p == match[c] for p in members) / len(members)
        n_correct = sum(match[t] == p for t, p in zip(y_true, y_pred))
        out.append((n_correct, per_class))
    return out


@settings(max_examples=80, deadline=None)
@given(label_pairs())
def test_scores_equal_sklearn(pair):
    y_true, y_pred = pair
    ours = sx.metrics.clustering_scores(y_true, y_pred)
    assert set(ours) == KEYS
    assert all(type(v) is float for v in ours.values())
    for key, expected in _sklearn_scores(y_true, y_pred).items():
        assert ours[key] == pytest.approx(expected, abs=1e-9), key


@settings(max_examples=60, deadline=None)
@given(label_pairs(max_size=40))
def test_pair_counting_equals_bruteforce(pair):
    y_true, y_pred = pair
    f1, jac = _pair_f1_jaccard_bruteforce(y_true, y_pred)
    ours = sx.metrics.clustering_scores(y_true, y_pred)
    assert ours["f1"] == pytest.approx(f1, abs=1e-9)
    assert ours["jaccard"] == pytest.approx(jac, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(label_pairs(max_size=40), st.randoms(use_true_random=False))
def test_scores_invariant_to_label_type_and_ids(pair, rnd):
    """Strings, categoricals and Series with a shuffled index give the same scores as integer codes."""
    y_true, y_pred = pair
    names = ["T cell", "B", "NK", "c10", "c2", "DC"]
    rnd.shuffle(names)
    t_str = pd.Categorical([names[i] for i in y_true])
    p_series = pd.Series([f"cl{v * 7}" for v in y_pred], index=rnd.sample(range(1000), len(y_pred)))
    a = sx.metrics.clustering_scores(y_true, y_pred)
    b = sx.metrics.clustering_scores(t_str, p_series)
    assert a == pytest.approx(b, abs=1e-12)


def test_hand_example():
    # classes {B: 0,1} {T: 2,3} {NK: 4,5}; clusters {1: 0,1} {0: 2,3,4} {2: 5}
    scores = sx.metrics.clustering_scores(["B", "B", "T", "T", "NK", "NK"], [1, 1, 0, 0, 0, 2])
    # pairs together in truth: 3, in prediction: 1 + 3 = 4, in both: 2 -> fp 2, fn 1
    assert scores["f1"] == pytest.approx(4 / 7)
    assert scores["jaccard"] == pytest.approx(2 / 5)


def test_perfect_and_degenerate():
    perfect = sx.metrics.clustering_scores(["a", "a", "b"], [5, 5, 9])
    for key in KEYS - {"mi"}:
        assert perfect[key] == pytest.approx(1.0), key
    # all singletons in both: every pair agrees (apart) -> F1 = Jaccard = 1 (documented convention)
    single = sx.metrics.clustering_scores([0, 1, 2], ["x", "y", "z"])
    assert single["f1"] == single["jaccard"] == 1.0
    assert single["ari"] == 1.0
    one = sx.metrics.clustering_scores(["a"], ["b"])
    assert one["nmi"] == 1.0


def test_linear_time_on_large_input():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 20, 300_000)
    y_pred = np.where(rng.random(300_000) < 0.8, y_true, rng.integers(0, 25, 300_000))
    scores = sx.metrics.clustering_scores(y_true, y_pred)
    assert scores["ari"] == pytest.approx(skm.adjusted_rand_score(y_true, y_pred), abs=1e-9)
    assert 0 < scores["jaccard"] < scores["f1"] < 1


@settings(max_examples=60, deadline=None)
@given(label_pairs(max_size=30, max_classes=5))
def test_accuracy_and_recall_equal_bruteforce(pair):
    y_true, y_pred = pair
    candidates = _matchings_bruteforce(list(y_true), list(y_pred))
    best = max(n for n, _ in candidates)
    acc = sx.metrics.cluster_accuracy(y_true, y_pred)
    assert acc == pytest.approx(best / len(y_true), abs=1e-12)

    recall = sx.metrics.per_class_recall(y_true, y_pred)
    assert recall.name == "recall"
    assert list(recall.index) == sorted(set(y_true.tolist()))
    optimal = [pc for n, pc in candidates if n == best]
    assert any(all(abs(recall[c] - pc[c]) < 1e-12 for c in pc) for pc in optimal)
    # ACC is the size-weighted mean of the recalls
    sizes = pd.Series(y_true).value_counts()
    assert (recall * sizes[recall.index]).sum() / len(y_true) == pytest.approx(acc)


def test_per_class_recall_hand_example_and_natural_order():
    truth = ["c10", "c10", "c10", "c2", "c2", "c2", "c1"]
    pred = ["x", "x", "y", "z", "z", "x", "z"]
    rec = sx.metrics.per_class_recall(truth, pred)
    assert list(rec.index) == ["c1", "c2", "c10"]
    # unique optimum: x -> c10 (2 of 3), z -> c2 (2 of 3); c1 unmatched (z is taken, y never in c1)
    assert rec.tolist() == pytest.approx([0.0, 2 / 3, 2 / 3])
    assert rec.dtype == np.float64
    assert sx.metrics.cluster_accuracy(truth, pred) == pytest.approx(4 / 7)


def test_more_clusters_than_classes():
    truth = [0, 0, 0, 0, 1, 1]
    pred = ["a", "a", "b", "b", "c", "c"]
    assert sx.metrics.cluster_accuracy(truth, pred) == pytest.approx(4 / 6)
    assert sx.metrics.per_class_recall(truth, pred).tolist() == [0.5, 1.0]


def test_inputs_not_modified():
    t = pd.Series(["a", "b", "a", "c"], index=[3, 1, 2, 0], dtype="category")
    p = np.array([1, 2, 1, 1])
    t0, p0 = t.copy(), p.copy()
    sx.metrics.clustering_scores(t, p)
    sx.metrics.per_class_recall(t, p)
    sx.metrics.cluster_accuracy(t, p)
    pd.testing.assert_series_equal(t, t0)
    np.testing.assert_array_equal(p, p0)


FUNCS = [sx.metrics.clustering_scores, sx.metrics.per_class_recall, sx.metrics.cluster_accuracy]


@pytest.mark.parametrize("func", FUNCS)
def test_bad_input(func):
    with pytest.raises(ValueError, match=r"`y_true` contains 1 missing"):
        func(["a", np.nan, "b"], [0, 1, 2])
    with pytest.raises(ValueError, match=r"`y_pred` contains 2 missing"):
        func(["a", "b", "b"], pd.Series([0, None, np.nan]))
    with pytest.raises(ValueError, match=r"`y_pred` contains 1 missing"):
        func(["a", "b"], pd.Categorical(["x", None]))
    with pytest.raises(ValueError, match=r"same length, got 3 and 2"):
        func(["a", "b", "b"], [0, 1])
    with pytest.raises(ValueError, match=r"`y_true` is empty"):
        func([], [])
    with pytest.raises(ValueError, match=r"`y_pred` must be 1-D"):
        func([0, 1], np.zeros((2, 2)))
    with pytest.raises(TypeError, match=r"`y_true` must be a 1-D array-like"):
        func("abc", [0, 1, 2])
    with pytest.raises(TypeError, match=r"`y_true` must be ordered"):
        func({"a", "b"}, [0, 1])
    with pytest.raises(TypeError, match=r"hashable"):
        func([[0], [1]], [0, 1])
