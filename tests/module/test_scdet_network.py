"""scDET network: feature swap, forward/loss plumbing, distribution estimate and n_novel estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scomics_ext.module._scdet import GaussianNoise, SCDETNetwork, feature_swap
from scomics_ext.module._scdet_estimate import (
    align_clusters,
    align_overclusters,
    connectivity_groups,
    estimate_distribution,
    estimate_n_novel,
)


@pytest.mark.parametrize(("n_genes", "p"), [(100, 0.3), (50, 0.1), (7, 0.5)])
def test_feature_swap_changes_exactly_fraction_p(n_genes, p):
    torch.manual_seed(0)
    x = torch.randn(32, n_genes, dtype=torch.float64)  # continuous: no ties between cells
    x_tilde, mask = feature_swap(x, p)
    k = round(p * n_genes)
    assert mask.sum(1).tolist() == [float(k)] * 32
    assert torch.equal(mask.bool(), x_tilde != x)
    # every swapped value comes from the same gene of another cell of the batch
    rows, cols = torch.nonzero(mask, as_tuple=True)
    for r, c in zip(rows.tolist()[:50], cols.tolist()[:50]):
        donors = torch.nonzero(x[:, c] == x_tilde[r, c]).flatten().tolist()
        assert donors
        assert r not in donors


def test_feature_swap_edge_cases_and_ties():
    x = torch.randn(5, 10)
    x_tilde, mask = feature_swap(x, 0.0)
    assert torch.equal(x_tilde, x)
    assert not mask.any()
    x_tilde, mask = feature_swap(x[:1], 0.5)  # a single cell has no donor
    assert torch.equal(x_tilde, x[:1])
    assert not mask.any()
    zeros = torch.zeros(6, 8)  # every donor holds the same value: nothing is detectably swapped
    x_tilde, mask = feature_swap(zeros, 0.5)
    assert torch.equal(x_tilde, zeros)
    assert not mask.any()
    with pytest.raises(ValueError, match="`p` must be in"):
        feature_swap(x, 1.5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(feature_swap(x, 0.3, generator=g1)[0], feature_swap(x, 0.3, generator=g2)[0])


def test_gaussian_noise_only_in_training():
    layer = GaussianNoise(1.0)
    x = torch.zeros(1000)
    assert layer.train()(x).std() > 0.5
    assert torch.equal(layer.eval()(x), x)


@pytest.mark.parametrize("likelihood", ["zinb", "mse"])
def test_network_forward_and_losses(likelihood):
    torch.manual_seed(0)
    net = SCDETNetwork(
        30, n_seen=3, n_novel=2, n_batch=2, likelihood=likelihood, n_hidden=(32, 16), n_latent=8, n_proj=8
    )
    x = torch.randn(12, 30)
    counts = torch.poisson(torch.full((12, 30), 2.0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2, -1, -1, -1, -1, -1, -1])
    batch = torch.tensor([0] * 6 + [1] * 6)
    out = net(x, batch)
    assert out.z.shape == (12, 8)
    assert out.logits.shape == (12, 5)
    assert torch.allclose(out.v.norm(dim=1), torch.ones(12))
    assert out.logits.abs().max() <= 1 / net.tau_cls + 1e-4  # cosine logits
    kw = {"counts": counts} if likelihood == "zinb" else {}
    warm = net.loss(x, labels, batch_index=batch, warmup=True, **kw)
    assert warm["r"] == 0
    assert warm["soft"] == 0
    assert torch.isclose(warm["loss"], warm["rec"] + warm["mask"])
    terms = net.loss(x, labels, batch_index=batch, **kw)
    assert all(torch.isfinite(v) for v in terms.values())
    assert 0 < terms["n_selected"] <= 6
    expected = terms["rec"] + terms["mask"] + sum(terms[k] for k in ("r", "t", "reg", "unsup", "sup", "soft"))
    assert torch.isclose(terms["loss"], expected)
    terms["loss"].backward()
    assert net.prototypes.grad is not None
    assert net.encoder[0].weight.grad is not None


def test_network_zinb_needs_counts_and_validates():
    net = SCDETNetwork(10, n_seen=2, n_novel=1, n_hidden=(8,), n_latent=4, n_proj=4)
    with pytest.raises(ValueError, match="needs the raw counts"):
        net.loss(torch.randn(4, 10), torch.tensor([0, 1, -1, -1]))
    with pytest.raises(ValueError, match="likelihood"):
        SCDETNetwork(10, n_seen=2, n_novel=1, likelihood="poisson")


def test_set_pi_and_prototypes():
    net = SCDETNetwork(10, n_seen=2, n_novel=1, likelihood="mse", n_hidden=(8,), n_latent=4, n_proj=4)
    net.set_pi(torch.tensor([2.0, 1.0, 1.0]))
    assert net.pi.tolist() == [0.5, 0.25, 0.25]
    old = net.prototypes.detach().clone()
    centres = torch.zeros(3, 4)
    centres[1] = torch.tensor([3.0, 0.0, 0.0, 4.0])
    net.set_prototypes(centres)
    assert torch.allclose(net.prototypes[1], torch.tensor([0.6, 0.0, 0.0, 0.8]))
    assert torch.equal(net.prototypes[0], old[0])
    assert torch.equal(net.prototypes[2], old[2])


def test_align_clusters_hungarian_then_size():
    # cluster 0 mostly label 1, cluster 3 mostly label 0; clusters 1 (size 4) and 2 (size 2) are novel
    clusters = np.array([0, 0, 0, 3, 3, 1, 1, 1, 1, 2, 2])
    labels = np.array([1, 1, 0, 0, 0, -1, -1, -1, -1, -1, -1])
    assert align_clusters(clusters, labels, n_seen=2, n_classes=4).tolist() == [1, 2, 3, 0]


def test_estimate_distribution_recovers_planted_sizes():
    rng = np.random.default_rng(0)
    sizes = [200, 80, 40, 120]
    centres = np.eye(4) * 10
    v = np.concatenate([rng.normal(centres[k], 0.5, size=(n, 4)) for k, n in enumerate(sizes)])
    truth = np.repeat(np.arange(4), sizes)
    labels = np.where((truth < 2) & (rng.random(truth.size) < 0.5), truth, -1)  # types 0, 1 seen
    est = estimate_distribution(v, labels, n_seen=2, n_classes=4, method="kmeans-ward", random_state=0)
    # seen classes keep their ids, the novel slots come by decreasing size (120 then 40)
    assert np.allclose(est.pi, np.array([200, 80, 120, 40]) / 440)
    assert (est.slot == np.array([0, 1, 3, 2])[truth]).all()


def test_novelty_estimate_separates_a_novel_type_next_to_a_seen_one():
    # a novel type (2) sits next to seen type 0: with K clusters the Hungarian matching gives both to
    # type 0; the over-clustering with reference shares keeps the novel type apart
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [3.0, 0.0]])
    sizes = [600, 300, 300]
    v = np.concatenate([rng.normal(centres[k], 0.5, size=(n, 2)) for k, n in enumerate(sizes)])
    truth = np.repeat(np.arange(3), sizes)
    labels = np.where((truth < 2) & (rng.random(truth.size) < 0.5), truth, -1)
    est = estimate_distribution(v, labels, n_seen=2, n_classes=3, method="novelty", random_state=0)
    query = labels < 0
    assert (est.slot[query & (truth == 2)] == 2).mean() > 0.95
    assert (est.slot[query & (truth < 2)] == 2).mean() < 0.05
    assert np.allclose(est.pi, np.array(sizes) / sum(sizes), atol=0.03)


def test_align_overclusters_without_novel_slots():
    clusters = np.array([0, 0, 1, 1])
    labels = np.array([0, -1, -1, -1])
    slot = align_overclusters(clusters, np.array([[0.0], [5.0]]), labels, n_seen=1, n_classes=1)
    assert slot.tolist() == [0, -1]


def test_estimate_n_novel_on_planted_blobs():
    rng = np.random.default_rng(1)
    d = 10
    centres = rng.normal(0, 6, size=(6, d))
    sizes = [150, 120, 100, 80, 60, 50]
    X = np.concatenate([rng.normal(centres[k], 1.0, size=(n, d)) for k, n in enumerate(sizes)])
    truth = np.repeat(np.arange(6), sizes)
    seen = truth < 3
    labels = np.where(seen & (rng.random(truth.size) < 0.5), truth, -1)
    res = estimate_n_novel(X, labels, random_state=0)
    assert res["n_novel"] == 3
    assert res["ari_reference"] == pytest.approx(1.0)
    # no novel type: nothing unexplained
    keep = truth < 3
    assert estimate_n_novel(X[keep], labels[keep], random_state=0)["n_novel"] == 0


def test_connectivity_groups_keep_an_elongated_type_whole():
    # novel type 0: a long line of 600 cells (many fine clusters); types 1, 2: small compact blobs close to
    # each other. Size-weighted k-means on the fine-cluster centres cuts the line and merges the blobs;
    # grouping by kNN connectivity recovers the three types.
    rng = np.random.default_rng(0)
    line = np.c_[np.linspace(0, 60, 600), rng.normal(0, 0.3, 600)]
    blobs = [rng.normal(c, 0.5, size=(80, 2)) for c in ([30.0, 12.0], [34.0, 12.0])]
    X = np.concatenate([line, *blobs])
    truth = np.repeat([0, 1, 2], [600, 80, 80])
    from sklearn.cluster import KMeans

    km = KMeans(20, n_init=3, random_state=0).fit(X)
    clusters = km.labels_
    groups = connectivity_groups(X, clusters, np.arange(20), 3)
    cell_group = groups[clusters]
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, cell_group) > 0.95
    kmeans_groups = KMeans(3, n_init=3, random_state=0).fit_predict(
        km.cluster_centers_, sample_weight=np.bincount(clusters).astype(float)
    )
    assert adjusted_rand_score(truth, kmeans_groups[clusters]) < 0.8
    # fewer clusters than groups: one group each
    assert connectivity_groups(X, clusters, np.array([3, 5]), 3).tolist() == [0, 1]


def test_distribution_splits_a_seen_cluster_by_its_reference_labels():
    from scomics_ext.module._scdet_estimate import _finish

    # cluster 0 (4 cells) goes to seen type 0 but a third of its labelled cells are type 1; cluster 1 is novel
    clusters = np.array([0, 0, 0, 0, 1, 1])
    labels = np.array([0, 0, 1, -1, -1, -1])
    est = _finish(np.array([0, 2]), clusters, labels, n_seen=2, n_classes=3, centres=np.zeros((2, 1)))
    assert np.allclose(est.pi, np.array([8 / 3, 4 / 3, 2]) / 6)
    assert est.slot.tolist() == [0, 0, 0, 0, 2, 2]
