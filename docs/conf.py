"""Sphinx configuration for scomics-ext."""

from __future__ import annotations

import importlib
import shutil
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "src"))

import scomics_ext  # noqa: E402

project = "scomics-ext"
author = "scomics-ext developers"
copyright = f"{date.today().year}, {author}"
release = scomics_ext.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
]

autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "inherited-members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_ivar = True  # "Attributes" as fields: NamedTuple/dataclass members are not described twice
napoleon_use_param = True
typehints_defaults = "braces"
always_document_param_types = False
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath"]
nb_execution_mode = "off"  # tutorials are stored executed
source_suffix = {
    ".rst": "restructuredtext",
    ".md": "myst-nb",
    ".ipynb": "myst-nb",
}  # .rst first: autosummary writes rst
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
html_theme = "sphinx_book_theme"
html_title = "scomics-ext"
html_static_path = ["_static"]
html_theme_options = {
    "repository_url": "https://github.com/scomics-ext/scomics-ext",
    "use_repository_button": True,
}

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "pandas": ("https://pandas.pydata.org/docs/", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "squidpy": ("https://squidpy.readthedocs.io/en/stable/", None),
    "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
    "torch": ("https://pytorch.org/docs/stable/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
}
# No network in CI: intersphinx inventories are optional (SCOMICS_DOCS_OFFLINE=1 disables them).
if __import__("os").environ.get("SCOMICS_DOCS_OFFLINE"):
    intersphinx_mapping = {}

nitpicky = False
suppress_warnings = ["mystnb.unknown_mime_type"]

# ---------------------------------------------------------------------------------------------------
# API pages are generated from each namespace's ``__all__`` so they cannot drift from the code.
NAMESPACES = {
    "pp": "Preprocessing",
    "tl": "Tools",
    "pl": "Plotting",
    "model": "Models",
    "module": "Modules (torch)",
    "metrics": "Metrics",
    "datasets": "Datasets",
}


def _write_api_pages() -> None:
    out = HERE / "api"
    out.mkdir(exist_ok=True)
    index = ["# API reference", "", "```{toctree}", ":maxdepth: 1", ""]
    for ns, title in NAMESPACES.items():
        mod = importlib.import_module(f"scomics_ext.{ns}")
        names = list(getattr(mod, "__all__", []))
        lines = [f"# {title}: `sx.{ns}`", "", "```{eval-rst}", f".. module:: scomics_ext.{ns}", "```", ""]
        doc = (mod.__doc__ or "").strip()
        if doc:
            lines += [doc, ""]
        if names:
            lines += [
                "```{eval-rst}",
                f".. currentmodule:: scomics_ext.{ns}",
                "",
                ".. autosummary::",
                "   :toctree: generated",
                "",
                *[f"   {n}" for n in names],
                "```",
            ]
        else:
            lines += ["Nothing public here yet: the methods land one by one (see the changelog)."]
        text = "\n".join(lines) + "\n"
        page = out / f"{ns}.md"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
        index.append(ns)
    index += ["```", ""]
    text = "\n".join(index)
    page = out / "index.md"
    if not page.exists() or page.read_text() != text:
        page.write_text(text)


_write_api_pages()


# ---------------------------------------------------------------------------------------------------
# Tutorials: the notebooks live (stored executed) in ../tutorials; copies beside docs/tutorials/index.md let
# myst-nb render them (nothing is executed). The copies are git-ignored.
def _copy_tutorials() -> None:
    dest = HERE / "tutorials"
    candidates = [
        HERE.parent / "tutorials",
        # docs copied elsewhere (e.g. the docs test): the checkout of an editable install
        Path(scomics_ext.__file__).resolve().parents[2] / "tutorials",
    ]
    src = next((p for p in candidates if p.is_dir() and any(p.glob("*.ipynb"))), None)
    if src is None or src.resolve() == dest.resolve():
        return
    names = {nb.name for nb in src.glob("*.ipynb")}
    for old in dest.glob("*.ipynb"):
        if old.name not in names:
            old.unlink()
    for name in sorted(names):
        target = dest / name
        if not target.exists() or target.read_bytes() != (src / name).read_bytes():
            shutil.copyfile(src / name, target)


_copy_tutorials()
