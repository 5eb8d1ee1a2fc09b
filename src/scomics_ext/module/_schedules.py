"""Loss-weight schedules of CRCT as functions of *relative* training progress ``p = t / T`` in ``[0, 1]``.

The paper gives its schedules in epochs: ``lambda`` (weight of ``L_aug``) = 0.01 / 0.2 / 0.5 over epochs
0-100 / 100-200 / >200 and ``beta`` (weight of ``L_cluster``) = 0 for the first 100 epochs, then 1, on
300-epoch runs (HLN: ``lambda`` = 0.05 / 0.5 / 1 over epochs 0-5 / 5-15 / >15). Applied verbatim to a
50-epoch run the clustering term never acts. Here the same steps are placed at the same *fractions* of
the run (the 300-epoch schedule: thirds), so every term acts in a run of any length:

* ``lambda(p)``: 0.01 for ``p < 1/3``, 0.2 for ``1/3 <= p < 2/3``, 0.5 after (:func:`aug_weight_schedule`);
  the HLN variant (``preset="hln"``) steps 0.05 / 0.5 / 1 at 5/50 and 15/50 of the run.
* ``beta(p)``: 0 for ``p < 1/3``, then 1 (:func:`cluster_weight_schedule`).
* ``rho(p) = p · rho_0`` (eq 8, already relative; :func:`rho_schedule`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_RHO0",
    "LinearSchedule",
    "StepSchedule",
    "aug_weight_schedule",
    "cluster_weight_schedule",
    "relative_progress",
    "rho_schedule",
]

#: Default base augmentation strength ``rho_0`` (in units of the class standard deviation). The paper
#: gives no value; 0.5 follows the ISDA default ``lambda_0 = 0.5``.
DEFAULT_RHO0 = 0.5


def relative_progress(step: int, n_steps: int) -> float:
    """Relative progress ``t / T`` of step ``t`` (0-based) in a run of ``T`` steps, clipped to ``[0, 1]``.

    Parameters
    ----------
    step
        Current step or epoch ``t`` (the first is 0).
    n_steps
        Total number of steps or epochs ``T``.

    Returns
    -------
    ``t / T`` in ``[0, 1]``.

    Examples
    --------
    >>> from scomics_ext.module import relative_progress
    >>> relative_progress(150, 300)
    0.5
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    return min(max(step / n_steps, 0.0), 1.0)


@dataclass(frozen=True)
class StepSchedule:
    """Piecewise-constant schedule over relative progress.

    Parameters
    ----------
    values
        Value on each piece, ``len(boundaries) + 1`` of them.
    boundaries
        Increasing switch points in ``(0, 1)``; the value ``values[i]`` holds on
        ``[boundaries[i-1], boundaries[i])``.

    Examples
    --------
    >>> from scomics_ext.module import StepSchedule
    >>> lam = StepSchedule((0.01, 0.2, 0.5), (1 / 3, 2 / 3))
    >>> [lam(p) for p in (0.0, 0.4, 0.9)]
    [0.01, 0.2, 0.5]
    """

    values: tuple[float, ...]
    boundaries: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError("need exactly one more value than boundaries")
        if list(self.boundaries) != sorted(self.boundaries):
            raise ValueError("boundaries must be increasing")

    def __call__(self, progress: float) -> float:
        """Value at relative progress ``progress`` in ``[0, 1]``."""
        return float(self.values[bisect.bisect_right(self.boundaries, progress)])


@dataclass(frozen=True)
class LinearSchedule:
    """Linear ramp ``start + (end - start) · p`` over relative progress ``p``.

    Parameters
    ----------
    start
        Value at ``p = 0``.
    end
        Value at ``p = 1``.

    Examples
    --------
    >>> from scomics_ext.module import LinearSchedule
    >>> LinearSchedule(0.0, 0.5)(0.5)
    0.25
    """

    start: float = 0.0
    end: float = 1.0

    def __call__(self, progress: float) -> float:
        """Value at relative progress ``progress`` in ``[0, 1]``."""
        p = min(max(progress, 0.0), 1.0)
        return float(self.start + (self.end - self.start) * p)


def rho_schedule(progress: float, rho0: float = DEFAULT_RHO0) -> float:
    """Augmentation strength ``rho(t) = (t / T) · rho_0`` (paper eq 8).

    Parameters
    ----------
    progress
        Relative progress ``t / T`` (see :func:`relative_progress`).
    rho0
        Base strength ``rho_0``.

    Returns
    -------
    ``rho`` for this step.

    Examples
    --------
    >>> from scomics_ext.module import rho_schedule
    >>> rho_schedule(0.5, rho0=1.0)
    0.5
    """
    return LinearSchedule(0.0, rho0)(progress)


_AUG_WEIGHT = {
    "default": StepSchedule((0.01, 0.2, 0.5), (1 / 3, 2 / 3)),
    "hln": StepSchedule((0.05, 0.5, 1.0), (0.1, 0.3)),
}
_CLUSTER_WEIGHT = StepSchedule((0.0, 1.0), (1 / 3,))


def aug_weight_schedule(progress: float, *, preset: Literal["default", "hln"] = "default") -> float:
    """Weight ``lambda`` of the augmented reconstruction loss ``L_aug`` at relative progress ``p``.

    ``"default"``: 0.01 / 0.2 / 0.5 with steps at 1/3 and 2/3 of the run (the paper's epochs 100 and
    200 of 300). ``"hln"``: 0.05 / 0.5 / 1 with steps at 0.1 and 0.3 (the paper's epochs 5 and 15 of 50).

    Parameters
    ----------
    progress
        Relative progress ``t / T`` in ``[0, 1]``.
    preset
        Which of the paper's schedules.

    Returns
    -------
    ``lambda(p)``.

    Examples
    --------
    >>> from scomics_ext.module import aug_weight_schedule
    >>> [aug_weight_schedule(p) for p in (0.0, 0.5, 0.9)]
    [0.01, 0.2, 0.5]
    """
    if preset not in _AUG_WEIGHT:
        raise ValueError(f"preset must be one of {sorted(_AUG_WEIGHT)}, got {preset!r}")
    return _AUG_WEIGHT[preset](progress)


def cluster_weight_schedule(progress: float) -> float:
    """Weight ``beta`` of the clustering loss at relative progress ``p``: 0 for ``p < 1/3``, then 1.

    The paper switches ``beta`` on after epoch 100 of 300; on a shorter run the same fraction applies,
    so the clustering term acts in every run (with HLN's 50 epochs it never did in the paper).

    Parameters
    ----------
    progress
        Relative progress ``t / T`` in ``[0, 1]``.

    Returns
    -------
    ``beta(p)``.

    Examples
    --------
    >>> from scomics_ext.module import cluster_weight_schedule
    >>> cluster_weight_schedule(0.2), cluster_weight_schedule(0.5)
    (0.0, 1.0)
    """
    return _CLUSTER_WEIGHT(progress)
