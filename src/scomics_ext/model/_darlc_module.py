"""DARLC's torch network: online ViT + linear contrastive map, momentum target, uncertainty weighting.

Pure torch; it never sees AnnData. The pieces come from :mod:`scomics_ext.module` (:class:`MaskedViT`,
:func:`momentum_copy`, :func:`ema_update_`, :func:`nt_xent_loss`, :class:`UncertaintyWeighting`).

* The **embedding** ``z`` (the one the Student's t mixture clusters) is the projection head applied to the
  attention-pooled tokens of the *full, unmasked* pass: :meth:`DARLCModule.embed`.
* The **MIM** loss comes from the masked pass (MAE masking, reconstruction of the masked patches).
* The **contrastive** branch follows the paper (eq. 8-10): a linear map ``g`` of the pooled tokens, online
  on the original image, target (EMA copy of encoder and ``g``) on the GAT-denoised image, NT-Xent with
  ``τ = 0.5``. The online pooled tokens come from the *masked* pass (``online_view="masked"``, this class's
  default: one cheap encoder pass serves MIM and CL) or from an extra *full* pass (``"full"``, the default of
  :class:`~scomics_ext.model.DARLC`, which also passes the neighbour graph of the contrastive loss; see its
  Notes for the evidence).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from scomics_ext.module import (
    MaskedViT,
    UncertaintyWeighting,
    ema_update_,
    momentum_copy,
    nt_xent_loss,
    random_masking,
)

__all__ = ["DARLCModule", "SSLOutput"]


class SSLOutput(NamedTuple):
    """Output of :meth:`DARLCModule.ssl_forward`.

    Attributes
    ----------
    mim
        Masked-image-modelling loss (scalar).
    cl
        NT-Xent loss between the online and the target branch (scalar).
    z_masked
        Projection-head embedding of the masked pass, ``(B, D)``.
    pooled_full
        Pooled tokens of the unmasked pass, ``(B, embed_dim)``, when the online view is ``"full"`` (``None``
        otherwise): ``vit.head(pooled_full)`` equals :meth:`DARLCModule.embed` of the batch, so the joint
        stage reuses this pass (and its backward) instead of running the encoder a second time.
    """

    mim: Tensor
    cl: Tensor
    z_masked: Tensor
    pooled_full: Tensor | None = None


class _GeneViT(MaskedViT):
    """:class:`MaskedViT` plus the pooled token embedding of the full and of the masked pass."""

    def pooled_full(self, padded: Tensor) -> Tensor:
        h = self._blocks(self._tokens(padded))
        w = self.pool_weight
        return (h * w.unsqueeze(0)).sum(1) / w.sum()

    def masked_pass(
        self,
        padded: Tensor,
        mask_ratio: float,
        generator: torch.Generator | None,
        target: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Pooled visible tokens (pooling weights of the kept positions) and the MIM loss.

        ``target`` (padded like ``padded``) replaces the input as the reconstruction target.
        """
        tokens = self._tokens(padded)
        visible, mask, ids_restore = random_masking(tokens, mask_ratio, generator)
        h_vis = self._blocks(visible)
        recon = self._decode(h_vis, ids_restore)
        mim = self.mim_loss(padded if target is None else target, recon, mask)
        ids_keep = torch.argsort(ids_restore, dim=1)[:, : visible.shape[1]]
        w = self.pool_weight[ids_keep]  # (B, n_keep, 1)
        pooled = (h_vis * w).sum(1) / w.sum(1)
        return pooled, mim


class _Branch(nn.Module):
    def __init__(self, vit: _GeneViT, cl_dim: int) -> None:
        super().__init__()
        self.vit = vit
        self.cl_proj = nn.Linear(vit.embed_dim, cl_dim)
        nn.init.xavier_uniform_(self.cl_proj.weight)
        nn.init.zeros_(self.cl_proj.bias)


