"""DARLC masked ViT, momentum branch, NT-Xent and uncertainty weighting."""

from __future__ import annotations

import math

import pytest
import torch
from threadpoolctl import threadpool_limits
from torch.nn import functional as F

from scomics_ext.module._vit import (
    MaskedViT,
    UncertaintyWeighting,
    ema_update_,
    momentum_copy,
    nt_xent_loss,
    patchify,
    random_masking,
    sincos_pos_embed_2d,
    unpatchify,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("size", "grid", "padded"),
    [((21, 16), (6, 4), (24, 16)), ((78, 64), (20, 16), (80, 64)), ((72, 59), (18, 15), (72, 60))],
)
def test_shapes_for_non_square_images(size, grid, padded):
    torch.manual_seed(0)
    vit = MaskedViT(size)
    assert vit.embed_dim == 16
    assert vit.grid_size == grid
    assert vit.padded_size == padded
    out = vit(torch.rand(4, *size), generator=_gen())
    assert out.z.shape == (4, 32)
    assert out.pooled.shape == (4, 16)
    assert out.reconstruction.shape == (4, 1, *padded)
    assert out.mask.shape == (4, grid[0] * grid[1])
    assert out.mim_loss.ndim == 0
    assert torch.isfinite(out.mim_loss)
    assert vit.encode(torch.rand(4, 1, *size)).shape == (4, 32)


def test_border_pixels_are_not_dropped():
    torch.manual_seed(0)
    vit = MaskedViT((21, 16), head="ln_leakyrelu").eval()
    x = torch.rand(2, 21, 16)
    y = x.clone()
    y[:, 20, 15] += 5.0  # last row: beyond the 20 rows a 4x4 conv would keep
    assert not torch.allclose(vit.encode(x), vit.encode(y))


def test_sincos_table_for_non_square_grid():
    table = sincos_pos_embed_2d(16, (6, 4))
    assert table.shape == (24, 16)
    assert torch.unique(table, dim=0).shape[0] == 24  # every position distinct
    vit = MaskedViT((21, 16))
    torch.testing.assert_close(vit.pos_embed.detach()[0], table)
    assert MaskedViT((21, 16), pos_embed_init="zeros").pos_embed.abs().sum() == 0


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.8, 0.9])
def test_mask_ratio_respected(ratio):
    tokens = torch.randn(5, 320, 16)
    vis, mask, ids_restore = random_masking(tokens, ratio, _gen(1))
    n_keep = math.floor(320 * (1 - ratio) + 1e-6)
    assert vis.shape == (5, n_keep, 16)
    assert (mask.sum(1) == 320 - n_keep).all()
    # visible tokens are exactly the unmasked ones
    for b in range(5):
        kept = tokens[b][mask[b] == 0]
        assert torch.equal(torch.sort(kept, dim=0).values, torch.sort(vis[b], dim=0).values)
    # per-sample masks differ, seeded masks repeat
    if ratio > 0:
        assert not torch.equal(mask[0], mask[1])
    assert torch.equal(mask, random_masking(tokens, ratio, _gen(1))[1])
    # unshuffle restores positions
    full = torch.gather(torch.cat([vis, tokens[:, :0].new_zeros(5, 320 - n_keep, 16)], 1), 1,
                        ids_restore.unsqueeze(-1).expand(-1, -1, 16))  # fmt: skip
    assert torch.equal(full[mask == 0], tokens[mask == 0])


def test_forward_uses_model_mask_ratio():
    vit = MaskedViT((21, 16), mask_ratio=0.5)
    out = vit(torch.rand(2, 21, 16), generator=_gen())
    assert (out.mask.sum(1) == 24 - 12).all()
    out = vit(torch.rand(2, 21, 16), mask_ratio=0.75, generator=_gen())
    assert (out.mask.sum(1) == 18).all()


