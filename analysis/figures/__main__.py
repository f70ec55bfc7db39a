"""Write every paper figure: ``python -m analysis.figures --all --out figures/ [--fast]``.

    python -m analysis.figures --list                       # names and what each shows
    python -m analysis.figures --all --out figures/         # full sizes (long: see the notebooks)
    python -m analysis.figures --only efficient_wasserstein abcd_flip_rate --fast --formats pdf png svg
    python -m analysis.figures --all --workers 4 --results results/paper   # 4 processes, resumable

Each figure is computed (results shared between figures), drawn in the paper style and saved
atomically as ``<out>/<name>.<format>``; the tables behind them go to ``<out>/tables/*.csv``.
``--fast`` (or ``ATTNLAB_FAST=1``) uses tiny samples. The registry is
``analysis.experiments.paper.FIGURES``, the same one ``notebooks/05_paper_figures.ipynb`` uses.
"""
from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.figures", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list the figure names and exit")
    what.add_argument("--all", action="store_true", help="write every figure")
    what.add_argument("--only", nargs="+", metavar="NAME", help="write these figures only")
    parser.add_argument("--out", default="figures", help="output folder (default: figures/)")
    parser.add_argument("--fast", action="store_true", help="tiny samples (as ATTNLAB_FAST=1)")
    parser.add_argument("--formats", nargs="+", default=["pdf", "png"], choices=["pdf", "png", "svg"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tables", action="store_true", help="do not write the CSV tables")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1,
                       help="processes for the dataset-scale tables (default 1: in-process)")
    where.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786) for the tables")
    parser.add_argument("--results", help="folder for resumable per-table results (Parquet); rerun to resume")
    args = parser.parse_args(argv)

    from analysis.experiments.paper import FIGURES, PaperRun, make_figures

    if args.list:
        width = max(map(len, FIGURES))
        for name, spec in FIGURES.items():
            print(f"{name:<{width}}  [{spec.paper}] {spec.description}")
        return 0
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    names = args.only or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; see --list")
    import matplotlib

    matplotlib.use("Agg")
    run = PaperRun(fast=True if args.fast else None, seed=args.seed,
                   log=lambda message: print(f"  {message}", file=sys.stderr, flush=True),
                   workers=args.workers, scheduler=args.scheduler, results=args.results)
    start = time.perf_counter()
    for _name, _, paths in make_figures(args.out, names=names, run=run, formats=args.formats,
                                       tables=not args.no_tables):
        for p in paths:
            print(p, flush=True)
    print(f"{len(names)} figure(s) in {time.perf_counter() - start:.0f} s ({'fast' if run.fast else 'full'} mode)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
