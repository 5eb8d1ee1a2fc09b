"""Builders and fixtures for the `pp` tests: a square lattice, a Visium-like hex lattice, free coordinates.

Imported by the test modules (`from _pp_data import ...`); kept out of a conftest.py so that the top-level
`conftest` module name stays unambiguous.
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy import sparse


def square_coords(
    n_x: int, n_y: int, *, pitch: float = 100.0, jitter: float = 0.0, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = np.array([[x, y] for y in range(n_y) for x in range(n_x)], dtype=float) * pitch + 500.0
    return xy + rng.uniform(-jitter, jitter, size=xy.shape) * pitch


def hex_coords(n_rows: int, n_cols: int, *, pitch: float = 50.0, odd_first: bool = False) -> tuple:
    """Visium-like offset lattice: (array_row, array_col) with matching parity, pixel coordinates (x, y)."""
    rows, cols = [], []
    for r in range(n_rows):
        for c in range(2 * n_cols):
            if (c + r + int(odd_first)) % 2 == 0:
                rows.append(r)
                cols.append(c)
    rows, cols = np.array(rows), np.array(cols)
    xy = np.column_stack([cols * pitch / 2, rows * pitch * np.sqrt(3) / 2]) + 1000.0
    return rows, cols, xy


def make_adata(coords: np.ndarray, n_vars: int = 12, seed: int = 0, sparse_x: bool = False) -> AnnData:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, size=(coords.shape[0], n_vars)).astype(np.float32)
    X = np.log1p(counts)
    adata = AnnData(sparse.csr_matrix(X) if sparse_x else X)
    adata.obs_names = [f"spot{i}" for i in range(adata.n_obs)]
    adata.var_names = [f"g{j}" for j in range(n_vars)]
    adata.layers["counts"] = counts
    adata.obsm["spatial"] = coords
    return adata


def grid_adata() -> AnnData:
    """21 x 16 square lattice (ST-like, jittered), log-normalised X, counts layer."""
    return make_adata(square_coords(21, 16, jitter=0.1))


def hex_adata() -> AnnData:
    """Visium-like offset lattice, 10 rows of 12 spots, with ``obs["array_row"/"array_col"]``."""
    rows, cols, xy = hex_coords(10, 12)
    adata = make_adata(xy)
    adata.obs["array_row"] = rows
    adata.obs["array_col"] = cols
    return adata


def free_adata(seed: int = 0) -> AnnData:
    """Random free coordinates (Slide-seq like)."""
    return make_adata(np.random.default_rng(seed).uniform(0, 1000, size=(400, 2)))
