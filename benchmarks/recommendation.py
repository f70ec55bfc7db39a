"""BERT4Rec on synthetic item sequences: ranking quality, then every explainer of the top-1
recommendation under the issue-11 protocol, explanations against the planted true causes, and
learned graphs against the planted truth.

Run: ``python benchmarks/recommendation.py [--users 100] [--workers 1] [--out DIR] [--max-calls 1000]``.

The zoo's ``"bert4rec"`` (trained on the synthetic-rec train split) is evaluated on the test
split (history -> held-out last item): HR@10 / NDCG@10 over the full catalogue, next to
popularity. Then the ``recommendation`` task (``analysis.experiments.recommendation``) runs on a
seeded sample of test users through the runner (``--workers`` processes; ``--out`` keeps
resumable results and the summary CSVs): CLEANN, raw / efficient attention top-k and random
search with CLEANN's calls per set size, for head 0, head 1 and the pooled last layer; rollout,
gradient x input and integrated gradients (captum on the item embeddings), leave-one-out and
exhaustive search (every test history has at most 19 items). Every method gets the same budget
of model calls and no size cap; a method that finds no flipping set within it is censored
("not found within budget"), never dropped. The tables printed: found shares and Kaplan-Meier
median sizes, CLEANN vs each method (smaller / equal / larger / undecided, sign test), agreement
with the exhaustive minimum, the new top-1's rank, precision / recall against the planted causes
of the recommended item (definitions in the task module), and skeleton precision / recall / F1 /
SHD of the learned graphs (ICD / FCI / PC, time order off / on) against ``sequence_pag``, beside a
random graph's. Every number has a bootstrap 95% interval in brackets. Table only, no pass/fail.
The same from a shell: ``python -m analysis.experiments run recommendation --dataset
synthetic-rec --n 100 --out DIR`` then ``python -m analysis.experiments summarize DIR``.
"""
from __future__ import annotations

import argparse
import math
import time

import pandas as pd
from _tables import table

from analysis import load_model
from analysis.experiments import recommendation as R
from analysis.experiments import run


def ci(row: pd.Series, name: str, digits: int = 2) -> str:
    """``est [low, high]``; "-" when there is nothing to estimate."""
    est = row.get(name, math.nan)
    if est is None or not math.isfinite(float(est)):
        return "-"
    lo, hi = row.get(f"{name}_low", math.nan), row.get(f"{name}_high", math.nan)
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def median(row: pd.Series) -> str:
    lo, hi = row["median_size_low"], row["median_size_high"]
    fmt = lambda v: f"{v:g}" if math.isfinite(v) else "not reached"   # noqa: E731
    return f"{row['median_label']} [{fmt(lo)}, {fmt(hi)}]"


