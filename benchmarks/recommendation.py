"""BERT4Rec on synthetic item sequences: ranking quality, graphs against the planted truth,
and CLEANN explanations of the top-1 recommendation vs the attention baseline.

Run: ``python benchmarks/recommendation.py [--users 100] [--max-set-size 3] [--order both]``.

The zoo's ``"bert4rec"`` (trained on the synthetic-rec train split) is evaluated on the test
split (history -> held-out last item): HR@10 / NDCG@10 over the full catalogue, next to
popularity. Then, for a seeded sample of test users and each graph setting (ICD / FCI / PC;
last layer; head "all" and head 0; time order off / on), with the abductive trace (the
history with the top-1 item appended):

- graph: learned over the history positions only (the appended item left latent), scored
  against the true PAG over those positions (``RecGraph.sequence_pag``, latent tastes; given
  the time order when the learner was): skeleton precision / recall / F1, micro-averaged
  over users (sums of tp, fp, fn), and mean SHD on marks (a PC CPDAG is compared with the
  PAG, so its SHD counts circles as differences; read its skeleton scores);
- explanations: CLEANN and the attention baseline, both limited to ``max_set_size`` items
  removed by deletion: % of users whose top-1 changes, mean set size (where found), mean
  rank of the new top-1 in the original ranking and % of them inside the original top-10,
  and, where the top-1 is the true next item and it is a follow-up of a history item, %
  whose set contains that true cause (n in brackets). Table only, no pass/fail.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from analysis import abcd, load_dataset, load_model
from analysis.causal.scores import shd, skeleton_scores


def _mean(xs: list[float]) -> float:
    return float(np.mean(xs)) if xs else float("nan")


def true_pags(data, order: bool) -> list:
    """The true PAG over the history positions of each user (FCI with the d-separation oracle;
    seconds for the longest histories, so computed once per time-order setting)."""
    return [data.graph.sequence_pag(u, "taste", order=order) for u in range(len(data))]


def run_setting(rec, data, truths: list, *, algorithm: str, head, order: bool, max_set_size: int,
                k: int = 10) -> dict:
    """Graph scores and explanation statistics over the users of ``data`` for one setting."""
    acc: dict[str, list] = defaultdict(list)
    counts = dict(tp=0, fp=0, fn=0)
    start = time.perf_counter()
    for u, history in enumerate(data.sequences):
        history = tuple(history)[-(rec.max_length - 1):]
        e = abcd.explain(rec, history, algorithm=algorithm, layer=-1, head=head, order=order,
                         max_set_size=max_set_size, baseline_max_size=max_set_size)
        trace = rec.explanation_trace(history, e.prediction)[0]
        n = len(history)
        learned = abcd.learn_graph(trace, layer=-1, head=head, algorithm=algorithm, nodes=list(range(n)), order=order)
        truth = truths[u]
        sk = skeleton_scores(learned, truth)
        for key in counts:
            counts[key] += sk[key]
        acc["shd"].append(shd(learned, truth))
        for name, changed, size, rank, chosen in (
                ("cleann", e.changed, e.size, e.new_rank, e.sets[0] if e.sets else []),
                ("base", e.baseline.size is not None, e.baseline.size, e.baseline.new_rank, list(e.baseline.set))):
            acc[f"{name}_changed"].append(changed)
            if changed:
                acc[f"{name}_size"].append(size)
                acc[f"{name}_rank"].append(rank)
                acc[f"{name}_topk"].append(rank <= k)
            cause = data.graph.target_causes[u]
            if e.prediction == data.targets[u] and cause >= 0:
                acc[f"{name}_cause"].append(cause in chosen)
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    p = tp / (tp + fp) if tp + fp else float("nan")
    r = tp / (tp + fn) if tp + fn else float("nan")
    out = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if tp else 0.0, "shd": _mean(acc["shd"]),
           "seconds": (time.perf_counter() - start) / max(1, len(data))}
    for name in ("cleann", "base"):
        out[f"{name}_changed"] = 100 * _mean(acc[f"{name}_changed"])
        out[f"{name}_size"] = _mean(acc[f"{name}_size"])
        out[f"{name}_rank"] = _mean(acc[f"{name}_rank"])
        out[f"{name}_topk"] = 100 * _mean(acc[f"{name}_topk"])
        out[f"{name}_cause"] = 100 * _mean(acc[f"{name}_cause"])
        out[f"{name}_cause_n"] = len(acc[f"{name}_cause"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100, help="test users (seeded sample)")
    ap.add_argument("--max-set-size", type=int, default=3)
    ap.add_argument("--algorithms", nargs="*", default=["icd", "fci", "pc"])
    ap.add_argument("--heads", nargs="*", default=["all", "0"])
    ap.add_argument("--order", choices=["off", "on", "both"], default="both",
                    help="give the learners the time order of the items")
    ap.add_argument("--model", default="bert4rec")
    args = ap.parse_args()
    rec = load_model(args.model)
    data_opts = rec.info.get("recipe", {}).get("data", {})
    test = load_dataset("synthetic-rec", split="test", **data_opts)
    m = rec.info
    print(f"model: {rec!r}; trained in {m.get('train_seconds')} s on synthetic-rec {data_opts}")
    print("test split, leave-last-out, full catalogue (no sampled negatives):")
    for label, prefix in (("seen items kept", ""), ("seen items excluded", "unseen_")):
        t = m.get("test", {})
        print(f"  {label:20}  BERT4Rec HR@10 {t.get(prefix + 'hr@10')}  NDCG@10 {t.get(prefix + 'ndcg@10')}   "
              f"popularity HR@10 {t.get(prefix + 'popularity_hr@10')}  NDCG@10 {t.get(prefix + 'popularity_ndcg@10')}")
    data = test.sample(args.users, seed=0)
    k = args.max_set_size
    print(f"\n{len(data)} test users; layer -1, alpha 0.01, n_samples=hidden ({rec.config.hidden_size}); "
          f"removal=delete; sets of at most {k} items; truth: PAG with latent tastes")
    head_line = (f"{'alg':>4} {'head':>4} {'order':>5} | {'prec':>5} {'rec':>5} {'F1':>5} {'SHD':>5} | "
                 f"{'method':>6} {'%chg':>5} {'size':>5} {'rank':>5} {'%top10':>6} {'%cause (n)':>11} | {'s/user':>6}")
    print(head_line)
    print("-" * len(head_line))
    orders = {"off": [False], "on": [True], "both": [False, True]}[args.order]
    truths = {order: true_pags(data, order) for order in orders}
    for algorithm in args.algorithms:
        for h in args.heads:
            head = h if h == "all" else int(h)
            for order in orders:
                r = run_setting(rec, data, truths[order], algorithm=algorithm, head=head, order=order, max_set_size=k)
                for name, shown in (("cleann", "CLEANN"), ("base", "attn")):
                    graph = (f"{r['precision']:>5.2f} {r['recall']:>5.2f} {r['f1']:>5.2f} {r['shd']:>5.1f}"
                             if name == "cleann" else " " * 23)
                    first = f"{algorithm:>4} {h:>4} {'on' if order else 'off':>5}" if name == "cleann" else " " * 15
                    print(f"{first} | {graph} | {shown:>6} {r[name + '_changed']:>5.0f} {r[name + '_size']:>5.2f} "
                          f"{r[name + '_rank']:>5.2f} {r[name + '_topk']:>6.0f} "
                          f"{r[name + '_cause']:>5.0f} ({r[name + '_cause_n']:>3}) | "
                          f"{r['seconds'] if name == 'cleann' else float('nan'):>6.2f}", flush=True)


if __name__ == "__main__":
    main()
