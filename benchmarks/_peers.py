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


def scanvi_threshold_annotate(
    ref_counts,
    ref_labels,
    query_counts,
    *,
    n_novel: int,
    threshold: float = 0.5,
    scvi_epochs: int = 50,
    scanvi_epochs: int = 20,
    n_latent: int = 10,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """scANVI with a confidence threshold; low-confidence ("unassigned") cells are k-means'd into novel types.

    scVI is trained on reference + query raw counts (``scvi_epochs``), then scANVI from it
    (``scanvi_epochs``) with the query cells as the unlabelled category (SCANVI's "Unknown" convention).
    Query cells whose highest class probability (``predict(soft=True)``) is below ``threshold`` are
    unassigned and clustered by k-means on the scANVI latent space into ``n_novel`` clusters named
    ``novel_1..n_novel`` by decreasing size. The threshold is a fixed default, never tuned on labels.
    Returns the predicted labels (object array) and the confidences of the query cells.
    """
    import anndata as ad
    import scvi
    from sklearn.cluster import KMeans

    scvi.settings.seed = random_state
    unknown = "__unknown__"
    X = sparse.vstack([sparse.csr_matrix(ref_counts), sparse.csr_matrix(query_counts)], format="csr")
    X = X.astype(np.float32)
    n_ref = ref_counts.shape[0]
    labels = np.asarray(list(map(str, ref_labels)) + [unknown] * query_counts.shape[0], dtype=object)
    joint = ad.AnnData(X=X)
    joint.obs["label"] = labels
    joint.obs["dataset"] = np.where(np.arange(joint.n_obs) < n_ref, "ref", "query")
    kw = {"enable_progress_bar": False, "accelerator": "cpu"}
    with contextlib.redirect_stdout(io.StringIO()):
        scvi.model.SCVI.setup_anndata(joint, batch_key="dataset", labels_key="label")
        vae = scvi.model.SCVI(joint, n_latent=n_latent)
        vae.train(max_epochs=scvi_epochs, **kw)
        lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category=unknown, labels_key="label")
        lvae.train(max_epochs=scanvi_epochs, n_samples_per_label=100, **kw)
        q = np.arange(n_ref, joint.n_obs)
        proba = lvae.predict(indices=q, soft=True)
        Z = lvae.get_latent_representation(indices=q)
    pred = np.asarray(proba.columns, dtype=object)[proba.to_numpy().argmax(1)]
    conf = proba.to_numpy().max(1)
    unassigned = np.flatnonzero(conf < threshold)
    if n_novel > 0 and unassigned.size >= n_novel:
        km = KMeans(n_novel, n_init=10, random_state=random_state).fit_predict(Z[unassigned])
        order = np.argsort(-np.bincount(km, minlength=n_novel), kind="stable")
        rank = np.empty(n_novel, dtype=int)
        rank[order] = np.arange(n_novel)
        pred[unassigned] = [f"novel_{rank[k] + 1}" for k in km]
    return pred, conf


def hotspot_modules(
    counts: np.ndarray | sparse.spmatrix,
    coords: np.ndarray,
    gene_names: list[str],
    n_clusters: int,
    *,
    n_neighbors: int = 30,
    model: str = "danb",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hotspot (PyPI ``hotspotsc``) gene modules from the spatial local correlations, with its defaults.

    ``counts`` is spots x genes (raw counts, the genes to cluster); ``coords`` the spot coordinates used as
    Hotspot's latent space (its spatial mode). Runs ``create_knn_graph(n_neighbors=30)``,
    ``compute_autocorrelations``, ``compute_local_correlations`` on all the genes and ``create_modules``
    (defaults). Returns ``(labels cut at n_clusters, native modules, linkage)``: the first cuts Hotspot's own
    average-linkage tree of the pairwise local-correlation Z-scores (``hs.linkage``) into exactly
    ``n_clusters`` clusters, so that every method is compared with the same K; the second is
    ``create_modules``' output (``-1`` = unassigned); the linkage rows follow ``gene_names``.
    """
    import anndata as ad
    import hotspot
    from scipy.cluster.hierarchy import fcluster

    X = sparse.csc_matrix(counts, dtype=np.float64)
    a = ad.AnnData(X)
    a.var_names = [str(g) for g in gene_names]
    a.obs_names = [f"s{i}" for i in range(a.n_obs)]
    a.obsm["spatial"] = np.asarray(coords, dtype=np.float64)
    a.obs["total_counts"] = np.asarray(X.sum(axis=1)).ravel()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # tqdm bars
        hs = hotspot.Hotspot(a, model=model, latent_obsm_key="spatial", umi_counts_obs_key="total_counts")
        hs.create_knn_graph(weighted_graph=False, n_neighbors=min(n_neighbors, a.n_obs - 1))
        hs.compute_autocorrelations()
        hs.compute_local_correlations(list(a.var_names), jobs=1)
        native = hs.create_modules()
    if list(hs.local_correlation_z.index) != list(a.var_names):
        raise RuntimeError("Hotspot reordered the genes; the linkage rows no longer match `gene_names`.")
    cut = fcluster(hs.linkage, t=n_clusters, criterion="maxclust") - 1
    native = native.reindex(a.var_names).to_numpy()
    return cut.astype(np.int64), native.astype(np.int64), hs.linkage
