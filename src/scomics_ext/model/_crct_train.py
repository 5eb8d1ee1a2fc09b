"""Training machinery of :class:`~scomics_ext.model.CRCT` on Lightning: module, full-batch data, plan.

* :class:`CRCTModule` - the torch state that is saved: the :class:`~scomics_ext.module.CRCTNetwork`,
  the ISDA running statistics and the current prototypes / pseudo-labels (buffers).
* :class:`FullBatchDataModule` - a LightningDataModule yielding one dummy batch per epoch (CRCT trains
  full batch on the whole graph, so one optimiser step = one epoch). It also remembers the exception
  that interrupted a fit, so that :meth:`CRCT.train` can re-raise a ``KeyboardInterrupt`` that Lightning
  turned into ``SystemExit``.
* :class:`CRCTTrainingPlan` - the LightningModule implementing every term of the objective.
* :func:`cluster_embedding` - the final / pseudo-label clustering (tied GMM, k-means, Leiden).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from scomics_ext._validation import check_in
from scomics_ext.module import (
    DEFAULT_RHO0,
    DEFAULT_TAU,
    CRCTGraphs,
    CRCTNetwork,
    CRCTOutput,
    RunningClassStats,
    aug_weight_schedule,
    cluster_weight_schedule,
    graph_regularization,
    kmeans_prototypes,
    match_prototypes,
    prototype_contrastive_loss,
    reconstruction_loss,
    relative_progress,
    rho_schedule,
)

__all__ = [
    "CLUSTER_METHODS",
    "LOSS_TERMS",
    "CRCTModule",
    "CRCTTrainingPlan",
    "FullBatchDataModule",
    "cluster_embedding",
]

#: methods of :func:`cluster_embedding`
CLUSTER_METHODS = ("gmm", "kmeans", "leiden")
#: per-epoch loss columns logged into ``history_``
LOSS_TERMS = ("loss", "loss_rec", "loss_aug", "loss_graph", "loss_cluster")
#: above this many spots the k-means / GMM restarts drop from 10 to 3 (cost grows with N)
_LARGE = 20_000


# ---------------------------------------------------------------------------------------------------
# clustering of embeddings
# ---------------------------------------------------------------------------------------------------
def _normalized_pcs(z: np.ndarray, n_pcs: int, random_state: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    zn = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    n_pcs = min(n_pcs, zn.shape[1], zn.shape[0] - 1)
    return PCA(n_pcs, random_state=random_state).fit_transform(zn.astype(np.float64))


def _leiden_k(z: np.ndarray, n_clusters: int, random_state: int, n_neighbors: int = 15) -> np.ndarray:
    """Leiden on the kNN graph of ``z``, bisecting the resolution until ``n_clusters`` communities."""
    import anndata as ad
    import scanpy as sc
    from scanpy import logging as logg

    from scomics_ext.pp import knn_graph

    # binary symmetric kNN graph (sklearn; avoids UMAP's numba compilation in ``sc.pp.neighbors``)
    conn, _ = knn_graph(z, n_neighs=min(n_neighbors, z.shape[0] - 1), method="exact")
    tmp = ad.AnnData(np.zeros((z.shape[0], 1), dtype=np.float32))
    lo, hi = 0.0, 1.0
    best: tuple[int, np.ndarray] | None = None

    def run(res: float) -> np.ndarray:
        sc.tl.leiden(
            tmp, resolution=res, key_added="_k", adjacency=conn, flavor="igraph", n_iterations=2,
            directed=False, random_state=random_state,
        )  # fmt: skip
        return tmp.obs["_k"].cat.codes.to_numpy().astype(np.int64)

    while True:  # grow the upper bound until it gives enough clusters
        lab = run(hi)
        k = int(lab.max()) + 1
        if best is None or abs(k - n_clusters) < abs(best[0] - n_clusters):
            best = (k, lab)
        if k >= n_clusters or hi > 50:
            break
        lo, hi = hi, hi * 2
    for _ in range(30):
        if best[0] == n_clusters:
            break
        mid = (lo + hi) / 2
        lab = run(mid)
        k = int(lab.max()) + 1
        if abs(k - n_clusters) < abs(best[0] - n_clusters):
            best = (k, lab)
        if k < n_clusters:
            lo = mid
        elif k > n_clusters:
            hi = mid
    if best[0] != n_clusters:
        logg.warning(f"Leiden found no resolution giving exactly {n_clusters} clusters; returning {best[0]}.")
    return best[1]


def cluster_embedding(
    z: np.ndarray,
    n_clusters: int,
    *,
    method: Literal["gmm", "kmeans", "leiden"] = "gmm",
    n_pcs: int = 20,
    random_state: int = 0,
    n_init: int | None = None,
) -> np.ndarray:
    """Cluster an embedding into ``n_clusters`` groups; integer labels ``0..K-1``.

    ``"gmm"``: Gaussian mixture with one shared full covariance (``covariance_type="tied"``, the mclust
    "EEE" model of the published pipelines) on the first ``n_pcs`` principal components of the
    L2-normalised rows. ``"kmeans"``: k-means on the L2-normalised rows. ``"leiden"``: Leiden on the
    (binary, symmetric) 15-NN graph of ``z``, with the resolution bisected until ``n_clusters`` communities are found.

    Parameters
    ----------
    z
        ``(n_obs, d)`` embedding.
    n_clusters
        Number of clusters ``K``.
    method
        ``"gmm"``, ``"kmeans"`` or ``"leiden"``.
    n_pcs
        Principal components for ``"gmm"``.
    random_state
        Seed.
    n_init
        Restarts of GMM / k-means (default 10, 3 above 20,000 observations).

    Returns
    -------
    ``(n_obs,)`` int64 labels.

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.model._crct_train import cluster_embedding
    >>> rng = np.random.default_rng(0)
    >>> z = np.r_[rng.normal(0, 0.1, (50, 4)) + [1, 0, 0, 0], rng.normal(0, 0.1, (50, 4)) + [0, 1, 0, 0]]
    >>> np.unique(cluster_embedding(z, 2)).tolist()
    [0, 1]
    """
    z = np.asarray(z, dtype=np.float64)
    if n_init is None:
        n_init = 10 if z.shape[0] <= _LARGE else 3
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        x = _normalized_pcs(z, n_pcs, random_state)
        gmm = GaussianMixture(
            n_clusters, covariance_type="tied", n_init=n_init, random_state=random_state, reg_covar=1e-6
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: labels are still usable
            labels = gmm.fit_predict(x)
    elif method == "kmeans":
        from sklearn.cluster import KMeans

        zn = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        labels = KMeans(n_clusters, n_init=n_init, random_state=random_state).fit_predict(zn)
    elif method == "leiden":
        labels = _leiden_k(z, n_clusters, random_state)
    else:
        raise ValueError(f"`method` must be one of {list(CLUSTER_METHODS)}, got {method!r}.")
    return np.asarray(labels, dtype=np.int64)


def _prototypes_from_labels(z: Tensor, labels: Tensor, n_clusters: int, fallback: Tensor | None) -> Tensor:
    """Class means of the L2-normalised rows of ``z`` (``fallback`` rows, or a member-free row, if empty)."""
    zn = F.normalize(z.detach(), dim=1)
    sums = torch.zeros(n_clusters, zn.shape[1], dtype=zn.dtype, device=zn.device).index_add_(0, labels, zn)
    count = torch.bincount(labels, minlength=n_clusters).to(zn.dtype)
    protos = sums / count.clamp_min(1).unsqueeze(1)
    empty = count == 0
    if bool(empty.any()):
        protos[empty] = fallback.to(protos)[empty] if fallback is not None else zn[: int(empty.sum())]
    return protos


def pseudo_labels(
    z: Tensor,
    n_clusters: int,
    *,
    method: Literal["gmm", "kmeans", "leiden"],
    previous: Tensor | None,
    random_state: int,
    n_init: int,
) -> tuple[Tensor, Tensor]:
    """Prototypes and pseudo-labels of ``z``; ids matched to ``previous`` prototypes (Hungarian)."""
    if method == "kmeans":
        return kmeans_prototypes(z, n_clusters, previous=previous, random_state=random_state, n_init=n_init)
    zn = z.detach().cpu().numpy()
    lab = cluster_embedding(zn, n_clusters, method=method, random_state=random_state, n_init=n_init)
    if int(lab.max()) + 1 != n_clusters:  # Leiden found no resolution giving exactly K communities
        lab = cluster_embedding(zn, n_clusters, method="gmm", random_state=random_state, n_init=n_init)
    labels = torch.as_tensor(lab, device=z.device)
    protos = _prototypes_from_labels(z, labels, n_clusters, previous)
    if previous is not None:
        perm = match_prototypes(protos, previous.to(protos))
        protos = protos[perm]
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n_clusters, device=perm.device)
        labels = inverse[labels]
    return protos, labels


# ---------------------------------------------------------------------------------------------------
# torch state
# ---------------------------------------------------------------------------------------------------
class CRCTModule(nn.Module):
    """What a trained CRCT model is in torch terms (saved by :meth:`CRCT.save`).

    Parameters
    ----------
    n_inputs
        Feature dimension of each modality.
    n_feature_params
        Undirected feature edges per modality (size of the learnable edge weights).
    n_obs
        Number of spots (size of the pseudo-label buffer).
    n_clusters
        Number of pseudo-classes / prototypes.
    n_hidden, n_latent, fusion_activation
        See :class:`~scomics_ext.module.CRCTNetwork`.
    learn_graph
        Learn the graph fusion (feature-edge weights and mixing scalars). ``False`` fixes
        ``Â_m = norm(a A^S + A^F_m)``.
    spatial_weight
        Initial weight ``a`` of the spatial edges in every fusion (feature edges: 1).

    Examples
    --------
    >>> from scomics_ext.model._crct_train import CRCTModule
    >>> m = CRCTModule([5, 4], [10, 12], n_obs=30, n_clusters=3, n_hidden=8, n_latent=6)
    >>> m.prototypes.shape, m.pseudo_labels.shape
    (torch.Size([3, 6]), torch.Size([30]))
    """

    prototypes: Tensor
    pseudo_labels: Tensor

    def __init__(
        self,
        n_inputs: Sequence[int],
        n_feature_params: Sequence[int],
        *,
        n_obs: int,
        n_clusters: int,
        n_hidden: int = 64,
        n_latent: int = 64,
        fusion_activation: str = "none",
        learn_graph: bool = True,
        spatial_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.network = CRCTNetwork(
            n_inputs,
            n_feature_params,
            n_hidden=n_hidden,
            n_latent=n_latent,
            fusion_activation=fusion_activation,  # type: ignore[arg-type]
            learn_feature_edges=learn_graph,
            init_mix=(float(spatial_weight), 1.0, 0.0),
        )
        if not learn_graph:
            for fusion in self.network.fusions:
                for p in (fusion.spatial_weight, fusion.feature_weight, fusion.bias):
                    p.requires_grad_(False)
        self.stats = RunningClassStats(n_clusters, n_latent)
        self.n_clusters = int(n_clusters)
        self.register_buffer("prototypes", torch.zeros(n_clusters, n_latent))
        self.register_buffer("pseudo_labels", torch.zeros(n_obs, dtype=torch.int64))

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def on_load(self, model: Any, **kwargs: Any) -> None:
        """Hook called by :meth:`scvi.model.base.BaseModelClass.load` (nothing to do)."""

    def forward(self, features: Sequence[Tensor], graphs: CRCTGraphs) -> CRCTOutput:
        """Run the network; see :meth:`~scomics_ext.module.CRCTNetwork.forward`."""
        return self.network(features, graphs)


# ---------------------------------------------------------------------------------------------------
# Lightning
# ---------------------------------------------------------------------------------------------------
class _OneBatch(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, idx: int) -> Tensor:
        return torch.zeros(1)


class FullBatchDataModule(pl.LightningDataModule):
    """One dummy batch per epoch: the plan holds the (full-batch) features and graphs itself.

    Examples
    --------
    >>> from scomics_ext.model._crct_train import FullBatchDataModule
    >>> len(FullBatchDataModule().train_dataloader())
    1
    """

    def __init__(self) -> None:
        super().__init__()
        self.exception: BaseException | None = None

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """A loader with a single item."""
        return torch.utils.data.DataLoader(_OneBatch(), batch_size=1)

    def on_exception(self, exception: BaseException) -> None:
        """Remember what interrupted the fit (Lightning turns ``KeyboardInterrupt`` into ``SystemExit``)."""
        self.exception = exception


class CRCTTrainingPlan(pl.LightningModule):
    """Full-batch CRCT objective: ``L_rec + L_graph + λ(p) L_aug + β(p) L_cluster`` (paper eq 14).

    At the start of every ``refresh_every`` epochs the pseudo-labels and prototypes are recomputed from
    ``Z`` (ids kept stable by Hungarian matching) and the ISDA statistics are reset; in between the
    labels stay fixed and the running class statistics absorb every epoch's ``Z``. ``p = epoch /
    max_epochs`` drives ``λ``, ``β`` and ``ρ`` (:mod:`scomics_ext.module` schedules).

    Parameters
    ----------
    module
        The :class:`CRCTModule`.
    features
        One ``(N, d_m)`` float tensor per modality.
    graphs
        The sparse graphs.
    lr, weight_decay
        Adam settings.
    modality_weights
        ``w_m`` of the reconstruction losses.
    augmentation
        Use ISDA (``L_aug`` and ``z̃`` in the clustering loss).
    cluster_loss
        Use the prototype-contrastive loss.
    tau
        Temperature of the clustering loss (cosine logits).
    rho0
        Base augmentation strength.
    refresh_every
        Epochs between pseudo-label refreshes (``None``: ``max(1, round(max_epochs / 6))``).
    pseudo_label_method
        ``"gmm"`` or ``"kmeans"`` (see :class:`CRCT`).
    aug_preset
        Schedule of ``λ`` (:func:`~scomics_ext.module.aug_weight_schedule`).
    cluster_start
        When ``β`` switches on. ``"fixed"``: at 1/3 of the run (the paper's epoch 100 of 300).
        ``"stable"``: once the embedding has settled, judged without labels - from 1/3 of the run on, the
        pseudo-labels are refreshed every ``max_epochs / 12`` epochs and ``β`` switches on at the first
        refresh whose labels agree with the previous refresh's (ARI ≥ ``stable_ari``), at the latest at
        2/3 of the run. The clustering loss locks in the partition it starts from, so starting it on a
        still-moving embedding keeps that embedding's errors.
    stable_ari
        Agreement of consecutive pseudo-labelings that counts as settled (``cluster_start="stable"``).
    lr_schedule
        ``"constant"`` learning rate or ``"cosine"`` decay to 0 over ``max_epochs``.
    random_state
        Seed of the pseudo-labelling and of the augmentation noise.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, torch
    >>> from scomics_ext.module import CRCTGraphs
    >>> from scomics_ext.model._crct_train import CRCTModule, CRCTTrainingPlan
    >>> a = sp.random(30, 30, density=0.2, random_state=0, format="csr")
    >>> a = ((a + a.T) > 0).astype(float)
    >>> graphs = CRCTGraphs.from_scipy(a, [a])
    >>> module = CRCTModule([4], graphs.n_feature_params, n_obs=30, n_clusters=2, n_hidden=8, n_latent=4)
    >>> plan = CRCTTrainingPlan(module, [torch.randn(30, 4)], graphs)
    """

    def __init__(
        self,
        module: CRCTModule,
        features: Sequence[Tensor],
        graphs: CRCTGraphs,
        *,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        modality_weights: Sequence[float] | None = None,
        augmentation: bool = True,
        cluster_loss: bool = True,
        tau: float = DEFAULT_TAU,
        rho0: float = DEFAULT_RHO0,
        refresh_every: int | None = None,
        pseudo_label_method: Literal["gmm", "kmeans", "leiden"] = "gmm",
        aug_preset: Literal["default", "hln"] = "default",
        cluster_start: Literal["fixed", "stable"] = "fixed",
        stable_ari: float = 0.95,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        random_state: int = 0,
    ) -> None:
        super().__init__()
        self.lr_schedule = check_in(lr_schedule, ("constant", "cosine"), "lr_schedule")
        self.cluster_start = check_in(cluster_start, ("fixed", "stable"), "cluster_start")
        self.stable_ari = float(stable_ari)
        #: epoch at which the clustering loss switched on (``None``: not yet / never)
        self.cluster_start_epoch: int | None = None
        #: ``(epoch, ARI with the previous refresh)`` of every pseudo-label refresh
        self.refreshes: list[tuple[int, float | None]] = []
        self.module = module
        self._features = list(features)
        self._graphs = graphs
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.modality_weights = None if modality_weights is None else [float(w) for w in modality_weights]
        self.augmentation = bool(augmentation)
        self.cluster_loss = bool(cluster_loss)
        self.tau = float(tau)
        self.rho0 = float(rho0)
        self.refresh_every = refresh_every
        self.pseudo_label_method = pseudo_label_method
        self.aug_preset = aug_preset
        self.random_state = int(random_state)
        self._generator: torch.Generator | None = None
        self._has_prototypes = False
        # restarts of each pseudo-label clustering: a poor local optimum at a refresh is reinforced by the
        # clustering loss until the next refresh, so use as many as the final clustering does
        self._n_init = 10 if graphs.n_nodes <= _LARGE else 3

    # -- set-up -----------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Move the full-batch data to the training device; seed the augmentation noise."""
        self._features = [x.to(self.device) for x in self._features]
        self._graphs = self._graphs.to(self.device)
        self._generator = torch.Generator().manual_seed(self.random_state)
        self._has_prototypes = False
        self.cluster_start_epoch = None
        self.refreshes = []

    def configure_optimizers(self) -> Any:
        """Adam on the trainable parameters; with ``lr_schedule="cosine"`` a cosine decay to 0 over the run."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_schedule == "constant":
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, int(self.trainer.max_epochs))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # -- one epoch ----------------------------------------------------------------------------------------
    def _refresh_period(self) -> int:
        if self.refresh_every is not None:
            return max(1, int(self.refresh_every))
        return max(1, round(self.trainer.max_epochs / 6))

    def _cluster_weight(self, p: float) -> float:
        """``β`` at progress ``p`` (0 before the clustering loss has started)."""
        if not self.cluster_loss:
            return 0.0
        if self.cluster_start == "fixed":
            return cluster_weight_schedule(p)
        return 0.0 if self.cluster_start_epoch is None else 1.0

    def _waiting_for_start(self, p: float) -> bool:
        """``cluster_start="stable"`` between 1/3 of the run and the start: pseudo-labels refresh often."""
        return (
            self.cluster_start == "stable"
            and self.cluster_loss
            and self.cluster_start_epoch is None
            and p >= 1 / 3
        )

    def _is_refresh(self, epoch: int, p: float) -> bool:
        if not self._has_prototypes:
            return True
        if self._waiting_for_start(p):
            return epoch % max(1, round(self.trainer.max_epochs / 12)) == 0
        if self.cluster_start == "stable" and self.cluster_start_epoch is not None:
            return (epoch - self.cluster_start_epoch) % self._refresh_period() == 0
        return epoch % self._refresh_period() == 0

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One full-batch step of the CRCT objective; logs every term."""
        epoch, n_epochs = self.current_epoch, max(1, int(self.trainer.max_epochs))
        p = relative_progress(epoch, n_epochs)
        m = self.module
        out = m(self._features, self._graphs)
        z = out.z
        if self._is_refresh(epoch, p):
            previous_labels = m.pseudo_labels.clone() if self._has_prototypes else None
            protos, labels = pseudo_labels(
                z.detach(),
                m.n_clusters,
                method=self.pseudo_label_method,
                previous=m.prototypes if self._has_prototypes else None,
                random_state=self.random_state + epoch,
                n_init=self._n_init,
            )
            m.prototypes.copy_(protos)
            m.pseudo_labels.copy_(labels)
            m.stats.reset()
            self._has_prototypes = True
            agreement = None
            if previous_labels is not None:
                from sklearn.metrics import adjusted_rand_score

                agreement = float(adjusted_rand_score(previous_labels.cpu().numpy(), labels.cpu().numpy()))
            self.refreshes.append((int(epoch), agreement))
            settled = agreement is not None and agreement >= self.stable_ari
            if self._waiting_for_start(p) and (settled or p >= 2 / 3):
                self.cluster_start_epoch = int(epoch)
        if self.cluster_start_epoch is None and self._cluster_weight(p) > 0:  # the fixed start
            self.cluster_start_epoch = int(epoch)
        labels = m.pseudo_labels
        m.stats.update(z, labels)

        lam = aug_weight_schedule(p, preset=self.aug_preset) if self.augmentation else 0.0
        beta = self._cluster_weight(p)
        rho = rho_schedule(p, self.rho0) if self.augmentation else 0.0
        l_rec = reconstruction_loss(self._features, out.reconstructions, self.modality_weights)
        z_aug = None
        l_aug = z.new_zeros(())
        if self.augmentation:
            z_aug = m.stats.augment(z, labels, rho, generator=self._generator)
            l_aug = reconstruction_loss(
                self._features, m.network.decode(z_aug, self._graphs), self.modality_weights
            )
        l_graph = graph_regularization(out.feature_weights, out.feature_init)
        l_cl = z.new_zeros(())
        if beta > 0:
            l_cl = prototype_contrastive_loss(z, labels, m.prototypes, z_aug=z_aug, tau=self.tau)
        loss = l_rec + l_graph + lam * l_aug + beta * l_cl
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"CRCT training diverged at epoch {epoch} (loss {loss.item()}); lower `lr` or check the input."
            )
        values = {
            "loss": loss,
            "loss_rec": l_rec,
            "loss_aug": l_aug,
            "loss_graph": l_graph,
            "loss_cluster": l_cl,
            "lambda_aug": lam,
            "beta_cluster": beta,
            "rho": rho,
        }
        for key, val in values.items():
            v = val.detach() if isinstance(val, Tensor) else torch.tensor(float(val))
            self.log(key, v.float(), on_step=False, on_epoch=True, prog_bar=key == "loss", batch_size=1)
        return loss


def quiet_lightning() -> list[tuple[logging.Logger, int]]:
    """Silence Lightning's INFO banners (GPU available, ...); returns what to restore."""
    saved = []
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        lg = logging.getLogger(name)
        saved.append((lg, lg.level))
        lg.setLevel(logging.WARNING)
    return saved
