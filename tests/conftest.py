"""Shared fixtures: the real-data folder and the "object unchanged" assertion."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
from threadpoolctl import threadpool_limits

matplotlib.use("Agg")

import scomics_ext as sx

sx.settings.progress_bar = False

from _helpers import REPO_ROOT  # noqa: E402


@pytest.fixture(autouse=True)
def _single_threaded_blas():
    """BLAS/OpenMP single-threaded: the suite runs on 2 xdist workers on 2 cores; threads only add contention."""
    with threadpool_limits(limits=1):
        yield


def shared_data_dir() -> Path:
    """Folder with the real datasets: ``$SCOMICS_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("SCOMICS_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the real-data folder; skips the test when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not present (set SCOMICS_DATA)")
    return path
