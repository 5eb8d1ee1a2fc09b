"""Shared input checks.

Every public function validates its input up front through these helpers, so that bad input fails
before anything is computed or written, with a message that names the offending field and the fix.
None of them modifies its argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

try:  # mudata is a hard dependency, but keep the import local to type checks
    from mudata import MuData
except ImportError:  # pragma: no cover
    MuData = None  # type: ignore[assignment,misc]


def check_anndata(adata: Any, name: str = "adata") -> AnnData:
    """Raise ``TypeError`` unless ``adata`` is an :class:`~anndata.AnnData`."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"`{name}` must be an AnnData object, got {type(adata).__name__}.")
    return adata


def check_mudata(mdata: Any, name: str = "mdata") -> MuData:
    """Raise ``TypeError`` unless ``mdata`` is a :class:`~mudata.MuData`."""
    if MuData is None or not isinstance(mdata, MuData):
        raise TypeError(f"`{name}` must be a MuData object, got {type(mdata).__name__}.")
    return mdata


def _values(X: Any) -> np.ndarray:
    """The stored values of a dense or sparse matrix (no densification)."""
    if sparse.issparse(X):
        if X.format not in ("csr", "csc", "coo", "bsr"):  # lil/dok store python lists in .data
            X = X.tocsr()
        return np.asarray(X.data)
    return np.asarray(X)


def check_finite(X: Any, what: str) -> None:
    """Raise ``ValueError`` if ``X`` (dense or sparse) holds NaN or infinite values.

    Parameters
    ----------
    X
        Array or sparse matrix.
    what
        How to name ``X`` in the message, e.g. ``"adata.X"``.
    """
    vals = _values(X)
    if not np.issubdtype(vals.dtype, np.number) and vals.dtype != bool:
        raise TypeError(f"{what} must be numeric, got dtype {vals.dtype}.")
    if np.issubdtype(vals.dtype, np.floating) and not np.all(np.isfinite(vals)):
        n_nan = int(np.isnan(vals).sum())
        n_inf = int(np.isinf(vals).sum())
        raise ValueError(
            f"{what} contains {n_nan} NaN and {n_inf} infinite values. "
            "Remove or impute them (e.g. `np.nan_to_num`) before running this function."
        )


def check_nonnegative(X: Any, what: str, *, hint: str | None = None) -> None:
    """Raise ``ValueError`` if ``X`` holds negative values (e.g. scaled data where counts are needed).

    ``hint`` replaces the default advice (pass the counts layer) in the message.
    """
    vals = _values(X)
    if vals.size and vals.min() < 0:
        hint = hint or (
            "this step needs raw counts or other non-negative data. Pass the counts layer with `layer=` "
            "(e.g. layer='counts')."
        )
        raise ValueError(f"{what} contains negative values (min {vals.min():.3g}); {hint}")


def is_count_matrix(X: Any, n_check: int = 100_000) -> bool:
    """Whether ``X`` looks like raw counts: non-negative integers (checked on up to ``n_check`` values)."""
    vals = _values(X).ravel()
    if vals.size > n_check:
        vals = vals[np.linspace(0, vals.size - 1, n_check).astype(int)]
    if vals.size == 0:
        return True
    if vals.min() < 0:
        return False
    return bool(np.all(np.equal(np.mod(vals, 1), 0)))


def check_counts(X: Any, what: str) -> None:
    """Raise ``ValueError`` unless ``X`` is finite, non-negative and integer valued."""
    check_finite(X, what)
    check_nonnegative(X, what)
    if not is_count_matrix(X):
        raise ValueError(
            f"{what} does not hold raw counts (non-integer values found). This step needs raw counts: "
            "pass the counts layer with `layer=` (e.g. layer='counts')."
        )


def get_matrix(adata: AnnData, *, layer: str | None = None, use_rep: str | None = None, name: str = "adata"):
    """Select ``X``, a layer or an ``obsm`` representation (scanpy's ``_get_obs_rep`` contract).

    Parameters
    ----------
    adata
        The object to read from.
    layer
        Key in ``adata.layers``; ``None`` means ``adata.X``.
    use_rep
        Key in ``adata.obsm``; mutually exclusive with ``layer``.
    name
        How to name ``adata`` in messages.

    Returns
    -------
    The matrix (not copied).
    """
    if layer is not None and use_rep is not None:
        raise ValueError("Pass only one of `layer` and `use_rep`.")
    if use_rep is not None:
        if use_rep not in adata.obsm:
            raise KeyError(
                f"{name}.obsm[{use_rep!r}] is missing (available: {sorted(adata.obsm.keys())}). "
                "Compute it first or pass another `use_rep`."
            )
        X = adata.obsm[use_rep]
        return X.to_numpy() if isinstance(X, pd.DataFrame) else X
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(
                f"{name}.layers[{layer!r}] is missing (available: {sorted(adata.layers.keys())}). "
                "Pass an existing layer or `layer=None` to use .X."
            )
        return adata.layers[layer]
    if adata.X is None:
        raise ValueError(f"{name}.X is empty; pass `layer=` naming the data to use.")
    return adata.X


