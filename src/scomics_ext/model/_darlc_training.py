"""Lightning pieces of DARLC: the gene-image data module and the training plan (manual optimisation).

The plan runs the two stages of the method note (§1.9) inside one Lightning fit:

* **warm-up** epochs (``epoch < warmup_epochs``): mini-batches of ``L = AWL(L_MIM, L_CL)``, EMA update of
  the momentum target after every step.
* **joint** epochs: at the start of each epoch (``on_train_epoch_start``) all genes are embedded with the
  projection head's normalisation in eval mode, the Student's t mixture is refitted by MAP-EM (warm start,
  at most ``em_iter`` rounds), the DEC target ``P`` is computed from the posterior, and one epoch-level
  step ``L_E = w_nll·NLL + λ_t·R_lap + w_size·L_size + L_MIM`` is taken (gradients accumulated over
  chunks, exact for the non-decomposable size and Laplacian terms); then mini-batches of
  ``L_B = AWL(L_MIM, L_CL) + w_kl·KL(P_B ‖ Q_B) + λ_t·R_lap,B`` with ``Q`` the differentiable SMM
  posterior of the current embeddings (θ fixed) and ``R_lap,B`` the batch rows' share of the Laplacian
  term (its gradient w.r.t. the batch embeddings, the other rows at their epoch-start values). Training stops early when fewer than ``stop_tol`` of the labels changed
  between two epochs.

Mixture likelihoods and posteriors are evaluated in float64.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from scipy import sparse
from torch.utils.data import DataLoader, TensorDataset

from scomics_ext.module import (
    StudentTMixture,
    cluster_size_loss,
    dec_kl_loss,
    smm_log_prob,
    target_distribution,
)

from ._darlc_module import DARLCModule

#: degrees of freedom standing in for a Gaussian (``mixture="gmm"``): ``ζ = (ν+D)/(ν+δ) → 1``
GAUSSIAN_DOF = 1e6


def make_mixture(n_clusters: int, mixture: Literal["smm", "gmm"], random_state: int) -> StudentTMixture:
    """The mixture of the clustering stage: Student's t (``ν`` learned) or its Gaussian limit.

    Parameters
    ----------
    n_clusters
        ``K``.
    mixture
        ``"smm"`` or ``"gmm"`` (same MAP-EM and priors with ``ν`` fixed at :data:`GAUSSIAN_DOF`).
    random_state
        Seed of the k-means initialisation and re-seeding.

    Returns
    -------
    An unfitted :class:`~scomics_ext.module.StudentTMixture`.

    Examples
    --------
    >>> from scomics_ext.model._darlc_training import make_mixture
    >>> make_mixture(3, "gmm", 0).update_dof
    False
    """
    if mixture == "gmm":
        return StudentTMixture(
            n_clusters,
            dof_init=GAUSSIAN_DOF,
            update_dof=False,
            dof_bounds=(2.01, 10 * GAUSSIAN_DOF),
            random_state=random_state,
        )
    return StudentTMixture(n_clusters, random_state=random_state)


def laplacian_rayleigh(z: np.ndarray, laplacian: sparse.spmatrix) -> tuple[float, np.ndarray]:
    """Scale-free Laplacian term and its gradient: ``R = tr(Z̃ᵀ L Z̃) / (N·D)`` on standardised embeddings.

    ``Z̃`` is ``Z`` with every dimension centred and scaled to unit variance over the genes, so ``R`` is the
    mean Rayleigh quotient of the embedding dimensions on the seeding graph (in ``[0, 2]`` for a normalised
    Laplacian) and cannot be lowered by shrinking ``Z`` (the trivial minimiser of ``tr(Zᵀ L Z)``). With
    ``x`` one dimension, ``σ`` its standard deviation and ``ρ = x̃ᵀLx̃ / N``, the gradient is
    ``∂R/∂x = 2/(σ N D) · (L x̃ - mean(L x̃) - ρ x̃)``.

    Parameters
    ----------
    z
        Embeddings ``(N, D)``.
    laplacian
        ``N × N`` sparse Laplacian.

    Returns
    -------
    value
        ``R``.
    gradient
        ``∂R/∂Z``, shape ``(N, D)`` (float64).

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.model._darlc_training import laplacian_rayleigh
    >>> from scomics_ext.module import similarity_laplacian
    >>> lap = similarity_laplacian(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0.0]]))
    >>> value, grad = laplacian_rayleigh(np.array([[0.0], [0.0], [1.0], [1.0]]), lap)
    >>> round(value, 6), bool(np.allclose(grad, 0))
    (0.0, True)
    """
    z = np.asarray(z, dtype=np.float64)
    n, d = z.shape
    sd = z.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    zt = (z - z.mean(axis=0)) / sd
    lzt = sparse.csr_matrix(laplacian) @ zt
    quad = np.einsum("ij,ij->j", zt, lzt)
    value = float(quad.sum()) / (n * d)
    rho = quad / n
    grad = (2.0 / (sd * n * d)) * (lzt - lzt.mean(axis=0) - rho * zt)
    return value, grad


def embedding_scaling(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension centre and scale of the embeddings (the affine map into the mixture's space).

    The mixture is fitted to ``(z - shift) / scale`` with both taken over all genes at the start of every
    joint epoch (held fixed within the epoch) and at the final fit, so the mixture likelihood, like the
    Laplacian term, is scale-free: the NLL and KL terms can only be lowered by tightening clusters relative
    to the spread of all genes, never by shrinking every embedding towards one point (the collapse observed
    without it, see :class:`~scomics_ext.model.DARLC`).

    Parameters
    ----------
    z
        Embeddings ``(N, D)``.

    Returns
    -------
    shift, scale
        ``(D,)`` float64 arrays (``scale`` floored at ``1e-8``).

    Examples
    --------
    >>> import numpy as np
    >>> from scomics_ext.model._darlc_training import embedding_scaling
    >>> shift, scale = embedding_scaling(np.array([[0.0, 1.0], [2.0, 1.0]]))
    >>> shift.tolist(), scale.tolist()
    ([1.0, 1.0], [1.0, 1e-08])
    """
    z = np.asarray(z, dtype=np.float64)
    return z.mean(axis=0), np.maximum(z.std(axis=0), 1e-8)


