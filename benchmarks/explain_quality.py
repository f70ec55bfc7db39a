"""Every explainer on the same Rotten Tomatoes test sentences, judged fairly (issue 11).

Run: ``python benchmarks/explain_quality.py [--n 40] [--heads 0 all] [--max-calls 1000] [--out DIR]``.

Runs the ``faithfulness`` task (``analysis.experiments.faithfulness``) in this process on a
seeded sample: CLEANN per head and pooled, the raw / efficient attention top-k baselines,
rollout, gradient x input and integrated gradients (captum), leave-one-out, random search with
CLEANN's calls per size, and exhaustive search on sentences with at most 14 candidate tokens.
Target [CLS], last layer, ICD, alpha 0.01, n_samples = hidden size, content tokens, removal by
deletion. Prints the seconds per sentence and every summary table (censored rows kept,
bootstrap 95% intervals); ``--out`` writes the rows and tables as CSV (atomic). For the full
run use the parallel runner: ``python -m analysis.experiments run faithfulness --dataset
rotten_tomatoes --n 300 --out results/``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from analysis import load_model
from analysis.experiments import faithfulness, save_table


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
    args = ap.parse_args()
    model = load_model(faithfulness.DEFAULT_MODEL)
    units = faithfulness.make_units(dataset=args.dataset, n=args.n, seed=args.seed, heads=args.heads,
                                    max_calls=args.max_calls, methods=args.methods, removal=args.removal)
    print(f"model: {model.name}; {len(units)} {args.dataset} test sentences (seed {args.seed}); heads {args.heads}; "
          f"budget <= {args.max_calls} calls, any size; removal={args.removal}; layer -1, icd, alpha 0.01",
          flush=True)
    rows, times = [], []
    for i, unit in enumerate(units):
        start = time.perf_counter()
        rows += faithfulness.run_unit(model, unit)
        times.append(time.perf_counter() - start)
        print(f"  {i + 1}/{len(units)}: {times[-1]:.1f} s", flush=True)
    df = pd.DataFrame(rows)
    per = df.groupby("method").seconds.sum() / len(units)
    print(f"\nseconds per sentence: mean {sum(times) / len(times):.1f}, max {max(times):.1f}; per method:")
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
