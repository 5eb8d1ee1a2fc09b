"""Package-wide settings (progress bars, data cache)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _default_cache() -> Path:
    env = os.environ.get("SCOMICS_EXT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "scomics_ext"


@dataclass
class Settings:
    """Global settings of :mod:`scomics_ext`.

    Attributes
    ----------
    progress_bar
        Default for ``progress_bar=`` in training functions.
    datasetdir
        Where :mod:`scomics_ext.datasets` loaders cache downloaded files. Defaults to
        ``$SCOMICS_EXT_CACHE`` or ``~/.cache/scomics_ext``.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> sx.settings.progress_bar = False
    """

    progress_bar: bool = True
    datasetdir: Path = field(default_factory=_default_cache)


settings = Settings()
