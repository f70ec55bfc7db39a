"""ABCD graph learning on real attention of the default model, against causal-learn's FCI.

Run: ``python benchmarks/abcd_speed.py [--heads 3] [--timeout 120] [--sizes 16 32 64 128 512]``.

For each input length (real IMDB text cut to n tokens), the deepest layer of the default
model: milliseconds per head (median over the first ``--heads`` heads) for our PC, FCI and
ICD on C = A A^T with n_samples = hidden size (384) and alpha = 0.01; causal-learn's FCI
(Fisher z) on data whose correlation matrix equals corr(A A^T) (rows of [A^T; -A^T]
repeated k = round(n_samples / 2n) times, so its sample size is 2nk), on head 0; the
speed-up; whether the FCI skeletons agree (ours run at causal-learn's sample size 2nk where
that differs from n_samples, e.g. 512 rows at 128 tokens); and the time for ICD on all 12
heads of the layer. Prints a table only.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from causal_speed import causallearn_fci, timed  # noqa: E402
from trace_speed import text_of_length  # noqa: E402

from analysis import abcd, load_model  # noqa: E402
from analysis.causal import learn_graph  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[16, 32, 64, 128, 512])
    ap.add_argument("--heads", type=int, default=3, help="heads timed per size (median)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds for one causal-learn run")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--n-samples", type=float, default=None, help="effective sample size (default: hidden size)")
    ap.add_argument("--skip-all-heads", action="store_true", help="skip the 12-head ICD column")
    args = ap.parse_args()
    model = load_model()
    n_samples = args.n_samples or model.config.hidden_size
    print(f"model: {model}; n_samples={n_samples}, alpha={args.alpha}, layer=-1")
    head = (f"{'tokens':>6} {'pc ms':>8} {'fci ms':>8} {'icd ms':>8} {'edges':>6} {'cl-fci ms':>10} "
            f"{'x fci':>7} {'x icd':>7} {'skeleton':>8} {'icd 12 heads s':>14}")
    print(head)
    print("-" * len(head))
    causallearn_fci(np.eye(4) + 0.1, 2, args.alpha)  # warm up imports
    for n in args.sizes:
        trace = model.trace(text_of_length(model, n))
        t = {a: [] for a in ("pc", "fci", "icd")}
        edges = []
        for h in range(args.heads):
            corr = abcd.attention_correlation(trace, -1, h)
            for algo in t:
                start = time.perf_counter()
                g = learn_graph(corr, n_samples, alpha=args.alpha, algorithm=algo)
                t[algo].append(time.perf_counter() - start)
                if algo == "fci":
                    edges.append(len(g))
                    if h == 0:
                        ours = g.to_matrix() != 0
        a = trace.attentions[-1, 0].astype(np.float64)
        k = max(1, round(n_samples / (2 * trace.n_tokens)))
        sec, ref = timed(lambda: causallearn_fci(a, k, args.alpha), args.timeout)
        n_cl = 2 * trace.n_tokens * k   # causal-learn's sample size: compare at the same one
        if n_cl != n_samples:
            corr0 = abcd.attention_correlation(trace, -1, 0)
            ours = learn_graph(corr0, n_cl, alpha=args.alpha, algorithm="fci").to_matrix() != 0
        start = time.perf_counter()
        for h in range(0 if args.skip_all_heads else trace.n_heads):
            abcd.learn_graph(trace, layer=-1, head=h, algorithm="icd", n_samples=n_samples)
        all_heads = float("nan") if args.skip_all_heads else time.perf_counter() - start
        m = {k_: statistics.median(v) for k_, v in t.items()}
        cl = f">{args.timeout * 1e3:.0f}" if sec is None else f"{sec * 1e3:.0f}"
        ratio = (lambda x: f">{args.timeout / m[x]:.0f}x") if sec is None else (lambda x: f"{sec / m[x]:.0f}x")
        agree = "-" if ref is None else ("yes" if np.array_equal(ours, ref != 0) else "no")
        print(f"{trace.n_tokens:>6} {m['pc'] * 1e3:>8.1f} {m['fci'] * 1e3:>8.1f} {m['icd'] * 1e3:>8.1f} "
              f"{np.mean(edges):>6.0f} {cl:>10} {ratio('fci'):>7} {ratio('icd'):>7} {agree:>8} {all_heads:>14.1f}",
              flush=True)


if __name__ == "__main__":
    main()
