"""scvi-tools style model classes (``setup_anndata``/``setup_mudata``, ``train``, ``save``/``load``)."""

from ._crct import CRCT
from ._darlc import DARLC
from ._scdet import SCDET

__all__: list[str] = ["CRCT", "DARLC", "SCDET"]
