"""Tools: the methods (``crct``, ``darlc``, ``scdet``), thin wrappers around :mod:`scomics_ext.model`."""

__all__: list[str] = []
