"""scomics-ext: CRCT, DARLC and scDET for single-cell and spatial omics, as a scverse plugin.

Namespaces follow scanpy / squidpy: :mod:`~scomics_ext.pp` (preprocessing and graphs),
:mod:`~scomics_ext.tl` (the methods), :mod:`~scomics_ext.pl` (plots), :mod:`~scomics_ext.metrics`,
:mod:`~scomics_ext.datasets`, and the scvi-tools style :mod:`~scomics_ext.model` classes built on the
torch :mod:`~scomics_ext.module` kernels.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scomics-ext")
except PackageNotFoundError:  # pragma: no cover - source tree without installation
    __version__ = "0.0.0+unknown"

from . import datasets, metrics, model, module, pl, pp, tl
from ._settings import settings

__all__ = ["__version__", "datasets", "metrics", "model", "module", "pl", "pp", "settings", "tl"]
