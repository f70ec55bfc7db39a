"""Efficient-attention claims (Naim & Asher 2024; Jain & Wallace 2019), measured on a transformer.

Run: ``python benchmarks/efficient_claims.py [--n 200] [--fast]``. Over test examples of Rotten
Tomatoes and IMDB (IMDB cut to ``--max-tokens``) it prints, for the default sentiment model (or
``--model``):

1. the nullity ``n - rank(V)`` of every head, per layer;
2. the output change when every head is swapped for its efficient attention (value basis), in
   one layer and in all layers at once (expected: float error);
3. the output change and the 1-D Wasserstein distance between prediction distributions over the
   dataset (p(positive)) for: original vs efficient, vs null-shifted (a random null-space
   component of norm ``||A||`` added to every head of ``--layer``), vs efficient-shifted (the same
   inside col(V));
4. on a smaller subset, Jain & Wallace adversaries for one head of ``--adv-layer`` (default: the
   middle layer; in the last layer of a [CLS]-pooled classifier only the [CLS] query row reaches
   the output, so adversaries there are free in every other row): their JSD from the original
   attention, and the distance between their efficient attention and the original's, next to
   the raw distance and a reference share for unconstrained random attention.

``--parts outputs`` or ``--parts adversarial`` runs one half only; ``--out DIR`` also writes the tidy
tables (nullity, outputs, adversarial) as CSV. The computing core is ``analysis.experiments.efficient_claims``
(shared with ``notebooks/04_efficient_attention.ipynb`` and the paper figures).

Tables only, no pass/fail: the numbers are what they are.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from analysis import load_model
from analysis.experiments import efficient_claims as ec
from analysis.experiments import sample_texts, save_table

from _tables import table


# --------------------------------------------------------------------------- claims 1-3
def report_nullity(name: str, df: pd.DataFrame, basis: str = "value") -> None:
    lengths = df.groupby("text_id").n_tokens.first()
    rows = [[int(r.layer), r["min"], r["median"], r["max"], f"{r.nullity_0:.0%}", r.row_sum_error, r.negative_mass]
            for _, r in ec.nullity_summary(df).iterrows()]
    table(f"{name}: nullity n - rank(T) per head, {basis} basis ({len(lengths)} examples, tokens median "
          f"{int(np.median(lengths))}, range {lengths.min()}-{lengths.max()})",
          ["layer", "min", "median", "max", "heads with nullity 0", "median row-sum error",
           "median negative mass"], rows,
          "Medians of the last two columns over heads with nullity > 0. row-sum error = max_q |sum_k A_eff[q,k] - 1|;"
          "\nnegative mass = total negative weight of A_eff / n (plain projection).")


def report_outputs(name: str, df: pd.DataFrame) -> None:
    w = ec.wasserstein_table(df)
    rows = [[r.edit, r.max_abs_dlogit, r.median_abs_dlogit, r.mean_tvd, r.max_tvd, f"{r.flipped:.1%}", r.w1]
            for _, r in w.iterrows()]
    table(f"{name}: output change and Wasserstein distance between prediction distributions "
          f"({int(w.examples.iloc[0])} examples)",
          ["edit (every head of the layer)", "max |d logit|", "median |d logit|", "mean TVD", "max TVD",
           "flipped", "W1(p+)"], rows,
          "W1(p+): 1-D Wasserstein distance between the p(positive) values over the examples, original vs "
          "edited.\nShifted: a random component of Frobenius norm ||A|| per head, in the null space or inside "
          "col(V) (seeded).")


# --------------------------------------------------------------------------- claim 4
def report_adversarial(name: str, df: pd.DataFrame, args) -> None:
    cols = ["jsd", "tvd", "raw_row_tvd", "efficient_row_tvd", "raw_distance", "efficient_distance",
            "efficient_share", "random_share"]
    rows = [[int(r.text_id), r.tokens, r.feasible] + [r[c] for c in cols]
            for _, r in ec.adversarial_summary(df, per_text=True).iterrows()]
    rows += [["all", "", r.feasible] + [r[c] for c in cols] for _, r in ec.adversarial_summary(df).iterrows()]
    table(f"{name}: adversarial attention, layer {args.adv_layer}, head {args.adv_head} (k={args.k}, "
          f"eps={args.eps}, {args.adv_steps} steps, {args.basis} basis; examples with nullity > 0, cut to "
          f"{args.adv_max_tokens} tokens)",
          ["example", "tokens", "feasible", "JSD(a_i, a)", "pred TVD", "row TVD raw", "row TVD eff",
           "||a_i - a||", "||(a_i - a)P||", "eff share", "random share"], rows,
          "Means over feasible adversaries (pred TVD <= eps). JSD in bits, mean over query rows. Row TVD = "
          "mean over rows of 0.5 |.|_1.\neff share = ||(a_i - a)P|| / ||a_i - a||: 0 would mean the adversary "
          "changed only the null part;\nrandom share = the same for unconstrained random attention (no "
          "prediction constraint), as a reference.")


def adversarial(model, name: str, texts: list[str], args) -> pd.DataFrame:
    adv_texts = ec.with_null_space(model, texts, layer=args.adv_layer, head=args.adv_head, n=args.adv_n,
                                   max_tokens=args.adv_max_tokens, basis=args.basis)
    df = ec.adversarial_table(model, adv_texts, layer=args.adv_layer, head=args.adv_head, k=args.k, eps=args.eps,
                              steps=args.adv_steps, seed=args.seed, dataset=name, progress=True, basis=args.basis,
                              workers=args.workers)
    if df.empty:
        print(f"\n{name}: no example with nullity > 0 at layer {args.adv_layer}, head {args.adv_head}")
    else:
        report_adversarial(name, df, args)
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model name or folder (default: the embedded sentiment model)")
    parser.add_argument("--datasets", nargs="+", default=["rotten_tomatoes", "imdb"])
    parser.add_argument("--n", type=int, default=200, help="test examples per dataset")
    parser.add_argument("--max-tokens", type=int, default=256, help="cut longer inputs (IMDB) to this many tokens")
    parser.add_argument("--parts", nargs="+", choices=["outputs", "adversarial"], default=["outputs", "adversarial"])
    parser.add_argument("--layer", type=int, default=-1, help="layer of the shifts (every head)")
    parser.add_argument("--adv-layer", type=int, default=None, help="layer of the adversaries (default: middle)")
    parser.add_argument("--adv-n", type=int, default=4, help="examples per dataset for the adversarial search")
    parser.add_argument("--adv-head", type=int, default=0)
    parser.add_argument("--adv-steps", type=int, default=500)
    parser.add_argument("--adv-max-tokens", type=int, default=64)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes (the experiment runner; 1: in-process)")
    parser.add_argument("--basis", default="value", choices=["value", "value_output", "hidden"],
                        help="what the attention multiplies, T (value_output: the single-attention classifier's "
                             "h U^T, its decoder included)")
    parser.add_argument("--fast", action="store_true", help="a quick run: 30 examples, 2 short searches")
    parser.add_argument("--out", default=None, help="also write the tidy tables as CSV files in this folder")
    args = parser.parse_args()
    if args.fast:
        args.n, args.max_tokens, args.adv_n, args.adv_steps = 30, 128, 2, 60
    model = load_model(args.model)
    args.layer %= model.n_layers
    args.adv_layer = model.n_layers // 2 if args.adv_layer is None else args.adv_layer % model.n_layers
    print(f"model: {model}; datasets: {', '.join(args.datasets)}; seed {args.seed}")
    start = time.perf_counter()
    saved: dict[str, list[pd.DataFrame]] = {"nullity": [], "outputs": [], "adversarial": []}
    for name in args.datasets:
        texts = sample_texts(model, name, args.n, max_tokens=args.max_tokens, seed=args.seed)
        if "outputs" in args.parts:
            runs = ec.measure_texts(model, texts, layer=args.layer, seed=args.seed, progress=True, desc=name,
                                    basis=args.basis, workers=args.workers, dataset=name)
            nullity = ec.nullity_table(runs, dataset=name, basis=args.basis)
            outputs = ec.output_table(runs, dataset=name, basis=args.basis)
            saved["nullity"].append(nullity)
            saved["outputs"].append(outputs)
            report_nullity(name, nullity, args.basis)
            report_outputs(name, outputs)
        if "adversarial" in args.parts:
            saved["adversarial"].append(adversarial(model, name, texts, args))
    if args.out:
        for key, frames in saved.items():
            if frames:
                print(f"table: {save_table(pd.concat(frames, ignore_index=True), f'{args.out}/{key}.csv')}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