class GeneImageDataModule(pl.LightningDataModule):
    """Shuffled mini-batches of ``(image, positive view, gene index)``.

    Parameters
    ----------
    images
        ``(N, H, W)`` float32 tensor.
    views
        Positive views, same shape.
    batch_size
        Mini-batch size; the last partial batch is dropped when ``N > batch_size`` (as in the reference
        code), so batch normalisation never sees a tiny batch.
    seed
        Seed of the shuffling.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.model._darlc_training import GeneImageDataModule
    >>> dm = GeneImageDataModule(torch.zeros(10, 4, 4), torch.zeros(10, 4, 4), batch_size=4, seed=0)
    >>> len(dm.train_dataloader())
    2
    """

    def __init__(self, images: torch.Tensor, views: torch.Tensor, batch_size: int, seed: int) -> None:
        super().__init__()
        self.images = images
        self.views = views
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.n_train = int(images.shape[0])
        self.n_val = 0

    def train_dataloader(self) -> DataLoader:
        """The training loader (one per fit; its generator carries the shuffling across epochs)."""
        n = self.n_train
        ds = TensorDataset(self.images, self.views, torch.arange(n))
        return DataLoader(
            ds,
            batch_size=min(self.batch_size, n),
            shuffle=True,
            drop_last=n > self.batch_size,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=0,
        )


