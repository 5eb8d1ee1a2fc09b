"""``scomics-ext scdet``: the command-line face of :func:`scomics_ext.tl.scdet`, and its demo step.

``cli.py`` registers the sub-command with ``register("scdet", HELP, add_arguments, run)``; the demo adds
:func:`demo_step` to ``TOOL_STEPS["open_world"]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._constants import Key

__all__ = ["HELP", "add_arguments", "demo_step", "run"]

#: one-line help of the sub-command
HELP = "annotate a query against a labelled reference, clustering novel cell types (scDET)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``scomics-ext scdet``.

    Parameters
    ----------
    parser
        The sub-command's parser.

    Examples
    --------
    >>> import argparse
    >>> from scomics_ext._cli_scdet import add_arguments
    >>> p = argparse.ArgumentParser()
    >>> add_arguments(p)
    >>> p.parse_args(
    ...     ["ref.h5ad", "query.h5ad", "--labels-key", "cell_type", "-o", "out.h5ad"]
    ... ).n_novel is None
    True
    """
    parser.add_argument("ref", help="labelled reference (.h5ad)")
    parser.add_argument("query", help="query to annotate (.h5ad)")
    parser.add_argument("--labels-key", required=True, help="column of ref.obs with the cell-type labels")
    parser.add_argument("--out", "-o", required=True, help="output file: the annotated query (.h5ad)")
    parser.add_argument("--ref-out", default=None, help="also write the reference with its embedding (.h5ad)")
    parser.add_argument(
        "--n-novel", type=int, default=None, help="number of novel types in the query (default: estimated)"
    )
    parser.add_argument("--max-epochs", type=int, default=None, help="training epochs (default: adaptive)")
    parser.add_argument("--seed", type=int, default=0, help="random_state (default: 0)")
    parser.add_argument("--layer", default=None, help="layer of both files to use instead of X")
    parser.add_argument("--n-top-genes", type=int, default=2000, help="highly variable genes (default: 2000)")
    parser.add_argument("--key-added", default="scdet", help="name of the outputs (default: scdet)")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default: auto)")


def run(args: argparse.Namespace) -> int:
    """Run ``scomics-ext scdet``: read both files, annotate the query, write the result.

    Parameters
    ----------
    args
        Parsed arguments (see :func:`add_arguments`).

    Returns
    -------
    Exit code 0 (errors propagate as exceptions; ``cli.main`` turns them into exit code 2).

    Examples
    --------
    >>> from scomics_ext.cli import main  # doctest: +SKIP
    >>> main(
    ...     ["scdet", "ref.h5ad", "query.h5ad", "--labels-key", "cell_type", "-o", "out.h5ad"]
    ... )  # doctest: +SKIP
    0
    """
    import anndata as ad

    from .tl._scdet import scdet

    for path in (args.ref, args.query):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path!r} does not exist.")
    ref = ad.read_h5ad(args.ref)
    query = ad.read_h5ad(args.query)
    scdet(
        ref,
        query,
        labels_key=args.labels_key,
        n_novel=args.n_novel,
        layer=args.layer,
        n_top_genes=args.n_top_genes,
        key_added=args.key_added,
        random_state=args.seed,
        max_epochs=args.max_epochs,
        accelerator=args.accelerator,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    query.write_h5ad(out)
    if args.ref_out:
        Path(args.ref_out).parent.mkdir(parents=True, exist_ok=True)
        ref.write_h5ad(args.ref_out)
    pred = query.obs[args.key_added]
    n_novel_cells = int(query.obs[Key.obs.novel(args.key_added)].sum())
    counts = pred.value_counts()
    print(
        f"annotated {query.n_obs} query cells: {n_novel_cells} in {query.uns[args.key_added]['n_novel']} novel "
        f"cluster(s); written to {out}"
    )
    for name, n in counts.items():
        print(f"  {name!s:30s} {int(n)}")
    return 0


#: training budget of the demo step (the tool's default adapts to the data size and is longer)
DEMO_EPOCHS = 60


def demo_step(ref, query, *, n_novel: int, random_state: int) -> dict[str, Any]:
    """The demo's scDET step: annotate the simulated query (written in place) and return its labels.

    Training is capped at :data:`DEMO_EPOCHS` epochs so that ``scomics-ext demo`` stays quick.

    Parameters
    ----------
    ref, query
        The simulated reference and query (:func:`scomics_ext.datasets.open_world`); results are written
        into ``query`` (and the embedding into ``ref``) so that the demo's saved files hold them.
    n_novel
        Number of novel types.
    random_state
        Seed.

    Returns
    -------
    ``{"scdet": predicted labels of the query cells}`` (object array).

    Examples
    --------
    >>> import scomics_ext as sx
    >>> from scomics_ext._cli_scdet import demo_step
    >>> ref, query = sx.datasets.open_world(n_cells=1000, n_genes=200)
    >>> demo_step(ref, query, n_novel=3, random_state=0)["scdet"][:3]  # doctest: +SKIP
    """
    from .tl._scdet import scdet

    scdet(
        ref,
        query,
        labels_key=Key.cell_type,
        n_novel=n_novel,
        random_state=random_state,
        max_epochs=DEMO_EPOCHS,
    )
    return {"scdet": query.obs["scdet"].astype(str).to_numpy(dtype=object)}
