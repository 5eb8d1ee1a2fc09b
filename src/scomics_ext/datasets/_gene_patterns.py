"""Spatial gene-pattern simulator: genes that follow a few planted spatial patterns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from scomics_ext._constants import Key
from scomics_ext._utils import as_categorical

from ._args import check_float, check_grid_shape, check_int, check_seed
from ._sampling import apply_dropout, nb_csr

#: the pattern families, used in this order (cycling) unless ``pattern_kinds`` is given
PATTERN_KINDS = ("blob", "gradient", "stripes", "ring", "field", "band")
#: patterns are redrawn (up to 100 times) while their |Pearson r| with an earlier pattern exceeds this
_MAX_CORR = 0.6


def grid_coordinates(n_rows: int, n_cols: int, grid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spot coordinates of a square or hexagonal (Visium-like) grid.

    Returns ``(coords, array_row, array_col)``. On the square grid ``coords = (col, row)``. On the
    hexagonal grid, rows are offset by half a spot like Visium: ``array_col = 2 * col + row % 2`` and
    ``coords = (array_col / 2, row * sqrt(3) / 2)``, so all six neighbours are at distance 1.
    """
    r, c = np.divmod(np.arange(n_rows * n_cols), n_cols)
    if grid == "square":
        return np.column_stack([c, r]).astype(np.float64), r, c
    array_col = 2 * c + (r % 2)
    coords = np.column_stack([array_col / 2.0, r * np.sqrt(3.0) / 2.0])
    return coords, r, array_col


def _unit(coords: np.ndarray) -> np.ndarray:
    """Coordinates shifted to start at 0 and scaled by the larger extent (aspect ratio kept)."""
    lo = coords.min(axis=0)
    extent = float(np.max(coords.max(axis=0) - lo)) or 1.0
    return (coords - lo) / extent


def _direction(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, np.pi)
    return np.array([np.cos(a), np.sin(a)])


