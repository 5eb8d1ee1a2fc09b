"""CRCT losses: reconstruction normalisation, prototype-contrastive loss vs a naive loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scomics_ext.module import graph_regularization, prototype_contrastive_loss, reconstruction_loss


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: threads add only overhead, and stall when other jobs share the CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _naive(z, labels, protos, z_aug=None, tau=0.5, normalize=True):
    u = z if z_aug is None else torch.cat([z, z_aug])
    y = labels if z_aug is None else torch.cat([labels, labels])
    c = protos
    if normalize:
        u, c = F.normalize(u, dim=1), F.normalize(c, dim=1)
    terms = []
    for k in range(len(c)):
        members = u[y == k]
        if len(members) == 0:
            continue
        pos = sum(math.exp(float(v @ c[k]) / tau) for v in members) / len(members)
        allv = sum(math.exp(float(v @ c[k]) / tau) for v in u) / len(u)
        terms.append(-math.log(pos / allv))
    return sum(terms) / len(terms)


@pytest.mark.parametrize(("normalize", "tau"), [(True, 0.5), (True, 0.1), (False, 2.0)])
def test_matches_naive_loop(normalize, tau):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(15, 4, generator=g, dtype=torch.float64)
    z_aug = z + 0.1 * torch.randn(15, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (15,), generator=g)
    protos = torch.randn(4, 4, generator=g, dtype=torch.float64)  # class 3 has no members
    for za in (None, z_aug):
        got = prototype_contrastive_loss(z, labels, protos, z_aug=za, tau=tau, normalize=normalize)
        assert got.item() == pytest.approx(_naive(z, labels, protos, za, tau, normalize), rel=1e-10)


def test_tight_clusters_score_lower_than_shuffled_labels():
    g = torch.Generator().manual_seed(1)
    protos = torch.randn(4, 8, generator=g) * 3
    labels = torch.arange(400) % 4
    z = protos[labels] + 0.1 * torch.randn(400, 8, generator=g)
    tight = prototype_contrastive_loss(z, labels, protos)
    shuffled = prototype_contrastive_loss(z, labels[torch.randperm(400, generator=g)], protos)
    assert tight < shuffled - 0.5
    assert prototype_contrastive_loss(
        z, labels, protos, normalize=False, tau=2.0
    ) < prototype_contrastive_loss(
        z, labels[torch.randperm(400, generator=g)], protos, normalize=False, tau=2.0
    )


def test_stable_for_extreme_logits_and_empty_classes():
    z = torch.tensor([[1e4, 0.0], [1e4, 1.0], [0.0, 1e4]], requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # class 2 empty
    loss = prototype_contrastive_loss(z, labels, protos, normalize=False, tau=0.01)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # all classes empty is impossible with valid labels, but zero prototypes' classes are just skipped
    assert torch.isfinite(prototype_contrastive_loss(z, torch.zeros(3, dtype=torch.long), protos))
    with pytest.raises(ValueError, match="labels must lie"):
        prototype_contrastive_loss(z, torch.tensor([0, 0, 3]), protos)


def test_gradient_pulls_members_towards_their_prototype():
    protos = torch.eye(2)
    z = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]], requires_grad=True)
    prototype_contrastive_loss(z, torch.tensor([0, 0, 1]), protos).backward()
    step = -z.grad[0]  # gradient descent direction for the ambiguous point of class 0
    assert step[0] > 0 > step[1]


def test_reconstruction_loss_is_weighted_mean_squared_error():
    x = [torch.ones(4, 3), torch.zeros(4, 10)]
    r = [torch.zeros(4, 3), torch.full((4, 10), 2.0)]
    assert reconstruction_loss(x, r).item() == pytest.approx(1.0 + 4.0)
    assert reconstruction_loss(x, r, weights=[5, 0.5]).item() == pytest.approx(5.0 + 2.0)
    with pytest.raises(ValueError, match="modality weights"):
        reconstruction_loss(x, r, weights=[1.0])
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(x, r[::-1])


def test_graph_regularization_normalisation():
    w = [torch.tensor([3.0, 4.0]), torch.zeros(3)]
    w0 = [torch.zeros(2), torch.zeros(3)]
    assert graph_regularization(w, w0).item() == pytest.approx(5.0 / 4)
