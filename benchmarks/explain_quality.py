"""Every explainer on the same Rotten Tomatoes test sentences, judged fairly (issue 11).

Run: ``python benchmarks/explain_quality.py [--n 40] [--heads 0 all] [--max-calls 1000] [--out DIR]
[--workers 1 | --scheduler ADDRESS] [--results DIR]``.

Runs the ``faithfulness`` task (``analysis.experiments.faithfulness``) through the experiment
runner (``analysis.experiments.run``: ``--workers N`` processes, default 1 = this process, or a
Dask cluster with ``--scheduler ADDRESS``) on a seeded sample: CLEANN per head and pooled, the raw / efficient attention top-k baselines,
rollout, gradient x input and integrated gradients (captum), leave-one-out, random search with
CLEANN's calls per size, and exhaustive search on sentences with at most 14 candidate tokens.
Target [CLS], last layer, ICD, alpha 0.01, n_samples = hidden size, content tokens, removal by
deletion. Prints the seconds per sentence and every summary table (censored rows kept,
bootstrap 95% intervals); ``--out`` writes the rows and tables as CSV (atomic). The finished
sentences are kept in the resumable results folder ``--results`` (default ``<out>/results`` when
``--out`` is given, else none: nothing is kept): stop with Ctrl-C and run the same command again
to continue (another ``--n``, ``--seed`` or setting needs another ``--results``). The same from a shell: ``python -m analysis.experiments run faithfulness --dataset
rotten_tomatoes --n 300 --out results/``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from analysis import load_model
from analysis.experiments import faithfulness, run, save_table
from analysis.experiments.runner import completed_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="rotten_tomatoes")
    ap.add_argument("--n", type=int, default=40, help="test sentences (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heads", nargs="*", default=["0", "all"])
    ap.add_argument("--max-calls", type=int, default=faithfulness.DEFAULT_SETTINGS["max_calls"])
    ap.add_argument("--methods", nargs="*", default=list(faithfulness.DEFAULT_SETTINGS["methods"]))
    ap.add_argument("--removal", default="delete")
    ap.add_argument("--out", default=None, help="write rows.csv and one CSV per summary table here")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1, help="runner processes (1: in this process)")
    where.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    ap.add_argument("--results", default=None,
                    help="runner results folder (resumable; default <out>/results with --out, else none)")
    args = ap.parse_args()
    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    model = load_model(faithfulness.DEFAULT_MODEL)
    units = faithfulness.make_units(dataset=args.dataset, n=args.n, seed=args.seed, heads=args.heads,
                                    max_calls=args.max_calls, methods=args.methods, removal=args.removal)
    print(f"model: {model.name}; {len(units)} {args.dataset} test sentences (seed {args.seed}); heads {args.heads}; "
          f"budget <= {args.max_calls} calls, any size; removal={args.removal}; layer -1, icd, alpha 0.01",
          flush=True)
    results = args.results or (str(Path(args.out) / "results") if args.out else None)
    settings = {"dataset": args.dataset, "seed": args.seed, **units[0]["settings"]}
    df = run(faithfulness.NAME, units, model=model, workers=args.workers, scheduler=args.scheduler, out=results,
             settings=settings)
    print(f"{len(units)} sentences: {df.attrs['computed']} computed, {df.attrs['reused']} reused"
          + (f" from {results}" if results else ""), flush=True)
    df = completed_rows(df)
    times = df.groupby("id", sort=False).input_seconds.first()
    per = df.groupby("method").seconds.sum() / len(units)
    print(f"\nseconds per sentence: mean {times.mean():.1f}, max {times.max():.1f}; per method:")
    print(per.round(2).to_string())
    tables = faithfulness.summarize(df)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        for name, t in tables.items():
            if name == "curves":
                t = t[t.k <= 5]
            print(f"\n== {name}")
            print(t.to_string(index=False))
    if args.out:
        out = Path(args.out)
        save_table(df, out / "rows.csv")
        for name, t in tables.items():
            save_table(t, out / f"{name}.csv")
        print(f"\nwritten to {out}/")


if __name__ == "__main__":
    main()
