"""SCDET: scvi-tools model class of scDET (open-world, long-tailed cell-type annotation)."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scanpy import logging as logg
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalObsField,
    LabelsWithUnlabeledObsField,
    LayerField,
    NumericalObsField,
)
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from scomics_ext._docs import inject_docs
from scomics_ext._settings import settings
from scomics_ext._utils import quiet_scvi, seed_everything
from scomics_ext._validation import check_positive_int
from scomics_ext.module._scdet import SCDETNetwork

from ._scdet_plan import COUNTS_KEY, SCDETTrainingPlan, batch_tensors

__all__ = ["SCDET", "default_epoch_length", "default_max_epochs"]

#: obs column with each cell's row number (registered so that batches carry their cells' indices)
_INDEX_COLUMN = "_scdet_index"
#: prefix of the novel-class names
NOVEL_PREFIX = "novel_"
#: Lightning warnings that do not apply to this training loop (no validation set, epoch-level logging)
_SILENCED = (".*val_dataloader.*", ".*LeafSpec.*", ".*smaller than the logging interval.*", ".*num_workers.*")


#: fewest epochs of the default schedule (warm-up, then distribution estimates every 10 epochs)
MIN_DEFAULT_EPOCHS = 50
#: gradient steps of the default budget
DEFAULT_STEPS = 1500


#: the parameters shared by :func:`default_max_epochs` and :func:`default_epoch_length`
_BUDGET_PARAMS = (
    "n_cells\n        Number of training cells (reference + query).\n"
    "    batch_size\n        Cells per mini-batch.\n"
    "    n_steps\n        Gradient-step budget."
)


@inject_docs(budget_params=_BUDGET_PARAMS)
def default_max_epochs(n_cells: int, batch_size: int = 256, *, n_steps: int = DEFAULT_STEPS) -> int:
    """Epoch budget adapted to the data size: about ``n_steps`` gradient steps, within ``[50, 500]``.

    The paper trains 500 epochs whatever the size; a fixed number of steps keeps small data sets long
    enough to converge and large ones affordable on CPU. Data sets with more than ``n_steps / 50``
    mini-batches (7,680 cells at the default sizes) train 50 shorter epochs of
    :func:`default_epoch_length` mini-batches each, so the budget stays at ``n_steps`` steps whatever the
    number of cells. The label-free stopping rule
    (:class:`~scomics_ext.model._scdet_plan.SCDETTrainingPlan`) usually ends training earlier.

    Parameters
    ----------
    {budget_params}

    Returns
    -------
    The number of epochs.

    Examples
    --------
    >>> from scomics_ext.model._scdet import default_max_epochs
    >>> default_max_epochs(2000), default_max_epochs(100_000)
    (188, 50)
    """
    steps_per_epoch = max(1, math.ceil(n_cells / max(1, batch_size)))
    epoch_length = default_epoch_length(n_cells, batch_size, n_steps=n_steps) or steps_per_epoch
    return int(min(500, max(MIN_DEFAULT_EPOCHS, round(n_steps / epoch_length))))


@inject_docs(budget_params=_BUDGET_PARAMS)
def default_epoch_length(n_cells: int, batch_size: int = 256, *, n_steps: int = DEFAULT_STEPS) -> int | None:
    """Mini-batches per epoch of the default schedule: ``None`` (a full pass) or a cap for large data.

    With more than ``n_steps / 50`` mini-batches per pass, 50 full passes would cost more than the
    ``n_steps`` budget, and the cost of training would grow with the number of cells (at 10^5 cells,
    50 x 391 steps). An epoch is then ``n_steps // 50`` mini-batches of a fresh random order of all cells
    (every epoch draws a new permutation, so successive epochs see different cells): the warm-up, the
    distribution estimates every 10 epochs and the stopping rule keep the lengths in steps they have at
    7,680 cells, and the training cost is constant in the number of cells.

    Parameters
    ----------
    {budget_params}

    Returns
    -------
    ``None`` when a full pass fits (``ceil(n_cells / batch_size) <= n_steps // 50``), else the number of
    mini-batches of one epoch.

    Examples
    --------
    >>> from scomics_ext.model._scdet import default_epoch_length
    >>> default_epoch_length(2000), default_epoch_length(100_000)
    (None, 30)
    """
    steps_per_epoch = max(1, math.ceil(n_cells / max(1, batch_size)))
    cap = max(1, n_steps // MIN_DEFAULT_EPOCHS)
    return None if steps_per_epoch <= cap else int(cap)


class SCDET(BaseModelClass):
    """scDET: distribution-independent open-world cell-type identification (Zhai et al., IJCAI 2024).

    One model is trained on a joint object holding the labelled reference cells and the unlabelled query
    cells (SCANVI's convention: the query cells carry ``unlabeled_category`` in ``labels_key``). It
    classifies every cell into the ``n_seen`` reference types or one of ``n_novel`` novel classes, which come
    out clustered and named ``novel_1 … novel_k`` by decreasing size.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`; ``X`` (or the layer) holds the model input, the
        log-normalised, scaled expression of the selected genes.
    n_novel
        Number of novel classes ``K - n_seen`` (``>= 0``).
    n_hidden, n_latent, n_proj, noise_sd, tau_cls, sharpen, temperature, rho, gamma, alpha, beta, swap_p, lambda_cls, lambda_con
        Network and loss settings, see :class:`~scomics_ext.module._scdet.SCDETNetwork`.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> from scomics_ext.model._scdet import SCDET
    >>> SCDET.setup_anndata(joint, labels_key="label", unlabeled_category="unlabelled")  # doctest: +SKIP
    >>> model = SCDET(joint, n_novel=3)  # doctest: +SKIP
    >>> model.train(max_epochs=100)  # doctest: +SKIP
    >>> labels = model.predict()  # doctest: +SKIP
    >>> z = model.get_latent_representation()  # doctest: +SKIP
    """

    _module_cls = SCDETNetwork
    _training_plan_cls = SCDETTrainingPlan

    def __init__(
        self,
        adata: AnnData | None = None,
        n_novel: int = 0,
        *,
        n_hidden: Sequence[int] = (512, 256),
        n_latent: int = 128,
        n_proj: int = 128,
        noise_sd: float = 0.2,
        tau_cls: float = 0.1,
        sharpen: float = 2.0,
        temperature: float = 0.2,
        rho: float = 1.0,
        gamma: float = 0.5,
        alpha: float = 0.5,
        beta: float = 0.5,
        swap_p: float = 0.3,
        lambda_cls: float = 1.0,
        lambda_con: float = 1.0,
    ):
        super().__init__(adata)
        if isinstance(n_novel, bool) or not isinstance(n_novel, int | np.integer) or n_novel < 0:
            raise ValueError(f"`n_novel` must be a non-negative integer, got {n_novel!r}.")
        labels_state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        mapping = list(labels_state.categorical_mapping)
        self.unlabeled_category_ = labels_state.unlabeled_category
        self.seen_types_ = [str(c) for c in mapping if c != self.unlabeled_category_]
        self.unlabeled_code_ = mapping.index(self.unlabeled_category_)
        n_batch = self.summary_stats.n_batch if self._has_batch() else 0
        likelihood = "zinb" if COUNTS_KEY in self.adata_manager.data_registry else "mse"
        self.module = SCDETNetwork(
            self.summary_stats.n_vars,
            n_seen=len(self.seen_types_),
            n_novel=int(n_novel),
            n_batch=n_batch,
            likelihood=likelihood,
            n_hidden=tuple(n_hidden),
            n_latent=n_latent,
            n_proj=n_proj,
            noise_sd=noise_sd,
            tau_cls=tau_cls,
            sharpen=sharpen,
            temperature=temperature,
            rho=rho,
            gamma=gamma,
            alpha=alpha,
            beta=beta,
            swap_p=swap_p,
            lambda_cls=lambda_cls,
            lambda_con=lambda_con,
        )
        #: novel slot (0-based, in class-id order after the seen types) -> rank by predicted size
        self.novel_rank_: list[int] = list(range(int(n_novel)))
        #: estimated class distribution π, by class name (after training)
        self.class_distribution_: dict[str, float] | None = None
        #: one record per distribution estimate (epoch, π, fraction of changed predictions)
        self.estimates_: list[dict] = []
        self.stopped_epoch_: int | None = None
        #: gradient steps of the last training run
        self.n_steps_: int | None = None
        self._model_summary_string = (
            f"SCDET: {len(self.seen_types_)} seen + {n_novel} novel classes, likelihood={likelihood}, "
            f"{self.summary_stats.n_vars} genes"
        )
        self.init_params_ = self._get_init_params(locals())

    def _has_batch(self) -> bool:
        return self.adata_manager.registry["setup_args"].get("batch_key") is not None

    # -- setup -----------------------------------------------------------------------------------
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        labels_key: str,
        unlabeled_category: str,
        layer: str | None = None,
        batch_key: str | None = None,
        counts_layer: str | None = None,
        **kwargs,
    ) -> None:
        """Register the joint reference + query object.

        Parameters
        ----------
        adata
            Reference and query cells together; the model input (log-normalised, scaled expression of the
            selected genes) in ``X`` or ``layer``.
        labels_key
            ``obs`` column with the reference labels; query cells hold ``unlabeled_category``.
        unlabeled_category
            The value marking unlabelled (query) cells.
        layer
            Layer holding the model input (default ``X``).
        batch_key
            ``obs`` column the decoder is conditioned on (e.g. reference vs query, or donors).
        counts_layer
            Layer with the raw counts of the same genes: reconstruction by a ZINB likelihood. Without it the
            model reconstructs the input with a mean-squared error.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Examples
        --------
        >>> from scomics_ext.model._scdet import SCDET
        >>> SCDET.setup_anndata(joint, labels_key="label", unlabeled_category="unlabelled")  # doctest: +SKIP
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        adata.obs[_INDEX_COLUMN] = np.arange(adata.n_obs)  # row of each cell: per-cell pseudo-labels
        fields = [
            NumericalObsField(REGISTRY_KEYS.INDICES_KEY, _INDEX_COLUMN),
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            LabelsWithUnlabeledObsField(REGISTRY_KEYS.LABELS_KEY, labels_key, unlabeled_category),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        ]
        if counts_layer is not None:
            fields.append(LayerField(COUNTS_KEY, counts_layer, is_count_data=True))
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        with quiet_scvi():
            manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    # -- training --------------------------------------------------------------------------------
    def _labels(self, adata: AnnData | None = None) -> np.ndarray:
        manager = self.get_anndata_manager(self._validate_anndata(adata), required=True)
        codes = np.asarray(manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY)).reshape(-1).astype(np.int64)
        return np.where(codes == self.unlabeled_code_, -1, codes)

    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = 256,
        lr: float = 1e-3,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        progress_bar: bool | None = None,
        *,
        n_warmup_epochs: int | None = None,
        estimate_every: int = 10,
        early_stopping: bool = True,
        weight_decay: float = 0.0,
        init_prototypes: bool = True,
        reseed: Literal["none", "dead", "all"] = "dead",
        first_estimate: Literal["pca", "projection"] = "pca",
        estimate_on: Literal["input", "projection"] = "input",
        anchor: bool = True,
        epoch_length: int | None = None,
        random_state: int = 0,
        **trainer_kwargs,
    ) -> None:
        """Train the model.

        Parameters
        ----------
        max_epochs
            Epoch budget; ``None``: :func:`default_max_epochs` (about 1500 gradient steps, 50-500 epochs;
            above 7,680 cells the epochs are :func:`default_epoch_length` mini-batches long, so the budget
            stays at 1500 steps however many cells there are).
        batch_size
            Cells per mini-batch (reference and query mixed).
        lr
            Adam (amsgrad) learning rate.
        accelerator, devices
            Lightning device selection (``"auto"`` uses a GPU when available).
        progress_bar
            Show a progress bar (default ``scomics_ext.settings.progress_bar``).
        n_warmup_epochs
            Reconstruction-only epochs before the classification and contrastive losses start; ``None``:
            20 % of ``max_epochs`` (at least 1, at most 50).
        estimate_every
            ``m``: epochs between estimates of the class distribution.
        early_stopping
            Stop when the predicted classes of the unlabelled cells are stable (fewer than 1 % change
            between two estimates, twice in a row). Uses no labels of unlabelled cells.
        weight_decay
            Adam weight decay.
        init_prototypes
            Place the prototypes on class centres at the first estimate (else: random, as in the paper).
        reseed
            At later estimates, move the novel prototypes that (almost) no cell predicts (``"dead"``), all
            novel prototypes (``"all"``) or none (``"none"``) to the centre of their cluster.
        first_estimate
            Representation clustered by the first distribution estimate, which places the prototypes:
            ``"pca"`` (default), a 50-component PCA of the model input; ``"projection"``, the contrastive
            projection ``v`` (the paper; right after the warm-up its head is still random).
        estimate_on
            Representation clustered by the later estimates: ``"input"`` (default), the same input PCA as
            the first (needs ``first_estimate="pca"``); ``"projection"``, the contrastive projection ``v``
            (the paper). The projection is trained with labels on reference cells only, so query cells of
            a seen type drift away from their reference cells and its estimates call them novel: on Baron
            (seed 0) overall accuracy 0.36 with ``"projection"`` vs 0.92 with ``"input"``, pbmc68k 0.715 vs
            0.733; on the simulator (seeds 0-2) 0.789/0.839/0.572 vs 0.774/0.800/0.567.
        anchor
            Give the unlabelled cells that the first estimate finds unexplained by the reference their
            novel slot as a pseudo-label (cross-entropy like the reference cells). Without it the novel
            prototypes rely on self-training alone, and the seen classes, trained on labels, absorb the
            novel cells that lie next to a seen type.
        epoch_length
            Mini-batches per epoch (each epoch draws a new random order of all cells and stops after this
            many batches); ``None``: a full pass, or :func:`default_epoch_length` when ``max_epochs`` is
            ``None`` too. The warm-up, ``estimate_every`` and the stopping rule count these epochs.
        random_state
            Seed of torch, numpy and k-means.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.

        Examples
        --------
        >>> model.train(max_epochs=100, random_state=0)  # doctest: +SKIP
        """
        seed_everything(random_state)
        n = self.adata.n_obs
        batch_size = int(min(batch_size, n))
        if max_epochs is None:
            max_epochs = default_max_epochs(n, batch_size)
            if epoch_length is None:
                epoch_length = default_epoch_length(n, batch_size)
        if epoch_length is not None:
            epoch_length = check_positive_int(epoch_length, "epoch_length")
            trainer_kwargs.setdefault("limit_train_batches", epoch_length)
        if n_warmup_epochs is None:
            n_warmup_epochs = int(min(50, max(1, round(0.2 * max_epochs))))
        labels = self._labels()
        if (labels >= 0).sum() == 0:
            raise ValueError("No labelled (reference) cell: scDET needs reference labels.")
        embed = lambda: self._embed(batch_size=1024)  # noqa: E731
        if estimate_on not in ("input", "projection"):
            raise ValueError(f"`estimate_on` must be 'input' or 'projection', got {estimate_on!r}.")
        if first_estimate not in ("pca", "projection"):
            raise ValueError(f"`first_estimate` must be 'pca' or 'projection', got {first_estimate!r}.")
        first_rep = self._input_pca(random_state) if first_estimate == "pca" else None
        plan = SCDETTrainingPlan(
            self.module,
            embed=embed,
            labels=labels,
            unlabeled_code=self.unlabeled_code_,
            lr=lr,
            weight_decay=weight_decay,
            n_warmup=n_warmup_epochs,
            estimate_every=estimate_every,
            early_stopping=early_stopping,
            init_prototypes=init_prototypes,
            reseed=reseed,
            random_state=random_state,
            first_rep=first_rep,
            anchor=anchor,
            estimate_on=estimate_on,
        )
        splitter = DataSplitter(
            self.adata_manager,
            train_size=1.0,
            shuffle_set_split=False,
            batch_size=batch_size,
            drop_last=n >= 2 * batch_size,
        )
        progress_bar = settings.progress_bar if progress_bar is None else progress_bar
        trainer_kwargs.setdefault("enable_progress_bar", bool(progress_bar))
        trainer_kwargs.setdefault("enable_checkpointing", False)
        trainer_kwargs.setdefault("logger", None)
        trainer_kwargs.setdefault("log_every_n_steps", 1)
        per_epoch = "" if epoch_length is None else f" of {int(epoch_length)} mini-batches"
        start = logg.info(
            f"training scDET: {n} cells, up to {max_epochs} epochs{per_epoch} ({n_warmup_epochs} warm-up)"
        )
        runner = TrainRunner(
            self,
            training_plan=plan,
            data_splitter=splitter,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
        levels = [lg.level for lg in quiet]
        try:
            for lg in quiet:  # Lightning's banners (GPU available, tips) are noise in a notebook
                lg.setLevel(max(lg.level, logging.WARNING))
            with warnings.catch_warnings():
                for msg in _SILENCED:
                    warnings.filterwarnings("ignore", message=msg)
                runner()
        finally:
            for lg, level in zip(quiet, levels):
                lg.setLevel(level)
        if plan.n_estimates == 0:  # budget too short to reach the first estimate
            plan.estimate()
        self.module.eval()
        self.estimates_ = list(self.estimates_) + plan.estimates
        self.stopped_epoch_ = plan.stopped_epoch
        self.n_steps_ = int(runner.trainer.global_step)
        self._finalise_names()
        logg.info(
            f"    finished after {plan.current_epoch + 1} epochs"
            + (" (stable predictions)" if plan.stopped_epoch else ""),
            time=start,
        )

    def _input_pca(self, random_state: int, n_comps: int = 50) -> np.ndarray:
        """PCA of the registered model input (all cells, in order)."""
        from scipy import sparse
        from sklearn.decomposition import PCA

        X = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        X = X.toarray() if sparse.issparse(X) else np.asarray(X)
        n_comps = int(min(n_comps, X.shape[0] - 1, X.shape[1] - 1))
        return PCA(n_comps, random_state=random_state).fit_transform(X.astype(np.float32, copy=False))

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def _embed(
        self, adata: AnnData | None = None, indices: Sequence[int] | None = None, batch_size: int = 1024
    ) -> dict[str, np.ndarray]:
        """``z``, ``v``, ``h`` and ``logits`` of the cells (evaluation mode)."""
        module = self.module
        was_training = module.training
        module.eval()
        adata = self._validate_anndata(adata) if adata is not None else self.adata
        loader = self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size, shuffle=False)
        parts: dict[str, list[np.ndarray]] = {"z": [], "v": [], "h": [], "logits": []}
        for tensors in loader:
            args = batch_tensors({k: v.to(module.device) for k, v in tensors.items()}, self.unlabeled_code_)
            out = module(args["x"], args["batch_index"], decode=False)
            parts["z"].append(out.z.cpu().numpy())
            parts["v"].append(out.v.cpu().numpy())
            parts["h"].append(module.class_features(out.z).cpu().numpy())
            parts["logits"].append(out.logits.cpu().numpy())
        if was_training:
            module.train()
        return {k: np.concatenate(v) for k, v in parts.items()}

    def _finalise_names(self) -> None:
        """Rank the novel slots by predicted size on the unlabelled training cells; record ``π`` by name."""
        out = self._embed()
        unl = self._labels() < 0
        pred = out["logits"][unl].argmax(1)
        n_seen, n_novel = self.module.n_seen, self.module.n_novel
        sizes = np.bincount(pred, minlength=n_seen + n_novel)[n_seen:]
        order = np.argsort(-sizes, kind="stable")
        rank = np.empty(n_novel, dtype=np.int64)
        rank[order] = np.arange(n_novel)
        self.novel_rank_ = [int(r) for r in rank]
        pi = self.module.pi.detach().cpu().numpy()
        self.class_distribution_ = {name: float(p) for name, p in zip(self.class_names, pi)}

    @property
    def class_names(self) -> list[str]:
        """Names of the ``K`` classes in class-id order: the seen types, then ``novel_<rank>``."""
        return list(self.seen_types_) + [f"{NOVEL_PREFIX}{r + 1}" for r in self.novel_rank_]

    def predict(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        soft: bool = False,
        batch_size: int = 1024,
    ) -> pd.Series | pd.DataFrame:
        """Predicted class of each cell (argmax of the pseudo-labelling branch).

        Parameters
        ----------
        adata
            AnnData set up like the training data (default: the training data).
        indices
            Cells to predict (default all).
        soft
            Return the class probabilities instead of labels.
        batch_size
            Cells per inference batch.

        Returns
        -------
        Labels (:class:`pandas.Series` of strings: seen type names or ``novel_1 … novel_k``, numbered by
        decreasing size) or, with ``soft=True``, a :class:`pandas.DataFrame` of probabilities with one
        column per class.

        Examples
        --------
        >>> labels = model.predict()  # doctest: +SKIP
        >>> proba = model.predict(soft=True)  # doctest: +SKIP
        """
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata) if adata is not None else self.adata
        logits = self._embed(adata, indices, batch_size)["logits"]
        proba = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
        obs_names = adata.obs_names if indices is None else adata.obs_names[np.asarray(indices)]
        names = np.asarray(self.class_names, dtype=object)
        if soft:
            return pd.DataFrame(proba, index=obs_names, columns=list(names))
        return pd.Series(names[proba.argmax(1)], index=obs_names, dtype=object)

    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int = 1024,
        representation: Literal["latent", "projection"] = "latent",
    ) -> np.ndarray:
        """Latent representation ``z`` (or the contrastive projection ``v``) of each cell.

        Parameters
        ----------
        adata
            AnnData set up like the training data (default: the training data).
        indices
            Cells (default all).
        batch_size
            Cells per inference batch.
        representation
            ``"latent"`` (the 128-d autoencoder latent) or ``"projection"`` (the L2-normalised output of the
            contrastive head).

        Returns
        -------
        ``(n_cells, d)`` float32 array.

        Examples
        --------
        >>> z = model.get_latent_representation()  # doctest: +SKIP
        """
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata) if adata is not None else self.adata
        key = {"latent": "z", "projection": "v"}[representation]
        return self._embed(adata, indices, batch_size)[key].astype(np.float32)
