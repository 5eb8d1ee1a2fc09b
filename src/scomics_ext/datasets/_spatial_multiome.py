"""Spatial multi-omics simulator in the spirit of the SpatialGlue simulation ("ggblocks")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mudata
import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from scomics_ext._constants import MODALITY_ALIASES, Key
from scomics_ext._utils import as_categorical

from ._args import check_float, check_int, check_seed
from ._sampling import nb_csr, nb_dense

#: the four 6x6 block patterns ("ggblocks", Griffiths & Ghahramani; used by Townes et al. and SpatialGlue)
_BLOCKS = (
    ((0, 0), ((0, 1, 0), (1, 1, 1), (0, 1, 0))),  # block_1: plus, top left
    ((0, 3), ((1, 1, 1), (1, 0, 1), (1, 1, 1))),  # block_2: ring, top right
    ((3, 0), ((1, 0, 0), (1, 1, 0), (1, 1, 1))),  # block_3: triangle, bottom left
    ((3, 3), ((1, 1, 1), (0, 1, 0), (0, 1, 0))),  # block_4: T, bottom right
)
_TEMPLATE_SIDE = 6

#: per-kind defaults: number of features, log-normal base mean (median, sd of the log), NB size,
#: marker features per visible class (fraction of the features), feature-name prefix, sparse storage
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "rna": {"n_features": 1000, "median": 0.3, "sdlog": 1.0, "theta": 2.0, "markers": 0.05, "prefix": "gene"},
    "adt": {
        "n_features": 100,
        "median": 30.0,
        "sdlog": 0.6,
        "theta": 5.0,
        "markers": 0.06,
        "prefix": "protein",
    },
    "atac": {
        "n_features": 1000,
        "median": 0.08,
        "sdlog": 0.6,
        "theta": 1.0,
        "markers": 0.05,
        "prefix": "peak",
    },
}
_SPARSE_KINDS = ("rna", "atac")


def ggblocks_template() -> np.ndarray:
    """The 6x6 class template: 0 = background, 1-4 = the four block patterns."""
    tpl = np.zeros((_TEMPLATE_SIDE, _TEMPLATE_SIDE), dtype=np.int64)
    for k, ((r0, c0), pattern) in enumerate(_BLOCKS, start=1):
        tpl[r0 : r0 + 3, c0 : c0 + 3][np.asarray(pattern, dtype=bool)] = k
    return tpl


def _grid_labels(n_side: int) -> np.ndarray:
    """Template upscaled to ``n_side x n_side`` by nearest neighbour; flattened row-major."""
    idx = (np.arange(n_side) * _TEMPLATE_SIDE) // n_side
    return ggblocks_template()[np.ix_(idx, idx)].ravel()


def _place_rare(
    labels: np.ndarray, n_side: int, n_rare: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Overwrite ``n_rare`` compact discs of exactly ``size`` spots with new class ids 5, 6, ...

    Centres are drawn uniformly inside the grid (a radius away from the border) with rejection of
    overlapping discs. Returns the new labels and the centres, shape ``(n_rare, 2)`` as (row, col).
    """
    labels = labels.copy()
    centres = np.zeros((n_rare, 2))
    if n_rare == 0:
        return labels, centres
    radius = np.sqrt(size / np.pi)
    lo, hi = radius, n_side - 1 - radius
    if hi < lo:
        raise ValueError(
            f"`rare_fraction` gives rare classes of {size} spots, too large for a {n_side}x{n_side} grid; "
            "lower `rare_fraction` or raise `n_side`."
        )
    for k in range(n_rare):
        for _ in range(2000):
            c = rng.uniform(lo, hi, size=2)
            if k == 0 or np.min(np.linalg.norm(centres[:k] - c, axis=1)) >= 2 * radius + 2:
                centres[k] = c
                break
        else:
            raise ValueError(
                f"Cannot place {n_rare} non-overlapping rare blobs of {size} spots on a {n_side}x{n_side} grid; "
                "lower `n_rare` or `rare_fraction`, or raise `n_side`."
            )
    rows, cols = np.divmod(np.arange(labels.size), n_side)
    taken = np.zeros(labels.size, dtype=bool)
    for k in range(n_rare):
        d = (rows - centres[k, 0]) ** 2 + (cols - centres[k, 1]) ** 2
        d[taken] = np.inf
        members = np.argpartition(d, size - 1)[:size]
        labels[members] = 5 + k
        taken[members] = True
    return labels, centres


