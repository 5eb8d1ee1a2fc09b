"""Small ViT with masked-image modelling for gene images, plus the contrastive pieces (DARLC note §1.3-1.5).

* :class:`MaskedViT`: patch embedding (``Conv(C, d, p, p)``, ``d = p²·C``), learnable positional embedding,
  pre-norm transformer blocks, MAE random masking, the reference code's MLP decoder from the mean token to
  the whole image, MIM loss on masked patches only, attention pooling and a projection head.
* :func:`momentum_copy` / :func:`ema_update_`: the target (momentum) branch, ``θ' ← mθ' + (1-m)θ``.
* :func:`nt_xent_loss`: SimCLR's NT-Xent / InfoNCE between two views (``τ = 0.5``).
* :class:`UncertaintyWeighting`: Liebel & Körner's ``Σ_i 0.5/σ_i² L_i + log(1 + σ_i²)``.

Images whose sides are not multiples of the patch size are zero-padded at the bottom and right (zero is the
value of a pixel without a spot, §1.1), never cropped; the padded pixels are excluded from the MIM loss.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "MaskedViT",
    "UncertaintyWeighting",
    "ViTOutput",
    "ema_update_",
    "momentum_copy",
    "nt_xent_loss",
    "pad_to_patch_multiple",
    "patchify",
    "random_masking",
    "sincos_pos_embed_2d",
    "unpatchify",
]


# ------------------------------------------------------------------------------------------------------
# image <-> patch helpers
# ------------------------------------------------------------------------------------------------------
def pad_to_patch_multiple(images: Tensor, patch_size: int) -> Tensor:
    """Zero-pad ``(B, C, H, W)`` images at the bottom and right to multiples of ``patch_size``.

    Parameters
    ----------
    images
        Tensor of shape ``(B, C, H, W)``.
    patch_size
        Patch side ``p``.

    Returns
    -------
    Tensor of shape ``(B, C, ⌈H/p⌉·p, ⌈W/p⌉·p)``; the original image is its top-left block.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import pad_to_patch_multiple
    >>> pad_to_patch_multiple(torch.ones(2, 1, 21, 16), 4).shape
    torch.Size([2, 1, 24, 16])
    """
    h, w = images.shape[-2:]
    ph, pw = (-h) % patch_size, (-w) % patch_size
    if ph == 0 and pw == 0:
        return images
    return F.pad(images, (0, pw, 0, ph))


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Split ``(B, C, H, W)`` images (``H``, ``W`` multiples of ``p``) into row-major patches.

    Parameters
    ----------
    images
        Tensor of shape ``(B, C, H, W)``.
    patch_size
        Patch side ``p``.

    Returns
    -------
    Tensor of shape ``(B, L, p·p·C)`` with ``L = (H/p)·(W/p)``; pixel order inside a patch is
    ``(row, col, channel)`` as in MAE.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import patchify, unpatchify
    >>> x = torch.randn(2, 1, 8, 12)
    >>> patches = patchify(x, 4)
    >>> patches.shape, torch.equal(unpatchify(patches, 4, (2, 3)), x)
    (torch.Size([2, 6, 16]), True)
    """
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image sides {(h, w)} must be multiples of the patch size {p}; pad first")
    x = images.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: Tensor, patch_size: int, grid_size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`patchify`.

    Parameters
    ----------
    patches
        Tensor of shape ``(B, L, p·p·C)``.
    patch_size
        Patch side ``p``.
    grid_size
        Patch grid ``(H/p, W/p)`` with ``L`` cells.

    Returns
    -------
    Tensor of shape ``(B, C, H, W)``.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import unpatchify
    >>> unpatchify(torch.zeros(1, 6, 16), 4, (2, 3)).shape
    torch.Size([1, 1, 8, 12])
    """
    b, n, e = patches.shape
    gh, gw = grid_size
    p = patch_size
    if n != gh * gw or e % (p * p):
        raise ValueError(f"patches of shape {tuple(patches.shape)} do not fit grid {grid_size}, patch {p}")
    c = e // (p * p)
    x = patches.reshape(b, gh, gw, p, p, c)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, c, gh * p, gw * p)


def sincos_pos_embed_2d(dim: int, grid_size: tuple[int, int]) -> Tensor:
    """2-D sine-cosine positional table (MAE) for a possibly non-square ``grid_h × grid_w`` patch grid.

    Half of the channels encode the row, half the column; ``dim`` must be a multiple of 4.

    Parameters
    ----------
    dim
        Embedding width ``d``.
    grid_size
        ``(grid_h, grid_w)``.

    Returns
    -------
    Float32 tensor of shape ``(grid_h·grid_w, dim)``, rows in the row-major patch order.

    Examples
    --------
    >>> from scomics_ext.module import sincos_pos_embed_2d
    >>> sincos_pos_embed_2d(16, (5, 4)).shape
    torch.Size([20, 16])
    """
    if dim % 4:
        raise ValueError(f"sin-cos positional embedding needs dim divisible by 4, got {dim}")
    gh, gw = grid_size
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

    def one_axis(pos: np.ndarray) -> np.ndarray:
        out = np.outer(pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    table = np.concatenate([one_axis(rows.ravel()), one_axis(cols.ravel())], axis=1)
    return torch.as_tensor(table, dtype=torch.float32)


def random_masking(
    tokens: Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """MAE random masking: per sample, keep the first ``⌊L(1 - r)⌋`` tokens of an argsort of uniform noise.

    Parameters
    ----------
    tokens
        Tensor of shape ``(B, L, d)``.
    mask_ratio
        Fraction ``r`` of tokens to hide, in ``[0, 1)``; at least one token is kept.
    generator
        Source of the noise (CPU generators work for tokens on any device).

    Returns
    -------
    visible
        The kept tokens, shape ``(B, L_keep, d)``, in noise order.
    mask
        Float tensor ``(B, L)``, 1 for hidden tokens, in the original order.
    ids_restore
        ``(B, L)`` indices that undo the shuffle (``torch.gather`` along dim 1).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import random_masking
    >>> vis, mask, _ = random_masking(torch.randn(2, 10, 4), 0.8, torch.Generator().manual_seed(0))
    >>> vis.shape, mask.sum(1).tolist()
    (torch.Size([2, 2, 4]), [8.0, 8.0])
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
    b, n, d = tokens.shape
    n_keep = max(1, math.floor(n * (1.0 - mask_ratio) + 1e-6))  # guard 320·(1-0.8) = 63.999…
    gen_device = generator.device if generator is not None else tokens.device
    noise = torch.rand(b, n, generator=generator, device=gen_device).to(tokens.device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    visible = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(b, n, dtype=tokens.dtype, device=tokens.device)
    mask[:, :n_keep] = 0.0
    mask = torch.gather(mask, 1, ids_restore)
    return visible, mask, ids_restore


# ------------------------------------------------------------------------------------------------------
# transformer
# ------------------------------------------------------------------------------------------------------
class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # scale head_dim^-1/2
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, share_norm: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = self.norm1 if share_norm else nn.LayerNorm(dim)
        self.attn = _Attention(dim, num_heads)
        hidden = round(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTOutput(NamedTuple):
    """Output of :meth:`MaskedViT.forward`.

    Attributes
    ----------
    z
        Projected embedding of the full (unmasked) pass, ``(B, out_dim)``.
    pooled
        Attention-pooled token embedding ``z̃`` before the head, ``(B, d)``.
    reconstruction
        Decoded image from the masked pass, ``(B, C, H_pad, W_pad)``.
    mask
        ``(B, L)``, 1 for masked patches.
    mim_loss
        Masked-image-modelling loss (scalar).

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import MaskedViT
    >>> out = MaskedViT((8, 8), depth=1)(torch.rand(4, 8, 8))
    >>> out.z.shape, out.mask.shape
    (torch.Size([4, 32]), torch.Size([4, 4]))
    """

    z: Tensor
    pooled: Tensor
    reconstruction: Tensor
    mask: Tensor
    mim_loss: Tensor


class MaskedViT(nn.Module):
    """Lightweight ViT encoder with MAE masking and an MLP decoder, for sparse gene images (DARLC §1.3).

    Tokens are ``Conv(C, d, p, p)`` patch embeddings plus a learnable positional embedding. The same
    pre-norm blocks run twice per :meth:`forward`: on all tokens (attention pooling → projection head →
    ``z``) and on the visible subset after MAE masking (→ decoder → MIM loss on the masked patches).

    Parameters
    ----------
    img_size
        ``(H, W)`` of the input images; any size (padded at the bottom/right to multiples of ``p``).
    patch_size
        Patch side ``p``.
    in_chans
        Image channels ``C``.
    embed_dim
        Token width ``d``; ``None`` gives ``p²·C`` (16 for gene images).
    depth
        Number of transformer blocks (the paper: 4; the reference config: 5).
    num_heads
        Attention heads.
    mlp_ratio
        Hidden width of the block MLP as a multiple of ``d``.
    mask_ratio
        Default fraction of masked patches (the paper: 0.8; the reference code: 0.3).
    out_dim
        Embedding dimension ``D`` after the projection head.
    proj_hidden
        Hidden width of the projection head.
    head
        ``"bn_selu"`` (paper: Linear → BatchNorm → SELU → Linear) or ``"ln_leakyrelu"`` (reference code:
        Linear → LayerNorm → LeakyReLU → Linear).
    pos_embed_init
        ``"sincos"`` (2-D sine-cosine table of the actual, possibly non-square, grid; then learned) or
        ``"zeros"`` (what the reference code ends up with).
    decoder_dims
        Widths ``(a, b, c, e)`` of the decoder ``x̂ = Lin(e → HW)(LeakyReLU(LN(Lin(c → e)(f(u) + Lin(d → c)(u)))))``,
        ``f = Lin(d → a) → LN → LeakyReLU → Lin(a → b) → LN → LeakyReLU → Lin(b → c)``.
    share_norm
        Use one LayerNorm instance for both sub-layers of a block, as the reference code does.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import MaskedViT
    >>> vit = MaskedViT((21, 16))
    >>> out = vit(torch.rand(3, 21, 16), generator=torch.Generator().manual_seed(0))
    >>> out.z.shape, out.reconstruction.shape, vit.num_patches
    (torch.Size([3, 32]), torch.Size([3, 1, 24, 16]), 24)
    """

    def __init__(
        self,
        img_size: tuple[int, int],
        *,
        patch_size: int = 4,
        in_chans: int = 1,
        embed_dim: int | None = None,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 5.0,
        mask_ratio: float = 0.8,
        out_dim: int = 32,
        proj_hidden: int = 32,
        head: Literal["bn_selu", "ln_leakyrelu"] = "bn_selu",
        pos_embed_init: Literal["sincos", "zeros"] = "sincos",
        decoder_dims: Sequence[int] = (128, 256, 512, 1024),
        share_norm: bool = False,
    ) -> None:
        super().__init__()
        h, w = (int(s) for s in img_size)
        if h < 1 or w < 1:
            raise ValueError(f"img_size must be positive, got {img_size}")
        if head not in ("bn_selu", "ln_leakyrelu"):
            raise ValueError(f"head must be 'bn_selu' or 'ln_leakyrelu', got {head!r}")
        if pos_embed_init not in ("sincos", "zeros"):
            raise ValueError(f"pos_embed_init must be 'sincos' or 'zeros', got {pos_embed_init!r}")
        if len(decoder_dims) != 4:
            raise ValueError(f"decoder_dims needs 4 widths, got {tuple(decoder_dims)}")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio}")
        p = int(patch_size)
        d = p * p * in_chans if embed_dim is None else int(embed_dim)
        self.img_size = (h, w)
        self.patch_size = p
        self.in_chans = int(in_chans)
        self.embed_dim = d
        self.grid_size = (math.ceil(h / p), math.ceil(w / p))
        self.padded_size = (self.grid_size[0] * p, self.grid_size[1] * p)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.mask_ratio = float(mask_ratio)
        self.out_dim = int(out_dim)

        n = self.num_patches
        self.patch_embed = nn.Conv2d(in_chans, d, kernel_size=p, stride=p)
        self.pos_embed = nn.Parameter(torch.zeros(1, n, d))
        self.blocks = nn.ModuleList([_Block(d, num_heads, mlp_ratio, share_norm) for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        # decoder
        a, b, c, e = (int(v) for v in decoder_dims)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, n, d))
        self.decoder_f = nn.Sequential(
            nn.Linear(d, a), nn.LayerNorm(a), nn.LeakyReLU(),
            nn.Linear(a, b), nn.LayerNorm(b), nn.LeakyReLU(),
            nn.Linear(b, c),
        )  # fmt: skip
        self.decoder_skip = nn.Linear(d, c)
        self.decoder_out = nn.Sequential(
            nn.Linear(c, e), nn.LayerNorm(e), nn.LeakyReLU(), nn.Linear(e, in_chans * n * p * p)
        )
        # embedding: attention pooling + projection head
        self.pool_weight = nn.Parameter(torch.full((n, 1), 1.0 / n))
        if head == "bn_selu":
            self.head = nn.Sequential(
                nn.Linear(d, proj_hidden),
                nn.BatchNorm1d(proj_hidden),
                nn.SELU(),
                nn.Linear(proj_hidden, out_dim),
            )
        else:
            self.head = nn.Sequential(
                nn.Linear(d, proj_hidden),
                nn.LayerNorm(proj_hidden),
                nn.LeakyReLU(),
                nn.Linear(proj_hidden, out_dim),
            )
        # which padded pixels are real (1) or padding (0), in patch layout (1, L, p·p·C)
        valid = torch.zeros(1, in_chans, *self.padded_size)
        valid[..., :h, :w] = 1.0
        self.register_buffer("pixel_valid", patchify(valid, p), persistent=False)
        self._init_weights(pos_embed_init)

    def _init_weights(self, pos_embed_init: str) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm | nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        wconv = self.patch_embed.weight
        nn.init.xavier_uniform_(wconv.view(wconv.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.mask_token, std=0.02)
        if pos_embed_init == "sincos":
            table = sincos_pos_embed_2d(self.embed_dim, self.grid_size).unsqueeze(0)
            with torch.no_grad():
                self.pos_embed.copy_(table)
                self.decoder_pos_embed.copy_(table)

    # -- pieces ---------------------------------------------------------------------------------------
    def prepare(self, images: Tensor) -> Tensor:
        """Check and pad a batch: ``(B, H, W)`` or ``(B, C, H, W)`` → ``(B, C, H_pad, W_pad)``.

        Parameters
        ----------
        images
            Images of size :attr:`img_size`.

        Returns
        -------
        The zero-padded batch.
        """
        if images.ndim == 3 and self.in_chans == 1:
            images = images.unsqueeze(1)
        if images.ndim != 4 or images.shape[1] != self.in_chans or tuple(images.shape[-2:]) != self.img_size:
            raise ValueError(
                f"expected images of shape (B, {self.in_chans}, {self.img_size[0]}, {self.img_size[1]}), "
                f"got {tuple(images.shape)}"
            )
        return pad_to_patch_multiple(images, self.patch_size)

    def _tokens(self, padded: Tensor) -> Tensor:
        return self.patch_embed(padded).flatten(2).transpose(1, 2) + self.pos_embed

    def _blocks(self, tokens: Tensor) -> Tensor:
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)

    def _pool_project(self, h_full: Tensor) -> tuple[Tensor, Tensor]:
        w = self.pool_weight
        pooled = (h_full * w.unsqueeze(0)).sum(1) / w.sum()
        return self.head(pooled), pooled

    def _decode(self, h_vis: Tensor, ids_restore: Tensor) -> Tensor:
        b, n = ids_restore.shape
        d = h_vis.shape[-1]
        fill = self.mask_token.expand(b, n - h_vis.shape[1], d)
        tokens = torch.cat([h_vis, fill], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d)) + self.decoder_pos_embed
        u = tokens.mean(1)
        out = self.decoder_out(self.decoder_f(u) + self.decoder_skip(u))
        return out.reshape(b, self.in_chans, *self.padded_size)

    def mim_loss(self, padded: Tensor, reconstruction: Tensor, mask: Tensor) -> Tensor:
        """Mean squared error over the masked patches only (padding pixels excluded).

        ``L = Σ_b,l m_bl · mse_bl / Σ_b,l m_bl`` with ``mse_bl`` the mean over the real pixels of patch ``l``.

        Parameters
        ----------
        padded
            Target images from :meth:`prepare`, ``(B, C, H_pad, W_pad)``.
        reconstruction
            Decoder output of the same shape.
        mask
            ``(B, L)``, 1 for masked patches.

        Returns
        -------
        Scalar tensor.
        """
        target = patchify(padded, self.patch_size)
        pred = patchify(reconstruction, self.patch_size)
        valid = self.pixel_valid.to(pred.dtype)
        per_patch = (((pred - target) ** 2) * valid).sum(-1) / valid.sum(-1)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    # -- public ---------------------------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        """Embedding ``z`` from the full, unmasked pass (no decoder): the inference / target-branch path.

        Parameters
        ----------
        images
            ``(B, H, W)`` or ``(B, C, H, W)``.

        Returns
        -------
        Tensor of shape ``(B, out_dim)``.
        """
        return self._pool_project(self._blocks(self._tokens(self.prepare(images))))[0]

    def forward(
        self, images: Tensor, *, mask_ratio: float | None = None, generator: torch.Generator | None = None
    ) -> ViTOutput:
        """Full pass (embedding) and masked pass (reconstruction and MIM loss).

        Parameters
        ----------
        images
            ``(B, H, W)`` or ``(B, C, H, W)``.
        mask_ratio
            Override of :attr:`mask_ratio` for this call.
        generator
            Seeded generator for the masking noise (reproducible masks).

        Returns
        -------
        :class:`ViTOutput`.
        """
        padded = self.prepare(images)
        tokens = self._tokens(padded)
        z, pooled = self._pool_project(self._blocks(tokens))
        ratio = self.mask_ratio if mask_ratio is None else float(mask_ratio)
        visible, mask, ids_restore = random_masking(tokens, ratio, generator)
        recon = self._decode(self._blocks(visible), ids_restore)
        return ViTOutput(z, pooled, recon, mask, self.mim_loss(padded, recon, mask))


# ------------------------------------------------------------------------------------------------------
# momentum branch, contrastive loss, uncertainty weighting
# ------------------------------------------------------------------------------------------------------
def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` to serve as the momentum (target) branch.

    Parameters
    ----------
    module
        The online network.

    Returns
    -------
    A copy whose parameters do not require gradients.

    Examples
    --------
    >>> from torch import nn
    >>> from scomics_ext.module import momentum_copy
    >>> target = momentum_copy(nn.Linear(2, 2))
    >>> any(p.requires_grad for p in target.parameters())
    False
    """
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float = 0.999) -> None:
    """In place ``θ' ← m·θ' + (1 - m)·θ`` for every parameter; buffers (e.g. BatchNorm statistics) are copied.

    Parameters
    ----------
    target
        Momentum branch (from :func:`momentum_copy`), updated in place.
    online
        Network with the same architecture.
    momentum
        ``m`` in ``[0, 1]`` (DARLC: 0.999).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from scomics_ext.module import ema_update_, momentum_copy
    >>> online = nn.Linear(1, 1, bias=False)
    >>> target = momentum_copy(online)
    >>> with torch.no_grad():
    ...     _ = online.weight.fill_(1.0)
    ...     _ = target.weight.fill_(0.0)
    >>> ema_update_(target, online, momentum=0.9)
    >>> round(target.weight.item(), 6)
    0.1
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
    tp, op = dict(target.named_parameters()), dict(online.named_parameters())
    if tp.keys() != op.keys():
        raise ValueError("target and online networks have different parameters")
    for name, p in tp.items():
        p.mul_(momentum).add_(op[name].detach(), alpha=1.0 - momentum)
    tb, ob = dict(target.named_buffers()), dict(online.named_buffers())
    for name, b in tb.items():
        if name in ob:
            b.copy_(ob[name])


def nt_xent_loss(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.5,
    *,
    neighbors: Tensor | None = None,
    neighbor_mode: Literal["positive", "exclude"] = "positive",
) -> Tensor:
    """NT-Xent (SimCLR InfoNCE) between two views, optionally aware of known neighbours.

    Without ``neighbors``: positives are ``(z1_i, z2_i)``, negatives the other ``2B-2``, and
    ``ℓ_i = -log[exp(s_{i,i⁺}/τ) / Σ_{k≠i} exp(s_ik/τ)]`` over the ``2B`` stacked, L2-normalised
    embeddings, averaged over all ``2B`` anchors.

    With ``neighbors`` (a ``B × B`` boolean matrix, e.g. genes linked in a similarity graph), both views of
    a neighbour ``j`` of ``i`` stop being negatives of ``i``: ``"exclude"`` drops them from the denominator
    (false-negative elimination), ``"positive"`` makes them positives too, averaging ``-log`` of each
    positive's share over the positive set ``P(i)`` (supervised-contrastive form, Khosla et al. 2020).
    Instance discrimination alone pushes apart genes that share one spatial pattern; either mode stops that.

    Parameters
    ----------
    z1
        Embeddings of view 1 (e.g. online branch, original images), ``(B, D)``.
    z2
        Embeddings of view 2 (e.g. target branch, denoised images), ``(B, D)``.
    temperature
        ``τ`` (DARLC: 0.5).
    neighbors
        Optional ``(B, B)`` boolean neighbour matrix (its diagonal is ignored; it is symmetrised).
    neighbor_mode
        ``"positive"`` or ``"exclude"`` (see above).

    Returns
    -------
    Scalar tensor.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import nt_xent_loss
    >>> z = torch.eye(4)
    >>> bool(nt_xent_loss(z, z) < nt_xent_loss(z, z.roll(1, 0)))
    True
    >>> pairs = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    >>> z = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])  # neighbours share an embedding
    >>> bool(nt_xent_loss(z, z, neighbors=pairs, neighbor_mode="exclude") < nt_xent_loss(z, z))
    True
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both have shape (B, D), got {tuple(z1.shape)}, {tuple(z2.shape)}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = (z @ z.T) / temperature
    self_mask = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    if neighbors is None:
        return F.cross_entropy(sim, targets)
    if neighbor_mode not in ("positive", "exclude"):
        raise ValueError(f"neighbor_mode must be 'positive' or 'exclude', got {neighbor_mode!r}")
    if tuple(neighbors.shape) != (b, b):
        raise ValueError(f"neighbors must have shape ({b}, {b}), got {tuple(neighbors.shape)}")
    nb = neighbors.to(device=z.device, dtype=torch.bool)
    nb = (nb | nb.T) & ~torch.eye(b, dtype=torch.bool, device=z.device)
    nb2 = nb.repeat(2, 2)  # both views of a neighbour
    own = F.one_hot(targets, 2 * b).to(torch.bool)
    if neighbor_mode == "exclude":
        return F.cross_entropy(sim.masked_fill(nb2, float("-inf")), targets)
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positives = own | nb2
    log_prob = log_prob.masked_fill(~positives, 0.0)
    return -(log_prob.sum(dim=1) / positives.sum(dim=1)).mean()