def test_mim_loss_only_on_masked_patches_and_real_pixels():
    vit = MaskedViT((21, 16))
    x = vit.prepare(torch.rand(2, 21, 16))
    pred = torch.rand_like(x)
    mask = torch.zeros(2, vit.num_patches)
    mask[:, [0, 5, 23]] = 1.0
    base = vit.mim_loss(x, pred, mask)
    # naive: mean over masked patches of the per-patch MSE over real pixels
    tp, pp = patchify(x, 4), patchify(pred, 4)
    valid = patchify(F.pad(torch.ones(1, 1, 21, 16), (0, 0, 0, 3)), 4)[0]
    naive = torch.stack(
        [((pp[b, j] - tp[b, j]) ** 2)[valid[j] > 0].mean() for b in range(2) for j in (0, 5, 23)]
    ).mean()
    torch.testing.assert_close(base, naive)
    # changing a visible patch leaves the loss unchanged; a masked patch changes it
    pp2 = pp.clone()
    pp2[:, 1] += 3.0
    assert torch.equal(vit.mim_loss(x, unpatchify(pp2, 4, vit.grid_size), mask), base)
    pp2[:, 5] += 3.0
    assert vit.mim_loss(x, unpatchify(pp2, 4, vit.grid_size), mask) > base
    # padding pixels (rows 21-23 of the last patch row) do not count
    pred3 = pred.clone()
    pred3[..., 21:, :] += 100.0
    assert torch.equal(vit.mim_loss(x, pred3, mask), base)


def test_heads_and_options():
    torch.manual_seed(0)
    for head in ("bn_selu", "ln_leakyrelu"):
        vit = MaskedViT((16, 16), head=head, depth=2, share_norm=True, out_dim=8)
        assert vit(torch.rand(3, 16, 16)).z.shape == (3, 8)
        assert vit.blocks[0].norm1 is vit.blocks[0].norm2
    with pytest.raises(ValueError, match="head"):
        MaskedViT((16, 16), head="relu")
    with pytest.raises(ValueError, match="expected images"):
        MaskedViT((16, 16))(torch.rand(2, 15, 16))
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(torch.rand(1, 4, 2), 1.0)


def test_ema_update_math():
    torch.manual_seed(0)
    online = MaskedViT((16, 16), depth=1)
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online.train()(torch.rand(4, 16, 16))  # moves BatchNorm running statistics
    before = {k: v.clone() for k, v in target.state_dict().items()}
    ema_update_(target, online, momentum=0.9)
    tgt, onl = dict(target.named_parameters()), dict(online.named_parameters())
    for name, p in tgt.items():
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * onl[name].detach())
    for name, b in target.named_buffers():
        assert torch.equal(b, dict(online.named_buffers())[name])
    ema_update_(target, online, momentum=1.0)  # m = 1 is a no-op for parameters
    for name, p in tgt.items():
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * onl[name].detach())


def _naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    z = torch.cat([z1, z2])
    n = z.shape[0]
    b = n // 2
    total = torch.zeros((), dtype=z.dtype)
    for i in range(n):
        pos = i + b if i < b else i - b
        sims = [F.cosine_similarity(z[i], z[k], dim=0) / tau for k in range(n)]
        denom = sum(torch.exp(sims[k]) for k in range(n) if k != i)
        total = total - torch.log(torch.exp(sims[pos]) / denom)
    return total / n


def test_nt_xent_equals_naive():
    g = _gen(3)
    z1, z2 = (
        torch.randn(6, 5, generator=g, dtype=torch.float64),
        torch.randn(6, 5, generator=g, dtype=torch.float64),
    )
    for tau in (0.5, 0.1):
        torch.testing.assert_close(nt_xent_loss(z1, z2, tau), _naive_nt_xent(z1, z2, tau))
    z1.requires_grad_(True)
    nt_xent_loss(z1, z2).backward()
    assert z1.grad.abs().sum() > 0


def _naive_neighbor_nt_xent(z1, z2, tau, neighbors, mode):
    z = torch.cat([z1, z2])
    n = z.shape[0]
    b = n // 2
    nb = neighbors | neighbors.T
    total = torch.zeros((), dtype=z.dtype)
    for i in range(n):
        gi = i % b
        own = i + b if i < b else i - b
        linked = [k for k in range(n) if k != i and k != own and k % b != gi and bool(nb[gi, k % b])]
        sims = {k: F.cosine_similarity(z[i], z[k], dim=0) / tau for k in range(n)}
        others = [k for k in range(n) if k != i and (mode == "positive" or k not in linked)]
        denom = sum(torch.exp(sims[k]) for k in others)
        positives = [own] + (linked if mode == "positive" else [])
        total = total - sum(torch.log(torch.exp(sims[p]) / denom) for p in positives) / len(positives)
    return total / n


