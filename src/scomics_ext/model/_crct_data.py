"""Data handling of :class:`~scomics_ext.model.CRCT`: modality resolution, input checks, features, graphs.

Everything here works on AnnData / MuData or plain arrays and returns plain arrays; the torch side
(:mod:`scomics_ext.module`) never sees AnnData.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scomics_ext._constants import MODALITY_ALIASES, Key
from scomics_ext._validation import (
    check_counts,
    check_finite,
    check_modalities,
    check_nonnegative,
    check_not_all_zero,
    get_matrix,
    get_spatial,
)
from scomics_ext.pp import knn_graph, preprocess_matrix, resolve_kind

try:
    from mudata import MuData
except ImportError:  # pragma: no cover
    MuData = None  # type: ignore[assignment,misc]

#: default number of spatial neighbours (see :class:`~scomics_ext.model.CRCT` for the evidence)
DEFAULT_SPATIAL_NEIGHBORS = 3
#: default number of feature neighbours (correlation kNN, as in SpatialGlue / PRAGA / CRCT)
DEFAULT_FEATURE_NEIGHBORS = 20
#: components when no protein modality is present (RNA / ATAC), and the cap when one is
DEFAULT_N_COMPS = 50
MAX_N_COMPS = 100

__all__ = [
    "ModalitySpec",
    "build_features",
    "build_graphs",
    "default_n_comps",
    "find_spatial",
    "is_mudata",
    "resolve_modality_specs",
]


def is_mudata(data: Any) -> bool:
    """Whether ``data`` is a :class:`~mudata.MuData`."""
    return MuData is not None and isinstance(data, MuData)


@dataclass(frozen=True)
class ModalitySpec:
    """Where one modality's input lives and how to turn it into features.

    Attributes
    ----------
    name
        Modality name (key of ``mdata.mod``; ``None`` for a plain AnnData).
    kind
        ``"rna"``, ``"adt"``, ``"atac"`` or ``None`` (unknown; only allowed with ``use_rep``).
    layer
        Layer holding the data (``None``: ``X``).
    use_rep
        ``obsm`` key of a precomputed representation (used as is; no preprocessing).
    """

    name: str | None
    kind: str | None
    layer: str | None = None
    use_rep: str | None = None

    @property
    def label(self) -> str:
        """Short display name."""
        return self.name if self.name is not None else (self.kind or "X")

    def where(self) -> str:
        """How the input field is named in messages, e.g. ``"mdata.mod['rna'].layers['counts']"``."""
        base = "adata" if self.name is None else f"mdata.mod[{self.name!r}]"
        if self.use_rep is not None:
            return f"{base}.obsm[{self.use_rep!r}]"
        if self.layer is not None:
            return f"{base}.layers[{self.layer!r}]"
        return f"{base}.X"


def _per_modality(value: Any, names: Sequence[str], what: str) -> dict[str, Any]:
    """Expand a scalar-or-mapping argument into one value per modality."""
    if value is None:
        return dict.fromkeys(names)
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise KeyError(
                f"`{what}` names modalities {unknown} that are not among the modalities used {list(names)}."
            )
        return {n: value.get(n) for n in names}
    if isinstance(value, str):
        return dict.fromkeys(names, value)
    raise TypeError(
        f"`{what}` must be a string, a dict mapping modality names to strings, or None; got {type(value).__name__}."
    )


def _modality_mapping(mdata: Any, modalities: Any) -> tuple[list[str] | None, dict[str, str]]:
    """Modality names (in order) and kinds given through ``modalities`` (a list or a dict)."""
    if modalities is None:
        return None, {}
    if isinstance(modalities, str):
        return [modalities], {}
    if isinstance(modalities, Mapping):
        keys, values = [str(k) for k in modalities], [str(v) for v in modalities.values()]
        known = set(mdata.mod.keys())
        kind_to_mod = all(v in known for v in values) and all(k.lower() in MODALITY_ALIASES for k in keys)
        mod_to_kind = all(k in known for k in keys) and all(v.lower() in MODALITY_ALIASES for v in values)
        if kind_to_mod:  # {"rna": "rna", "protein": "adt"}: kind -> modality name (DESIGN.md)
            return values, {v: resolve_kind(k) for k, v in zip(keys, values)}
        if mod_to_kind:  # {"gex": "rna", "prot": "adt"}: modality name -> kind
            return keys, {k: resolve_kind(v) for k, v in zip(keys, values)}
        raise KeyError(
            f"`modalities`={dict(modalities)!r} must map modality kinds to modality names of mdata.mod "
            f"(available: {sorted(known)}), e.g. {{'rna': 'rna', 'protein': 'adt'}}, or be a list of names."
        )
    if isinstance(modalities, Sequence):
        return [str(m) for m in modalities], {}
    raise TypeError(
        f"`modalities` must be a list of modality names or a dict, got {type(modalities).__name__}."
    )


def resolve_modality_specs(
    data: Any,
    *,
    modalities: Any = None,
    kinds: Any = None,
    layers: Any = None,
    use_rep: Any = None,
) -> list[ModalitySpec]:
    """Resolve which modalities are used, their kinds and where their input lives.

    Parameters
    ----------
    data
        :class:`~mudata.MuData` or :class:`~anndata.AnnData`.
    modalities
        MuData only: list of modality names, or a dict ``{kind: name}`` (or ``{name: kind}``); ``None``
        uses every modality.
    kinds
        Modality kind(s): a string (AnnData) or a dict ``{name: kind}`` (MuData). Defaults to the kind
        implied by the modality name (``"rna"``, ``"protein"``, ``"atac"``, ... see
        :data:`~scomics_ext._constants.MODALITY_ALIASES`).
    layers
        Layer(s) to read: a string (AnnData or every modality) or a dict ``{name: layer}``.
    use_rep
        ``obsm`` key(s) of precomputed representations: a string or a dict ``{name: key}``.

    Returns
    -------
    One :class:`ModalitySpec` per modality, in order.
    """
    if not is_mudata(data):
        if not isinstance(data, AnnData):
            raise TypeError(f"`data` must be an AnnData or MuData object, got {type(data).__name__}.")
        if modalities is not None:
            raise ValueError("`modalities` only applies to MuData; pass `kind=` for an AnnData.")
        for value, what in ((kinds, "kind"), (layers, "layer"), (use_rep, "use_rep")):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"`{what}` must be a string for an AnnData, got {type(value).__name__}.")
        kind = resolve_kind(kinds) if kinds is not None else None
        if layers is not None and use_rep is not None:
            raise ValueError("Pass only one of `layer` and `use_rep`.")
        return [ModalitySpec(None, kind, layers, use_rep)]

    names, kinds_from_mods = _modality_mapping(data, modalities)
    names = check_modalities(data, names)
    if len(set(names)) != len(names):
        raise ValueError(f"`modalities` lists a modality twice: {names}.")
    kind_of = _per_modality(kinds, names, "kinds")
    layer_of = _per_modality(layers, names, "layers")
    rep_of = _per_modality(use_rep, names, "use_rep")
    specs = []
    for n in names:
        kind = kind_of[n] or kinds_from_mods.get(n)
        if kind is None and n.lower() in MODALITY_ALIASES:
            kind = n
        kind = resolve_kind(kind) if kind is not None else None
        if layer_of[n] is not None and rep_of[n] is not None:
            raise ValueError(f"Modality {n!r}: pass only one of `layers` and `use_rep`.")
        specs.append(ModalitySpec(n, kind, layer_of[n], rep_of[n]))
    return specs


def find_spatial(data: Any, spatial_key: str, modalities: Sequence[str] | None = None) -> str | None:
    """Where the spatial coordinates are: ``None`` for ``data.obsm``, else the modality holding them.

    Raises the standard missing-coordinates ``KeyError`` when neither ``data.obsm`` nor a (used) modality
    has ``obsm[spatial_key]``.
    """
    if not isinstance(spatial_key, str):
        raise TypeError(f"`spatial_key` must be a string, got {type(spatial_key).__name__}.")
    if not is_mudata(data) or spatial_key in data.obsm:
        get_spatial(data, spatial_key, name="mdata" if is_mudata(data) else "adata")
        return None
    for name in modalities or list(data.mod):
        mod = data.mod[name]
        if spatial_key in mod.obsm:
            get_spatial(mod, spatial_key, name=f"mdata.mod[{name!r}]")
            return name
    get_spatial(data, spatial_key, name="mdata")  # raises the standard KeyError
    return None  # pragma: no cover


def get_coordinates(data: Any, spatial_key: str, mod_key: str | None) -> np.ndarray:
    """Validated ``(n_obs, 2|3)`` float64 coordinates from ``data`` (or its modality ``mod_key``)."""
    if mod_key is None:
        return get_spatial(data, spatial_key, name="mdata" if is_mudata(data) else "adata")
    return get_spatial(data.mod[mod_key], spatial_key, name=f"mdata.mod[{mod_key!r}]")


def modality_anndata(data: Any, spec: ModalitySpec) -> AnnData:
    """The AnnData holding a modality (``data`` itself for a plain AnnData)."""
    return data if spec.name is None else data.mod[spec.name]


def get_input(data: Any, spec: ModalitySpec) -> Any:
    """The matrix a modality reads (``X``, a layer or an ``obsm`` representation), not copied."""
    adata = modality_anndata(data, spec)
    name = "adata" if spec.name is None else f"mdata.mod[{spec.name!r}]"
    X = get_matrix(adata, layer=spec.layer, use_rep=spec.use_rep, name=name)
    if isinstance(X, pd.DataFrame):
        X = X.to_numpy()
    return X


def check_input(X: Any, spec: ModalitySpec, *, preprocess: bool) -> None:
    """Check one modality's input for what the model will do with it (raises naming the field)."""
    what = spec.where()
    if not (sparse.issparse(X) or isinstance(X, np.ndarray)) or X.ndim != 2:
        raise TypeError(f"{what} must be a 2-D numpy array or scipy sparse matrix, got {type(X).__name__}.")
    if X.shape[1] < 2:
        raise ValueError(f"{what} has {X.shape[1]} feature(s); CRCT needs at least 2 per modality.")
    if spec.use_rep is None and preprocess:
        if spec.kind is None:
            where = "kind=" if spec.name is None else f"kinds={{{spec.name!r}: 'rna' | 'adt' | 'atac'}}"
            raise ValueError(
                f"Cannot tell which preprocessing {what} needs: the modality kind is unknown. Pass {where} "
                "(or a precomputed representation with `use_rep=`)."
            )
        if spec.kind == "rna":
            check_counts(X, what)
        else:
            check_finite(X, what)
            check_nonnegative(X, what)
    else:
        check_finite(X, what)
    check_not_all_zero(X, what)


