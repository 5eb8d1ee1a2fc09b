"""Pure torch modules and losses; they never see AnnData.

CRCT kernels: sparse graph utilities on edge lists (`EdgeIndex`, `spmm`, `sym_normalize`), the learned graph
fusion and network (`CRCTGraphs`, `GraphFusion`, `CRCTNetwork`), ISDA statistics and augmentation
(`RunningClassStats`), the losses, relative-progress schedules and k-means prototypes.
"""

from ._crct import CRCTNetwork, CRCTOutput
from ._graph import CRCTGraphs, FusedGraph, GraphFusion, ModalityGraph
from ._isda import RunningClassStats, batch_class_stats, isda_augment
from ._losses import DEFAULT_TAU, graph_regularization, prototype_contrastive_loss, reconstruction_loss
from ._prototypes import assign_to_prototypes, kmeans_prototypes, match_prototypes
from ._schedules import (
    DEFAULT_RHO0,
    LinearSchedule,
    StepSchedule,
    aug_weight_schedule,
    cluster_weight_schedule,
    relative_progress,
    rho_schedule,
)
from ._sparse import EdgeIndex, edge_index_from_scipy, spmm, sym_normalize, to_torch_sparse, union_edges

__all__ = [
    "DEFAULT_RHO0",
    "DEFAULT_TAU",
    "CRCTGraphs",
    "CRCTNetwork",
    "CRCTOutput",
    "EdgeIndex",
    "FusedGraph",
    "GraphFusion",
    "LinearSchedule",
    "ModalityGraph",
    "RunningClassStats",
    "StepSchedule",
    "assign_to_prototypes",
    "aug_weight_schedule",
    "batch_class_stats",
    "cluster_weight_schedule",
    "edge_index_from_scipy",
    "graph_regularization",
    "isda_augment",
    "kmeans_prototypes",
    "match_prototypes",
    "prototype_contrastive_loss",
    "reconstruction_loss",
    "relative_progress",
    "rho_schedule",
    "spmm",
    "sym_normalize",
    "to_torch_sparse",
    "union_edges",
]