def _draw_pattern(kind: str, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One pattern of the given family evaluated at unit coordinates ``p`` (n, 2)."""
    span = p.max(axis=0)
    if kind == "blob":  # one or two Gaussian bumps
        f = np.zeros(len(p))
        for _ in range(rng.integers(1, 3)):
            c = rng.uniform(0.15, 0.85, size=2) * span
            w = rng.uniform(0.08, 0.18)
            f += np.exp(-np.sum((p - c) ** 2, axis=1) / (2 * w * w))
    elif kind == "gradient":  # linear ramp along a random direction
        f = p @ _direction(rng)
    elif kind == "stripes":  # 1.5-3 periods of a cosine along a random direction
        f = np.cos(2 * np.pi * rng.uniform(1.5, 3.0) * (p @ _direction(rng)) + rng.uniform(0, 2 * np.pi))
    elif kind == "ring":  # annulus around a random centre
        c = rng.uniform(0.3, 0.7, size=2) * span
        radius = rng.uniform(0.15, 0.3)
        w = rng.uniform(0.04, 0.07)
        f = np.exp(-((np.linalg.norm(p - c, axis=1) - radius) ** 2) / (2 * w * w))
    elif kind == "field":  # smooth Gaussian random field (random Fourier features, length scale ~0.15)
        n_feat = 64
        omega = rng.normal(0.0, 1.0 / rng.uniform(0.12, 0.2), size=(n_feat, 2))
        phase = rng.uniform(0, 2 * np.pi, size=n_feat)
        f = np.cos(p @ omega.T + phase) @ rng.normal(size=n_feat)
    elif kind == "band":  # a layer: a band between two parallel boundaries
        proj = p @ _direction(rng)
        lo, hi = proj.min(), proj.max()
        t1 = lo + rng.uniform(0.2, 0.5) * (hi - lo)
        t2 = t1 + rng.uniform(0.15, 0.3) * (hi - lo)
        s = 0.02 * (hi - lo)
        f = 1 / (1 + np.exp(-(proj - t1) / s)) - 1 / (1 + np.exp(-(proj - t2) / s))
    else:  # pragma: no cover - validated before
        raise ValueError(kind)
    f = f - f.min()
    top = f.max()
    return f / top if top > 0 else f


def _patterns(kinds: list[str], p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros((len(kinds), len(p)))
    for k, kind in enumerate(kinds):
        for _ in range(100):
            f = _draw_pattern(kind, p, rng)
            if f.std() == 0:
                continue
            if k == 0 or np.max(np.abs(np.corrcoef(np.vstack([out[:k], f]))[-1, :-1])) <= _MAX_CORR:
                break
        out[k] = f
    return out


def gene_patterns(
    n_side: int | tuple[int, int] = 30,
    n_genes: int = 500,
    n_patterns: int = 6,
    *,
    grid: str = "square",
    pattern_kinds: Sequence[str] | None = None,
    null_fraction: float = 0.0,
    signal: float = 1.0,
    mean_counts: float = 1.0,
    noise: float = 0.3,
    dropout: float = 0.1,
    library_sd: float = 0.2,
    random_state: int = 0,
) -> AnnData:
    """Simulate spatial transcriptomics whose genes follow a few planted spatial patterns.

    ``n_patterns`` pattern images ``f_k`` (values in ``[0, 1]``) are drawn on the spots, cycling
    through six distinct families (or those in ``pattern_kinds``):

    * ``"blob"``: one or two Gaussian bumps at random places (width 0.08-0.18 of the grid);
    * ``"gradient"``: a linear ramp along a random direction;
    * ``"stripes"``: a cosine with 1.5-3 periods along a random direction;
    * ``"ring"``: an annulus around a random centre;
    * ``"field"``: a smooth Gaussian random field (length scale ~0.15 of the grid);
    * ``"band"``: a layer between two parallel sharp boundaries (cortex-like).

    A pattern is redrawn (up to 100 times) while it correlates with an earlier one by more than 0.6,
    so the planted patterns are distinct. The genes are split evenly (at random) among the patterns;
    with ``null_fraction > 0`` that fraction of the genes is flat (truth ``"null"``). Gene ``g`` of
    pattern ``k`` in spot ``s`` has counts ``NB(mean = s_s * m_g * exp(a_g * (f_k(s) - 0.5)),
    dispersion = noise)`` with a gene-specific scale ``m_g`` (log-normal, median ``mean_counts``,
    sd of the log 1) and amplitude ``a_g = signal * U(1, 2.5)``, spot size factors ``s_s``
    (log-normal, sd ``library_sd``), after which each non-zero count is dropped with probability
    ``dropout``.

    Parameters
    ----------
    n_side
        Grid size: an integer (square) or ``(n_rows, n_cols)``; e.g. ``(78, 64)`` is a full Visium
        capture area (4,992 spots) with ``grid="hex"``.
    n_genes
        Number of genes.
    n_patterns
        Number of planted patterns ``K`` (``1 <= K <= n_genes``).
    grid
        ``"square"`` (coordinates ``(col, row)``) or ``"hex"``: Visium-like offset rows, with
        ``obs["array_row"]``/``obs["array_col"]`` in Visium's convention (``array_col = 2 * col +
        row % 2``) and ``obsm["spatial"] = (array_col / 2, row * sqrt(3) / 2)``.
    pattern_kinds
        Families to cycle through instead of all six, e.g. ``("blob", "band")``.
    null_fraction
        Fraction of genes without a pattern, in ``[0, 1)``.
    signal
        Scale of the gene amplitudes (``> 0``).
    mean_counts
        Median of the gene scales ``m_g`` (``> 0``).
    noise
        NB dispersion ``1 / size``; ``0`` gives Poisson counts.
    dropout
        Probability that a non-zero count is set to zero, in ``[0, 1)``.
    library_sd
        Standard deviation of the log size factors (``>= 0``).
    random_state
        Seed of the :class:`numpy.random.Generator`; the same seed gives identical data.

    Returns
    -------
    anndata.AnnData
        Spots x genes.

        - ``X``: counts, CSR float32 (integer values).
        - ``obsm["spatial"]``, ``obs["array_row"]``, ``obs["array_col"]``.
        - ``var["truth"]``: categorical pattern of each gene, ``"pattern_1"`` ... ``"pattern_K"``
          (and ``"null"``); ``var["pattern_kind"]``, ``var["scale"]`` (``m_g``) and
          ``var["amplitude"]`` (``a_g``).
        - ``uns["gene_patterns"]``: ``"patterns"`` (``K x n_spots`` float32, the true pattern
          images), ``"pattern_names"``, ``"pattern_kinds"`` and ``"params"``.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> adata = sx.datasets.gene_patterns(n_side=30, n_genes=300, n_patterns=5, random_state=0)
    >>> adata.shape
    (900, 300)
    >>> adata.var["truth"].value_counts().to_dict()["pattern_1"]
    60
    >>> adata.uns["gene_patterns"]["patterns"].shape
    (5, 900)
    """
    n_rows, n_cols = check_grid_shape(n_side, "n_side", minimum=2)
    n_genes = check_int(n_genes, "n_genes", minimum=1)
    n_patterns = check_int(n_patterns, "n_patterns", minimum=1)
    if n_patterns > n_genes:
        raise ValueError(f"`n_patterns`={n_patterns} exceeds `n_genes`={n_genes}; lower it.")
    if grid not in ("square", "hex"):
        raise ValueError(f"`grid` must be one of ['square', 'hex'], got {grid!r}.")
    if pattern_kinds is None:
        kinds_cycle = list(PATTERN_KINDS)
    else:
        if isinstance(pattern_kinds, str) or not isinstance(pattern_kinds, Sequence) or not pattern_kinds:
            raise TypeError(
                f"`pattern_kinds` must be a non-empty sequence of names from {list(PATTERN_KINDS)}."
            )
        bad = [k for k in pattern_kinds if k not in PATTERN_KINDS]
        if bad:
            raise ValueError(f"`pattern_kinds` has unknown entries {bad}; choose from {list(PATTERN_KINDS)}.")
        kinds_cycle = list(pattern_kinds)
    null_fraction = check_float(null_fraction, "null_fraction", low=0.0, high=1.0, high_open=True)
    signal = check_float(signal, "signal", low=0.0, high=10.0, low_open=True)
    mean_counts = check_float(mean_counts, "mean_counts", low=0.0, high=1e4, low_open=True)
    noise = check_float(noise, "noise", low=0.0, high=100.0)
    dropout = check_float(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    library_sd = check_float(library_sd, "library_sd", low=0.0, high=3.0)
    random_state = check_seed(random_state)
    n_null = round(null_fraction * n_genes)
    if n_genes - n_null < n_patterns:
        raise ValueError(
            f"Only {n_genes - n_null} patterned genes for `n_patterns`={n_patterns}; lower `null_fraction`."
        )

    n_spots = n_rows * n_cols
    start = logg.info(f"simulating {n_genes} genes with {n_patterns} patterns on {n_spots} spots")
    rng = np.random.default_rng(random_state)
    coords, array_row, array_col = grid_coordinates(n_rows, n_cols, grid)
    kinds = [kinds_cycle[k % len(kinds_cycle)] for k in range(n_patterns)]
    patterns = _patterns(kinds, _unit(coords), rng)

    n_patterned = n_genes - n_null
    member = np.concatenate([np.full(n_null, -1), np.arange(n_patterned) % n_patterns])
    member = member[rng.permutation(n_genes)]
    scale = np.exp(rng.normal(np.log(mean_counts), 1.0, size=n_genes))
    amplitude = np.where(member >= 0, signal * rng.uniform(1.0, 2.5, size=n_genes), 0.0)
    log_size = rng.normal(0.0, library_sd, size=n_spots)
    size_factor = np.exp(log_size - log_size.mean())
    # log-mean = log m_g + a_g (f_k - 0.5); null genes get the flat profile 0.5 (last row)
    pattern_rows = np.vstack([patterns, np.full(n_spots, 0.5)])
    gene_row = np.where(member >= 0, member, n_patterns)
    log_gene = (np.log(scale) - 0.5 * amplitude)[None, :]

    def mean_fn(lo: int, hi: int) -> np.ndarray:
        f = pattern_rows[:, lo:hi].T[:, gene_row]
        mu = np.exp(log_gene + amplitude[None, :] * f) * size_factor[lo:hi, None]
        return mu.astype(np.float32)

    theta = np.inf if noise == 0 else 1.0 / noise
    X = nb_csr(mean_fn, n_spots, n_genes, theta, rng)
    X = apply_dropout(X, dropout, rng)

    names = [f"pattern_{k}" for k in range(1, n_patterns + 1)]
    truth_names = np.where(member >= 0, np.asarray(names, dtype=object)[np.maximum(member, 0)], "null")
    var_names = pd.Index([f"gene_{j}" for j in range(n_genes)])
    var = pd.DataFrame(
        {
            Key.truth: as_categorical(truth_names, index=var_names),
            "pattern_kind": pd.Categorical(
                np.where(member >= 0, np.asarray(kinds, dtype=object)[np.maximum(member, 0)], "null")
            ),
            "scale": scale.astype(np.float32),
            "amplitude": amplitude.astype(np.float32),
        },
        index=var_names,
    )
    obs = pd.DataFrame(
        {"array_row": array_row.astype(np.int64), "array_col": array_col.astype(np.int64)},
        index=pd.Index([f"spot_{i}" for i in range(n_spots)]),
    )
    adata = AnnData(X=X, obs=obs, var=var)
    adata.obsm[Key.obsm.spatial] = coords
    adata.uns["gene_patterns"] = {
        "patterns": patterns.astype(np.float32),
        "pattern_names": names,
        "pattern_kinds": kinds,
        "params": {
            "n_side": [n_rows, n_cols],
            "n_genes": n_genes,
            "n_patterns": n_patterns,
            "grid": grid,
            "pattern_kinds": kinds_cycle,
            "null_fraction": null_fraction,
            "signal": signal,
            "mean_counts": mean_counts,
            "noise": noise,
            "dropout": dropout,
            "library_sd": library_sd,
            "random_state": random_state,
        },
    }
    logg.info("    finished", time=start)
    return adata