def _visibility(n_classes: int, n_mod: int, complementary: bool) -> np.ndarray:
    """Boolean ``(n_mod, n_classes)``: which classes have marker features in which modality.

    Background (class 0) has none anywhere. With ``complementary``: one modality -> all classes;
    two modalities -> non-background class ``k`` (0-based) only in modality ``k % 2``; three or more ->
    class ``k`` in every modality except ``k % n_mod``.
    """
    vis = np.zeros((n_mod, n_classes), dtype=bool)
    for k in range(n_classes - 1):
        c = k + 1
        if not complementary or n_mod == 1:
            vis[:, c] = True
        elif n_mod == 2:
            vis[k % 2, c] = True
        else:
            vis[:, c] = True
            vis[k % n_mod, c] = False
    return vis


def _resolve_modalities(modalities: Any) -> list[tuple[str, str]]:
    if isinstance(modalities, str) or not isinstance(modalities, Sequence):
        raise TypeError(
            "`modalities` must be a sequence of modality names, e.g. ('rna', 'adt'), "
            f"got {type(modalities).__name__}."
        )
    names = [m for m in modalities]
    if len(names) == 0:
        raise ValueError("`modalities` is empty; pass at least one of 'rna', 'adt', 'atac'.")
    if len(set(names)) != len(names):
        raise ValueError(f"`modalities` has duplicated names: {names}.")
    out = []
    for name in names:
        if not isinstance(name, str) or name.lower() not in MODALITY_ALIASES:
            raise ValueError(
                f"`modalities` entry {name!r} is not a known modality; use 'rna', 'adt' or 'atac' "
                f"(aliases: {sorted(MODALITY_ALIASES)})."
            )
        out.append((name, MODALITY_ALIASES[name.lower()]))
    return out


def _resolve_n_features(
    n_features: Any, mods: list[tuple[str, str]], n_visible: np.ndarray
) -> dict[str, int]:
    given: Mapping[str, Any]
    if n_features is None:
        given = {}
    elif isinstance(n_features, Mapping):
        given = n_features
        unknown = set(given) - {name for name, _ in mods}
        if unknown:
            raise ValueError(
                f"`n_features` has keys {sorted(unknown)} that are not in `modalities` "
                f"{[name for name, _ in mods]}."
            )
    else:
        raise TypeError(
            "`n_features` must be a dict mapping modality names to feature counts (or None), "
            f"got {type(n_features).__name__}."
        )
    out = {}
    for (name, kind), nvis in zip(mods, n_visible):
        value = given.get(name, _KIND_DEFAULTS[kind]["n_features"])
        minimum = int(nvis) + 1
        out[name] = check_int(value, f"n_features[{name!r}]", minimum=max(minimum, 2))
    return out


