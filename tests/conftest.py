"""Shared fixtures: the real-data folder and the "object unchanged" assertion."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import scomics_ext as sx

sx.settings.progress_bar = False

REPO_ROOT = Path(__file__).resolve().parents[1]


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
