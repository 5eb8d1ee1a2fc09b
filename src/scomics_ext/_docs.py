"""Shared docstring fragments, substituted with :func:`inject_docs` (scvi-tools' docrep pattern, minus docrep)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

DOC = {
    "adata": "adata\n        Annotated data matrix (observations x variables).",
    "copy": (
        "copy\n        If ``True``, work on and return a copy of the input; otherwise modify it in place and return "
        "``None``. On any error the input is left unchanged."
    ),
    "random_state": "random_state\n        Seed; the same seed gives the same result on CPU.",
    "spatial_key": "spatial_key\n        Key in ``obsm`` holding the spatial coordinates, shape ``(n_obs, 2)`` or ``(n_obs, 3)``.",
    "layer": "layer\n        Key in ``layers`` to use instead of ``X``.",
    "key_added": "key_added\n        Name under which results are stored.",
    "progress_bar": "progress_bar\n        Show a progress bar (default: ``scomics_ext.settings.progress_bar``).",
}


def inject_docs(**extra: str) -> Callable[[F], F]:
    """Fill ``{name}`` placeholders of a docstring from :data:`DOC` (and ``extra``)."""

    def deco(func: F) -> F:
        if func.__doc__:
            func.__doc__ = func.__doc__.format(**{**DOC, **extra})
        return func

    return deco
