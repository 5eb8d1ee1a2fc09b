"""Synthetic spatial 2-modality data with a planted 3-class structure, for the CRCT module tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import kneighbors_graph


def knn_graph(x: np.ndarray, k: int, metric: str = "euclidean") -> sp.csr_matrix:
    """Binary symmetrised kNN connectivity graph (no self loops)."""
    a = kneighbors_graph(x, n_neighbors=k, mode="connectivity", metric=metric, include_self=False)
    return a.maximum(a.T).tocsr().astype(np.float64)


def planted_spatial_problem(side: int = 30, seed: int = 0, noise: tuple[float, float] = (2.5, 3.0)):
    """A ``side x side`` grid with three spatial domains and two noisy modalities.

    Returns coordinates, labels, a list of two standardised feature matrices, the spatial kNN graph (k=6)
    and one correlation kNN graph (k=10) per modality.
    """
    rng = np.random.default_rng(seed)
    xx, yy = np.meshgrid(np.arange(side), np.arange(side))
    coords = np.c_[xx.ravel(), yy.ravel()].astype(float)
    labels = np.full(len(coords), 2)
    labels[coords[:, 0] < side / 3] = 0
    centre = np.array([0.66 * side, 0.5 * side])
    labels[np.linalg.norm(coords - centre, axis=1) < side / 4.5] = 1
    feats = []
    for d, sd in zip((30, 15), noise):
        means = rng.normal(0.0, 1.0, size=(3, d))
        x = means[labels] + rng.normal(0.0, sd, size=(len(labels), d))
        feats.append(((x - x.mean(0)) / x.std(0)).astype(np.float32))
    spatial = knn_graph(coords, 6)
    feature_graphs = [knn_graph(f, 10, metric="correlation") for f in feats]
    return coords, labels, feats, spatial, feature_graphs


def train_crct(
    feats,
    spatial,
    feature_graphs,
    *,
    n_steps=100,
    n_classes=3,
    seed=0,
    lr=0.003,
    tau=None,
    refresh_every=20,
    fusion_activation="none",
    rho0=None,
    edge_mlp=False,
):
    """A plain-torch CRCT training loop (the reference for the future Lightning plan). Returns (net, z, history)."""
    import torch

    from scomics_ext import module as M

    torch.manual_seed(seed)
    graphs = M.CRCTGraphs.from_scipy(spatial, feature_graphs)
    x = [torch.as_tensor(f) for f in feats]
    net = M.CRCTNetwork(
        [f.shape[1] for f in feats],
        graphs.n_feature_params,
        fusion_activation=fusion_activation,
        edge_mlp=edge_mlp,
    )
    stats = M.RunningClassStats(n_classes, net.n_latent)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    tau = M.DEFAULT_TAU if tau is None else tau
    rho0 = M.DEFAULT_RHO0 if rho0 is None else rho0
    protos = labels = None
    hist = []
    for step in range(n_steps):
        p = M.relative_progress(step, n_steps)
        out = net(x, graphs)
        if step % refresh_every == 0:
            protos, labels = M.kmeans_prototypes(out.z, n_classes, previous=protos, random_state=seed)
            stats.reset()
        stats.update(out.z, labels)
        z_aug = stats.augment(out.z, labels, M.rho_schedule(p, rho0), generator=gen)
        l_rec = M.reconstruction_loss(x, out.reconstructions)
        l_aug = M.reconstruction_loss(x, net.decode(z_aug, graphs))
        l_graph = M.graph_regularization(out.feature_weights, out.feature_init)
        beta = M.cluster_weight_schedule(p)
        l_cl = (
            M.prototype_contrastive_loss(out.z, labels, protos, z_aug=z_aug, tau=tau)
            if beta > 0
            else out.z.new_zeros(())
        )
        loss = l_rec + l_graph + M.aug_weight_schedule(p) * l_aug + beta * l_cl
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(
            {
                "loss": loss.item(),
                "rec": l_rec.item(),
                "aug": l_aug.item(),
                "graph": l_graph.item(),
                "cluster": l_cl.item(),
            }
        )
    with torch.no_grad():
        z = net(x, graphs).z
    return net, z, hist
