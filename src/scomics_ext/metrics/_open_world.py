"""Open-world (novel class discovery) accuracy, scDET's evaluation protocol."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics.cluster import contingency_matrix

from ._labels import as_label_series, check_same_length

__all__ = ["open_world_accuracy"]


def _seen_list(seen_labels: Any) -> list[Any]:
    """Validate ``seen_labels`` and return them as a list."""
    if seen_labels is None or isinstance(seen_labels, str | bytes) or not isinstance(seen_labels, Iterable):
        raise TypeError(
            "`seen_labels` must be a collection of the reference (seen) cell-type names, e.g. "
            f'["B", "T"]; got {type(seen_labels).__name__}.'
        )
    seen = list(seen_labels)
    if len(seen) == 0:
        raise ValueError(
            "`seen_labels` is empty: pass the cell types present in the reference, e.g. "
            'ref.obs["cell_type"].unique().'
        )
    if pd.isna(pd.Series(seen, dtype=object)).any():
        raise ValueError("`seen_labels` contains missing values (NaN/None); pass only cell-type names.")
    return seen


def open_world_accuracy(y_true: Any, y_pred: Any, seen_labels: Iterable[Any]) -> dict[str, float]:
    r"""Seen, novel and overall accuracy of an open-world annotation (scDET's protocol).

    Query cells carry true labels, some of types seen in the reference, some of novel types. Each
    prediction is either the name of a seen type or the label of a novel cluster (any label not in
    ``seen_labels``, e.g. ``"novel_1"``). Seen names are taken at face value; novel clusters are
    matched to the novel types by the Hungarian algorithm (see Notes).

    Parameters
    ----------
    y_true
        True labels of the query cells (any 1-D array-like of hashable values; no missing values; a
        :class:`pandas.Series`' index is ignored).
    y_pred
        Predicted labels for the same cells in the same order: seen type names or novel-cluster labels.
    seen_labels
        The cell types present in the reference (the "seen" types). Labels of ``y_true`` not in this
        collection are novel types; labels of ``y_pred`` not in it are novel clusters. Must be non-empty;
        values are compared exactly (``1`` and ``"1"`` differ).

    Returns
    -------
    ``seen``
        Accuracy on cells of seen types (``nan`` when there are none).
    ``novel``
        Accuracy on cells of novel types under the optimal cluster-to-type matching (``nan`` when there
        are none).
    ``overall``
        Accuracy on all query cells.
    ``n_seen``, ``n_novel``
        Numbers of query cells of seen and of novel types (ints).

    Raises
    ------
    ValueError
        If a label vector is empty, not 1-D or holds missing values, the lengths differ, or
        ``seen_labels`` is empty or holds missing values.
    TypeError
        If ``seen_labels`` is a string or not a collection.

    Notes
    -----
    Let :math:`S` be ``seen_labels``. A cell :math:`i` with true label :math:`y_i` and prediction
    :math:`\hat y_i` is counted correct when

    * :math:`\hat y_i \in S` (a seen name, fixed to its own class) and :math:`\hat y_i = y_i`; a cell
      predicted as a seen type is wrong whatever its type if the name differs — in particular a
      novel-type cell labelled with a seen name is always wrong;
    * :math:`\hat y_i \notin S` (a novel cluster) and :math:`m(\hat y_i) = y_i`, where :math:`m` is a
      one-to-one (partial) map from the predicted novel clusters to the true types not in :math:`S`. A
      seen-type cell put in a novel cluster is always wrong.

    :math:`m` maximises the number of correct cells over all query cells
    (:func:`scipy.optimize.linear_sum_assignment` on the contingency table of novel clusters against
    novel types; surplus clusters or types stay unmatched). Then

    .. math::

        \mathrm{seen} = \frac{\#\{\text{correct}, y_i \in S\}}{\#\{y_i \in S\}}, \quad
        \mathrm{novel} = \frac{\#\{\text{correct}, y_i \notin S\}}{\#\{y_i \notin S\}}, \quad
        \mathrm{overall} = \frac{\#\{\text{correct}\}}{N}.

    ``novel`` is the Hungarian-matched clustering accuracy of the novel-type cells and ``overall`` the
    Hungarian-matched accuracy over all query cells with the seen slots fixed to their names, as in the
    scDET / scGAD papers. A warning is issued when no value of ``seen_labels`` occurs in ``y_true`` nor in
    ``y_pred`` (often a type mismatch, e.g. integer codes against names).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> truth = ["B", "B", "T", "T", "NK", "NK", "DC", "DC"]
    >>> pred = ["B", "T", "T", "B", "novel_1", "novel_1", "novel_2", "B"]
    >>> res = sx.metrics.open_world_accuracy(truth, pred, seen_labels=["B", "T"])
    >>> res["seen"], res["novel"], res["overall"], res["n_seen"], res["n_novel"]
    (0.5, 0.75, 0.625, 4, 4)
    """
    t = as_label_series(y_true, "y_true")
    p = as_label_series(y_pred, "y_pred")
    check_same_length(len(t), len(p), "y_true", "y_pred")
    seen = _seen_list(seen_labels)
    n = len(t)

    # one code space for truth and predictions, so that "same label" is "same code"
    try:
        codes, uniques = pd.factorize(
            np.concatenate([t.to_numpy(dtype=object), p.to_numpy(dtype=object)]), sort=False
        )
    except TypeError as err:
        raise TypeError(f"`y_true` and `y_pred` must hold hashable labels: {err}") from err
    ct, cp = codes[:n], codes[n:]
    is_seen_code = pd.Index(uniques, dtype=object).isin(pd.Index(seen, dtype=object))
    if not is_seen_code.any():
        warnings.warn(
            f"None of `seen_labels` ({seen[:5]}{'...' if len(seen) > 5 else ''}) occurs in `y_true` or "
            "`y_pred`; every query cell is treated as novel. Check that the labels have the same type "
            "(e.g. names rather than integer codes).",
            UserWarning,
            stacklevel=2,
        )
    true_seen = is_seen_code[ct]
    pred_seen = is_seen_code[cp]

    correct = pred_seen & (ct == cp)
    novel_pairs = ~pred_seen & ~true_seen
    if novel_pairs.any():
        sub_t, sub_p = ct[novel_pairs], cp[novel_pairs]
        _, cls_idx = np.unique(sub_t, return_inverse=True)
        clu, clu_idx = np.unique(sub_p, return_inverse=True)
        cont = contingency_matrix(cls_idx, clu_idx, sparse=False, dtype=np.int64)
        rows, cols = linear_sum_assignment(cont, maximize=True)
        mapped = np.full(clu.size, -1, dtype=np.int64)
        mapped[cols] = rows
        correct[novel_pairs] = mapped[clu_idx] == cls_idx

    n_seen = int(true_seen.sum())
    n_novel = n - n_seen
    return {
        "seen": float(correct[true_seen].mean()) if n_seen else float("nan"),
        "novel": float(correct[~true_seen].mean()) if n_novel else float("nan"),
        "overall": float(correct.mean()),
        "n_seen": n_seen,
        "n_novel": n_novel,
    }
