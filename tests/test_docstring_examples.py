"""Every docstring example in the package runs (heavy ones are marked ``+SKIP`` in place)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import scomics_ext

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(scomics_ext.__path__, prefix="scomics_ext.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0, f"{result.failed} failing example(s) in {name}"
