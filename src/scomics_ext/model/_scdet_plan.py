"""Lightning training plan of :class:`~scomics_ext.model.SCDET`.

Warm-up, periodic distribution estimate, prototype initialisation and the label-free stopping rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from scvi import REGISTRY_KEYS

from scomics_ext.module._scdet import SCDETNetwork
from scomics_ext.module._scdet_estimate import estimate_distribution

#: registry key of the raw counts layer (ZINB reconstruction)
COUNTS_KEY = "counts"

_LOSS_TERMS = ("loss", "rec", "mask", "r", "t", "reg", "unsup", "sup", "soft", "anchor", "n_selected")


def batch_tensors(tensors: dict[str, torch.Tensor], unlabeled_code: int) -> dict[str, Any]:
    """Translate a registry batch (``X``, ``labels``, ``batch``, ``counts``) into :meth:`SCDETNetwork.loss` arguments."""
    labels = tensors[REGISTRY_KEYS.LABELS_KEY].reshape(-1).long()
    labels = torch.where(labels == unlabeled_code, torch.full_like(labels, -1), labels)
    batch = tensors.get(REGISTRY_KEYS.BATCH_KEY)
    index = tensors.get(REGISTRY_KEYS.INDICES_KEY)
    return {
        "index": None if index is None else index.reshape(-1).long(),
        "x": tensors[REGISTRY_KEYS.X_KEY].float(),
        "labels": labels,
        "counts": tensors[COUNTS_KEY].float() if COUNTS_KEY in tensors else None,
        "batch_index": None if batch is None else batch.reshape(-1).long(),
    }


class SCDETTrainingPlan(pl.LightningModule):
    """Trains a :class:`~scomics_ext.module._scdet.SCDETNetwork`.

    Schedule: ``n_warmup`` epochs of reconstruction only; then the class distribution ``π`` is estimated
    (k-means on the projections of all cells, :func:`~scomics_ext.module._scdet_estimate.estimate_distribution`)
    and the prototypes are placed on the class centres of the classifier features (seen classes: reference
    labels; novel slots: the unmatched clusters); ``π`` is re-estimated every ``estimate_every`` epochs.
    At each estimate the fraction of unlabelled cells whose predicted class changed since the last estimate
    is recorded; training stops when it stays below ``tol`` for ``patience`` estimates in a row (after
    ``min_estimates`` estimates). No label of an unlabelled cell is ever used.

    Parameters
    ----------
    module
        The network.
    embed
        ``embed() -> dict`` of numpy arrays ``"v"``, ``"h"``, ``"logits"`` for all cells of the training
        data, in order (evaluation mode).
    labels
        ``(N,)`` class ids of all cells, ``-1`` for unlabelled cells (same order as ``embed``).
    unlabeled_code
        Code of the unlabelled category in the registry's labels.
    lr, weight_decay
        Adam (amsgrad) settings.
    n_warmup
        Reconstruction-only epochs.
    estimate_every
        ``m``: epochs between distribution estimates.
    early_stopping, tol, patience, min_estimates
        The stability rule (see above).
    init_prototypes
        Place the prototypes at the first estimate.
    reseed
        At later estimates, move novel prototypes to the centre of their cluster: ``"all"`` of them,
        the ``"dead"`` ones only (predicted by fewer than a quarter of their cluster's unlabelled cells,
        or fewer than 3), or ``"none"``.
    random_state
        Seed of k-means.
    first_rep
        ``(N, d)`` representation clustered by the first estimate (e.g. a PCA of the input); ``None``:
        the projections ``v``.
    anchor
        Keep the novel-slot assignment of the unlabelled cells that the first estimate finds unexplained
        by the reference as their pseudo-labels for the rest of training.
    estimate_on
        What the later estimates cluster: ``"input"``, ``first_rep`` again; ``"projection"``, the
        contrastive projections ``v`` (the paper).
    """

    def __init__(
        self,
        module: SCDETNetwork,
        *,
        embed: Callable[[], dict[str, np.ndarray]],
        labels: np.ndarray,
        unlabeled_code: int,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        n_warmup: int = 10,
        estimate_every: int = 10,
        early_stopping: bool = True,
        tol: float = 0.01,
        patience: int = 2,
        min_estimates: int = 3,
        init_prototypes: bool = True,
        reseed: str = "dead",
        random_state: int = 0,
        first_rep: np.ndarray | None = None,
        anchor: bool = True,
        estimate_on: str = "input",
    ):
        super().__init__()
        self.module = module
        self.embed = embed
        self.labels = np.asarray(labels, dtype=np.int64)
        self.unlabeled_code = int(unlabeled_code)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.n_warmup, self.estimate_every = int(n_warmup), max(1, int(estimate_every))
        self.early_stopping, self.tol = bool(early_stopping), float(tol)
        self.patience, self.min_estimates = int(patience), int(min_estimates)
        self.init_prototypes, self.random_state = bool(init_prototypes), int(random_state)
        if reseed not in ("none", "dead", "all"):
            raise ValueError(f"`reseed` must be 'none', 'dead' or 'all', got {reseed!r}.")
        self.reseed = reseed
        self.first_rep = first_rep
        self.anchor = bool(anchor)
        self.estimate_on = estimate_on
        #: (N,) novel-slot pseudo-label of the unexplained unlabelled cells of the first estimate (-1: none)
        self.anchors: np.ndarray | None = None
        self._anchors_t: torch.Tensor | None = None
        self.n_reseeded = 0
        self.n_estimates = 0
        self.n_stable = 0
        self.prev_pred: np.ndarray | None = None
        self.centres: np.ndarray | None = None
        #: one record per estimate: epoch, π, changed fraction
        self.estimates: list[dict[str, Any]] = []
        self.stopped_epoch: int | None = None

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.module.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, amsgrad=True)

    def in_warmup(self) -> bool:
        """Whether the current epoch is a reconstruction-only warm-up epoch."""
        return self.current_epoch < self.n_warmup or self.n_estimates == 0

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        args = batch_tensors(batch, self.unlabeled_code)
        index = args.pop("index")
        anchors = None
        if self.anchors is not None and index is not None:
            # one tensor for the run (a conversion per step would copy all N anchors to the device)
            if self._anchors_t is None or self._anchors_t.device != index.device:
                self._anchors_t = torch.as_tensor(self.anchors, device=index.device)
            anchors = self._anchors_t[index]
        terms = self.module.loss(**args, anchors=anchors, warmup=self.in_warmup())
        n = args["x"].shape[0]
        for name in _LOSS_TERMS:
            self.log(f"{name}_train", terms[name].detach(), on_step=False, on_epoch=True, batch_size=n)
        return terms["loss"]

    # -- distribution estimate and stopping --------------------------------------------------------
    def on_train_start(self) -> None:
        if self.n_warmup == 0 and self.n_estimates == 0:
            self.estimate()

    def on_train_epoch_end(self) -> None:
        next_epoch = self.current_epoch + 1
        if next_epoch < self.n_warmup or next_epoch >= self.trainer.max_epochs:
            return
        if (next_epoch - self.n_warmup) % self.estimate_every:
            return
        changed = self.estimate()
        if not self.early_stopping or changed is None:
            return
        self.n_stable = self.n_stable + 1 if changed < self.tol else 0
        if self.n_stable >= self.patience and self.n_estimates >= self.min_estimates:
            self.stopped_epoch = next_epoch
            self.trainer.should_stop = True

    def _match_novel_slots(self, est, h: np.ndarray):
        """Give the novel clusters the slots of the most similar current novel prototypes (Hungarian).

        At the first estimate the novel slots follow cluster size (the paper); afterwards the prototypes
        carry an identity, and ordering by size could swap ``π`` between two novel classes.
        """
        from scipy.optimize import linear_sum_assignment

        from scomics_ext.module._scdet_estimate import DistributionEstimate

        module = self.module
        s, k = module.n_seen, module.n_classes
        proto = torch.nn.functional.normalize(module.prototypes.detach()[s:], dim=1).cpu().numpy()
        cent = np.zeros((k - s, h.shape[1]))
        for j, c in enumerate(range(s, k)):
            rows = est.slot == c
            if rows.any():
                cent[j] = h[rows].mean(0)
        norm = np.linalg.norm(cent, axis=1, keepdims=True)
        sim = (cent / np.where(norm > 0, norm, 1.0)) @ proto.T
        rows, cols = linear_sum_assignment(sim, maximize=True)
        remap = np.arange(k + 1)  # the last entry maps -1 (no class) to itself
        remap[-1] = -1
        remap[s + rows] = s + cols
        pi = est.pi.copy()
        pi[s + cols] = est.pi[s + rows]
        return DistributionEstimate(
            pi=pi, slot=remap[est.slot], slot_of_cluster=remap[est.slot_of_cluster], centres=est.centres
        )

    @torch.no_grad()
    def estimate(self) -> float | None:
        """Re-estimate ``π`` (and place the prototypes the first time); return the changed fraction."""
        module = self.module
        was_training = module.training
        module.eval()
        out = self.embed()
        first = self.n_estimates == 0
        # the first estimate comes right after the reconstruction-only warm-up, when the projection head
        # is still at its random initialisation: cluster ``first_rep`` (a PCA of the input) then
        est = estimate_distribution(
            self.first_rep
            if (first or self.estimate_on == "input") and self.first_rep is not None
            else out["v"],
            self.labels,
            module.n_seen,
            module.n_classes,
            init=self.centres,
            random_state=self.random_state,
        )
        self.centres = None if first else est.centres
        unl = self.labels < 0
        h = out["h"]
        if not first and module.n_novel > 1:
            est = self._match_novel_slots(est, h)
        centres = np.zeros((module.n_classes, h.shape[1]), dtype=np.float64)
        if first and self.anchor and module.n_novel > 0:
            self.anchors = np.where(unl & (est.slot >= module.n_seen), est.slot, -1).astype(np.int64)
            self._anchors_t = None
        if first and self.init_prototypes:
            for c in range(module.n_classes):
                rows = self.labels == c if c < module.n_seen else (est.slot == c) & unl
                if rows.any():
                    centres[c] = h[rows].mean(0)
        elif self.reseed != "none" and module.n_novel > 0:
            # novel prototypes are moved to their cluster's centre: all of them ("all"), or those that
            # (almost) no cell predicts ("dead")
            counts = np.bincount(out["logits"][unl].argmax(1), minlength=module.n_classes)
            for c in range(module.n_seen, module.n_classes):
                rows = (est.slot == c) & unl
                dead = counts[c] < max(3, 0.25 * rows.sum())
                if rows.any() and (self.reseed == "all" or dead):
                    centres[c] = h[rows].mean(0)
                    self.n_reseeded += 1
        if np.any(centres):
            module.set_prototypes(torch.as_tensor(centres, dtype=torch.float32))
            out = self.embed()
        module.set_pi(torch.as_tensor(est.pi, dtype=torch.float32))
        pred = out["logits"][self.labels < 0].argmax(1)
        changed = None if self.prev_pred is None else float(np.mean(pred != self.prev_pred))
        self.prev_pred = pred
        self.n_estimates += 1
        self.estimates.append(
            {
                "epoch": int(self.current_epoch + (0 if first and self.n_warmup == 0 else 1)),
                "pi": est.pi.tolist(),
                "changed": changed,
            }
        )
        if was_training:
            module.train()
        return changed
