"""``sx.tl.crct``: spatial domains of paired multi-omics with CRCT - validate, train, write back."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg

from scomics_ext._constants import Key
from scomics_ext._docs import inject_docs
from scomics_ext._utils import as_categorical, write_results
from scomics_ext._validation import check_in, check_n_clusters, check_positive_int
from scomics_ext.model import CRCT
from scomics_ext.model._crct import default_max_epochs
from scomics_ext.model._crct_data import (
    ModalitySpec,
    check_input,
    find_spatial,
    get_coordinates,
    get_input,
    is_mudata,
    modality_anndata,
    resolve_modality_specs,
)
from scomics_ext.model._crct_train import CLUSTER_METHODS

try:
    from mudata import MuData
except ImportError:  # pragma: no cover
    MuData = None  # type: ignore[assignment,misc]

__all__ = ["crct"]

_INIT_PARAMS = {
    name
    for name, p in inspect.signature(CRCT.__init__).parameters.items()
    if p.kind == p.KEYWORD_ONLY and name not in ("preprocess", "random_state")
}


def _proxy(
    data: Any, specs: list[ModalitySpec], spatial_key: str, spatial_mod: str | None, coords: np.ndarray
):
    """A light object holding the same arrays (no copy) and only what CRCT reads.

    The model registers with this proxy instead of the user's object, so that registration (which writes
    ``uns["_scvi_uuid"]``) and anything else leave the user's object exactly as it was.
    """

    def one(spec: ModalitySpec) -> AnnData:
        src = modality_anndata(data, spec)
        obs = pd.DataFrame(index=src.obs_names.copy())
        var = pd.DataFrame(index=src.var_names.copy())
        if spec.use_rep is not None:
            out = AnnData(obs=obs, var=var)
            out.obsm[spec.use_rep] = get_input(data, spec)
        else:
            out = AnnData(X=get_input(data, spec), obs=obs, var=var)
        return out

    if not is_mudata(data):
        out = one(specs[0])
        out.obsm[spatial_key] = coords
        return out
    import mudata

    mods = {s.name: one(s) for s in specs}
    with warnings.catch_warnings(), mudata.set_options(pull_on_update=False):
        warnings.simplefilter("ignore")
        proxy = mudata.MuData(mods)
    proxy.obsm[spatial_key] = coords
    return proxy


def _plain(value: Any) -> Any:
    """Plain, h5-writable version of a parameter value."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@inject_docs()