def spatial_multiome(
    n_side: int = 36,
    modalities: Sequence[str] = ("rna", "adt", "atac"),
    *,
    n_features: Mapping[str, int] | None = None,
    n_rare: int = 2,
    rare_fraction: float = 0.02,
    complementary: bool = True,
    signal: float = 1.0,
    n_noise_factors: int = 3,
    noise: float = 1.0,
    library_sd: float = 0.2,
    counts_layer: bool = True,
    random_state: int = 0,
) -> mudata.MuData:
    """Simulate spatial multi-omics data with planted domains, rare niches and complementary modalities.

    The design follows the simulation of SpatialGlue (Long et al. 2024), itself after the "ggblocks"
    of Townes et al.: a background class and four block patterns (a plus, a ring, a triangle and a
    "T") drawn on a 6x6 template and upscaled by nearest neighbour to an ``n_side x n_side`` grid. At
    ``n_side=36`` the class sizes are exactly those of the published simulation (432/180/288/216/180).

    On top of the blocks, ``n_rare`` compact round blobs of new classes (``"rare_1"``, ...) of exactly
    ``round(rare_fraction * n_side**2)`` spots each are placed at seeded positions inside the grid
    (overwriting what was there; they never overlap).

    Counts of every modality are negative binomial, ``NB(mean = s_i * exp(b_j + sum of effects),
    size = theta)``, with

    * a per-feature base level ``b_j`` (log-normal means with medians RNA 0.3, ADT 30, ATAC 0.08;
      marker features are raised to at least the median); NB sizes ``theta``: RNA 2, ADT 5, ATAC 1;
    * **spatial factors**: each non-background class raises its own disjoint set of marker features
      (about 5-6 % of the features per class) by a log fold change ``signal * U(1.2, 2.0)`` - but only
      in the modalities where the class is *visible*;
    * **non-spatial factors**: every spot belongs to one of ``n_noise_factors`` factors or none
      (uniformly at random); each factor raises a random 10 % of the features of every modality by
      ``noise * U(0.5, 1.0)``;
    * a per-spot size factor ``s_i`` (log-normal, sd ``library_sd``).

    **Complementary modalities** (``complementary=True``): with one modality every class is visible;
    with two, non-background class number ``k`` (0-based, in the order block_1..block_4, rare_1, ...)
    is visible only in modality ``k % 2``; with three or more, it is visible in every modality except
    ``k % n_modalities``. A class that is invisible in a modality looks exactly like the background
    there, so no modality alone separates all classes (when there are at least as many
    non-background classes as modalities), while all modalities together separate every class
    (each class has its own markers somewhere). ``complementary=False`` makes every class
    visible in every modality. The visibility table is stored in ``uns["simulation"]["visible"]``.

    Parameters
    ----------
    n_side
        Side of the square grid; ``n_side**2`` spots. Any size >= 6; 317 gives ~100k spots.
    modalities
        Names of the modalities to simulate, kept verbatim as the keys of ``mdata.mod``. Each must be
        ``"rna"``, ``"adt"`` or ``"atac"`` or a common alias (``"protein"``, ``"peaks"``, ``"gex"``...).
    n_features
        Features per modality, e.g. ``{"rna": 2000}``; defaults: RNA 1000, ADT 100, ATAC 1000.
    n_rare
        Number of rare classes (``>= 0``).
    rare_fraction
        Fraction of the spots covered by *each* rare class, in ``(0, 0.1]``.
    complementary
        Make the modalities complementary (see above) instead of redundant.
    signal
        Scale of the marker log fold changes (``> 0``); lower values make the task harder.
    n_noise_factors
        Number of non-spatial factors (``>= 0``).
    noise
        Scale of the non-spatial factors' log fold changes (``>= 0``).
    library_sd
        Standard deviation of the log size factors (``>= 0``).
    counts_layer
        Also store a copy of the counts in ``layers["counts"]`` of every modality (doubles the memory of
        the count matrices; pass ``False`` for very large grids).
    random_state
        Seed of the :class:`numpy.random.Generator`; the same seed gives identical data.

    Returns
    -------
    mudata.MuData
        One :class:`~anndata.AnnData` per modality, with identical ``obs_names`` (``"spot_0"``, ...).

        - ``mod[name].X`` holds the counts: CSR float32 (integer values) for RNA/ATAC, dense float32
          for ADT; ``layers["counts"]`` holds a copy when ``counts_layer``.
        - ``mod[name].obsm["spatial"]`` and ``mdata.obsm["spatial"]``: float grid coordinates
          ``(col, row)``.
        - ``obs["truth"]`` (in ``mdata.obs`` and in every modality): categorical class names
          ``"background"``, ``"block_1"`` ... ``"block_4"``, ``"rare_1"``, ...;
          ``mdata.obs["noise_factor"]`` is the non-spatial factor of each spot (0 = none).
        - ``mod[name].var["marker_of"]``: the class a feature is a marker of (``""`` if none).
        - ``mdata.uns["simulation"]``: all parameters, the class sizes and the visibility table.

    Notes
    -----
    How hard it is, at the defaults (36x36, three modalities): a logistic regression on the
    log1p-PCA of all modalities recovers the classes with ARI > 0.9, while any single modality
    reaches < 85 % accuracy; without rare classes, k-means on the concatenated PCAs reaches
    ARI ~1, but with them k-means tends to split large classes instead of finding the rare ones -
    the rare niches are what spatial and multi-modal methods must recover.

    Generating 100,000 spots (``n_side=317``) with RNA + ADT takes a few seconds and < 2 GB.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> mdata = sx.datasets.spatial_multiome(n_side=36, modalities=("rna", "adt"), random_state=0)
    >>> mdata.mod["rna"].shape, mdata.mod["adt"].shape
    ((1296, 1000), (1296, 100))
    >>> int((mdata.obs["truth"] == "rare_1").sum())  # round(0.02 * 36**2) spots
    26
    """
    n_side = check_int(n_side, "n_side", minimum=_TEMPLATE_SIDE)
    mods = _resolve_modalities(modalities)
    n_rare = check_int(n_rare, "n_rare", minimum=0, maximum=20)
    rare_fraction = check_float(rare_fraction, "rare_fraction", low=0.0, high=0.1, low_open=True)
    if not isinstance(complementary, bool | np.bool_):
        raise TypeError(f"`complementary` must be a bool, got {type(complementary).__name__}.")
    signal = check_float(signal, "signal", low=0.0, high=10.0, low_open=True)
    n_noise_factors = check_int(n_noise_factors, "n_noise_factors", minimum=0, maximum=50)
    noise = check_float(noise, "noise", low=0.0, high=10.0)
    library_sd = check_float(library_sd, "library_sd", low=0.0, high=3.0)
    if not isinstance(counts_layer, bool | np.bool_):
        raise TypeError(f"`counts_layer` must be a bool, got {type(counts_layer).__name__}.")
    random_state = check_seed(random_state)

    n_spots = n_side * n_side
    rare_size = round(rare_fraction * n_spots)
    if n_rare and rare_size < 1:
        raise ValueError(
            f"`rare_fraction`={rare_fraction:g} of {n_spots} spots is less than one spot; "
            "raise `rare_fraction` or `n_side`."
        )
    if n_rare * rare_size > 0.5 * n_spots:
        raise ValueError(
            f"`n_rare` x `rare_fraction` = {n_rare * rare_fraction:g} covers more than half of the grid; lower them."
        )
    n_classes = 5 + n_rare
    vis = _visibility(n_classes, len(mods), complementary)
    n_feat = _resolve_n_features(n_features, mods, vis.sum(axis=1))

    start = logg.info(f"simulating {n_spots} spots x {len(mods)} modalities")
    rng = np.random.default_rng(random_state)
    labels, centres = _place_rare(_grid_labels(n_side), n_side, n_rare, rare_size, rng)
    noise_factor = rng.integers(0, n_noise_factors + 1, size=n_spots)
    log_size = rng.normal(0.0, library_sd, size=n_spots)
    size_factor = np.exp(log_size - log_size.mean()).astype(np.float32)
    group = labels * (n_noise_factors + 1) + noise_factor
    n_groups = n_classes * (n_noise_factors + 1)

    class_names = [
        "background",
        *[f"block_{k}" for k in range(1, 5)],
        *[f"rare_{k}" for k in range(1, n_rare + 1)],
    ]
    obs_names = pd.Index([f"spot_{i}" for i in range(n_spots)])
    truth = as_categorical(np.asarray(class_names, dtype=object)[labels], index=obs_names)
    rows, cols = np.divmod(np.arange(n_spots), n_side)
    coords = np.column_stack([cols, rows]).astype(np.float64)

    adatas = {}
    for m, (name, kind) in enumerate(mods):
        d = _KIND_DEFAULTS[kind]
        p = n_feat[name]
        base = rng.normal(np.log(d["median"]), d["sdlog"], size=p)
        effects = np.zeros((n_groups, p))
        marker_of = np.full(p, "", dtype=object)
        visible = np.flatnonzero(vis[m])
        n_mark = max(1, min(round(d["markers"] * p), p // max(len(visible), 1)))
        order = rng.permutation(p)
        for i, c in enumerate(visible):
            feats = order[i * n_mark : (i + 1) * n_mark]
            marker_of[feats] = class_names[c]
            # markers are expressed at least at the median level
            base[feats] = np.maximum(base[feats], np.log(d["median"]))
            lfc = signal * rng.uniform(1.2, 2.0, size=feats.size)
            rows_c = slice(c * (n_noise_factors + 1), (c + 1) * (n_noise_factors + 1))
            effects[rows_c, feats] += lfc
        n_noise_feat = max(1, round(0.1 * p))
        for f in range(1, n_noise_factors + 1):
            feats = rng.choice(p, size=n_noise_feat, replace=False)
            lfc = noise * rng.uniform(0.5, 1.0, size=n_noise_feat)
            effects[f :: n_noise_factors + 1, feats] += lfc
        table = np.exp(base[None, :] + effects).astype(np.float32)

        def mean_fn(start: int, stop: int, table: np.ndarray = table) -> np.ndarray:
            return table[group[start:stop]] * size_factor[start:stop, None]

        if kind in _SPARSE_KINDS:
            X = nb_csr(mean_fn, n_spots, p, d["theta"], rng)
        else:
            X = nb_dense(mean_fn, n_spots, p, d["theta"], rng)
        var = pd.DataFrame(
            {"marker_of": pd.Categorical(marker_of)}, index=pd.Index([f"{d['prefix']}_{j}" for j in range(p)])
        )
        adata = AnnData(X=X, obs=pd.DataFrame({Key.truth: truth.copy()}, index=obs_names), var=var)
        if counts_layer:
            adata.layers["counts"] = X.copy()
        adata.obsm[Key.obsm.spatial] = coords.copy()
        adatas[name] = adata

    with mudata.set_options(pull_on_update=False):
        mdata = mudata.MuData(adatas)
    mdata.obs[Key.truth] = truth.array
    mdata.obs["noise_factor"] = noise_factor.astype(np.int64)
    mdata.obsm[Key.obsm.spatial] = coords
    sizes = truth.value_counts()
    mdata.uns["simulation"] = {
        "simulator": "spatial_multiome",
        "params": {
            "n_side": n_side,
            "modalities": [name for name, _ in mods],
            "kinds": {name: kind for name, kind in mods},
            "n_features": n_feat,
            "n_rare": n_rare,
            "rare_fraction": rare_fraction,
            "complementary": bool(complementary),
            "signal": signal,
            "n_noise_factors": n_noise_factors,
            "noise": noise,
            "library_sd": library_sd,
            "counts_layer": bool(counts_layer),
            "random_state": random_state,
        },
        "class_names": class_names,
        "class_sizes": {c: int(sizes.get(c, 0)) for c in class_names},
        "rare_centres": centres,
        "visible": {
            name: [class_names[c] for c in np.flatnonzero(vis[m])] for m, (name, _) in enumerate(mods)
        },
        "nb_size": {name: float(_KIND_DEFAULTS[kind]["theta"]) for name, kind in mods},
    }
    logg.info("    finished", time=start)
    return mdata
