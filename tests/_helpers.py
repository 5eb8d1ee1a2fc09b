"""Test helpers importable from any test module (``from _helpers import ...``)."""

from __future__ import annotations

import hashlib
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

REPO_ROOT = Path(__file__).resolve().parents[1]


def _hash_array(h: Any, x: Any) -> None:
    if sparse.issparse(x):
        x = x.tocsr()
        for part in (x.data, x.indices, x.indptr):
            h.update(np.ascontiguousarray(part).tobytes())
        h.update(str(x.shape).encode())
    elif isinstance(x, pd.DataFrame):
        h.update(pickle.dumps(x))
    else:
        arr = np.asarray(x)
        h.update(str((arr.shape, arr.dtype)).encode())
        h.update(arr.tobytes() if arr.dtype != object else pickle.dumps(arr))


def _hash_uns(h: Any, d: Any) -> None:
    if isinstance(d, dict):
        for k in sorted(d):
            h.update(str(k).encode())
            _hash_uns(h, d[k])
    elif isinstance(d, np.ndarray | pd.DataFrame) or sparse.issparse(d):
        _hash_array(h, d)
    else:
        h.update(pickle.dumps(d))


def fingerprint(obj: Any) -> str:
    """A hash of everything an AnnData/MuData holds (X, layers, obs/var, obsm/varm/obsp/varp, uns)."""
    h = hashlib.sha256()
    if isinstance(obj, AnnData):
        h.update(str(obj.shape).encode())
        if obj.X is not None:
            _hash_array(h, obj.X)
        h.update(pickle.dumps(obj.obs))
        h.update(pickle.dumps(obj.var))
        for attr in ("layers", "obsm", "varm", "obsp", "varp"):
            mapping = getattr(obj, attr)
            for k in sorted(mapping.keys()):
                h.update(f"{attr}:{k}".encode())
                _hash_array(h, mapping[k])
        _hash_uns(h, dict(obj.uns))
        return h.hexdigest()
    # MuData
    h.update(pickle.dumps(obj.obs))
    for attr in ("obsm", "obsp"):
        mapping = getattr(obj, attr)
        for k in sorted(mapping.keys()):
            h.update(f"{attr}:{k}".encode())
            _hash_array(h, mapping[k])
    _hash_uns(h, dict(obj.uns))
    for name in sorted(obj.mod):
        h.update(name.encode())
        h.update(fingerprint(obj.mod[name]).encode())
    return h.hexdigest()


@contextmanager
def assert_unchanged(*objs: Any):
    """Assert that the given AnnData/MuData objects are identical before and after the block."""
    before = [fingerprint(o) for o in objs]
    try:
        yield
    finally:
        after = [fingerprint(o) for o in objs]
        for i, (b, a) in enumerate(zip(before, after)):
            assert b == a, f"object #{i} was modified"
