"""The tutorial notebooks still run top to bottom (quick setting, on a temporary copy).

Each notebook is executed with ``SCOMICS_TUTORIAL_QUICK=1`` (fewer cells/genes and epochs) by nbclient, on a copy
in a temporary folder, so the stored outputs are untouched. A notebook whose data folder is absent is skipped.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from _helpers import REPO_ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = REPO_ROOT / "tutorials"


def shared_data_dir() -> Path:
    """``$SCOMICS_DATA`` or ``../shared/data`` beside the repository (as in conftest)."""
    env = os.environ.get("SCOMICS_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


# notebook -> the data sub-folder it reads
NOTEBOOKS = {
    "crct_spatialglue_simulation": "spatialglue_simulation",
    "crct_lymph_node": "hln_a1_adt",
    "darlc_mouse_olfactory_bulb": "st_mouse_olfactory_bulb",
    "scdet_baron_pancreas": "pancreas_baron_human",
}


def test_every_tutorial_is_tested() -> None:
    on_disk = {p.stem for p in TUTORIALS.glob("*.ipynb")}
    assert on_disk == set(NOTEBOOKS), f"notebooks on disk {sorted(on_disk)} vs tested {sorted(NOTEBOOKS)}"


def test_stored_notebooks_are_executed() -> None:
    """The committed notebooks carry their outputs (the docs render them without executing)."""
    for name in NOTEBOOKS:
        nb = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, name
        missing = [i for i, c in enumerate(code) if c.execution_count is None]
        assert not missing, f"{name}: code cells {missing} were not executed"
        assert any(o.get("output_type") == "error" for c in code for o in c.outputs) is False, name
        assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), f"{name}: no figure"


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_tutorial_runs(name: str, tmp_path: Path) -> None:
    data = shared_data_dir()
    if not (data / NOTEBOOKS[name]).is_dir():
        pytest.skip(f"data folder {data / NOTEBOOKS[name]} not present (set SCOMICS_DATA)")
    src = TUTORIALS / f"{name}.ipynb"
    work = tmp_path / src.name
    shutil.copy(src, work)
    nb = nbformat.read(work, as_version=4)
    env = {
        "SCOMICS_DATA": str(data.resolve()),
        "SCOMICS_TUTORIAL_QUICK": "1",
        "SCOMICS_TUTORIAL_OUT": str(tmp_path / "out"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    try:
        start = time.perf_counter()
        client = nbclient.NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    print(f"{name}: {time.perf_counter() - start:.1f} s (quick)")
    assert any((tmp_path / "out").iterdir()), "the notebook saved no results"
