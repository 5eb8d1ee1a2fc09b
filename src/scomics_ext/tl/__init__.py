"""Tools: the methods (``crct``, ``darlc``, ``scdet``), thin wrappers around :mod:`scomics_ext.model`."""

from ._crct import crct
from ._darlc import darlc
from ._scdet import scdet

__all__: list[str] = ["crct", "darlc", "scdet"]