def default_n_comps(specs: Sequence[ModalitySpec], n_features: Sequence[int]) -> int:
    """Components per modality of the published pipelines (crct.md).

    ``n_proteins - 1`` for every modality when a protein modality is present (at most
    :data:`MAX_N_COMPS`), else :data:`DEFAULT_N_COMPS`.
    """
    adt = [d for s, d in zip(specs, n_features) if s.kind == "adt" and s.use_rep is None]
    if adt:
        return int(max(2, min(MAX_N_COMPS, min(adt) - 1)))
    return DEFAULT_N_COMPS


def _feasible_n_comps(kind: str, n_comps: int, X: Any) -> int:
    """Clamp ``n_comps`` to what the data allow (the pipelines' PCA/LSI limit)."""
    n_obs, n_feat = X.shape
    limit = min(n_obs, n_feat) - 1
    if kind == "atac":
        n_feat = int((np.asarray(X.sum(axis=0)).ravel() > 0).sum())
        limit = min(n_obs, n_feat) - 2
    return int(max(2 if kind == "atac" else 1, min(n_comps, limit)))


def build_features(
    X: Any,
    spec: ModalitySpec,
    *,
    preprocess: bool,
    n_comps: int,
    random_state: int,
) -> np.ndarray:
    """One modality's feature matrix ``F_m`` (float32, ``n_obs x d_m``).

    With ``preprocess=True`` and raw data, the crct.md pipeline of the modality's kind
    (:func:`~scomics_ext.pp.preprocess_matrix`); with ``use_rep`` or ``preprocess=False`` the matrix as
    given (densified). Each column is then centred, and the whole matrix divided by its root mean
    square, so every modality enters the reconstruction loss on the same scale while the relative
    variance of its components is kept.
    """
    if spec.use_rep is None and preprocess:
        nc = _feasible_n_comps(spec.kind, n_comps, X)
        F = preprocess_matrix(X, kind=spec.kind, n_comps=nc, random_state=random_state, what=spec.where())
    else:
        F = X.toarray() if sparse.issparse(X) else np.asarray(X)
    F = np.asarray(F, dtype=np.float64)
    F = F - F.mean(axis=0, keepdims=True)
    rms = float(np.sqrt(np.mean(F**2)))
    if not rms > 0:
        raise ValueError(
            f"{spec.where()} has no variance across observations; there is nothing to learn from."
        )
    return (F / rms).astype(np.float32)


def build_graphs(
    coords: np.ndarray,
    features: Sequence[np.ndarray],
    *,
    n_spatial_neighbors: int,
    n_feature_neighbors: int,
    random_state: int = 0,
) -> tuple[sparse.csr_matrix, list[sparse.csr_matrix]]:
    """Binary symmetric spatial kNN graph and one correlation kNN graph per modality (all sparse)."""
    n = coords.shape[0]
    spatial, _ = knn_graph(coords, n_neighs=min(n_spatial_neighbors, n - 1), method="exact")
    feature_graphs = [
        knn_graph(
            F, n_neighs=min(n_feature_neighbors, n - 1), metric="correlation", random_state=random_state
        )[0]
        for F in features
    ]
    return spatial, feature_graphs


__all__ += ["Key", "check_input", "get_coordinates", "get_input", "modality_anndata"]
