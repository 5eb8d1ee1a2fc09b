"""Evaluation metrics used in the papers.

* :func:`clustering_scores`, :func:`per_class_recall`, :func:`cluster_accuracy` — external clustering
  scores against a ground truth (CRCT, DARLC simulations).
* :func:`open_world_accuracy` — seen / novel / overall accuracy of an open-world annotation (scDET).
* :func:`davies_bouldin` — Davies–Bouldin index with Euclidean or Pearson distance (DARLC's DBIE/DBIP).
"""

from ._clustering import cluster_accuracy, clustering_scores, per_class_recall
from ._davies_bouldin import davies_bouldin
from ._open_world import open_world_accuracy

__all__ = [
    "cluster_accuracy",
    "clustering_scores",
    "davies_bouldin",
    "open_world_accuracy",
    "per_class_recall",
]
