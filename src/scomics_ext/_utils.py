"""Small shared helpers: seeding, progress bars, labels, and the one place that writes results."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from anndata import AnnData
from natsort import natsorted
from scanpy import logging as logg

from ._settings import settings

T = TypeVar("T")


def seed_everything(random_state: int) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy ``Generator`` for local use.

    Parameters
    ----------
    random_state
        The seed. The same seed gives the same result on CPU.
    """
    random.seed(random_state)
    np.random.seed(random_state % (2**32))  # noqa: NPY002 - legacy global state used by some libraries
    try:
        import torch

        torch.manual_seed(random_state)
    except ImportError:  # pragma: no cover
        pass
    return np.random.default_rng(random_state)


def progress(iterable: Iterable[T], *, enabled: bool | None = None, desc: str = "", total: int | None = None):
    """Wrap ``iterable`` in a tqdm progress bar unless disabled (``settings.progress_bar`` by default)."""
    from tqdm.auto import tqdm

    enabled = settings.progress_bar if enabled is None else enabled
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False)


def as_categorical(labels: Any, index: pd.Index | None = None) -> pd.Categorical | pd.Series:
    """Labels as a categorical of strings with natsorted categories (scanpy's convention).

    Missing values (``None``/NaN) stay missing.
    """
    ser = pd.Series(np.asarray(labels, dtype=object), index=index, copy=True)
    mask = ser.isna()
    ser[~mask] = ser[~mask].map(str)
    cats = natsorted(pd.unique(ser[~mask]))
    out = pd.Categorical(ser.where(~mask, None), categories=cats)
    return pd.Series(out, index=index) if index is not None else out


def write_results(
    adata: AnnData,
    *,
    obs: Mapping[str, Any] | None = None,
    var: Mapping[str, Any] | None = None,
    obsm: Mapping[str, Any] | None = None,
    varm: Mapping[str, Any] | None = None,
    obsp: Mapping[str, Any] | None = None,
    uns: Mapping[str, Any] | None = None,
    layers: Mapping[str, Any] | None = None,
) -> None:
    """Write computed results into ``adata`` in one step and log what was added.

    This is the single place results are written: callers compute everything first and call this last,
    so a failure during computation leaves the user's object untouched. Shapes are checked before the
    first write, so this function itself either writes everything or nothing.
    """
    n_obs, n_vars = adata.n_obs, adata.n_vars
    checks = [
        (obs, n_obs, "obs"),
        (var, n_vars, "var"),
        (obsm, n_obs, "obsm"),
        (varm, n_vars, "varm"),
        (layers, n_obs, "layers"),
    ]
    for mapping, n, attr in checks:
        for key, value in (mapping or {}).items():
            length = value.shape[0] if hasattr(value, "shape") else len(value)
            if length != n:
                raise ValueError(f"Internal error: {attr}[{key!r}] has length {length}, expected {n}.")
    for key, value in (obsp or {}).items():
        if tuple(value.shape) != (n_obs, n_obs):
            raise ValueError(
                f"Internal error: obsp[{key!r}] has shape {value.shape}, expected {(n_obs, n_obs)}."
            )

    added = []
    for key, value in (obs or {}).items():
        adata.obs[key] = value.array if isinstance(value, pd.Series) else value
        added.append(f"'obs[{key!r}]'")
    for key, value in (var or {}).items():
        adata.var[key] = value.array if isinstance(value, pd.Series) else value
        added.append(f"'var[{key!r}]'")
    for attr, mapping in (("obsm", obsm), ("varm", varm), ("obsp", obsp), ("layers", layers)):
        for key, value in (mapping or {}).items():
            getattr(adata, attr)[key] = value
            added.append(f"'{attr}[{key!r}]'")
    for key, value in (uns or {}).items():
        adata.uns[key] = value
        added.append(f"'uns[{key!r}]'")
    if added:
        logg.info("    added\n    " + "\n    ".join(added))


@contextmanager
def quiet_scvi() -> Iterator[None]:
    """Silence scvi-tools' INFO messages of field registration ("Generating sequential column names")."""
    lg = logging.getLogger("scvi")
    level = lg.level
    lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lg.setLevel(level)
