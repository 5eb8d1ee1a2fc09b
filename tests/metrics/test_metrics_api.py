"""Public surface of sx.metrics: exports and runnable docstring examples."""

from __future__ import annotations

import doctest
import inspect

import pytest

import scomics_ext as sx
from scomics_ext.metrics import _clustering, _davies_bouldin, _open_world

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


@pytest.mark.parametrize("module", [_clustering, _open_world, _davies_bouldin], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
