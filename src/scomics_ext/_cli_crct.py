"""``scomics-ext crct``: CRCT on an h5mu / h5ad file, and the CRCT step of ``scomics-ext demo``.

Wired into :mod:`scomics_ext.cli` with ``register("crct", HELP, add_arguments, run)`` and into
:mod:`scomics_ext._demo` with ``TOOL_STEPS["spatial_multiome"].append(demo_step)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HELP", "add_arguments", "demo_step", "run"]

HELP = "spatial domains of paired spatial multi-omics (h5mu, or one modality in h5ad) with CRCT"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``scomics-ext crct``.

    Parameters
    ----------
    parser
        The sub-command's parser.

    Examples
    --------
    >>> import argparse
    >>> from scomics_ext._cli_crct import add_arguments
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> p.parse_args(["in.h5mu", "-o", "out.h5mu", "--n-clusters", "5"]).n_clusters
    5
    """
    parser.add_argument("input", help="input file: .h5mu (paired modalities) or .h5ad (one modality)")
    parser.add_argument("--out", "-o", required=True, help="output file (same format as the input)")
    parser.add_argument("--n-clusters", "-k", type=int, required=True, help="number of spatial domains")
    parser.add_argument(
        "--modalities", nargs="+", default=None, help="modalities of the h5mu to use (default: all)"
    )
    parser.add_argument(
        "--kind",
        nargs="+",
        default=None,
        help="modality kind(s): for an h5ad one of rna/adt/atac; for an h5mu NAME=KIND pairs where the "
        "kind is not implied by the name (e.g. gex=rna)",
    )
    parser.add_argument("--layer", default=None, help="layer holding the (raw count) data (default: X)")
    parser.add_argument(
        "--spatial-key", default="spatial", help="obsm key of the coordinates (default: spatial)"
    )
    parser.add_argument("--key-added", default="crct", help="name of the outputs (default: crct)")
    parser.add_argument("--max-epochs", type=int, default=None, help="training epochs (default: adaptive)")
    parser.add_argument(
        "--method", choices=["gmm", "kmeans", "leiden"], default="leiden", help="final clustering"
    )
    parser.add_argument("--seed", type=int, default=0, help="random_state (default: 0)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (default: auto)")
    parser.add_argument("--no-preprocess", action="store_true", help="use the matrices as given")


def _parse_kind(values: list[str] | None, is_mudata: bool) -> str | dict[str, str] | None:
    if not values:
        return None
    if not is_mudata:
        if len(values) != 1 or "=" in values[0]:
            raise ValueError("--kind takes one kind (rna, adt or atac) for an .h5ad input.")
        return values[0]
    out = {}
    for v in values:
        if "=" not in v:
            raise ValueError(f"--kind {v!r}: use NAME=KIND pairs for an .h5mu input, e.g. --kind gex=rna.")
        name, kind = v.split("=", 1)
        out[name] = kind
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``scomics-ext crct``: read, :func:`scomics_ext.tl.crct`, write.

    Parameters
    ----------
    args
        Parsed arguments (see :func:`add_arguments`).

    Returns
    -------
    Exit code (0 on success).

    Examples
    --------
    >>> from scomics_ext.cli import main  # doctest: +SKIP
    >>> main(["crct", "in.h5mu", "-o", "out.h5mu", "--n-clusters", "5"])  # doctest: +SKIP
    """
    import anndata as ad
    import mudata

    from . import tl

    src, out = Path(args.input), Path(args.out)
    if not src.is_file():
        raise FileNotFoundError(f"input file {str(src)!r} does not exist.")
    suffix = src.suffix.lower()
    if suffix not in (".h5mu", ".h5ad"):
        raise ValueError(f"input {str(src)!r} must be an .h5mu or .h5ad file.")
    if out.suffix.lower() != suffix:
        raise ValueError(f"output {str(out)!r} must have the input's format ({suffix}).")
    is_mudata = suffix == ".h5mu"
    data: Any = mudata.read_h5mu(src) if is_mudata else ad.read_h5ad(src)
    if not is_mudata and args.modalities:
        raise ValueError("--modalities applies to .h5mu inputs only.")
    layer = args.layer
    tl.crct(
        data,
        n_clusters=args.n_clusters,
        modalities=args.modalities,
        spatial_key=args.spatial_key,
        kind=_parse_kind(args.kind, is_mudata),
        layer=layer,
        preprocess=not args.no_preprocess,
        key_added=args.key_added,
        method=args.method,
        random_state=args.seed,
        max_epochs=args.max_epochs,
        accelerator=args.accelerator,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    data.write(out)
    sizes = data.uns[args.key_added]["cluster_sizes"]
    print(f"CRCT: {len(sizes)} domains ({', '.join(f'{k}: {v}' for k, v in sizes.items())}); wrote {out}")
    return 0


def demo_step(
    mdata: Any, *, n_clusters: int, random_state: int, max_epochs: int | None = None
) -> dict[str, np.ndarray]:
    """CRCT for ``scomics-ext demo``: default settings on a private copy; returns ``{"crct": labels}``.

    Parameters
    ----------
    mdata
        The demo's simulated MuData (raw counts in ``X``; it is not modified).
    n_clusters
        Number of domains.
    random_state
        Seed.
    max_epochs
        Training epochs (default: adaptive, 300 on the demo's grids).

    Returns
    -------
    ``{"crct": labels}`` with string labels, one per spot.

    Examples
    --------
    >>> import scomics_ext as sx
    >>> from scomics_ext._cli_crct import demo_step
    >>> mdata = sx.datasets.spatial_multiome(n_side=24, modalities=("rna", "adt"))
    >>> demo_step(mdata, n_clusters=7, random_state=0)["crct"].shape  # doctest: +SKIP
    (576,)
    """
    from . import tl
    from ._settings import settings

    out = tl.crct(
        mdata,
        n_clusters=n_clusters,
        random_state=random_state,
        max_epochs=max_epochs,
        progress_bar=settings.progress_bar,
        copy=True,
    )
    return {"crct": out.obs["crct"].astype(str).to_numpy()}
