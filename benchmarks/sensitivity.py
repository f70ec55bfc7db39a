"""Head sensitivity: where an adversary constrained by eps can bite.

Run: ``python benchmarks/sensitivity.py [--n 50] [--eps 0.01] [--factors 1 5] [--out benchmarks/out]``.

For the default sentiment model (or ``--model``) and a seeded sample (seed 0) of ``--n`` Rotten
Tomatoes test sentences, every head of every layer is replaced, one at a time, by uniform
attention, zero attention, and its own rows permuted (``analysis.sensitivity.head_sensitivity``,
seed 0); the TVD of the prediction and the largest |logit change| are recorded. Prints per layer
and head the median over sentences of the largest-ablation TVD, per ablation the median TVD and
logit change per layer, and the number of heads per layer that qualify at ``eps`` with each
``--factors`` (median largest-ablation TVD >= factor x eps). Writes the tidy table
``sensitivity_rows.csv`` and ``sensitivity_heads.csv`` (one row per head) under ``--out`` atomically.

``--adversarial N`` then re-measures the adversarial-attention claim where it can bite: per layer
the most sensitive head (marked whether it qualifies at each factor), on the first ``N`` sampled
sentences, ``analysis.adversarial.search`` (k = ``--adv-k``, ``--adv-steps`` steps, seed 0) under
three constraints: TVD <= eps (absolute, as in the old README claim), TVD <= 0.5 x the head's
uniform-ablation TVD, and |logit change| <= 0.5 x its uniform-ablation logit change. Over the
feasible adversaries it prints the attention JSD and the efficient share (||a_i P - a P|| /
||a_i - a||, value basis) on all rows and on the rows that reach the output (gradient-weighted;
the [CLS] row alone in the last layer), and writes ``adversarial_rows.csv``. ``--heads-csv``
takes the per-head table of an earlier run instead of measuring sensitivity again.

Tables only, no pass/fail: the numbers are what they are.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import load_model
from analysis.data import load_dataset
from analysis.experiments import save_table
from analysis.adversarial import search
from analysis.sensitivity import head_sensitivity

from _tables import table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model name for analysis.load_model (default: the default model)")
    ap.add_argument("--n", type=int, default=50, help="test sentences (seeded sample)")
    ap.add_argument("--eps", type=float, default=0.01, help="the adversary's TVD bound")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 5.0])
    ap.add_argument("--out", default="benchmarks/out")
    ap.add_argument("--adversarial", type=int, default=0, help="sentences per head for the adversarial re-run")
    ap.add_argument("--adv-k", type=int, default=4)
    ap.add_argument("--adv-steps", type=int, default=200)
    ap.add_argument("--adv-min-tokens", type=int, default=0,
                    help="adversarial re-run on the first test sentences with at least this many tokens (34: the "
                         "value basis of a 32-dim head has a null space) instead of the sampled ones")
    ap.add_argument("--adv-out", default="adversarial_rows.csv", help="file name of the adversarial table")
    ap.add_argument("--heads-csv", default=None, help="sensitivity_heads.csv of an earlier run (skip measuring)")
    args = ap.parse_args()
    if args.n < 1 or not args.eps > 0:
        raise SystemExit("--n must be >= 1 and --eps > 0")
    model = load_model() if args.model is None else load_model(args.model)
    texts = load_dataset("rotten_tomatoes", "test").sample(args.n, seed=0).texts
    out = Path(args.out)
    if args.heads_csv:
        heads = pd.read_csv(args.heads_csv)
    else:
        heads = measure(model, texts, args, out)
    if args.adversarial:
        if args.adv_min_tokens:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pool = load_dataset("rotten_tomatoes", "test").texts
                texts = [t for t in pool if len(model.encode(t, truncate=True).input_ids) >= args.adv_min_tokens]
        adversarial(model, texts[:args.adversarial], heads, args, out)


def measure(model, texts: list[str], args: argparse.Namespace, out: Path) -> pd.DataFrame:
    """The sensitivity tables; returns (and writes) the per-head table."""
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sens = head_sensitivity(model, texts, seed=0)
    secs = time.time() - t0
    L, H = model.n_layers, model.n_heads
    print(f"model {getattr(model, 'name', model)}; {len(texts)} Rotten Tomatoes test sentences (seed 0, tokens "
          f"{min(sens.n_tokens)}-{max(sens.n_tokens)}, median {int(np.median(sens.n_tokens))}); {L} x {H} heads; "
          f"ablations {', '.join(sens.ablations)}; {secs / 60:.1f} min")
    med = sens.head_tvd("median")
    table("median over sentences of the largest-ablation TVD, per head", ["layer"] + [f"h{h}" for h in range(H)],
          [[lay] + [float(med[lay, h]) for h in range(H)] for lay in range(L)])
    rows = []
    for k, name in enumerate(sens.ablations):
        for lay in range(L):
            rows.append([name, lay, float(np.median(sens.tvd[:, lay, :, k])), float(np.max(sens.tvd[:, lay, :, k])),
                         float(np.median(sens.logit[:, lay, :, k])), float(np.max(sens.logit[:, lay, :, k]))])
    table("per ablation and layer (over sentences and heads)",
          ["ablation", "layer", "TVD median", "TVD max", "|logit change| median", "|logit change| max"], rows)
    q = {f: sens.per_layer(args.eps, factor=f) for f in args.factors}
    table(f"heads qualifying per layer at eps = {args.eps} (median largest-ablation TVD >= factor x eps)",
          ["factor"] + [f"layer {lay}" for lay in range(L)] + ["total"],
          [[f] + [q[f][lay] for lay in range(L)] + [sum(q[f].values())] for f in args.factors])
    order = np.dstack(np.unravel_index(np.argsort(-med, axis=None), med.shape))[0][:5]
    print("\nmost sensitive heads (layer, head, median TVD):",
          ", ".join(f"({a}, {b}, {med[a, b]:.3g})" for a, b in order))
    save_table(pd.DataFrame(sens.rows()), out / "sensitivity_rows.csv")
    heads = pd.DataFrame([dict(layer=lay, head=h, median_max_tvd=float(med[lay, h]),
                               median_max_logit=float(np.median(sens.logit[:, lay, h].max(-1))),
                               **{f"qualifies_x{f:g}": (lay, h) in sens.qualifying(args.eps, factor=f)
                                  for f in args.factors})
                          for lay in range(L) for h in range(H)])
    save_table(heads, out / "sensitivity_heads.csv")
    print(f"wrote {out / 'sensitivity_rows.csv'} and {out / 'sensitivity_heads.csv'}")
    return heads


SETTINGS = (("tvd", "abs"), ("tvd", "relative"), ("logit", "relative"))


def adversarial(model, texts: list[str], heads: pd.DataFrame, args: argparse.Namespace, out: Path) -> None:
    """Jain & Wallace adversaries on the most sensitive head of every layer, three constraints."""
    chosen = heads.sort_values("median_max_tvd", ascending=False).groupby("layer").head(1).sort_values("layer")
    flags = [c for c in heads.columns if c.startswith("qualifies_x")]
    print(f"\n## adversarial attention on the most sensitive head per layer ({len(texts)} sentences, k={args.adv_k}, "
          f"{args.adv_steps} steps, seed 0; tokens {[len(model.encode(t, truncate=True).input_ids) for t in texts]})")
    for r in chosen.itertuples():
        print(f"layer {r.layer} head {r.head}: median largest-ablation TVD {r.median_max_tvd:.4f}; "
              + ", ".join(f"{c.replace('qualifies_', 'qualifies ')} = {bool(getattr(r, c))}" for c in flags))
    rows = []
    t0 = time.time()
    for r in chosen.itertuples():
        for i, text in enumerate(texts):
            for constraint, mode in SETTINGS:
                eps = args.eps if mode == "abs" else "relative"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        res = search(model, text, layer=int(r.layer), head=int(r.head), k=args.adv_k, eps=eps,
                                     constraint=constraint, steps=args.adv_steps, seed=0, progress=False)
                    except ValueError as e:                   # the head does not reach the output here
                        print(f"  skipped layer {r.layer} head {r.head} text {i} {constraint}/{mode}: {e}")
                        continue
                f = res.feasible
                rows.append(dict(layer=int(r.layer), head=int(r.head), text=i, n_tokens=len(res.tokens),
                                 constraint=constraint, eps_mode=mode, eps=res.eps, eps_rule=res.eps_rule,
                                 ablation_change=res.ablation_change, k=res.k, feasible=int(f.sum()),
                                 jsd_all=float(res.jsd[f].mean()) if f.any() else np.nan,
                                 jsd_output=float(res.output_jsd[f].mean()) if f.any() else np.nan,
                                 share_all=float(res.efficient_share[f].mean()) if f.any() else np.nan,
                                 share_output=float(res.output_efficient_share[f].mean()) if f.any() else np.nan,
                                 tvd_max=float(res.tvd[f].max()) if f.any() else np.nan,
                                 logit_change_max=float(res.logit_change[f].max()) if f.any() else np.nan))
        print(f"  layer {r.layer} done: {(time.time() - t0) / 60:.1f} min", flush=True)
    df = pd.DataFrame(rows)
    save_table(df, out / args.adv_out)
    table_rows = []
    for (lay, h, c, m), d in df.groupby(["layer", "head", "constraint", "eps_mode"], sort=True):
        table_rows.append([lay, h, f"{c} <= {'eps' if m == 'abs' else '0.5 x ablation'}", float(d.eps.median()),
                           f"{d.feasible.sum()}/{d.k.sum()}", float(d.jsd_all.mean()), float(d.jsd_output.mean()),
                           float(d.share_all.mean()), float(d.share_output.mean())])
    table("feasible adversaries: all rows vs rows that reach the output (value basis)",
          ["layer", "head", "constraint", "eps median", "feasible", "JSD all rows", "JSD output rows",
           "eff. share all rows", "eff. share output rows"], table_rows,
          "JSD in bits (mean over rows / gradient-weighted rows); efficient share = ||a_i P - a P|| / ||a_i - a|| "
          "(0: only the null part moved). Means over feasible adversaries and sentences (NaN: none feasible).")
    print(f"wrote {out / args.adv_out}")


if __name__ == "__main__":
    main()
