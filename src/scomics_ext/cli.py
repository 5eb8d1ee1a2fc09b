"""The ``scomics-ext`` command line: ``demo`` plus one sub-command per tool."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

#: sub-commands: name -> (help, add_arguments(parser), run(args) -> exit code)
COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {}


def register(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Register a sub-command: ``add_arguments(parser)`` declares its options, ``run(args)`` returns an exit code."""
    COMMANDS[name] = (help, add_arguments, run)


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--seed", type=int, default=0, help="random_state for simulators and tools (default: 0)")
    p.add_argument("--quick", action="store_true", help="smaller data (for a fast check)")


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    summary = run_demo(args.out, random_state=args.seed, quick=args.quick)
    for name, res in summary["datasets"].items():
        for method, sc in res["scores"].items():
            key = "ari" if "ari" in sc else "overall"
            print(f"{name:18s} {method:32s} {key}={sc[key]:.3f}")
    print(f"results, figures and metrics.json written to {args.out}")
    return 0


register(
    "demo",
    "run every available tool on built-in simulated data; write results, figures, metrics.json",
    _demo_arguments,
    _run_demo,
)


def _simulate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "kind", choices=["spatial-multiome", "gene-patterns", "open-world"], help="which simulator"
    )
    p.add_argument(
        "--out", "-o", required=True, help="output file (.h5mu / .h5ad; open-world writes *_ref/_query)"
    )
    p.add_argument("--seed", type=int, default=0, help="random_state (default: 0)")
    p.add_argument("--n-side", type=int, default=None, help="grid side (spatial-multiome, gene-patterns)")
    p.add_argument("--n-cells", type=int, default=None, help="number of cells (open-world)")


def _run_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import datasets

    out = Path(args.out)
    kw = {"random_state": args.seed}
    if args.kind == "spatial-multiome":
        if args.n_side:
            kw["n_side"] = args.n_side
        datasets.spatial_multiome(**kw).write(out)
    elif args.kind == "gene-patterns":
        if args.n_side:
            kw["n_side"] = args.n_side
        datasets.gene_patterns(**kw).write(out)
    else:
        if args.n_cells:
            kw["n_cells"] = args.n_cells
        ref, query = datasets.open_world(**kw)
        stem = out.with_suffix("")
        ref.write(f"{stem}_ref.h5ad")
        query.write(f"{stem}_query.h5ad")
    print(f"wrote {args.kind} simulation to {out}")
    return 0


register(
    "simulate", "write a simulated dataset with planted truth (h5mu/h5ad)", _simulate_arguments, _run_simulate
)


def _register_tools() -> None:
    from . import _cli_crct, _cli_darlc, _cli_scdet

    for name, mod in (("crct", _cli_crct), ("darlc", _cli_darlc), ("scdet", _cli_scdet)):
        register(name, mod.HELP, mod.add_arguments, mod.run)


_register_tools()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="scomics-ext",
        description="CRCT, DARLC and scDET for single-cell and spatial omics (scverse plugin).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (help_, add_args, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scomics-ext``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from ._settings import settings

    if args.quiet:
        settings.progress_bar = False
    try:
        return COMMANDS[args.command][2](args)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        print(f"scomics-ext {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
