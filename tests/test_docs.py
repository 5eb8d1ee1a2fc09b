"""The documentation builds with warnings treated as errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import REPO_ROOT

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    src = tmp_path / "docs"
    shutil.copytree(REPO_ROOT / "docs", src, ignore=shutil.ignore_patterns("_build", "generated"))
    # the changelog page includes ../CHANGELOG.md
    shutil.copy(REPO_ROOT / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    env = {**os.environ, "SCOMICS_DOCS_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-b",
            "html",
            "-q",
            str(src),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert (tmp_path / "html" / "api" / "pp.html").exists()
