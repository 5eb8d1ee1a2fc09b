"""Argument checks of the simulators: every message names the parameter and the accepted range."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scomics_ext._validation import check_positive_int


def check_seed(random_state: Any) -> int:
    """``random_state`` must be a non-negative integer."""
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise TypeError(f"`random_state` must be an integer, got {type(random_state).__name__}.")
    if random_state < 0:
        raise ValueError(f"`random_state` must be >= 0, got {random_state}.")
    return int(random_state)


def check_int(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer in ``[minimum, maximum]``."""
    value = check_positive_int(value, name, minimum=minimum)
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}.")
    return value


def check_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number within the given (open or closed) bounds."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not (lo_ok and hi_ok):
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        rng = f"{lo or '(-inf'}, {hi or 'inf)'}"
        raise ValueError(f"`{name}` must be in {rng}, got {value:g}.")
    return value


def check_grid_shape(n_side: Any, name: str = "n_side", *, minimum: int = 2) -> tuple[int, int]:
    """An integer side (square grid) or a ``(n_rows, n_cols)`` pair."""
    if isinstance(n_side, tuple | list):
        if len(n_side) != 2:
            raise ValueError(f"`{name}` must be an integer or a (n_rows, n_cols) pair, got {n_side!r}.")
        return (
            check_int(n_side[0], f"{name}[0]", minimum=minimum),
            check_int(n_side[1], f"{name}[1]", minimum=minimum),
        )
    side = check_int(n_side, name, minimum=minimum)
    return side, side
