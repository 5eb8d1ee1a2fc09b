"""Public surface of sx.metrics: exports and runnable docstring examples."""

from __future__ import annotations

import inspect

import scomics_ext as sx

PUBLIC = [
    "cluster_accuracy",
    "clustering_scores",
    "davies_bouldin",
    "open_world_accuracy",
    "per_class_recall",
]


def test_exports():
    assert sorted(sx.metrics.__all__) == PUBLIC
    for name in PUBLIC:
        func = getattr(sx.metrics, name)
        doc = inspect.getdoc(func)
        for section in ("Parameters", "Returns", "Examples"):
            assert f"{section}\n---" in doc, (name, section)