def get_spatial(adata: AnnData, spatial_key: str = "spatial", *, name: str = "adata") -> np.ndarray:
    """Return validated spatial coordinates ``adata.obsm[spatial_key]`` as a float64 array.

    Raises
    ------
    KeyError
        If ``obsm[spatial_key]`` is missing.
    ValueError
        If the coordinates are not an ``(n_obs, 2)`` or ``(n_obs, 3)`` array of finite numbers.
    """
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"{name}.obsm[{spatial_key!r}] is missing: spatial coordinates are required. Store them as an "
            f"(n_obs, 2) array in {name}.obsm[{spatial_key!r}] or pass `spatial_key=` naming where they are."
        )
    coords = adata.obsm[spatial_key]
    coords = coords.to_numpy() if isinstance(coords, pd.DataFrame) else np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(
            f"{name}.obsm[{spatial_key!r}] must have shape (n_obs, 2) or (n_obs, 3), got {coords.shape}."
        )
    if not np.issubdtype(coords.dtype, np.number):
        raise TypeError(f"{name}.obsm[{spatial_key!r}] must be numeric, got dtype {coords.dtype}.")
    coords = coords.astype(np.float64, copy=False)
    check_finite(coords, f"{name}.obsm[{spatial_key!r}]")
    return coords


def check_unique_coordinates(coords: np.ndarray, what: str = "obsm['spatial']") -> None:
    """Raise ``ValueError`` if two observations share the same coordinates."""
    uniq = np.unique(coords, axis=0)
    if uniq.shape[0] != coords.shape[0]:
        raise ValueError(
            f"{what} has {coords.shape[0] - uniq.shape[0]} duplicated coordinates; each spot needs its own "
            "position. Aggregate duplicated spots or bin free coordinates onto a grid first."
        )


def check_n_clusters(
    n_clusters: Any, n_obs: int, *, name: str = "n_clusters", what: str = "observations"
) -> int:
    """Validate a cluster count: an integer in ``[2, n_obs]``."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int | np.integer):
        raise TypeError(f"`{name}` must be an integer, got {type(n_clusters).__name__}.")
    if n_clusters < 2:
        raise ValueError(f"`{name}` must be at least 2, got {n_clusters}.")
    if n_clusters > n_obs:
        raise ValueError(f"`{name}`={n_clusters} exceeds the number of {what} ({n_obs}); lower it.")
    return int(n_clusters)


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Validate an integer parameter ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an integer, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return int(value)


def check_in(value: Any, allowed: Iterable[Any], name: str) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    return value


def check_labels(adata: AnnData, labels_key: str, *, name: str = "adata") -> pd.Series:
    """Return ``adata.obs[labels_key]``; error if missing or entirely NaN."""
    if labels_key not in adata.obs:
        raise KeyError(
            f"{name}.obs[{labels_key!r}] is missing (available columns: {list(adata.obs.columns)}). "
            "Pass `labels_key=` naming the column with the cell labels."
        )
    labels = adata.obs[labels_key]
    if labels.isna().all():
        raise ValueError(f"{name}.obs[{labels_key!r}] holds only missing values; it must contain labels.")
    return labels


def check_modalities(mdata: MuData, modalities: Sequence[str] | None) -> list[str]:
    """Resolve and validate the modality names of ``mdata`` to use.

    Raises ``KeyError`` for an unknown modality and ``ValueError`` when the chosen modalities do not
    hold the same observations in the same order.
    """
    check_mudata(mdata)
    available = list(mdata.mod.keys())
    mods = available if modalities is None else list(modalities)
    if len(mods) == 0:
        raise ValueError("`modalities` is empty; name at least one modality of the MuData.")
    for m in mods:
        if m not in mdata.mod:
            raise KeyError(f"Modality {m!r} is not in mdata.mod (available: {available}).")
    ref = mdata.mod[mods[0]].obs_names
    for m in mods[1:]:
        names = mdata.mod[m].obs_names
        if len(names) != len(ref) or not names.equals(ref):
            common = len(ref.intersection(names))
            raise ValueError(
                f"Modalities {mods[0]!r} ({len(ref)} obs) and {m!r} ({len(names)} obs) do not hold the same "
                f"observations in the same order ({common} shared). Subset them to the shared observations, "
                "e.g. `mu.pp.intersect_obs(mdata)`."
            )
    return mods


def check_same_shape(a: np.ndarray, expected: tuple[int, ...], what: str) -> None:
    """Raise ``ValueError`` if ``a.shape`` differs from ``expected``."""
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{what} must have shape {tuple(expected)}, got {tuple(a.shape)}.")


def check_not_all_zero(X: Any, what: str) -> None:
    """Raise ``ValueError`` if ``X`` has no non-zero entry."""
    vals = _values(X)
    if vals.size == 0 or not np.any(vals):
        raise ValueError(f"{what} is all zeros: there is no signal to work with. Check the input layer.")
