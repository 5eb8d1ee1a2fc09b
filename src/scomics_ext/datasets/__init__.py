"""Simulators with known truth and loaders for public datasets.

Simulators (fast, seeded, with planted truth):

* ``spatial_multiome`` - spatial multi-omics (RNA/ADT/ATAC) with block domains, rare niches and
  complementary modalities (for CRCT);
* ``gene_patterns`` - genes following planted spatial patterns (for DARLC);
* ``open_world`` - a labelled reference and a query with seen and novel, long-tailed cell types
  (for scDET).

Loaders (a local copy via ``path=``, or a download cached in ``scomics_ext.settings.datasetdir``):
``spatialglue_simulation``, ``human_lymph_node``, ``mouse_olfactory_bulb``, ``human_melanoma``,
``baron_pancreas``, ``worm_neurons``.
"""

from ._gene_patterns import gene_patterns
from ._loaders import (
    baron_pancreas,
    human_lymph_node,
    human_melanoma,
    mouse_olfactory_bulb,
    spatialglue_simulation,
    worm_neurons,
)
from ._open_world import open_world
from ._spatial_multiome import spatial_multiome

__all__ = [
    "baron_pancreas",
    "gene_patterns",
    "human_lymph_node",
    "human_melanoma",
    "mouse_olfactory_bulb",
    "open_world",
    "spatial_multiome",
    "spatialglue_simulation",
    "worm_neurons",
]
