"""Plotting."""

from ._crct import crct
from ._darlc import gene_clusters
from ._scdet import scdet

__all__: list[str] = ["crct", "gene_clusters", "scdet"]
