"""CLEANN explanations vs the attention baseline on real Rotten Tomatoes test sentences.

Run: ``python benchmarks/explain_quality.py [--n 100] [--max-set-size 3] [--heads 0 all]``.

For each sentence the default model's prediction is explained (target [CLS], deepest
layer, ICD, alpha 0.01, n_samples = hidden size, content tokens, removal by deletion).
CLEANN's sets are verified by the model by construction; the baseline removes the top-k
tokens by the target's raw attention, k = 1, 2, ... until the prediction flips. Prints,
per head setting: how often each method found a flipping set of at most ``max_set_size``
tokens, the mean size where both found one, how often CLEANN's set is smaller / equal /
larger, the number of model calls, and seconds per sentence. Table only, no pass/fail.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from analysis import abcd, load_dataset, load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="test sentences (seeded sample)")
    ap.add_argument("--max-set-size", type=int, default=3)
    ap.add_argument("--heads", nargs="*", default=["0", "all"])
    ap.add_argument("--removal", default="delete")
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
    for h in args.heads:
        head = "all" if h == "all" else int(h)
        found, base_found, sizes, base_sizes, calls, secs = 0, 0, [], [], [], []
        for text in data.texts:
            start = time.perf_counter()
            e = abcd.explain(model, text, head=head, max_set_size=k, removal=args.removal)
            secs.append(time.perf_counter() - start)
            calls.append(len(e.checks) + len(e.baseline.checks))
            b = e.baseline.size if e.baseline.size is not None and e.baseline.size <= k else None
            found += e.size is not None
            base_found += b is not None
            if e.size is not None and b is not None:
                sizes.append(e.size)
                base_sizes.append(b)
        s, b = np.array(sizes), np.array(base_sizes)
        print(f"{h:>4} {found / len(data):>12.2f} {base_found / len(data):>10.2f} "
              f"{s.mean() if len(s) else float('nan'):>11.2f} {b.mean() if len(b) else float('nan'):>9.2f} "
              f"{int((s < b).sum()):>7} {int((s == b).sum()):>5} {int((s > b).sum()):>6} "
              f"{np.mean(calls):>6.1f} {np.mean(secs):>6.2f}", flush=True)


if __name__ == "__main__":
    main()
