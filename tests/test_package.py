"""Package-level contracts: importable namespaces, version, documented public API."""

import importlib
import inspect
import subprocess
import sys

import pytest

import scomics_ext as sx

NAMESPACES = ["pp", "tl", "pl", "model", "module", "metrics", "datasets"]


def test_version():
    assert isinstance(sx.__version__, str)
    assert sx.__version__[0].isdigit()


def _public_objects():
    for ns in NAMESPACES:
        mod = importlib.import_module(f"scomics_ext.{ns}")
        for name in mod.__all__:
            yield f"{ns}.{name}", getattr(mod, name)


@pytest.mark.parametrize("ns", NAMESPACES)
def test_namespace_all_resolves(ns):
    mod = getattr(sx, ns)
    assert isinstance(mod.__all__, list)
    for name in mod.__all__:
        assert hasattr(mod, name), f"sx.{ns}.__all__ names missing {name}"


def test_every_public_callable_has_numpy_docstring_with_example():
    missing = []
    for qualname, obj in _public_objects():
        if not callable(obj):
            continue
        doc = inspect.getdoc(obj) or ""
        needs = ["Examples"]
        if inspect.isfunction(obj) and inspect.signature(obj).parameters:
            needs.append("Parameters")
        for section in needs:
            if f"{section}\n--------" not in doc and f"{section}\n----------" not in doc:
                missing.append(f"{qualname}: {section}")
    assert not missing, "public API without numpy-style sections:\n" + "\n".join(missing)


def test_public_functions_are_keyword_only_after_data():
    """scanpy contract: the data object first, everything else keyword-only (pp/tl/pl only)."""
    offenders = []
    for qualname, obj in _public_objects():
        if not inspect.isfunction(obj) or qualname.split(".")[0] not in ("pp", "tl", "pl"):
            continue
        params = list(inspect.signature(obj).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) > 2:  # data object (+ a second one for two-object tools like scdet(ref, query))
            offenders.append(qualname)
    assert not offenders, f"functions with more than the data objects positional: {offenders}"


def test_import_is_light_and_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "scomics_ext.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "demo" in out
    assert "simulate" in out