class UncertaintyWeighting(nn.Module):
    """Learned loss weighting ``Σ_i 0.5/σ_i² · L_i + log(1 + σ_i²)`` (Liebel & Körner 2018).

    ``σ`` starts at 1. Put :attr:`sigma` in its own optimiser group without weight decay, as the
    reference code does.

    Parameters
    ----------
    n_terms
        Number of losses combined.

    Examples
    --------
    >>> import torch
    >>> from scomics_ext.module import UncertaintyWeighting
    >>> awl = UncertaintyWeighting(2)
    >>> round(awl(torch.tensor(1.0), torch.tensor(2.0)).item(), 4)  # 0.5·3 + 2·log 2
    2.8863
    """

    def __init__(self, n_terms: int) -> None:
        super().__init__()
        if int(n_terms) < 1:
            raise ValueError(f"n_terms must be >= 1, got {n_terms}")
        self.sigma = nn.Parameter(torch.ones(int(n_terms)))

    @property
    def weights(self) -> Tensor:
        """Current effective weights ``0.5/σ_i²`` (detached)."""
        return (0.5 / self.sigma.detach() ** 2).clone()

    def forward(self, *losses: Tensor) -> Tensor:
        """Combine the losses.

        Parameters
        ----------
        *losses
            Exactly ``n_terms`` scalar tensors.

        Returns
        -------
        Scalar tensor.
        """
        if len(losses) != self.sigma.numel():
            raise ValueError(f"expected {self.sigma.numel()} losses, got {len(losses)}")
        s2 = self.sigma**2
        total = self.sigma.new_zeros(())
        for i, loss in enumerate(losses):
            total = total + 0.5 / s2[i] * loss + torch.log1p(s2[i])
        return total
