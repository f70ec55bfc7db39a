"""CLEANN explanations vs the attention baseline on real Rotten Tomatoes test sentences.

Run: ``python benchmarks/explain_quality.py [--n 100] [--max-set-size 3] [--heads 0 all]``.

For each sentence the default model's prediction is explained (target [CLS], deepest
layer, ICD, alpha 0.01, n_samples = hidden size, content tokens, removal by deletion).
CLEANN's sets are verified by the model by construction; the baseline removes the top-k
tokens by the target's raw attention, k = 1, 2, ... until the prediction flips. Prints,
per head setting: how often each method found a flipping set of at most ``max_set_size``
tokens, the mean size where both found one, how often CLEANN's set is smaller / equal /
larger, the number of model calls, and seconds per sentence. Table only, no pass/fail.
``--csv PATH`` also writes the per-sentence table. The computing core is
``analysis.experiments.abcd_sentiment`` (shared with ``notebooks/02_abcd_sentiment.ipynb``).
"""
from __future__ import annotations

import argparse

import numpy as np

from analysis import load_dataset, load_model
from analysis.experiments.abcd_sentiment import explanation_table, summarize_explanations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="test sentences (seeded sample)")
    ap.add_argument("--max-set-size", type=int, default=3)
    ap.add_argument("--heads", nargs="*", default=["0", "all"])
    ap.add_argument("--removal", default="delete")
    ap.add_argument("--csv", default=None, help="also write the per-sentence table here (CSV, atomic)")
    args = ap.parse_args()
    model = load_model()
    data = load_dataset("rotten_tomatoes", "test").sample(args.n, seed=0)
    k = args.max_set_size
    print(f"model: {model.name}; {len(data)} Rotten Tomatoes test sentences; max set size {k}; "
          f"removal={args.removal}; layer=-1, icd, alpha=0.01, n_samples=hidden")
    head_line = (f"{'head':>4} {'cleann found':>12} {'base found':>10} {'cleann size':>11} {'base size':>9} "
                 f"{'smaller':>7} {'equal':>5} {'larger':>6} {'calls':>6} {'s/sent':>6}")
    print(head_line)
    print("-" * len(head_line))
    tables = []
    for h in args.heads:
        df = explanation_table(model, list(data.texts), heads=[h], max_set_size=k, removal=args.removal,
                               dataset="rotten_tomatoes")
        tables.append(df)
        r = summarize_explanations(df).iloc[0]
        nan = float("nan")
        print(f"{h:>4} {r.cleann_found:>12.2f} {r.baseline_found:>10.2f} "
              f"{r.cleann_size if np.isfinite(r.cleann_size) else nan:>11.2f} "
              f"{r.baseline_size if np.isfinite(r.baseline_size) else nan:>9.2f} "
              f"{r.smaller:>7} {r.equal:>5} {r.larger:>6} {r.calls:>6.1f} {r.seconds:>6.2f}", flush=True)
    if args.csv:
        import pandas as pd

        from analysis.experiments import save_table
        print(f"table: {save_table(pd.concat(tables, ignore_index=True), args.csv)}")


if __name__ == "__main__":
    main()
