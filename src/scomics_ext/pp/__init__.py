"""Preprocessing: graphs, per-modality pipelines, gene images.

AnnData-level functions (:func:`spatial_graph`, :func:`feature_graph`, :func:`preprocess_modality`,
:func:`gene_images`) are thin wrappers over array-level kernels (:func:`knn_graph`,
:func:`normalize_adjacency`, :func:`preprocess_matrix`, :func:`rasterize`, …) that the model classes call
directly, without AnnData.
"""

from ._graphs import feature_graph, knn_graph, normalize_adjacency, spatial_graph
from ._images import gene_images, grid_pixels, rasterize
from ._preprocess import clr, preprocess_matrix, preprocess_modality, resolve_kind, tfidf

__all__ = [
    "clr",
    "feature_graph",
    "gene_images",
    "grid_pixels",
    "knn_graph",
    "normalize_adjacency",
    "preprocess_matrix",
    "preprocess_modality",
    "rasterize",
    "resolve_kind",
    "spatial_graph",
    "tfidf",
]