def crct(
    data: MuData | AnnData,
    *,
    n_clusters: int,
    modalities: list[str] | dict[str, str] | None = None,
    spatial_key: str = "spatial",
    kind: str | dict[str, str] | None = None,
    layer: str | dict[str, str] | None = None,
    use_rep: str | dict[str, str] | None = None,
    preprocess: bool = True,
    key_added: str = "crct",
    method: Literal["gmm", "kmeans", "leiden"] = "leiden",
    refine: bool = True,
    random_state: int = 0,
    max_epochs: int | None = None,
    accelerator: str = "auto",
    progress_bar: bool | None = None,
    train_kwargs: dict[str, Any] | None = None,
    copy: bool = False,
    return_model: bool = False,
    **model_kwargs: Any,
) -> MuData | AnnData | CRCT | tuple[MuData | AnnData, CRCT] | None:
    """Spatial domains of paired spatial multi-omics (RNA, protein, ATAC; 1-3 modalities) with CRCT.

    Validates everything first, preprocesses each modality (crct.md pipelines), builds a sparse spatial
    kNN graph and per-modality correlation kNN graphs, trains :class:`~scomics_ext.model.CRCT` and
    clusters its embedding into ``n_clusters`` domains. Results are written only at the end: on any
    error or interrupt (Ctrl+C) ``data`` is left exactly as it was.

    Parameters
    ----------
    data
        MuData with paired modalities (same spots, same order) or an AnnData with one modality.
        Coordinates in ``obsm[spatial_key]`` (of the MuData or of one of its modalities).
    n_clusters
        Number of domains, ``2 <= n_clusters <= n_spots``.
    modalities
        MuData: modalities to use, a list of names or a dict ``{{kind: name}}`` such as
        ``{{"rna": "rna", "protein": "adt"}}`` (default: all).
    {spatial_key}
    kind
        Which preprocessing a modality needs: ``"rna"``, ``"adt"``/``"protein"`` or ``"atac"``. A string for
        an AnnData (required there unless ``use_rep`` or ``preprocess=False``), a dict ``{{name: kind}}`` for
        a MuData (default: inferred from the modality names).
    layer
        Layer holding the data (a string, or a dict per modality; default ``X``). RNA needs **raw counts**
        when ``preprocess=True``; protein and ATAC need non-negative values.
    use_rep
        Precomputed representation(s) in ``obsm`` to use as features instead of preprocessing (a string, or
        a dict per modality).
    preprocess
        Run the per-modality pipelines on raw data (see :class:`~scomics_ext.model.CRCT`); ``False`` uses the
        matrices as given (they should be low-dimensional).
    key_added
        Name of the outputs (see Returns).
    method
        Final clustering of the embedding: ``"leiden"`` (default; Leiden on the 15-NN graph of the
        embedding, resolution searched until ``n_clusters`` communities), ``"gmm"`` (tied-covariance
        Gaussian mixture on PCA(20) of the L2-normalised embedding, the published pipelines' mclust
        "EEE") or ``"kmeans"``. See :meth:`CRCT.predict <scomics_ext.model.CRCT.predict>`.
    refine
        Boundary refinement of the domains by the spots' own features (default ``True``; see
        :meth:`CRCT.predict <scomics_ext.model.CRCT.predict>`).
    {random_state}
    max_epochs
        Training epochs (full-batch steps); ``None``: 300 up to 20,000 spots, fewer above.
    accelerator
        Lightning accelerator; ``"auto"`` uses a GPU when available.
    {progress_bar}
    train_kwargs
        Further arguments of :meth:`CRCT.train <scomics_ext.model.CRCT.train>` (e.g. ``lr``,
        ``callbacks``).
    {copy}
    return_model
        Also return the trained model (its ``adata`` is a light proxy sharing ``data``'s arrays).
    **model_kwargs
        Arguments of :class:`~scomics_ext.model.CRCT` (``n_latent``, ``n_spatial_neighbors``,
        ``augmentation``, ``cluster_loss``, ``learn_graph``, ...).

    Returns
    -------
    ``None`` (or the model if ``return_model``); with ``copy=True`` the new object (and the model). Writes

    - ``obsm["X_" + key_added]``: ``(n_obs, n_latent)`` float32 embedding;
    - ``obs[key_added]``: categorical domains with string categories ``"0"``, ``"1"``, ...;
    - ``uns[key_added]``: ``params`` (everything needed to rerun), ``history`` (per-epoch losses: one
      array per term), ``cluster_sizes`` and ``cluster_start_epoch`` (epoch at which the clustering loss
      switched on; -1 if it never did).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> mdata = sx.datasets.spatial_multiome(n_side=24, modalities=("rna", "adt"))
    >>> sx.tl.crct(mdata, n_clusters=7, max_epochs=60, progress_bar=False)  # doctest: +SKIP
    >>> mdata.obs["crct"].value_counts()  # doctest: +SKIP
    >>> sx.pl.crct(mdata)  # doctest: +SKIP
    """
    start = logg.info("running CRCT")
    # ---- validation (nothing is computed or written before it passed) ------------------------------
    if not (is_mudata(data) or isinstance(data, AnnData)):
        raise TypeError(f"`data` must be a MuData or AnnData object, got {type(data).__name__}.")
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"`key_added` must be a non-empty string, got {key_added!r}.")
    check_in(method, CLUSTER_METHODS, "method")
    n_clusters = check_n_clusters(n_clusters, data.n_obs, what="spots")
    if max_epochs is not None:
        max_epochs = check_positive_int(max_epochs, "max_epochs")
    for flag, name in ((preprocess, "preprocess"), (refine, "refine"), (copy, "copy"), (return_model, "return_model")):  # fmt: skip
        if not isinstance(flag, bool | np.bool_):
            raise TypeError(f"`{name}` must be a bool, got {type(flag).__name__}.")
    unknown = sorted(set(model_kwargs) - _INIT_PARAMS)
    if unknown:
        raise TypeError(
            f"crct() got unexpected keyword argument(s) {unknown}; model arguments are {sorted(_INIT_PARAMS)}."
        )
    train_kwargs = dict(train_kwargs or {})
    clash = sorted(set(train_kwargs) & {"max_epochs", "accelerator", "progress_bar", "random_state"})
    if clash:
        raise TypeError(f"Pass {clash} as arguments of crct() itself, not in `train_kwargs`.")
    if is_mudata(data):
        specs = resolve_modality_specs(data, modalities=modalities, kinds=kind, layers=layer, use_rep=use_rep)
    else:
        specs = resolve_modality_specs(data, modalities=modalities, kinds=kind, layers=layer, use_rep=use_rep)
    names = [s.name for s in specs] if is_mudata(data) else None
    spatial_mod = find_spatial(data, spatial_key, names)
    coords = get_coordinates(data, spatial_key, spatial_mod)
    for s in specs:
        check_input(get_input(data, s), s, preprocess=preprocess)

    # ---- compute --------------------------------------------------------------------------------------
    proxy = _proxy(data, specs, spatial_key, spatial_mod, coords)
    if is_mudata(proxy):
        CRCT.setup_mudata(
            proxy,
            modalities=[s.name for s in specs],
            spatial_key=spatial_key,
            use_rep={s.name: s.use_rep for s in specs if s.use_rep is not None} or None,
            kinds={s.name: s.kind for s in specs if s.kind is not None} or None,
        )
    else:
        CRCT.setup_anndata(proxy, kind=specs[0].kind, spatial_key=spatial_key, use_rep=specs[0].use_rep)
    model = CRCT(proxy, n_clusters, preprocess=preprocess, random_state=random_state, **model_kwargs)
    n_epochs = max_epochs if max_epochs is not None else default_max_epochs(data.n_obs)
    model.train(
        n_epochs,
        accelerator=accelerator,
        progress_bar=progress_bar,
        random_state=random_state,
        **train_kwargs,
    )
    z = model.get_latent_representation()
    labels = model.predict(method=method, random_state=random_state, refine=refine)
    cats = as_categorical(labels)
    history = model.get_loss_history()
    params = {
        "n_clusters": n_clusters,
        "modalities": [s.label for s in specs],
        "kinds": [s.kind or "unknown" for s in specs],
        "layers": {s.label: s.layer for s in specs if s.layer is not None},
        "use_rep": {s.label: s.use_rep for s in specs if s.use_rep is not None},
        "spatial_key": spatial_key,
        "preprocess": preprocess,
        "method": method,
        "refine": refine,
        "random_state": random_state,
        "max_epochs": n_epochs,
        "accelerator": accelerator,
        "model": _plain({k: v for k, v in model.init_params_["non_kwargs"].items() if k != "n_clusters"}),
        "train": _plain({k: v for k, v in train_kwargs.items() if k != "callbacks"}),
    }
    uns = {
        "params": _plain(params),
        "history": {col: history[col].to_numpy(dtype=np.float64) for col in history.columns},
        "cluster_sizes": {str(c): int((cats == c).sum()) for c in cats.categories},
        # epoch the clustering loss switched on (-1: never)
        "cluster_start_epoch": -1 if model.cluster_start_epoch_ is None else int(model.cluster_start_epoch_),
    }

    # ---- write back (the only place data is touched) ---------------------------------------------------
    target = data.copy() if copy else data
    write_results(
        target,
        obs={key_added: cats},
        obsm={Key.obsm.embedding(key_added): z},
        uns={key_added: uns},
    )
    logg.info("    finished", time=start)
    if copy:
        return (target, model) if return_model else target
    return model if return_model else None