@pytest.mark.parametrize("mode", ["positive", "exclude"])
def test_nt_xent_with_neighbors_equals_naive(mode):
    g = _gen(5)
    z1, z2 = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2))
    neighbors = torch.zeros(6, 6, dtype=torch.bool)
    neighbors[0, 1] = neighbors[2, 4] = neighbors[4, 5] = neighbors[3, 3] = True  # asymmetric + diagonal
    for tau in (0.5, 0.2):
        got = nt_xent_loss(z1, z2, tau, neighbors=neighbors, neighbor_mode=mode)
        torch.testing.assert_close(got, _naive_neighbor_nt_xent(z1, z2, tau, neighbors, mode))
    # no neighbours at all: the plain loss
    empty = torch.zeros(6, 6, dtype=torch.bool)
    torch.testing.assert_close(
        nt_xent_loss(z1, z2, neighbors=empty, neighbor_mode=mode), nt_xent_loss(z1, z2)
    )


def test_nt_xent_neighbors_stop_repelling_linked_genes():
    # two genes that share a pattern: the plain loss pushes them apart, the neighbour-aware ones do not
    z1 = torch.tensor([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.0]], requires_grad=True)
    z2 = z1.detach().clone()
    linked = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)

    def pull(**kw):
        z1.grad = None
        nt_xent_loss(z1, z2, 0.5, **kw).backward()
        # gradient-descent step direction of gene 0's second coordinate (towards gene 1 is negative)
        return -z1.grad[0, 1].item()

    assert pull() > 0  # plain: gene 0 moves away from gene 1
    assert pull(neighbors=linked, neighbor_mode="positive") < 0  # drawn together
    assert abs(pull(neighbors=linked, neighbor_mode="exclude")) < abs(pull())
    with pytest.raises(ValueError, match="neighbor_mode"):
        nt_xent_loss(z1, z2, neighbors=linked, neighbor_mode="bogus")
    with pytest.raises(ValueError, match="shape"):
        nt_xent_loss(z1, z2, neighbors=linked[:2, :2])


def test_uncertainty_weighting():
    awl = UncertaintyWeighting(3)
    losses = [torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)]
    torch.testing.assert_close(awl(*losses), torch.tensor(0.5 * 7 + 3 * math.log(2.0)))
    with torch.no_grad():
        awl.sigma.copy_(torch.tensor([0.5, 1.0, 2.0]))
    expected = sum(0.5 / s**2 * loss + math.log1p(s**2) for s, loss in zip([0.5, 1.0, 2.0], [1.0, 2.0, 4.0]))
    torch.testing.assert_close(awl(*losses), torch.tensor(expected))
    awl(*losses).backward()
    assert awl.sigma.grad.abs().sum() > 0
    torch.testing.assert_close(awl.weights, torch.tensor([2.0, 0.5, 0.125]))
    with pytest.raises(ValueError, match="expected 3 losses"):
        awl(torch.tensor(1.0))


def _pattern_images(n: int, seed: int) -> torch.Tensor:
    g = _gen(seed)
    yy, xx = torch.meshgrid(torch.arange(21.0), torch.arange(16.0), indexing="ij")
    centres = torch.rand(n, 2, generator=g) * torch.tensor([21.0, 16.0])
    blobs = torch.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 18.0)
    return blobs * 3.0 + 0.1 * torch.rand(n, 21, 16, generator=g)


def test_tiny_training_reduces_mim_loss():
    torch.manual_seed(0)
    vit = MaskedViT((21, 16), depth=2, mask_ratio=0.5)
    images = _pattern_images(64, 0)
    opt = torch.optim.Adam(vit.parameters(), lr=1e-3)
    gen = _gen(0)
    losses = []
    for _ in range(60):
        out = vit(images, generator=gen)
        opt.zero_grad()
        out.mim_loss.backward()
        opt.step()
        losses.append(out.mim_loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_forward_is_deterministic_given_seeds():
    torch.manual_seed(1)
    a = MaskedViT((21, 16), depth=1)
    torch.manual_seed(1)
    b = MaskedViT((21, 16), depth=1)
    x = torch.rand(3, 21, 16)
    oa, ob = a(x, generator=_gen(5)), b(x, generator=_gen(5))
    assert torch.equal(oa.mask, ob.mask)
    assert torch.equal(oa.mim_loss, ob.mim_loss)
