"""Peers run side by side with our methods in the benchmarks (installed with the ``bench`` extra).

Each wrapper takes plain arrays, runs the peer with its published defaults, and returns an embedding or
labels; clustering of embeddings goes through :func:`gmm_labels` so every method is clustered the same way.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture


def gmm_labels(Z: np.ndarray, n_clusters: int, *, random_state: int = 0, n_pcs: int = 20) -> np.ndarray:
    """The published pipelines' final step: PCA(20) of L2-normalised Z, then a tied-covariance GMM ("EEE")."""
    Z = np.asarray(Z, dtype=np.float64)
    Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    if Z.shape[1] > n_pcs:
        Z = PCA(n_pcs, random_state=random_state).fit_transform(Z)
    gmm = GaussianMixture(n_clusters, covariance_type="tied", n_init=3, random_state=random_state)
    return gmm.fit_predict(Z)


def spatialglue_embedding(
    feat1: np.ndarray,
    feat2: np.ndarray,
    coords: np.ndarray,
    *,
    datatype: str = "SPOTS",
    n_spatial_neighbors: int = 3,
    random_state: int = 0,
) -> np.ndarray:
    """SpatialGlue (PyPI ``spatialglue``) on two modalities' features, with its own graphs and defaults.

    ``feat1``/``feat2`` are the per-modality representations SpatialGlue expects in ``obsm['feat']`` (PCA of
    the preprocessed data, as in its tutorials). Returns the combined embedding ``(n_obs, 64)``.
    """
    import anndata as ad
    import torch
    from SpatialGlue.preprocess import construct_neighbor_graph, fix_seed
    from SpatialGlue.SpatialGlue_pyG import Train_SpatialGlue

    fix_seed(random_state)
    mods = []
    for feat in (feat1, feat2):
        a = ad.AnnData(sparse.csr_matrix((coords.shape[0], 1), dtype=np.float32))
        a.obsm["spatial"] = np.asarray(coords, dtype=np.float64)
        a.obsm["feat"] = np.asarray(feat, dtype=np.float32)
        mods.append(a)
    data = construct_neighbor_graph(mods[0], mods[1], datatype=datatype, n_neighbors=n_spatial_neighbors)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its tqdm bar
        model = Train_SpatialGlue(
            data, datatype=datatype, device=torch.device("cpu"), random_seed=random_state
        )
        out = model.train()
    return np.asarray(out["SpatialGlue"])
