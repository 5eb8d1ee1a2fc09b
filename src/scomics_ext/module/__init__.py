"""Pure torch modules and losses; they never see AnnData.

CRCT kernels: sparse graph utilities on edge lists (`EdgeIndex`, `spmm`, `sym_normalize`), the learned graph
fusion and network (`CRCTGraphs`, `GraphFusion`, `CRCTNetwork`), ISDA statistics and augmentation
(`RunningClassStats`), the losses, relative-progress schedules and k-means prototypes.

DARLC kernels: the Student's t mixture fitted by MAP-EM (`StudentTMixture`, differentiable `smm_log_prob` /
`smm_posterior`), the masked-image-modelling ViT with momentum contrastive utilities (`MaskedViT`,
`nt_xent_loss`, `UncertaintyWeighting`), the sparse graph-attention denoiser (`GATAutoencoder`,
`fit_gat_denoiser`) and the epoch/batch-level losses (`smm_nll`, `laplacian_term`, `cluster_size_loss`,
`dec_kl_loss`, `seeding_similarity`, `estimate_n_clusters`).

scDET kernels: the denoising autoencoder with contrastive and prototype heads (`SCDETNetwork`), the feature-swap
view, the class-distribution estimate with Hungarian alignment (`estimate_distribution`), the novel-type count
estimator (`estimate_n_novel`) and every loss of the paper.
"""

from ._crct import CRCTNetwork, CRCTOutput
from ._darlc_losses import (
    DEFAULT_SIZE_THRESHOLD,
    cluster_size_loss,
    dec_kl_loss,
    estimate_n_clusters,
    laplacian_term,
    seeding_graphs,
    seeding_similarity,
    similarity_laplacian,
    smm_nll,
    target_distribution,
)
from ._gat import GATAutoencoder, SpotGraph, fit_gat_denoiser
from ._graph import CRCTGraphs, FusedGraph, GraphFusion, ModalityGraph
from ._isda import RunningClassStats, batch_class_stats, isda_augment
from ._losses import DEFAULT_TAU, graph_regularization, prototype_contrastive_loss, reconstruction_loss
from ._prototypes import assign_to_prototypes, kmeans_prototypes, match_prototypes
from ._scdet import GaussianNoise, SCDETNetwork, SCDETOutput, feature_swap
from ._scdet_estimate import DistributionEstimate, align_clusters, estimate_distribution, estimate_n_novel
from ._scdet_losses import (
    adjusted_probabilities,
    balanced_selection,
    contrastive_loss,
    cross_view_ce,
    distribution_kl,
    label_positives,
    mse_loss,
    sampling_rates,
    smoothed_prior,
    soft_contrastive_loss,
    supervised_ce,
    swap_bce,
)
from ._schedules import (
    DEFAULT_RHO0,
    LinearSchedule,
    StepSchedule,
    aug_weight_schedule,
    cluster_weight_schedule,
    relative_progress,
    rho_schedule,
)
from ._smm import SMMParams, StudentTMixture, smm_log_prob, smm_posterior, student_t_log_density
from ._sparse import EdgeIndex, edge_index_from_scipy, spmm, sym_normalize, to_torch_sparse, union_edges
from ._vit import (
    MaskedViT,
    UncertaintyWeighting,
    ViTOutput,
    ema_update_,
    momentum_copy,
    nt_xent_loss,
    pad_to_patch_multiple,
    patchify,
    random_masking,
    sincos_pos_embed_2d,
    unpatchify,
)

__all__ = [
    "DEFAULT_RHO0",
    "DEFAULT_SIZE_THRESHOLD",
    "DEFAULT_TAU",
    "CRCTGraphs",
    "CRCTNetwork",
    "CRCTOutput",
    "DistributionEstimate",
    "EdgeIndex",
    "FusedGraph",
    "GATAutoencoder",
    "GaussianNoise",
    "GraphFusion",
    "LinearSchedule",
    "MaskedViT",
    "ModalityGraph",
    "RunningClassStats",
    "SCDETNetwork",
    "SCDETOutput",
    "SMMParams",
    "SpotGraph",
    "StepSchedule",
    "StudentTMixture",
    "UncertaintyWeighting",
    "ViTOutput",
    "adjusted_probabilities",
    "align_clusters",
    "assign_to_prototypes",
    "aug_weight_schedule",
    "balanced_selection",
    "batch_class_stats",
    "cluster_size_loss",
    "cluster_weight_schedule",
    "contrastive_loss",
    "cross_view_ce",
    "dec_kl_loss",
    "distribution_kl",
    "edge_index_from_scipy",
    "ema_update_",
    "estimate_distribution",
    "estimate_n_clusters",
    "estimate_n_novel",
    "feature_swap",
    "fit_gat_denoiser",
    "graph_regularization",
    "isda_augment",
    "kmeans_prototypes",
    "label_positives",
    "laplacian_term",
    "match_prototypes",
    "momentum_copy",
    "mse_loss",
    "nt_xent_loss",
    "pad_to_patch_multiple",
    "patchify",
    "prototype_contrastive_loss",
    "random_masking",
    "reconstruction_loss",
    "relative_progress",
    "rho_schedule",
    "sampling_rates",
    "seeding_graphs",
    "seeding_similarity",
    "similarity_laplacian",
    "sincos_pos_embed_2d",
    "smm_log_prob",
    "smm_nll",
    "smm_posterior",
    "smoothed_prior",
    "soft_contrastive_loss",
    "spmm",
    "student_t_log_density",
    "supervised_ce",
    "swap_bce",
    "sym_normalize",
    "target_distribution",
    "to_torch_sparse",
    "union_edges",
    "unpatchify",
]
