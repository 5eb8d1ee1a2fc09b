"""CRCT: cross-modal representation learning with learned graphs, prototypes and semantic augmentation.

The user-facing scvi-tools model class. Data handling lives in :mod:`._crct_data`, the Lightning
training plan in :mod:`._crct_train` and the torch kernels in :mod:`scomics_ext.module`.
"""

from __future__ import annotations

import math
import signal
import threading
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scanpy import logging as logg
from scvi.data import AnnDataManager, fields
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from scomics_ext._settings import settings
from scomics_ext._utils import quiet_scvi, seed_everything
from scomics_ext._validation import check_in, check_n_clusters, check_positive_int
from scomics_ext.module import DEFAULT_RHO0, DEFAULT_TAU, CRCTGraphs

from ._crct_data import (
    DEFAULT_FEATURE_NEIGHBORS,
    DEFAULT_SPATIAL_NEIGHBORS,
    ModalitySpec,
    build_features,
    build_graphs,
    check_input,
    default_n_comps,
    find_spatial,
    is_mudata,
    resolve_modality_specs,
)
from ._crct_refine import refine_boundaries
from ._crct_train import (
    CLUSTER_METHODS,
    CRCTModule,
    CRCTTrainingPlan,
    FullBatchDataModule,
    cluster_embedding,
    quiet_lightning,
)

try:
    from mudata import MuData
except ImportError:  # pragma: no cover
    MuData = None  # type: ignore[assignment,misc]

__all__ = ["CRCT"]

_SPATIAL_FIELD = "crct_spatial"
#: ``max_epochs=None``: this many epochs up to ``_EPOCH_DECAY_N`` spots, fewer above (at least 100)
_DEFAULT_EPOCHS = 300
_EPOCH_DECAY_N = 20_000
_MIN_EPOCHS = 100
#: warnings of Lightning that say nothing about a full-batch model
_LIGHTNING_NOISE = (
    ".*does not have many workers.*",
    ".*number of training batches.*",
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*GPU available but not used.*",
)


def _input_key(i: int) -> str:
    return f"crct_input_{i}"


def default_max_epochs(n_obs: int) -> int:
    """Default run length: 300 epochs up to 20,000 spots, then ``300 * sqrt(20000 / N)`` (at least 100).

    One epoch is one full-batch step, so its cost grows linearly with ``N``; the schedules are relative
    to the run length, so a shorter run still passes through every phase.

    Parameters
    ----------
    n_obs
        Number of spots.

    Returns
    -------
    The number of epochs.

    Examples
    --------
    >>> from scomics_ext.model._crct import default_max_epochs
    >>> default_max_epochs(1296), default_max_epochs(100_000)
    (300, 134)
    """
    if n_obs <= _EPOCH_DECAY_N:
        return _DEFAULT_EPOCHS
    return max(_MIN_EPOCHS, round(_DEFAULT_EPOCHS * math.sqrt(_EPOCH_DECAY_N / n_obs)))