def print_tables(tables: dict[str, pd.DataFrame]) -> None:
    """The censored tables, one line per explainer (or graph setting)."""
    s = tables["sizes"]
    table("Flipping sets (censored: not-found users kept)", ["explainer", "n", "found", "censored", "median size (KM)",
                                                            "calls/user", "stopped: found/calls/size/exhausted"],
          [[r.explainer, r.n, ci(r, "found"), r.censored, median(r), f"{r.calls:.1f}",
            f"{r.stopped_found}/{r.stopped_calls}/{r.stopped_size}/{r.stopped_exhausted}"] for _, r in s.iterrows()],
          notes=f"budget: {'; '.join(sorted(s.budget.unique()))}; KM median '> B': not reached within the searched sizes")
    if "paired" in tables:
        p = tables["paired"]
        table("CLEANN vs each method on the same users", ["CLEANN", "vs", "n", "smaller", "equal", "larger",
                                                         "undecided", "sign test p", "share smaller"],
              [[r.reference, r.other, r.n, r.smaller, r.equal, r.larger, r.undecided, f"{r.sign_test_p:.2g}",
                ci(r, "share_smaller")] for _, r in p.iterrows()])
    if "exhaustive" in tables:
        e = tables["exhaustive"]
        table("Reaching the exhaustive minimum (users where exhaustive search found one)",
              ["explainer", "n", "same size", "a true minimal set"],
              [[r.explainer, r.n, ci(r, "exact_size"), ci(r, "exact_set")] for _, r in e.iterrows()])
    c = tables["causes"]
    table("Against the planted causes of the recommended item",
          ["explainer", "users with causes", "found", "precision", "recall", "recovered (censored = no)",
           "held-out cause: n", "recovered"],
          [[r.explainer, r.n_planted, ci(r, "found"), ci(r, "cause_precision"), ci(r, "cause_recall"),
            ci(r, "cause_recovered"), r.n_heldout, ci(r, "heldout_recovered")] for _, r in c.iterrows()],
          notes="precision / recall over found sets; 'recovered': the set holds a planted cause, over all users "
                "with one (a censored user counts as not recovered)")
    k = tables["new_rank"]
    table("The new top-1 after removing the set (found sets only)", ["explainer", "found", "rank before", "in top-10"],
          [[r.explainer, r.n_found, ci(r, "new_rank", 1), ci(r, "new_in_top_k")] for _, r in k.iterrows()])
    u = tables["users"].iloc[0]
    print(f"\nusers: {int(u.n)}; top-1 = held-out item {ci(u, 'top1_is_target')}; top-1 already in the history "
          f"{ci(u, 'top1_seen')}; top-1 has planted causes {ci(u, 'has_planted_causes')}; held-out item a follow-up "
          f"{ci(u, 'target_is_followup')}; top-1 = held-out follow-up {ci(u, 'has_heldout_cause')}")
    if "graphs" in tables:
        g = tables["graphs"]
        table("Learned graphs vs the planted PAG (skeleton micro-averaged over users)",
              ["head", "alg", "order", "n", "precision", "recall", "F1", "SHD", "random graph P / R", "edges / true"],
              [[r["head"], r.algorithm, "on" if r.order else "off", r.n, ci(r, "precision"), ci(r, "recall"),
                ci(r, "f1"), ci(r, "shd", 1), f"{r.chance_precision:.2f} / {r.chance_recall:.2f}",
                f"{r.edges_learned:.1f} / {r.edges_true:.1f}"] for _, r in g.iterrows()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100, help="test users (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="runner processes (1: in this process)")
    ap.add_argument("--out", default=None, help="results folder (resumable; summary CSVs written there)")
    ap.add_argument("--max-calls", type=int, default=R.DEFAULT_SETTINGS["max_calls"])
    ap.add_argument("--heads", nargs="*", default=["0", "1", "all"])
    ap.add_argument("--methods", nargs="*", default=list(R.DEFAULT_SETTINGS["methods"]))
    ap.add_argument("--algorithms", nargs="*", default=list(R.DEFAULT_SETTINGS["graph_algorithms"]))
    ap.add_argument("--order", choices=["off", "on", "both"], default="both",
                    help="give the graph learners the time order of the items")
    ap.add_argument("--model", default=R.DEFAULT_MODEL)
    args = ap.parse_args()
    rec = load_model(args.model)
    data_opts = rec.info.get("recipe", {}).get("data", {})
    m = rec.info
    print(f"model: {rec!r}; trained in {m.get('train_seconds')} s on synthetic-rec {data_opts}")
    print("test split, leave-last-out, full catalogue (no sampled negatives):")
    for label, prefix in (("seen items kept", ""), ("seen items excluded", "unseen_")):
        t = m.get("test", {})
        print(f"  {label:20}  BERT4Rec HR@10 {t.get(prefix + 'hr@10')}  NDCG@10 {t.get(prefix + 'ndcg@10')}   "
              f"popularity HR@10 {t.get(prefix + 'popularity_hr@10')}  NDCG@10 {t.get(prefix + 'popularity_ndcg@10')}")
    orders = {"off": [False], "on": [True], "both": [False, True]}[args.order]
    units = R.make_units(n=args.users, seed=args.seed, data=data_opts or None, heads=args.heads,
                         max_calls=args.max_calls, methods=args.methods, graph_algorithms=args.algorithms,
                         graph_orders=orders)
    print(f"\n{len(units)} test users (seed {args.seed}); layer -1, heads {args.heads}; budget <= {args.max_calls} "
          f"calls per method and user, no size cap; removal=delete; ICD alpha 0.01, n_samples = hidden "
          f"({rec.config.hidden_size}); exhaustive search on histories of <= {R.DEFAULT_SETTINGS['max_exhaustive']} "
          "items; truth: PAG with latent tastes", flush=True)
    start = time.perf_counter()
    df = run("recommendation", units, workers=args.workers, out=args.out, model=rec if args.out is None else args.model,
             progress=True)
    wall = time.perf_counter() - start
    n_failed = df.loc[df["error"].notna(), "unit_id"].nunique()
    df = df[df["error"].isna()].drop(columns=["unit_id", "error"])
    per_user = df.drop_duplicates("id")["unit_seconds"]
    print(f"{df['id'].nunique()} users in {wall:.0f} s ({wall / max(1, len(units)):.2f} s per user wall; per user "
          f"median {per_user.median():.2f} s, max {per_user.max():.1f} s); {n_failed} failed")
    print_tables(R.summarize(df))


if __name__ == "__main__":
    main()
