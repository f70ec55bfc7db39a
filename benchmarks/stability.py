"""Stability of ABCD graphs under attention changes that leave the head's output unchanged.

Run: ``python benchmarks/stability.py [--n 100] [--min-tokens 34] [--layer -1] [--heads 0-11]
[--extremes 1] [--mixtures 1] [--workers 1 | --scheduler ADDRESS] [--results DIR] [--out benchmarks/out]``.

For the default sentiment model (or ``--model``) and the first ``--n`` Rotten Tomatoes test
sentences with at least ``--min-tokens`` tokens (below 34 tokens the value basis [V, 1] of a
32-dim head has full rank: the null space is empty and every A' equals A), every head of
``--layer`` gets ``--extremes`` LP extreme points and ``--mixtures`` convex mixtures A' with
A' V = A V (``analysis.stability.graph_stability``, value basis, seed 0). Per A' it learns the
ICD graph from raw attention (C = A A^T) and from efficient attention (C = A_eff A_eff^T) and
compares them with the graphs of A. Prints the scope, the share of A' whose skeleton changed,
the skeleton SHD / edges mean with a bootstrap 95% CI over sentences (sentence means resampled,
seed 0), the share whose [CLS] neighbours changed, and the largest logit change when the model
runs with A' in place of A (``verify``). Writes the tidy table ``stability_rows.csv`` (one row per
A': ``text_id`` = the sentence's position among the chosen ones, ``text`` the sentence,
``dataset_index`` its row in the test split) and ``stability_summary.csv`` under ``--out``
atomically. Also draws the paper figure (``analysis.figures.stability``) to ``stability.png``.
``--from-rows CSV`` skips the measurement and reports (tables, summary, figure) from a rows file
written earlier (also one of the old format, where ``text`` was the sentence's position).

The sentences run through the experiment runner (``analysis.experiments.run``, task
``stability``: one unit per sentence, seed 0 for every sentence as before): ``--workers N``
processes (default 1: in this process) or a Dask cluster (``--scheduler ADDRESS``). Finished
sentences are kept in the resumable results folder ``--results`` (default
``<out>/stability_results``): there is no time limit any more (the old ``--max-minutes`` is gone);
stop a long run with Ctrl-C and start the same command again to continue where it stopped. A
larger ``--n`` adds sentences to the folder; other heads, layer or A' counts for the sentences
already there are refused (choose another ``--results``).

Tables only, no pass/fail: the numbers are what they are.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd

from analysis import load_model
from analysis.data import load_dataset
from analysis.experiments import run, save_table
from analysis.experiments.runner import completed_rows
from analysis.experiments.stability import summary_table, units_for_texts
from analysis.files import atomic_path

from _tables import table


def parse_heads(spec: str, n_heads: int) -> list[int]:
    """"0-11" or "0,3,5" -> head indices, each checked against ``n_heads``."""
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    bad = [h for h in out if not 0 <= h < n_heads]
    if bad:
        raise SystemExit(f"--heads {bad} out of range: the model has {n_heads} heads per layer (0..{n_heads - 1})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model name for analysis.load_model (default: the default model)")
    ap.add_argument("--n", type=int, default=100, help="sentences (>= --min-tokens tokens) to measure")
    ap.add_argument("--min-tokens", type=int, default=34)
    ap.add_argument("--layer", type=int, default=-1)
    ap.add_argument("--heads", default=None, help='e.g. "0-11" or "0,3" (default: every head)')
    ap.add_argument("--extremes", type=int, default=1, help="LP extreme points per head")
    ap.add_argument("--mixtures", type=int, default=1, help="convex mixtures per head")
    ap.add_argument("--no-verify", action="store_true", help="skip the forward pass with A' in place")
    ap.add_argument("--out", default="benchmarks/out")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1, help="runner processes (1: in this process)")
    where.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    ap.add_argument("--results", default=None,
                    help="runner results folder (resumable: Ctrl-C and rerun continues; default <out>/stability_results)")
    ap.add_argument("--from-rows", default=None, help="report from this stability_rows.csv, measuring nothing")
    args = ap.parse_args()
    out = Path(args.out)
    if args.from_rows:
        report(pd.read_csv(args.from_rows), out, None)
        return
    if args.n < 1:
        raise SystemExit("--n must be >= 1")
    if args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    model = load_model() if args.model is None else load_model(args.model)
    heads = parse_heads(args.heads, model.n_heads) if args.heads else list(range(model.n_heads))
    data = load_dataset("rotten_tomatoes", "test")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lengths = [len(model.encode(t, truncate=True).input_ids) for t in data.texts]
    eligible = [(i, t, n) for i, (t, n) in enumerate(zip(data.texts, lengths)) if n >= args.min_tokens]
    chosen = eligible[:args.n]
    print(f"model {getattr(model, 'name', model)}; Rotten Tomatoes test: {len(lengths)} sentences, "
          f"{len(eligible)} with >= {args.min_tokens} tokens; measuring the first {len(chosen)}; layer {args.layer}, "
          f"heads {heads}; {args.extremes} extreme + {args.mixtures} mixture A' per head (value basis, seed 0)",
          flush=True)
    results = Path(args.results) if args.results else out / "stability_results"
    units = units_for_texts([t for _, t, _ in chosen], dataset="rotten_tomatoes",
                            prefix=f"rotten_tomatoes-test-min{args.min_tokens}", heads=heads, layer=args.layer,
                            n_extreme=args.extremes, n_mix=args.mixtures, seed=0, verify=not args.no_verify)
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = run("stability", units, model=model, workers=args.workers, scheduler=args.scheduler, out=results,
                 settings={"model": args.model, "min_tokens": args.min_tokens, **units[0]["settings"]})
    print(f"stability: {len(units)} sentences, {df.attrs['computed']} computed, {df.attrs['reused']} reused from "
          f"{results}", flush=True)
    df = completed_rows(df)
    if df.empty or "text_id" not in df.columns:
        raise SystemExit(f"no stability rows: none of the {len(chosen)} sentences has a null space (raise --min-tokens)")
    positions = [idx for idx, _, _ in chosen]
    df.insert(df.columns.get_loc("text") + 1, "dataset_index", [positions[k] for k in df.text_id])
    save_table(df, out / "stability_rows.csv")
    report(df, out, time.time() - t0)


def report(df: pd.DataFrame, out: Path, seconds: float | None) -> None:
    """Print the tables, write the summary CSV and the figure under ``out``. Sentences are told
    apart by ``text_id`` (the task's rows) or, in rows of the old format, by ``text``."""
    if "text_id" in df.columns:                 # the sentence string is not needed here
        df = df.assign(text=df["text_id"])
    summary = summary_table(df)
    save_table(summary, out / "stability_summary.csv")
    print(f"\nscope: {df.text.nunique()} sentences (tokens {df.n.min()}-{df.n.max()}, median "
          f"{int(df.groupby('text').n.first().median())}), layer {int(df.layer.iloc[0])}, {df['head'].nunique()} heads, "
          f"{len(df)} A' ({(df.kind == 'extreme').sum()} extreme, {(df.kind == 'mixture').sum()} mixture); "
          f"nullity {df.nullity.min()}-{df.nullity.max()} (median {df.nullity.median():.0f})"
          + ("" if seconds is None else f"; {seconds / 60:.1f} min"))
    table("ABCD (ICD) graph of A vs of output-preserving A'",
          ["attention", "A'", "skeleton changed", "marks changed", "SHD/edges mean", "95% CI", "skeleton SHD median",
           "edges median", "[CLS] nbrs changed", "max logit change"],
          [[r.attention, r.a_prime, f"{r.skeleton_changed:.0%}", f"{r.marks_changed:.0%}", r.shd_per_edge_mean,
            f"{r.shd_per_edge_ci_lo:.3g}-{r.shd_per_edge_ci_hi:.3g}", r.skeleton_shd_median, r.edges_median,
            f"{r.cls_neighbours_changed:.0%}", r.logit_change_max] for r in summary.itertuples()],
          "SHD/edges: skeleton SHD between graph(A') and graph(A) over the edges of graph(A); CI: bootstrap over "
          "sentences (per-sentence means). max logit change: largest |logit(A') - logit(A)| with A' in the model.")
    per_kind = []
    for kind, d in df.groupby("kind"):
        per_kind.append([kind, len(d), d.tvd.median(), f"{(d.raw_skeleton_shd > 0).mean():.0%}",
                         (d.raw_skeleton_shd / d.raw_edges.clip(lower=1)).mean(),
                         f"{(d.raw_target_changed > 0).mean():.0%}", int(d.efficient_skeleton_shd.max())])
    table("by kind of A'", ["kind", "A'", "row TVD median", "raw skeleton changed", "raw SHD/edges mean",
                            "raw [CLS] nbrs changed", "efficient skeleton SHD max"], per_kind)
    import matplotlib
    matplotlib.use("Agg")
    from analysis.figures.stability import stability_figure
    fig = stability_figure(df)
    with atomic_path(out / "stability.png") as tmp:
        fig.savefig(tmp, format="png", dpi=200)
    print(f"\nwrote {out / 'stability_summary.csv'} and {out / 'stability.png'} (rows: {out / 'stability_rows.csv'})")


if __name__ == "__main__":
    main()
