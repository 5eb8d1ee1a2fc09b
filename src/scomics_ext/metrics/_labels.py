"""Validation and encoding of label vectors shared by the metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from natsort import index_natsorted

__all__: list[str] = []


def as_label_series(labels: Any, name: str) -> pd.Series:
    """Return ``labels`` as a 1-D :class:`pandas.Series` (index dropped), validated.

    Parameters
    ----------
    labels
        A 1-D array-like of hashable labels: list, tuple, :class:`numpy.ndarray`,
        :class:`pandas.Series`, :class:`pandas.Categorical` or :class:`pandas.Index`.
    name
        How to name ``labels`` in error messages, e.g. ``"y_true"``.

    Raises
    ------
    TypeError
        If ``labels`` is a string, a scalar or a mapping.
    ValueError
        If ``labels`` is not 1-D, is empty or holds missing values (``None``/NaN/``pd.NA``).
    """
    if labels is None or isinstance(labels, str | bytes | dict) or np.isscalar(labels):
        raise TypeError(
            f"`{name}` must be a 1-D array-like of labels (list, numpy array, pandas Series or "
            f"Categorical), got {type(labels).__name__}."
        )
    if isinstance(labels, pd.DataFrame):
        raise ValueError(
            f"`{name}` must be 1-D, got a DataFrame with {labels.shape[1]} columns; pass one column, "
            f'e.g. `adata.obs["cell_type"]`.'
        )
    ndim = getattr(labels, "ndim", 1)
    if ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got an array of shape {np.shape(labels)}.")
    if isinstance(labels, pd.Series):
        ser = labels.reset_index(drop=True)
    else:
        if isinstance(labels, set | frozenset):
            raise TypeError(
                f"`{name}` must be ordered (one label per observation), got a {type(labels).__name__}."
            )
        if isinstance(labels, Iterable) and not hasattr(labels, "__len__"):
            labels = list(labels)  # generators and other one-shot iterables
        ser = pd.Series(labels)
    if len(ser) == 0:
        raise ValueError(f"`{name}` is empty: at least one label is needed.")
    n_missing = int(ser.isna().sum())
    if n_missing:
        raise ValueError(
            f"`{name}` contains {n_missing} missing label(s) (NaN/None) out of {len(ser)}. Drop those "
            "observations from both label vectors first, or give them an explicit label such as 'unknown'."
        )
    return ser


def encode_labels(labels: Any, name: str) -> tuple[np.ndarray, pd.Index]:
    """Validate ``labels`` and return integer codes and the distinct labels.

    Returns
    -------
    codes
        ``int64`` array, ``codes[i]`` is the position of ``labels[i]`` in ``uniques``.
    uniques
        The distinct labels (order of first appearance; categoricals keep only observed categories).
    """
    ser = as_label_series(labels, name)
    try:
        codes, uniques = pd.factorize(ser, sort=False)
    except TypeError as err:  # unhashable entries such as lists
        raise TypeError(f"`{name}` must hold hashable labels (str, int, ...): {err}") from err
    uniques = pd.Index(
        np.asarray(uniques, dtype=object) if isinstance(uniques, pd.CategoricalIndex) else uniques
    )
    return codes.astype(np.int64, copy=False), uniques


def check_same_length(n_a: int, n_b: int, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless two inputs have the same length, naming both lengths."""
    if n_a != n_b:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same length, got {n_a} and {n_b}. "
            "They must describe the same observations in the same order."
        )


def natural_order(uniques: pd.Index) -> np.ndarray:
    """Positions that sort ``uniques`` naturally (``'c2' < 'c10'``), as scanpy sorts categories."""
    return np.asarray(index_natsorted(list(uniques)), dtype=np.int64)
