"""Head sensitivity: where an adversary constrained by eps can bite.

Run: ``python benchmarks/sensitivity.py [--n 50] [--eps 0.01] [--factors 1 5] [--out benchmarks/out]
[--adversarial N] [--workers 1 | --scheduler ADDRESS] [--results DIR]``.

For the default sentiment model (or ``--model``) and a seeded sample (seed 0) of ``--n`` Rotten
Tomatoes test sentences, every head of every layer is replaced, one at a time, by uniform
attention, zero attention, and its own rows permuted (``analysis.sensitivity.head_sensitivity``,
seed 0); the TVD of the prediction and the largest |logit change| are recorded. Prints per layer
and head the median over sentences of the largest-ablation TVD, per ablation the median TVD and
logit change per layer, and the number of heads per layer that qualify at ``eps`` with each
``--factors`` (median largest-ablation TVD >= factor x eps). Writes the tidy table
``sensitivity_rows.csv`` and ``sensitivity_heads.csv`` (one row per head) under ``--out`` atomically.

Both parts run through the experiment runner (``analysis.experiments.run``): the tasks
``sensitivity`` (one unit per sentence; the rows equal one ``head_sensitivity`` call over the
sample: each unit carries the permutation generator's state at its sentence) and
``sensitivity_adversarial`` (one unit per head and sentence), both in
``analysis.experiments.sensitivity``. ``--workers N`` runs N processes (default 1: in this
process), ``--scheduler ADDRESS`` a Dask cluster; the finished units are kept in ``--results``
(default ``<out>/sensitivity_results``: ``sensitivity/`` and ``adversarial/``), so a stopped run
(Ctrl-C) resumes where it stopped when started again with the same arguments; another ``--n`` or
other heads add units to the folder, while another ``--eps`` / ``--adv-k`` / ``--adv-steps`` /
``--model`` for units already there is refused (choose another ``--results``).

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
from analysis.experiments import run, save_table
from analysis.experiments import sensitivity as se
from analysis.experiments.runner import completed_rows

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
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1, help="runner processes (1: in this process)")
    where.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    ap.add_argument("--results", default=None,
                    help="runner results folder (resumable; default <out>/sensitivity_results): the sensitivity "
                         "rows go to its sensitivity/, the adversarial ones to adversarial/")
    args = ap.parse_args()
    if args.n < 1 or not args.eps > 0:
        raise SystemExit("--n must be >= 1 and --eps > 0")
    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    model = load_model() if args.model is None else load_model(args.model)
    texts = load_dataset("rotten_tomatoes", "test").sample(args.n, seed=0).texts
    out = Path(args.out)
    results = Path(args.results) if args.results else out / "sensitivity_results"
    if args.heads_csv:
        heads = pd.read_csv(args.heads_csv)
    else:
        heads = measure(model, texts, args, out, results / "sensitivity")
    if args.adversarial:
        prefix = f"rotten_tomatoes-test-s0-n{args.n}"
        if args.adv_min_tokens:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pool = load_dataset("rotten_tomatoes", "test").texts
                texts = [t for t in pool if len(model.encode(t, truncate=True).input_ids) >= args.adv_min_tokens]
            prefix = f"rotten_tomatoes-test-min{args.adv_min_tokens}"
        adversarial(model, texts[:args.adversarial], heads, args, out, results / "adversarial", prefix)


def _run(model, task: str, units: list[dict], args: argparse.Namespace, folder: Path, settings: dict) -> pd.DataFrame:
    """The units through the experiment runner (resumable in ``folder``); the rows, bookkeeping dropped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = run(task, units, model=model, workers=args.workers, scheduler=args.scheduler, out=folder,
                 settings={"model": args.model, **settings})
    print(f"{task}: {len(units)} units, {df.attrs['computed']} computed, {df.attrs['reused']} reused from {folder}",
          flush=True)
    return completed_rows(df)


def measure(model, texts: list[str], args: argparse.Namespace, out: Path, folder: Path) -> pd.DataFrame:
    """The sensitivity tables; returns (and writes) the per-head table."""
    t0 = time.time()
    units = se.units_for_texts(texts, model=model, dataset="rotten_tomatoes", prefix=f"rotten_tomatoes-test-s0-n{len(texts)}",
                               seed=0)
    df = _run(model, "sensitivity", units, args, folder, units[0]["settings"])
    secs = time.time() - t0
    L, H = model.n_layers, model.n_heads
    sens = se.sensitivity_table(df, n_layers=L, n_heads=H, texts=texts)
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
    save_table(df, out / "sensitivity_rows.csv")
    heads = se.heads_table(sens, eps=args.eps, factors=args.factors)
    save_table(heads, out / "sensitivity_heads.csv")
    print(f"wrote {out / 'sensitivity_rows.csv'} and {out / 'sensitivity_heads.csv'}")
    return heads


def adversarial(model, texts: list[str], heads: pd.DataFrame, args: argparse.Namespace, out: Path,
                folder: Path, prefix: str) -> None:
    """Jain & Wallace adversaries on the most sensitive head of every layer, three constraints."""
    chosen = se.most_sensitive_heads(heads)
    flags = [c for c in heads.columns if c.startswith("qualifies_x")]
    print(f"\n## adversarial attention on the most sensitive head per layer ({len(texts)} sentences, k={args.adv_k}, "
          f"{args.adv_steps} steps, seed 0; tokens {[len(model.encode(t, truncate=True).input_ids) for t in texts]})")
    for r in chosen.itertuples():
        print(f"layer {r.layer} head {r.head}: median largest-ablation TVD {r.median_max_tvd:.4f}; "
              + ", ".join(f"{c.replace('qualifies_', 'qualifies ')} = {bool(getattr(r, c))}" for c in flags))
    pairs = [[int(r.layer), int(r.head)] for r in chosen.itertuples()]
    units = se.adversarial_units(texts, pairs, dataset="rotten_tomatoes", prefix=prefix, k=args.adv_k,
                                 steps=args.adv_steps, eps=args.eps, seed=0)
    t0 = time.time()
    rows = _run(model, "sensitivity_adversarial", units, args, folder, units[0]["settings"])
    print(f"  {len(units)} (head, sentence) units: {(time.time() - t0) / 60:.1f} min", flush=True)
    for r in rows[rows.skipped.notna()].itertuples():
        print(f"  skipped layer {r.layer} head {r.head} text {r.text} {r.constraint}/{r.eps_mode}: {r.skipped}")
    df = rows[rows.skipped.isna()].drop(columns="skipped").reset_index(drop=True)
    save_table(df, out / args.adv_out)
    table_rows = [[r.layer, r.head, f"{r.constraint} <= {'eps' if r.eps_mode == 'abs' else '0.5 x ablation'}",
                   r.eps_median, f"{r.feasible}/{r.requested}", r.jsd_all, r.jsd_output, r.share_all, r.share_output]
                  for r in se.adversarial_table(df).itertuples()]
    table("feasible adversaries: all rows vs rows that reach the output (value basis)",
          ["layer", "head", "constraint", "eps median", "feasible", "JSD all rows", "JSD output rows",
           "eff. share all rows", "eff. share output rows"], table_rows,
          "JSD in bits (mean over rows / gradient-weighted rows); efficient share = ||a_i P - a P|| / ||a_i - a|| "
          "(0: only the null part moved). Means over feasible adversaries and sentences (NaN: none feasible).")
    print(f"wrote {out / args.adv_out}")


if __name__ == "__main__":
    main()