class DARLCModule(nn.Module):
    """Online encoder, momentum target and loss weighting of DARLC (module counterpart of the model).

    Parameters
    ----------
    img_size
        ``(H, W)`` of the gene images.
    depth
        Transformer blocks (the paper: 4).
    mask_ratio
        MAE mask ratio.
    out_dim
        Embedding dimension ``D``.
    head
        ``"bn_selu"`` (paper) or ``"ln_leakyrelu"`` (reference code).
    cl_dim
        Output width of the linear contrastive map ``g``.
    temperature
        NT-Xent temperature ``τ``.
    online_view
        Where the online branch of the contrastive loss takes its pooled tokens: ``"masked"`` (the masked
        pass that also gives MIM) or ``"full"`` (an extra unmasked pass).
    mim_target
        What the MIM decoder reconstructs from the visible patches: the masked ``"image"`` itself (MAE,
        the paper) or its positive ``"view"`` (the denoised image).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.model._darlc_module import DARLCModule
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> m = DARLCModule((21, 16))
    >>> x = torch.rand(8, 21, 16)
    >>> out = m.ssl_forward(x, x, generator=torch.Generator().manual_seed(0))
    >>> m.embed(x).shape, bool(out.cl > 0)
    (torch.Size([8, 32]), True)
    """

    def __init__(
        self,
        img_size: tuple[int, int],
        *,
        depth: int = 4,
        mask_ratio: float = 0.8,
        out_dim: int = 32,
        head: Literal["bn_selu", "ln_leakyrelu"] = "bn_selu",
        cl_dim: int = 32,
        temperature: float = 0.5,
        online_view: Literal["masked", "full"] = "masked",
        mim_target: Literal["image", "view"] = "image",
    ) -> None:
        super().__init__()
        if mim_target not in ("image", "view"):
            raise ValueError(f"mim_target must be 'image' or 'view', got {mim_target!r}")
        if online_view not in ("masked", "full"):
            raise ValueError(f"online_view must be 'masked' or 'full', got {online_view!r}")
        vit = _GeneViT(tuple(img_size), depth=depth, mask_ratio=mask_ratio, out_dim=out_dim, head=head)
        self.online = _Branch(vit, cl_dim)
        self.target = momentum_copy(self.online)
        self.awl = UncertaintyWeighting(2)  # (MIM, CL): warm-up and batch level
        self.temperature = float(temperature)
        self.online_view = online_view
        self.mim_target = mim_target

    # -- helpers --------------------------------------------------------------------------------------
    @property
    def vit(self) -> _GeneViT:
        """The online ViT (encoder, decoder, projection head)."""
        return self.online.vit

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def on_load(self, model: object, **kwargs: object) -> None:
        """Hook of :meth:`scvi.model.base.BaseModelClass.load` (nothing to prepare)."""

    def set_head_mode(self, train: bool) -> None:
        """Put the projection head's normalisation in training (batch statistics) or eval mode."""
        self.vit.head.train(train)

    # -- passes ---------------------------------------------------------------------------------------
    def embed(self, images: Tensor) -> Tensor:
        """Embedding ``z`` from the full, unmasked pass: projection head of the pooled tokens.

        Parameters
        ----------
        images
            ``(B, H, W)``.

        Returns
        -------
        ``(B, D)`` tensor.
        """
        vit = self.vit
        return vit.head(vit.pooled_full(vit.prepare(images)))

    @torch.no_grad()
    def target_embed(self, views: Tensor) -> Tensor:
        """Momentum-branch contrastive embedding ``g'(f'(x̃))`` of the positive views (no gradient)."""
        vit = self.target.vit
        return self.target.cl_proj(vit.pooled_full(vit.prepare(views)))

    def ssl_forward(
        self,
        images: Tensor,
        views: Tensor,
        *,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
        neighbors: Tensor | None = None,
        neighbor_mode: Literal["positive", "exclude"] = "positive",
    ) -> SSLOutput:
        """MIM and contrastive losses of a batch.

        Parameters
        ----------
        images
            Original images ``(B, H, W)``.
        views
            Positive views (denoised images) of the same genes.
        mask_ratio
            Override of the ViT's mask ratio.
        generator
            Seeded generator of the masking noise.
        neighbors
            Optional ``(B, B)`` boolean matrix of genes known to share a pattern (seeding graph): they are
            not contrasted as negatives (:func:`~scomics_ext.module.nt_xent_loss`).
        neighbor_mode
            How neighbours enter the contrastive loss: ``"positive"`` or ``"exclude"``.

        Returns
        -------
        :class:`SSLOutput`.
        """
        vit = self.vit
        padded = vit.prepare(images)
        ratio = vit.mask_ratio if mask_ratio is None else float(mask_ratio)
        pooled_masked, mim = self.mim_pass(padded, views, ratio, generator)
        pooled_full = None if self.online_view == "masked" else vit.pooled_full(padded)
        pooled_online = pooled_masked if pooled_full is None else pooled_full
        z_online = self.online.cl_proj(pooled_online)
        cl = nt_xent_loss(
            z_online,
            self.target_embed(views),
            self.temperature,
            neighbors=neighbors,
            neighbor_mode=neighbor_mode,
        )
        return SSLOutput(mim, cl, vit.head(pooled_masked), pooled_full)

    def mim_pass(
        self, padded: Tensor, views: Tensor, mask_ratio: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Masked pass of padded images: pooled visible tokens and the MIM loss (target per :attr:`mim_target`)."""
        target = self.vit.prepare(views) if self.mim_target == "view" else None
        return self.vit.masked_pass(padded, mask_ratio, generator, target)

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """EMA update of the target branch, ``θ' ← mθ' + (1 - m)θ``."""
        ema_update_(self.target, self.online, momentum)

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return int(sum(p.numel() for p in self.parameters() if p.requires_grad))


def attention_cost(img_size: tuple[int, int], patch_size: int = 4) -> float:
    """Relative cost of one full encoder pass over an image, ``L² + 64 L`` with ``L`` patches.

    The attention over ``L`` tokens dominates on large grids (``L = 320`` for a full Visium area).

    Parameters
    ----------
    img_size
        ``(H, W)``.
    patch_size
        Patch side.

    Returns
    -------
    The cost in arbitrary units.

    Examples
    --------
    >>> from scomics_ext.model._darlc_module import attention_cost
    >>> attention_cost((78, 64))
    122880.0
    """
    n_tokens = math.ceil(img_size[0] / patch_size) * math.ceil(img_size[1] / patch_size)
    return float(n_tokens**2 + 64 * n_tokens)