class DARLCTrainingPlan(pl.LightningModule):
    """Warm-up and joint (representation + clustering) training of DARLC with manual optimisation.

    Parameters
    ----------
    module
        The network (:class:`~scomics_ext.model._darlc_module.DARLCModule`).
    images
        ``(N, H, W)`` float32 tensor of all genes (CPU), for the epoch-level passes.
    views
        Their positive views, same shape.
    laplacian
        ``N × N`` sparse Laplacian of the seeding similarity.
    n_clusters
        ``K``.
    warmup_epochs
        Epochs of the warm-up stage (0: none).
    mixture
        ``"smm"`` or ``"gmm"``.
    lr
        Adam learning rate.
    momentum
        EMA momentum of the target branch.
    kl_weight
        Weight of the DEC KL term in the batch-level loss.
    kl_view
        ``"full"``: the KL term uses the embedding of the unmasked pass (the embedding that is clustered);
        ``"masked"``: that of the masked pass (cheaper).
    nll_weight, size_weight
        Weights of the SMM negative log-likelihood and of the small-cluster hinge in ``L_E``.
    lap_weight, lap_decay
        Laplacian weight at the first joint epoch and its per-epoch decay factor.
    size_threshold
        ``τ_s`` of the hinge (fraction of genes).
    em_iter, em_tol
        EM rounds per epoch and their label-change tolerance.
    stop_tol
        Early stop of the joint stage when fewer than this fraction of labels changed between epochs.
    epoch_sample
        The epoch-level step uses at most this many genes (a random subset, unbiased gradient); ``None``:
        all genes.
    chunk_size
        Genes per forward chunk in the epoch-level passes.
    seed
        Seed of masks, subsets and the mixture.
    mixture_state
        Mixture state to warm-start from (continued training).
    scale_free
        Fit and evaluate the mixture on the embeddings standardised over all genes
        (:func:`embedding_scaling`, the default) instead of the raw embeddings (ablation).
    neighbors
        ``N × N`` sparse gene graph whose edges mark genes that share a pattern (the seeding similarity);
        the contrastive loss does not push such pairs apart (``neighbor_mode``). ``None``: plain instance
        discrimination.
    neighbor_mode
        ``"positive"`` (neighbours are extra positives) or ``"exclude"`` (dropped from the negatives).
    """

    def __init__(
        self,
        module: DARLCModule,
        *,
        images: torch.Tensor,
        views: torch.Tensor,
        laplacian: sparse.spmatrix,
        n_clusters: int,
        warmup_epochs: int,
        mixture: Literal["smm", "gmm"] = "smm",
        lr: float = 1e-3,
        momentum: float = 0.99,
        kl_weight: float = 0.1,
        kl_view: Literal["full", "masked"] = "full",
        nll_weight: float = 0.1,
        size_weight: float = 0.1,
        lap_weight: float = 0.5,
        lap_decay: float = math.exp(-1.0 / 3.0),
        size_threshold: float = 1.0 / 3000.0,
        em_iter: int = 5,
        em_tol: float = 5e-3,
        stop_tol: float = 1e-3,
        epoch_sample: int | None = 1024,
        chunk_size: int = 128,
        seed: int = 0,
        mixture_state: dict[str, np.ndarray] | None = None,
        scale_free: bool = True,
        neighbors: sparse.spmatrix | None = None,
        neighbor_mode: Literal["positive", "exclude"] = "positive",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.module = module
        self.images = images
        self.views = views
        self.laplacian = sparse.csr_matrix(laplacian, dtype=np.float64)
        self.n_clusters = int(n_clusters)
        self.warmup_epochs = int(warmup_epochs)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.kl_weight = float(kl_weight)
        self.kl_view = kl_view
        self.nll_weight = float(nll_weight)
        self.size_weight = float(size_weight)
        self.lap_weight = float(lap_weight)
        self.lap_decay = float(lap_decay)
        self.size_threshold = float(size_threshold)
        self.em_iter = int(em_iter)
        self.em_tol = float(em_tol)
        self.stop_tol = float(stop_tol)
        self.epoch_sample = epoch_sample
        self.chunk_size = int(chunk_size)
        self.seed = int(seed)
        self.smm = make_mixture(self.n_clusters, mixture, self.seed)
        if mixture_state is not None:
            self.smm.load_state_dict(mixture_state)
        self.labels: np.ndarray | None = None
        self.stopped_early = False
        self._gen = torch.Generator().manual_seed(self.seed)
        self._rng = np.random.default_rng(self.seed)
        self._target: torch.Tensor | None = None
        self._lz: torch.Tensor | None = None
        self._lam = 0.0
        self._logs: dict[str, list[float]] = {}
        self.scale_free = bool(scale_free)
        self.neighbors = None if neighbors is None else sparse.csr_matrix(neighbors, dtype=bool)
        self.neighbor_mode = neighbor_mode
        self.shift: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    # -- Lightning hooks ------------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on every trainable parameter (the uncertainty weights have no weight decay anyway)."""
        return torch.optim.Adam([p for p in self.module.parameters() if p.requires_grad], lr=self.lr)

    def set_scaling(self, z: np.ndarray) -> None:
        """Fix the affine map into the mixture's space from the embeddings ``z`` of all genes."""
        if self.scale_free:
            self.shift, self.scale = embedding_scaling(z)
        else:
            self.shift, self.scale = np.zeros(z.shape[1]), np.ones(z.shape[1])

    def to_mixture_space(self, z: Any) -> Any:
        """``(z - shift) / scale`` for numpy arrays or (differentiably) torch tensors."""
        if isinstance(z, torch.Tensor):
            shift = torch.as_tensor(self.shift, dtype=z.dtype, device=z.device)
            scale = torch.as_tensor(self.scale, dtype=z.dtype, device=z.device)
            return (z - shift) / scale
        return (np.asarray(z, dtype=np.float64) - self.shift) / self.scale

    def joint_epoch(self) -> int:
        """Index of the current epoch within the joint stage (negative during warm-up)."""
        return int(self.current_epoch) - self.warmup_epochs

    def on_train_epoch_start(self) -> None:
        """Joint stage: EM on all embeddings, DEC targets, one epoch-level step."""
        self._logs = {}
        t = self.joint_epoch()
        if t < 0 or self.stopped_early:
            return
        if t == 0:
            self._recalibrate_head()
        self.module.set_head_mode(False)
        z_raw = self.embed_all().astype(np.float64)
        self.set_scaling(z_raw)
        z = self.to_mixture_space(z_raw)
        if not self.smm.is_initialized:
            self.smm.initialize(z)
        self.smm.fit(z, max_iter=self.em_iter, tol=self.em_tol)
        labels = self.smm.labels_.copy()
        self._log("em_iterations", float(self.smm.n_iter_))
        self._log("n_used_clusters", float(np.unique(labels).size))
        if self.labels is not None:
            changed = float(np.mean(labels != self.labels))
            self._log("label_change", changed)
            if changed < self.stop_tol:
                self.stopped_early = True
                self.trainer.should_stop = True
        self.labels = labels
        if self.stopped_early:
            return
        q = torch.as_tensor(self.smm.predict_proba(z))
        self._target = target_distribution(q)
        self._epoch_step(z_raw, q.numpy(), t)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """Skip the rest of the epoch once the joint stage has converged."""
        return -1 if self.stopped_early else None

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One mini-batch step of the warm-up or of the batch-level joint loss."""
        images, views, idx = batch
        warm = self.joint_epoch() < 0
        module = self.module
        module.set_head_mode(warm)
        out = module.ssl_forward(
            images,
            views,
            generator=self._gen,
            neighbors=self.batch_neighbors(idx),
            neighbor_mode=self.neighbor_mode,
        )
        loss = module.awl(out.mim, out.cl)
        self._log("mim", out.mim.item())
        self._log("contrastive", out.cl.item())
        if not warm:
            if self.kl_view == "masked":
                z = out.z_masked
            elif out.pooled_full is not None:  # the unmasked pass of the contrastive branch: reuse it
                z = module.vit.head(out.pooled_full)
            else:
                z = module.embed(images)
            logq = torch.log_softmax(smm_log_prob(self.to_mixture_space(z.double()), self.smm.params), dim=1)
            kl = dec_kl_loss(logq, self._target[idx.cpu()].to(logq.device), log_input=True)
            # Laplacian: the batch rows' share of the gradient of R_lap, taken at the epoch-start embeddings
            n_all = self.images.shape[0]
            lap = (z.double() * self._lz[idx.cpu()].to(z.device)).sum() * (n_all / idx.numel())
            loss = loss + (self.kl_weight * kl + self._lam * lap).to(loss.dtype)
            self._log("kl", kl.item())
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        module.momentum_update(self.momentum)
        self._log("loss_batch", loss.item())

    def on_train_epoch_end(self) -> None:
        """Log the epoch means of every recorded term."""
        w = self.module.awl.weights
        self._log("weight_mim", float(w[0]))
        self._log("weight_contrastive", float(w[1]))
        self._log("stage", 0.0 if self.joint_epoch() < 0 else 1.0)
        metrics = {k: float(np.mean(v)) for k, v in self._logs.items() if len(v)}
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=False, logger=True)

    def batch_neighbors(self, idx: torch.Tensor) -> torch.Tensor | None:
        """``(B, B)`` boolean block of :attr:`neighbors` for the genes ``idx`` of a batch (``None`` if unset)."""
        if self.neighbors is None:
            return None
        rows = idx.cpu().numpy()
        block = self.neighbors[rows][:, rows].toarray()
        return torch.as_tensor(block, device=idx.device)

    # -- epoch-level pieces ---------------------------------------------------------------------------
    def _log(self, name: str, value: float) -> None:
        self._logs.setdefault(name, []).append(float(value))

    @torch.no_grad()
    def embed_all(self) -> np.ndarray:
        """Embeddings of all genes with the current head mode, ``(N, D)`` float32."""
        out = []
        for s in range(0, self.images.shape[0], self.chunk_size):
            x = self.images[s : s + self.chunk_size].to(self.device)
            out.append(self.module.embed(x).float().cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def _recalibrate_head(self) -> None:
        """Population statistics of the head's batch norm on the full-pass embeddings of all genes.

        During warm-up the head only sees masked-pass tokens; before it is frozen (eval mode) for the joint
        stage, its running statistics are recomputed exactly (cumulative average) from the unmasked pass.
        """
        bns = [
            m for m in self.module.vit.head.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        if not bns:
            return
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        self.module.set_head_mode(True)
        n = self.images.shape[0]
        for s in range(0, n, self.chunk_size):
            x = self.images[s : s + self.chunk_size]
            if x.shape[0] < 2:  # batch norm needs two samples; the others have covered this one
                continue
            self.module.embed(x.to(self.device))
        for m, mom in zip(bns, saved):
            m.momentum = mom
        self.module.set_head_mode(False)

    def _epoch_step(self, z_all: np.ndarray, q_all: np.ndarray, t: int) -> None:
        """One optimiser step on ``L_E``; gradients accumulated over chunks of a gene subset."""
        n = z_all.shape[0]
        if self.epoch_sample is None or n <= self.epoch_sample:
            subset = np.arange(n)
        else:
            subset = np.sort(self._rng.choice(n, int(self.epoch_sample), replace=False))
        m = subset.size
        device = self.device
        params = self.smm.params
        # size hinge on p̄ (all genes): its gradient w.r.t. p̄, pushed through q of the subset
        pbar = torch.as_tensor(q_all.mean(axis=0))[None, :].requires_grad_(True)
        size_value = cluster_size_loss(pbar, self.size_threshold)
        (g_size,) = torch.autograd.grad(size_value, pbar)
        g_size = g_size[0].to(device)
        lap_value, lap_grad = laplacian_rayleigh(z_all, self.laplacian)
        lz_t = torch.as_tensor(lap_grad)
        lam = self.lap_weight * self.lap_decay**t
        self._lz, self._lam = lz_t, lam
        nll_value = float(-np.mean(self.smm.log_prob(self.to_mixture_space(z_all))))

        opt = self.optimizers()
        opt.zero_grad()
        self.module.set_head_mode(False)
        mim_total = 0.0
        for s in range(0, m, self.chunk_size):
            idx = subset[s : s + self.chunk_size]
            x = self.images[idx].to(device)
            z = self.module.embed(x).double()
            logp = smm_log_prob(self.to_mixture_space(z), params)
            nll = -torch.logsumexp(logp, dim=1).sum() / m
            size_sur = (torch.softmax(logp, dim=1) @ g_size).sum() / m
            lap_sur = (z * lz_t[idx].to(device)).sum() * (n / m)
            _, mim = self.module.mim_pass(
                self.module.vit.prepare(x), self.views[idx].to(device), self.module.vit.mask_ratio, self._gen
            )
            mim = mim * (idx.size / m)
            loss = self.nll_weight * nll + self.size_weight * size_sur + lam * lap_sur
            self.manual_backward(loss.float() + mim)
            mim_total += float(mim.item())
        opt.step()
        self.module.momentum_update(self.momentum)
        self._log("nll", nll_value)
        self._log("laplacian", lap_value)
        self._log("laplacian_weight", lam)
        self._log("size", float(size_value.item()))
        self._log("mim_epoch", mim_total)
        self._log(
            "loss_epoch",
            self.nll_weight * nll_value
            + lam * lap_value
            + self.size_weight * float(size_value.detach())
            + mim_total,
        )