class CRCT(BaseModelClass):
    """CRCT: spatial multi-omics domains from learned graphs, prototypes and semantic augmentation.

    CRCT (AAAI 2026) builds on PRAGA. For every modality ``m`` a spatial kNN graph and a correlation kNN
    graph of the modality's features are fused with learned weights; one GCN layer per modality encodes
    the features on its fused graph, an MLP fuses the modalities into ``Z`` and graph decoders
    reconstruct each modality from ``Z``. Pseudo-labels and prototypes of ``Z`` (refreshed every few
    epochs) drive a prototype-contrastive clustering loss over ``Z`` and its implicit semantic
    augmentation ``Z̃ = Z + ρ(t) σ_ŷ ⊙ ξ`` (class-conditional running statistics), which also feeds a
    second reconstruction loss. Every graph is an edge list: memory grows with ``N·k``, never ``N²``.

    Call :meth:`setup_mudata` (or :meth:`setup_anndata` for one modality) first.

    Parameters
    ----------
    adata
        MuData (or AnnData) registered with :meth:`setup_mudata` / :meth:`setup_anndata`.
    n_clusters
        Number of spatial domains ``C`` (pseudo-classes, prototypes and default of :meth:`predict`).
    n_hidden
        Width of the GCN outputs and of the fusion MLP.
    n_latent
        Dimension of ``Z``.
    n_spatial_neighbors
        ``k`` of the spatial kNN graph (symmetrised, binary). Default 3, as in the published pipelines
        on Visium-like arrays and the SpatialGlue simulation: it links each spot to its immediate
        neighbours (4 on a square grid, 6 on a hexagonal one, after symmetrisation). 6 smooths more
        and blurs thin structures (see the Notes).
    n_feature_neighbors
        ``k`` of the per-modality correlation kNN graphs (20 in the published pipelines).
    spatial_weight
        Initial weight ``a_m`` of the spatial edges in each learned fusion ``a_m A^S + b_m A^F_m``
        (``b_m`` starts at 1). ``None`` balances the two graphs: ``a_m`` = mean degree of ``A^F_m`` /
        mean degree of ``A^S``, so spatial and feature neighbours start with the same total weight.
    preprocess
        Run the crct.md pipeline on each modality registered with raw data: RNA - genes in >= 10 cells,
        3000 ``seurat_v3`` HVGs, ``normalize_total``, ``log1p``, ``scale``, PCA (**raw counts needed**);
        protein - per-cell CLR, ``scale``, PCA (non-negative data); ATAC - TF-IDF, LSI without its first
        component (non-negative data). ``False`` uses the registered matrices as they are (they should
        then be low-dimensional, e.g. a PCA). Modalities registered with ``use_rep`` are never
        preprocessed.
    n_comps
        Components per modality; ``None``: ``n_proteins - 1`` (at most 100) for every modality when a
        protein modality is present, else 50 (the published pipelines). Clamped to what each modality
        allows.
    feature_scaling
        How each modality's features ``F_m`` are scaled before training: ``"rms"`` (default; centred and
        divided by the matrix's root mean square, so the modalities enter the reconstruction losses on
        one scale while each component keeps its variance, i.e. the leading PCs dominate) or
        ``"standardize"`` (every component to unit variance: noise components weigh as much as the
        leading ones).
    fusion_activation
        Nonlinearity of the fusion MLP: ``"none"`` (PRAGA's linear MLP), ``"relu"``, ``"elu"``, ``"gelu"``
        or ``"tanh"``.
    augmentation
        Implicit semantic augmentation (ISDA): ``L_aug`` and ``Z̃`` in the clustering loss. ``False`` with
        the rest on is the "PRAGA-like" ablation.
    cluster_loss
        Prototype-contrastive clustering loss (``False``: "no clustering loss" ablation).
    learn_graph
        Learn the graph fusion (feature-edge weights and mixing scalars; ``False``: the fixed fusion
        ``norm(A^S + A^F_m)``, the "no graph learning" ablation).
    pseudo_labels
        How pseudo-labels and prototypes are computed from ``Z`` at each refresh: ``"gmm"`` (the same
        tied-covariance Gaussian mixture on PCA of the L2-normalised ``Z`` as ``predict(method="gmm")``;
        prototypes are class means), ``"kmeans"`` (k-means on the L2-normalised ``Z``, as the paper) or
        ``"leiden"`` (as ``predict(method="leiden")``; a refresh where no resolution gives exactly
        ``n_clusters`` communities falls back to the GMM). Leiden pseudo-labels did not beat the GMM's
        on the simulator (30x30: mean ARI 0.752 against 0.777, 3 seeds).
    modality_weights
        Weights ``w_m`` of the modalities in the reconstruction losses (default all 1).
    tau
        Temperature of the clustering loss (cosine logits). 0.1: a sharper loss keeps the partition it
        starts from; at 0.5 and 2 (PRAGA's) the pseudo-labels drift after the loss switches on (see below).
    rho0
        Base strength ``ρ_0`` of the augmentation, ``ρ(t) = (t / T) ρ_0``.
    random_state
        Seed of the preprocessing, the graphs' tie-breaking and the weight initialisation; the default
        seed of :meth:`train` and :meth:`predict`.

    Notes
    -----
    Only the registered fields are read; the data object is never modified by the model (scvi-tools'
    registration adds ``uns["_scvi_uuid"]`` / ``uns["_scvi_manager_uuid"]``;
    :func:`scomics_ext.tl.crct` avoids even that).

    CRCT is transductive: the graphs and the learned edge weights belong to the registered spots, so
    :meth:`get_latent_representation` and :meth:`predict` work on the registered data only, and
    :meth:`load` rebuilds the same graphs from the same data before restoring the weights.

    Defaults were chosen on three simulations at once (the SpatialGlue simulation and two
    :func:`~scomics_ext.datasets.spatial_multiome` grids), never on one alone:

    - ``n_spatial_neighbors=3`` beat 6 for CRCT (ARI 0.983 vs 0.957 on the SpatialGlue simulation,
      0.89 vs 0.87 and 0.81 vs 0.80 on the others) and for the smoothed-PCA baseline on all three.
    - ``pseudo_labels="gmm"``: k-means pseudo-labels (the paper's) lock the clustering loss onto a
      poor partition (ARI 0.52 / 0.76 / 0.67 vs 0.98 / 0.89 / 0.81 with the tied GMM), because
      k-means on ``Z`` splits large domains along non-spatial variation.
    - ``feature_scaling="rms"``: ``"standardize"`` scored 0.989 on the SpatialGlue simulation but
      0.50 / 0.78 on the other two.
    - a linear fusion MLP (``"relu"``: 0.979 / 0.75 / 0.80) and ``spatial_weight=1``
      (balanced: 0.94 / 0.80 / 0.79).

    Tried for ``benchmarks/crct.py`` and not adopted, judged on four datasets at once (SpatialGlue
    simulation with RNA + ADT + ATAC and with RNA + ADT, HLN A1 protein only, the default
    30 x 30 RNA + ADT simulator; seeds 0 and 1; ARI with the defaults 0.983, 0.985 / 0.68, 0.82 /
    0.181, 0.187 / 0.77, 0.82):

    - smoothing ``Z`` over one hop of the spatial graph before the GMM: 0.89, 0.88 / 0.65, 0.79 /
      0.180, 0.191 / 0.72, 0.79 (two hops: lower still), and a 6-NN majority vote on the labels:
      0.971, 0.971 / 0.69, 0.84 / 0.176, 0.182 / 0.72, 0.80 - the embedding is already smooth and
      both blur block corners;
    - 500 epochs instead of 300: 0.955, 0.970 / 0.94, 0.94 / 0.182, 0.193 / 0.82, 0.72 (helps the
      two-modality simulation, hurts the three-modality one: no net gain);
    - ``n_feature_neighbors=10``: 0.958 on the first run (stopped).

    ``tau=0.1`` and ``train(cluster_start="stable")`` (start the clustering loss once consecutive
    pseudo-labelings agree): the loss locks in the partition it starts from, and at ``tau=0.5`` it
    also let the pseudo-labels drift afterwards. Mean ARI over SpatialGlue simulation RNA + ADT + ATAC,
    RNA + ADT, HLN protein and the 30 x 30 simulator (seeds 0-2): 0.730 at ``tau=0.1``, 0.727 at 0.2,
    0.717 at 0.5. At ``tau=0.5`` the stable start lifted RNA + ADT from 0.814 ± 0.130 (the paper's
    start at 1/3 of the run) to 0.927 ± 0.010; at ``tau=0.1`` both starts are within noise.

    Ablations (``benchmarks/crct.py --ablations``, seeds 0-2, ARI mean, SG3 / SG2 / HLN, Leiden final
    step and boundary refinement): full 0.993 / 0.994 / 0.182; no refinement 0.985 / 0.985 / 0.180; no
    augmentation 0.992 / 0.994 / 0.182; no clustering loss 0.992 / 0.997 / 0.176; no graph learning
    0.776 / 0.524 / 0.171; fixed start 0.991 / 0.994 / 0.167; tied-GMM final step 0.981 / 0.992 / 0.195.
    A spatial majority vote (6, 10 or 15 neighbours) after the Leiden step lowered the ARI on the simulator (30 x 30 and 50 x 50, 3 seeds) and was not adopted.

    Known weakness: variation that is not spatial (cell states, batch-like factors) is kept in ``Z``
    because the objective reconstructs every feature through the spatial decoder; when such factors
    are strong, pseudo-labels may split domains along them (see the method notes).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> mdata = sx.datasets.spatial_multiome(n_side=24, modalities=("rna", "adt"))
    >>> sx.model.CRCT.setup_mudata(mdata, modalities={"rna": "rna", "protein": "adt"})
    >>> model = sx.model.CRCT(mdata, n_clusters=7)  # doctest: +SKIP
    >>> model.train(max_epochs=60, progress_bar=False)  # doctest: +SKIP
    >>> z = model.get_latent_representation()  # doctest: +SKIP
    >>> labels = model.predict()  # doctest: +SKIP
    """

    _module_cls = CRCTModule
    _training_plan_cls = CRCTTrainingPlan
    _data_module_cls = FullBatchDataModule

    def __init__(
        self,
        adata: AnnData | MuData | None,
        n_clusters: int,
        *,
        n_hidden: int = 64,
        n_latent: int = 64,
        n_spatial_neighbors: int = DEFAULT_SPATIAL_NEIGHBORS,
        n_feature_neighbors: int = DEFAULT_FEATURE_NEIGHBORS,
        spatial_weight: float | None = 1.0,
        preprocess: bool = True,
        n_comps: int | None = None,
        feature_scaling: Literal["rms", "standardize"] = "rms",
        fusion_activation: Literal["none", "relu", "elu", "gelu", "tanh"] = "none",
        augmentation: bool = True,
        cluster_loss: bool = True,
        learn_graph: bool = True,
        pseudo_labels: Literal["gmm", "kmeans", "leiden"] = "gmm",
        modality_weights: Sequence[float] | None = None,
        tau: float = DEFAULT_TAU,
        rho0: float = DEFAULT_RHO0,
        random_state: int = 0,
    ) -> None:
        if adata is None:
            raise ValueError(
                "CRCT is transductive: it needs the data it was set up with (pass `adata`; when loading, "
                "`CRCT.load(path, adata=mdata)` or save with `save_anndata=True`)."
            )
        super().__init__(adata)
        n_clusters = check_n_clusters(n_clusters, adata.n_obs, what="spots")
        n_hidden = check_positive_int(n_hidden, "n_hidden")
        n_latent = check_positive_int(n_latent, "n_latent")
        n_spatial_neighbors = check_positive_int(n_spatial_neighbors, "n_spatial_neighbors")
        n_feature_neighbors = check_positive_int(n_feature_neighbors, "n_feature_neighbors")
        if n_comps is not None:
            n_comps = check_positive_int(n_comps, "n_comps", minimum=2)
        check_in(feature_scaling, ("standardize", "rms"), "feature_scaling")
        check_in(fusion_activation, ("none", "relu", "elu", "gelu", "tanh"), "fusion_activation")
        check_in(pseudo_labels, ("gmm", "kmeans", "leiden"), "pseudo_labels")
        for flag, name in ((augmentation, "augmentation"), (cluster_loss, "cluster_loss"), (learn_graph, "learn_graph"), (preprocess, "preprocess")):  # fmt: skip
            if not isinstance(flag, bool | np.bool_):
                raise TypeError(f"`{name}` must be a bool, got {type(flag).__name__}.")
        if not (isinstance(tau, int | float) and tau > 0):
            raise ValueError(f"`tau` must be a positive number, got {tau!r}.")
        if not (isinstance(rho0, int | float) and rho0 >= 0):
            raise ValueError(f"`rho0` must be a non-negative number, got {rho0!r}.")

        specs = self._specs()
        if modality_weights is not None:
            modality_weights = [float(w) for w in modality_weights]
            if len(modality_weights) != len(specs) or min(modality_weights) < 0:
                raise ValueError(
                    f"`modality_weights` needs {len(specs)} non-negative values (one per modality), got "
                    f"{modality_weights}."
                )
        start = logg.info(f"building CRCT inputs for {adata.n_obs} spots x {len(specs)} modalities")
        inputs = [self.adata_manager.get_from_registry(_input_key(i)) for i in range(len(specs))]
        inputs = [x.to_numpy() if isinstance(x, pd.DataFrame) else x for x in inputs]
        for x, s in zip(inputs, specs):
            check_input(x, s, preprocess=preprocess)
        coords = np.asarray(self.adata_manager.get_from_registry(_SPATIAL_FIELD), dtype=np.float64)

        n_comps_used = (
            n_comps if n_comps is not None else default_n_comps(specs, [x.shape[1] for x in inputs])
        )
        feats = []
        for x, s in zip(inputs, specs):
            f = build_features(x, s, preprocess=preprocess, n_comps=n_comps_used, random_state=random_state)
            if feature_scaling == "standardize":
                sd = f.std(axis=0, keepdims=True)
                f = f / np.where(sd > 0, sd, 1.0)
            feats.append(np.ascontiguousarray(f, dtype=np.float32))
        spatial, feature_graphs = build_graphs(
            coords,
            feats,
            n_spatial_neighbors=n_spatial_neighbors,
            n_feature_neighbors=n_feature_neighbors,
            random_state=random_state,
        )
        self._graphs = CRCTGraphs.from_scipy(spatial, feature_graphs)
        if spatial_weight is None:
            ratios = [g.nnz / max(spatial.nnz, 1) for g in feature_graphs]
            init_a = float(np.mean(ratios))
        else:
            if not (isinstance(spatial_weight, int | float) and spatial_weight >= 0):
                raise ValueError(
                    f"`spatial_weight` must be a non-negative number or None, got {spatial_weight!r}."
                )
            init_a = float(spatial_weight)
        self._features = [torch.as_tensor(f) for f in feats]
        self._spatial_adjacency = spatial
        self._modality_names = [s.label for s in specs]

        seed_everything(random_state)
        self.module = self._module_cls(
            [f.shape[1] for f in feats],
            self._graphs.n_feature_params,
            n_obs=adata.n_obs,
            n_clusters=n_clusters,
            n_hidden=n_hidden,
            n_latent=n_latent,
            fusion_activation=fusion_activation,
            learn_graph=learn_graph,
            spatial_weight=init_a,
        )
        self.n_clusters = n_clusters
        self._train_defaults = {
            "augmentation": augmentation,
            "cluster_loss": cluster_loss,
            "pseudo_label_method": pseudo_labels,
            "modality_weights": modality_weights,
            "tau": float(tau),
            "rho0": float(rho0),
        }
        self._random_state = int(random_state)
        dims = ", ".join(f"{n}: {f.shape[1]}" for n, f in zip(self._modality_names, feats))
        self._model_summary_string = (
            f"CRCT model with n_clusters={n_clusters}, n_latent={n_latent}, modalities ({dims}), "
            f"spatial k={n_spatial_neighbors}, feature k={n_feature_neighbors}, augmentation={augmentation}, "
            f"cluster_loss={cluster_loss}, learn_graph={learn_graph}."
        )
        self.init_params_ = self._get_init_params(locals())
        logg.info("    finished", time=start)

    # -------------------------------------------------------------------------------------------------
    # registration
    # -------------------------------------------------------------------------------------------------
    def _specs(self) -> list[ModalitySpec]:
        args = self.adata_manager.registry["setup_args"]
        if self.adata_manager.registry.get("setup_method_name") == "setup_anndata":
            return resolve_modality_specs(
                self.adata, kinds=args.get("kind"), layers=args.get("layer"), use_rep=args.get("use_rep")
            )
        return resolve_modality_specs(
            self.adata,
            modalities=args.get("modalities"),
            kinds=args.get("kinds"),
            layers=args.get("layers"),
            use_rep=args.get("use_rep"),
        )

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        modalities: Sequence[str] | dict[str, str] | None = None,
        spatial_key: str = "spatial",
        layers: str | dict[str, str] | None = None,
        use_rep: str | dict[str, str] | None = None,
        kinds: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Register a MuData of paired spatial modalities with CRCT.

        Only registers where the data are (scvi-tools' :class:`~scvi.data.AnnDataManager` with MuData
        layer / obsm fields); nothing is computed or copied.

        Parameters
        ----------
        mdata
            MuData whose modalities hold the same spots in the same order.
        modalities
            Modalities to use: a list of names (kinds inferred from the names, e.g. ``"rna"``,
            ``"protein"``, ``"atac"``), or a dict mapping kinds to names, e.g.
            ``{"rna": "rna", "protein": "adt"}``. ``None``: every modality.
        spatial_key
            Key of the ``(n_obs, 2)`` coordinates in ``mdata.obsm`` or in a modality's ``obsm``.
        layers
            Layer holding each modality's data: a dict ``{modality: layer}`` or one layer name for all
            (default ``X``). Raw counts for RNA when preprocessing.
        use_rep
            Precomputed representations to use instead of preprocessing: a dict ``{modality: obsm key}``
            (or one key for all).
        kinds
            ``{modality: kind}`` where the kind cannot be inferred from the name (``"rna"``, ``"adt"`` /
            ``"protein"``, ``"atac"``).
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by :meth:`load`).

        Examples
        --------
        >>> import scomics_ext as sx
        >>> mdata = sx.datasets.spatial_multiome(n_side=12, modalities=("rna", "adt"))
        >>> sx.model.CRCT.setup_mudata(mdata, modalities=["rna", "adt"], layers={"rna": "counts"})
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if not is_mudata(mdata):
            raise TypeError(
                f"`mdata` must be a MuData object, got {type(mdata).__name__}; use `setup_anndata` for an AnnData."
            )
        specs = resolve_modality_specs(
            mdata, modalities=modalities, kinds=kinds, layers=layers, use_rep=use_rep
        )
        spatial_mod = find_spatial(mdata, spatial_key, [s.name for s in specs])
        mudata_fields: list[Any] = []
        for i, s in enumerate(specs):
            if s.use_rep is not None:
                if s.use_rep not in mdata.mod[s.name].obsm:
                    raise KeyError(
                        f"mdata.mod[{s.name!r}].obsm[{s.use_rep!r}] is missing (available: "
                        f"{sorted(mdata.mod[s.name].obsm.keys())}). Compute it first or fix `use_rep`."
                    )
                mudata_fields.append(
                    fields.MuDataObsmField(
                        _input_key(i), s.use_rep, mod_key=s.name, correct_data_format=False
                    )
                )
            else:
                if s.layer is not None and s.layer not in mdata.mod[s.name].layers:
                    raise KeyError(
                        f"mdata.mod[{s.name!r}].layers[{s.layer!r}] is missing (available: "
                        f"{sorted(mdata.mod[s.name].layers.keys())}). Pass an existing layer or None for X."
                    )
                mudata_fields.append(
                    fields.MuDataLayerField(
                        _input_key(i),
                        s.layer,
                        mod_key=s.name,
                        is_count_data=False,
                        correct_data_format=False,
                        mod_required=True,
                    )
                )
        mudata_fields.append(
            fields.MuDataObsmField(
                _SPATIAL_FIELD, spatial_key, mod_key=spatial_mod, correct_data_format=False
            )
        )
        adata_manager = AnnDataManager(fields=mudata_fields, setup_method_args=setup_method_args)
        with quiet_scvi():
            adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        kind: str | None = None,
        spatial_key: str = "spatial",
        layer: str | None = None,
        use_rep: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Register a single-modality spatial AnnData with CRCT.

        Parameters
        ----------
        adata
            AnnData with coordinates in ``obsm[spatial_key]``.
        kind
            ``"rna"``, ``"adt"`` (``"protein"``) or ``"atac"``: which preprocessing the data need. Required
            unless ``use_rep`` is given or the model is built with ``preprocess=False``.
        spatial_key
            Key of the ``(n_obs, 2)`` coordinates in ``obsm``.
        layer
            Layer holding the data (default ``X``).
        use_rep
            ``obsm`` key of a precomputed representation to use instead of preprocessing.
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by :meth:`load`).

        Examples
        --------
        >>> import scomics_ext as sx
        >>> adt = sx.datasets.spatial_multiome(n_side=12, modalities=("adt",)).mod["adt"]
        >>> sx.model.CRCT.setup_anndata(adt, kind="protein")
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        if not isinstance(adata, AnnData):
            raise TypeError(
                f"`adata` must be an AnnData object, got {type(adata).__name__}; use `setup_mudata` for a MuData."
            )
        (spec,) = resolve_modality_specs(adata, kinds=kind, layers=layer, use_rep=use_rep)
        find_spatial(adata, spatial_key)
        if use_rep is not None:
            if use_rep not in adata.obsm:
                raise KeyError(
                    f"adata.obsm[{use_rep!r}] is missing (available: {sorted(adata.obsm.keys())}). "
                    "Compute it first or fix `use_rep`."
                )
            input_field = fields.ObsmField(_input_key(0), use_rep, correct_data_format=False)
        else:
            if layer is not None and layer not in adata.layers:
                raise KeyError(
                    f"adata.layers[{layer!r}] is missing (available: {sorted(adata.layers.keys())}). "
                    "Pass an existing layer or None for X."
                )
            input_field = fields.LayerField(
                _input_key(0), layer, is_count_data=False, correct_data_format=False
            )
        anndata_fields = [
            input_field,
            fields.ObsmField(_SPATIAL_FIELD, spatial_key, correct_data_format=False),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        with quiet_scvi():
            adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    # -------------------------------------------------------------------------------------------------
    # training
    # -------------------------------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int | None = None,
        *,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        progress_bar: bool | None = None,
        random_state: int | None = None,
        refresh_every: int | None = None,
        aug_schedule: Literal["default", "hln"] = "default",
        cluster_start: Literal["fixed", "stable"] = "stable",
        lr_schedule: Literal["constant", "cosine"] = "constant",
        **trainer_kwargs: Any,
    ) -> None:
        """Train full batch with Lightning (one optimiser step per epoch).

        Every term of the CRCT objective acts in a run of any length: the schedules of ``λ`` (weight of
        the augmented reconstruction), ``β`` (clustering loss, from 1/3 to 2/3 of the run on, once the
        pseudo-labels are stable) and ``ρ`` (augmentation
        strength) follow the relative progress ``epoch / max_epochs``. Pseudo-labels and prototypes are
        refreshed every ``refresh_every`` epochs (ISDA statistics reset at each refresh). Per-epoch losses
        land in :attr:`history_` (one entry per term: ``loss``, ``loss_rec``, ``loss_aug``,
        ``loss_graph``, ``loss_cluster``, and the schedule values ``lambda_aug``, ``beta_cluster``, ``rho``).

        Parameters
        ----------
        max_epochs
            Number of epochs (= steps); ``None``: 300 up to 20,000 spots, ``300·sqrt(20000 / N)`` above
            (at least 100).
        lr
            Adam learning rate (3e-3 is stable; 1e-2 can collapse the embedding).
        weight_decay
            Adam weight decay.
        accelerator
            Lightning accelerator (``"auto"`` uses a GPU when there is one).
        devices
            Lightning devices.
        progress_bar
            Show a progress bar (default: ``scomics_ext.settings.progress_bar``).
        random_state
            Seed of the pseudo-labelling and of the augmentation noise (default: the model's).
        refresh_every
            Epochs between pseudo-label refreshes; ``None``: ``max_epochs / 6``.
        lr_schedule
            ``"constant"`` (default) or ``"cosine"`` decay of the learning rate to 0 over the run
            (within noise of the constant rate on the 30x30 simulator and the SpatialGlue simulation, seed 0).
        aug_schedule
            ``λ`` schedule of the paper: ``"default"`` (0.01 / 0.2 / 0.5 over thirds) or ``"hln"``.
        cluster_start
            When the clustering loss switches on: ``"stable"`` (default) once two consecutive
            pseudo-labelings agree (ARI ≥ 0.95; between 1/3 and 2/3 of the run), ``"fixed"`` at 1/3 of
            the run as in the paper (see
            :class:`~scomics_ext.model._crct_train.CRCTTrainingPlan`). The epoch is kept in
            :attr:`cluster_start_epoch_`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` / :class:`lightning.pytorch.Trainer` (e.g.
            ``callbacks``).

        Examples
        --------
        >>> model.train(max_epochs=200, progress_bar=False)  # doctest: +SKIP
        >>> model.history_["loss_cluster"].tail()  # doctest: +SKIP
        """
        if max_epochs is None:
            max_epochs = default_max_epochs(self.adata.n_obs)
        max_epochs = check_positive_int(max_epochs, "max_epochs")
        if not (isinstance(lr, int | float) and lr > 0):
            raise ValueError(f"`lr` must be a positive number, got {lr!r}.")
        if refresh_every is not None:
            refresh_every = check_positive_int(refresh_every, "refresh_every")
        random_state = self._random_state if random_state is None else int(random_state)
        progress_bar = settings.progress_bar if progress_bar is None else bool(progress_bar)
        seed_everything(random_state)

        plan = self._training_plan_cls(
            self.module,
            self._features,
            self._graphs,
            lr=lr,
            weight_decay=weight_decay,
            refresh_every=refresh_every,
            aug_preset=aug_schedule,
            cluster_start=cluster_start,
            lr_schedule=lr_schedule,
            random_state=random_state,
            **self._train_defaults,
        )
        data_module = self._data_module_cls()
        trainer_kwargs.setdefault("log_every_n_steps", 1)
        trainer_kwargs.setdefault("enable_checkpointing", False)
        trainer_kwargs.setdefault("enable_model_summary", False)
        in_main = threading.current_thread() is threading.main_thread()
        sigint = signal.getsignal(signal.SIGINT) if in_main else None
        saved_levels = quiet_lightning()
        try:
            with warnings.catch_warnings():
                for message in _LIGHTNING_NOISE:
                    warnings.filterwarnings("ignore", message=message)
                runner = TrainRunner(
                    self,
                    training_plan=plan,
                    data_splitter=data_module,
                    max_epochs=max_epochs,
                    accelerator=accelerator,
                    devices=devices,
                    enable_progress_bar=progress_bar,
                    **trainer_kwargs,
                )
                runner()
        except SystemExit as err:
            # Lightning turns Ctrl+C into sys.exit(1); give the caller its KeyboardInterrupt back
            if isinstance(data_module.exception, KeyboardInterrupt):
                raise KeyboardInterrupt("CRCT training was interrupted") from err
            raise
        finally:
            if in_main and sigint is not None:
                signal.signal(signal.SIGINT, sigint)
            for lg, level in saved_levels:
                lg.setLevel(level)
        self.module.eval()
        #: epoch at which the clustering loss switched on in the last run (``None``: never)
        self.cluster_start_epoch_ = plan.cluster_start_epoch
        #: ``(epoch, ARI with the previous pseudo-labels)`` of every refresh of the last run
        self.refreshes_ = list(plan.refreshes)

    # -------------------------------------------------------------------------------------------------
    # results
    # -------------------------------------------------------------------------------------------------
    def _check_data(self, adata: AnnData | MuData | None) -> None:
        if adata is not None and adata is not self.adata:
            raise ValueError(
                "CRCT is transductive: it embeds the spots it was trained on only. Pass `adata=None` (or the "
                "registered object itself)."
            )

    @torch.inference_mode()
    def get_latent_representation(self, adata: AnnData | MuData | None = None) -> np.ndarray:
        """The joint embedding ``Z`` of the registered spots.

        Parameters
        ----------
        adata
            ``None`` or the registered object (CRCT is transductive).

        Returns
        -------
        ``(n_obs, n_latent)`` float32 array.

        Examples
        --------
        >>> z = model.get_latent_representation()  # doctest: +SKIP
        """
        self._check_if_trained(warn=True)
        self._check_data(adata)
        self.module.eval()
        device = self.module.device
        features = [x.to(device) for x in self._features]
        z = self.module(features, self._graphs.to(device)).z
        return z.detach().cpu().numpy().astype(np.float32)

    def predict(
        self,
        adata: AnnData | MuData | None = None,
        *,
        method: Literal["gmm", "kmeans", "leiden"] = "leiden",
        n_clusters: int | None = None,
        random_state: int | None = None,
        refine: bool = True,
    ) -> np.ndarray:
        """Spatial domains: cluster the embedding ``Z`` into ``n_clusters`` groups.

        Parameters
        ----------
        adata
            ``None`` or the registered object.
        method
            ``"leiden"`` (default): Leiden on the 15-NN graph of ``Z``, the resolution searched until
            ``n_clusters`` communities; ``"gmm"``: Gaussian mixture with one shared full covariance
            (mclust "EEE" of the published pipelines, scikit-learn ``covariance_type="tied"``) on PCA(20)
            of the L2-normalised ``Z``; ``"kmeans"``: k-means on the L2-normalised ``Z``. Leiden is the
            default because it scored higher on the package's own simulator
            (:func:`~scomics_ext.datasets.spatial_multiome`, 30x30 and 50x50 grids, 3 seeds each: mean
            ARI 0.851 against 0.824 for the GMM). ``"gmm"`` reproduces the published pipelines.
        n_clusters
            Number of domains (default: the model's ``n_clusters``).
        random_state
            Seed (default: the model's).
        refine
            Boundary refinement (:func:`~scomics_ext.model._crct_refine.refine_boundaries`): a spot whose
            6 nearest spots do not all share its domain takes the neighbouring domain that a logistic
            regression on its own (unsmoothed) features, trained on the interior spots with size-balanced
            classes, gives probability >= 0.99; rounds repeat on the new labels (at most 10) until nothing
            moves, and no domain vanishes. The encoders smooth edge spots towards the next domain; their
            own features often still say where they belong. Chosen on the package's simulator only
            (30 x 30 and 50 x 50 grids, 6 seeds each: the highest mean ARI that keeps the rare classes'
            recall, 0.777 / 0.880 -> 0.783 / 0.916); ``False`` gives the clustering of ``Z`` alone.

        Returns
        -------
        ``(n_obs,)`` int64 labels in ``0..n_clusters-1``.

        Examples
        --------
        >>> labels = model.predict(method="gmm")  # doctest: +SKIP
        """
        check_in(method, CLUSTER_METHODS, "method")
        if not isinstance(refine, bool | np.bool_):
            raise TypeError(f"`refine` must be a bool, got {type(refine).__name__}.")
        n_clusters = self.n_clusters if n_clusters is None else n_clusters
        n_clusters = check_n_clusters(n_clusters, self.adata.n_obs, what="spots")
        random_state = self._random_state if random_state is None else int(random_state)
        z = self.get_latent_representation(adata)
        labels = cluster_embedding(z, n_clusters, method=method, random_state=random_state)
        if refine:
            coords = np.asarray(self.adata_manager.get_from_registry(_SPATIAL_FIELD), dtype=np.float64)
            features = np.concatenate([f.numpy() for f in self._features], axis=1)
            labels = refine_boundaries(labels, coords, features, random_state=random_state)
        return labels

    def get_loss_history(self) -> pd.DataFrame:
        """Per-epoch losses as one table (epochs x terms), from :attr:`history_`.

        Returns
        -------
        DataFrame indexed by epoch with one column per logged term (empty before training).

        Examples
        --------
        >>> model.get_loss_history()[["loss", "loss_rec", "loss_cluster"]].plot()  # doctest: +SKIP
        """
        hist = self.history_ or {}
        if not hist:
            return pd.DataFrame()
        frames = [df.reset_index(drop=True) for df in hist.values()]
        out = pd.concat(frames, axis=1).astype(np.float64)
        out.index.name = "epoch"
        return out
