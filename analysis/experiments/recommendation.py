"""The recommendation evaluation (issue 11, item 4): every explainer on test users of synthetic-rec
under the faithfulness protocol, each explanation scored against the planted true causes, and
the learned graphs scored against the planted truth.

A task for the parallel runner (``analysis.experiments.runner``), like
:mod:`analysis.experiments.faithfulness`: ``make_units`` lists test users, ``run_unit`` explains
one user's top-1 recommendation (deterministic given the unit: random search is seeded from the
unit id), ``summarize`` turns the rows into tables with bootstrap 95% intervals.

Per user (its test-split history, the held-out next item aside):

- **explanations** (rows ``kind="explanation"``, one per method x head setting): every method of
  :func:`analysis.evaluation.run_method` on the history within one budget of model calls (no size
  cap by default), the smallest flipping set as a censored value, exhaustive search (every
  synthetic-rec test history has at most 19 items, the default ``max_exhaustive``), ERASER
  metrics, and the rank of the new top-1 in the original ranking (``new_rank``).
- **true causes** of the recommended item ``r`` (the model's top-1; ``h`` the history as the model
  kept it, ``ds.graph`` the planted structure):

  - *planted causes* ``T = {p : item_dag[h[p], r]}`` when ``r`` is not in ``h``, else the empty
    set: the history positions whose item has ``r`` as a planted follow-up, i.e. the positions
    that could have triggered ``r`` as the next item under the generating process (a taste
    draw has no cause in the history; an item already in the history cannot come next, since
    items never repeat). Columns ``cause_n`` (|T|), ``cause_precision`` and ``cause_recall`` of
    the method's first flipping set (NaN when it found none), ``cause_recovered`` (its set holds
    a planted cause; 0 when it found none; NaN when T is empty);
  - *held-out cause*: when ``r`` is the user's held-out next item and that item was a follow-up,
    ``{ds.graph.target_causes[user]}``, the position that really triggered it; columns
    ``heldout_*`` as above (NaN for the other users; ``heldout_n`` 0).

- **graphs** (rows ``kind="graph"``): for each head setting, algorithm (ICD / FCI / PC) and
  time order (off / on), the graph learned from the abductive trace over the history positions
  only (the appended recommendation left latent), against the true PAG
  ``ds.graph.sequence_pag(user, "taste", order=...)`` (tastes latent): skeleton tp / fp / fn,
  SHD on marks (a PC CPDAG is compared with a PAG: read its skeleton scores), and the
  skeleton a random graph with as many edges would get on average (``chance_tp``).
"""
from __future__ import annotations

import functools
import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.abcd import DEFAULT_MAX_CALLS, Budget
from analysis.evaluation import METHODS, bootstrap_ci, cause_scores, check_methods, evaluate_input, seed_of
from analysis.evaluation.metrics import new_top1_ranks
from analysis.evaluation.summary import explainer_label

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["NAME", "DEFAULT_MODEL", "DEFAULT_SETTINGS", "make_units", "run_unit", "summarize", "true_causes",
           "recommendation_table"]

NAME = "recommendation"
DEFAULT_MODEL = "bert4rec"
#: what a unit runs unless ``make_units`` is told otherwise: last layer, both heads and the pooled
#: layer, every method, CLEANN's default call budget and no size cap, removal by deletion,
#: exhaustive search on histories of at most 19 items (every synthetic-rec test history), and
#: graphs from ICD, FCI and PC with and without the time order
DEFAULT_SETTINGS: dict[str, Any] = {
    "methods": list(METHODS), "heads": [0, 1, "all"], "layer": -1, "max_calls": DEFAULT_MAX_CALLS,
    "max_set_size": None, "removal": "delete", "nodes": "content", "max_exhaustive": 19, "ig_steps": 32,
    "metrics": True, "cleann_options": {}, "graph_algorithms": ["icd", "fci", "pc"], "graph_heads": None,
    "graph_orders": [False, True], "top_k": 10,
}
GRAPH_ALGORITHMS = ("icd", "fci", "pc")
#: columns only graph rows fill
_GRAPH_COLUMNS = ("algorithm", "order", "n_nodes", "n_edges", "true_edges", "tp", "fp", "fn", "shd", "chance_tp",
                  "truth_seconds")


def _default_data() -> dict[str, Any]:
    """The synthetic-rec options the zoo's BERT4Rec was trained on."""
    from analysis.zoo.bert4rec import RECIPE

    return dict(RECIPE.data)


def _heads(values: Any) -> list[int | str]:
    values = values if isinstance(values, (list, tuple)) else [values]
    return [h if h in ("all", "mean") else int(h) for h in values]


def _merge(settings: dict[str, Any]) -> dict[str, Any]:
    """:data:`DEFAULT_SETTINGS` updated with ``settings``, validated (clear errors, not in a worker)."""
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; valid: {', '.join(DEFAULT_SETTINGS)}")
    s = {**DEFAULT_SETTINGS, **settings}
    s["methods"] = check_methods(s["methods"])
    s["heads"] = _heads(s["heads"])
    s["graph_heads"] = None if s["graph_heads"] is None else _heads(s["graph_heads"])
    Budget(s["max_calls"], s["max_set_size"])
    algorithms = s["graph_algorithms"] if isinstance(s["graph_algorithms"], (list, tuple)) else [s["graph_algorithms"]]
    bad = [a for a in algorithms if a not in GRAPH_ALGORITHMS]
    if bad:
        raise ValueError(f"unknown graph algorithm(s) {bad}; choose from {', '.join(GRAPH_ALGORITHMS)} "
                         "(or [] for no graph scores)")
    s["graph_algorithms"] = list(algorithms)
    orders = s["graph_orders"] if isinstance(s["graph_orders"], (list, tuple)) else [s["graph_orders"]]
    if any(not isinstance(o, bool) for o in orders):
        raise ValueError(f"graph_orders lists booleans (time order off / on), not {orders!r}")
    s["graph_orders"] = list(orders)
    if isinstance(s["max_exhaustive"], bool) or not isinstance(s["max_exhaustive"], int) or s["max_exhaustive"] < 0:
        raise ValueError(f"max_exhaustive must be a non-negative integer, not {s['max_exhaustive']!r}")
    if isinstance(s["top_k"], bool) or not isinstance(s["top_k"], int) or s["top_k"] < 1:
        raise ValueError(f"top_k must be a positive integer, not {s['top_k']!r}")
    return s


def make_units(*, dataset: str = "synthetic-rec", n: int = 100, seed: int = 0, split: str = "test",
               data: dict[str, Any] | None = None, **settings: Any) -> list[dict]:
    """``n`` seeded test users of synthetic-rec as JSON-serialisable units (``id``, ``user``,
    ``history``, ``target``, ``data``, ``settings``). ``data``: the options of
    ``load_dataset("synthetic-rec", ...)`` (default: those the zoo's BERT4Rec was trained on);
    ``settings`` override :data:`DEFAULT_SETTINGS`."""
    from analysis.data import load_dataset

    if dataset != "synthetic-rec":
        raise ValueError(f"the recommendation task needs a data set with a planted causal structure; only "
                         f"'synthetic-rec' has one, not {dataset!r}")
    if split != "test":
        raise ValueError(f"the recommendation task uses the test split (history -> held-out next item and its "
                         f"planted cause), not {split!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    merged = _merge(settings)
    data = _default_data() if data is None else dict(data)
    ds = load_dataset("synthetic-rec", "test", **data)
    if n > len(ds):
        raise ValueError(f"n = {n} is more than the {len(ds)} test users of this synthetic-rec data set")
    sample = ds.sample(n, seed=seed)
    return [{"id": f"synthetic-rec-test-u{int(user):05d}", "dataset": "synthetic-rec", "split": "test",
             "user": int(user), "index": i, "history": [int(x) for x in history], "target": int(target),
             "data": data, "settings": merged}
            for i, (user, history, target) in enumerate(zip(sample.users, sample.sequences, sample.targets))]


@functools.lru_cache(maxsize=4)
def _dataset(data_json: str) -> tuple[Any, dict[int, int]]:
    """The synthetic-rec test split for these options (once per process) and user id -> index."""
    from analysis.data import load_dataset

    ds = load_dataset("synthetic-rec", "test", **json.loads(data_json))
    return ds, {int(u): i for i, u in enumerate(ds.users)}


def true_causes(graph: Any, index: int, history: Any, recommended: int, target: int, *, offset: int = 0
                ) -> tuple[list[int], list[int] | None]:
    """(planted causes, held-out cause) of ``recommended`` for the user at ``index`` of
    ``graph`` (a :class:`~analysis.data.synthetic_rec.RecGraph`), as positions of the history the
    model kept (``history[offset:]``); the held-out cause is None when ``recommended`` is not the
    held-out next item ``target`` or that item was a taste draw (see the module docstring)."""
    history = [int(x) for x in history]
    r = int(recommended)
    planted = [] if r in history else [p - offset for p in range(offset, len(history))
                                      if graph.item_dag[history[p], r]]
    cause = graph.target_causes[index] if graph.target_causes is not None else -1
    heldout = [int(cause) - offset] if r == int(target) and cause >= offset else None
    return planted, heldout


def _positions(row: dict) -> list[int] | None:
    return [int(v) for v in str(row["set"]).split()] if row["found"] else None


def run_unit(model: TracedModel, unit: dict) -> list[dict]:
    """Rows of one user: one per method x head (``kind="explanation"``) and one per graph setting
    (``kind="graph"``)."""
    from analysis import abcd
    from analysis.causal.scores import shd, skeleton_scores

    if not getattr(model, "abductive", False):
        raise ValueError("the recommendation task explains a recommender's top-1 (load_model('bert4rec')); "
                         f"{getattr(model, 'name', type(model).__name__)!r} is not one")
    s = _merge(unit.get("settings", {}))
    ds, where = _dataset(json.dumps(unit["data"], sort_keys=True))
    if unit["user"] not in where:
        raise ValueError(f"user {unit['user']} is not in this synthetic-rec test split ({len(ds)} users)")
    idx = where[unit["user"]]
    history = tuple(int(x) for x in ds.sequences[idx])
    if history != tuple(unit["history"]):
        raise ValueError(f"user {unit['user']}: the unit's history differs from the data set's (other data options?)")
    graph = ds.graph
    target = int(ds.targets[idx])
    budget = Budget(s["max_calls"], s["max_set_size"])
    start = time.perf_counter()
    rows = evaluate_input(model, history, methods=s["methods"], budget=budget, heads=s["heads"], layer=s["layer"],
                          removal=s["removal"], nodes=s["nodes"], seed=seed_of(unit["id"]),
                          max_exhaustive=s["max_exhaustive"], metrics=s["metrics"], ig_steps=s["ig_steps"],
                          **s["cleann_options"])
    r = int(rows[0]["prediction"])
    n_kept = int(rows[0]["n_tokens"]) - 1             # the abductive trace: kept history + the recommendation
    offset = len(history) - n_kept
    kept = history[offset:]
    planted, heldout = true_causes(graph, idx, history, r, target, offset=offset)
    cause = graph.target_causes[idx]
    base = {"kind": "explanation", "id": unit["id"], "dataset": "synthetic-rec", "user": unit["user"],
            "history_len": len(history), "truncated": offset, "target": target,
            "target_cause": int(cause) - offset if cause >= offset else -1, "top1": r, "top1_is_target": r == target,
            "top1_seen": r in history, "planted_causes": " ".join(map(str, planted))}
    ranks = new_top1_ranks(model, kept, [_positions(row) for row in rows], removal=s["removal"])
    out = []
    for row, rank in zip(rows, ranks):
        found = _positions(row)
        held = cause_scores(found, heldout or [], prefix="heldout")
        if heldout is None:
            held = {k: (0 if k == "heldout_n" else np.nan) for k in held}
        out.append({**base, **row, **cause_scores(found, planted), **held, "new_rank": rank,
                    "new_in_top_k": (rank <= s["top_k"]) if np.isfinite(rank) else np.nan, "top_k": s["top_k"]})
    if offset or not s["graph_algorithms"]:
        return out                                     # the true PAG is over the full history only
    trace, _ = model.explanation_trace(kept, r)
    alpha = s["cleann_options"].get("alpha", 0.01)
    n_samples = s["cleann_options"].get("n_samples")
    pairs = n_kept * (n_kept - 1) / 2
    for order in s["graph_orders"]:
        t_truth = time.perf_counter()
        truth = graph.sequence_pag(idx, "taste", order=order)
        truth_seconds = time.perf_counter() - t_truth
        for head in s["graph_heads"] if s["graph_heads"] is not None else s["heads"]:
            for algorithm in s["graph_algorithms"]:
                t0 = time.perf_counter()
                learned = abcd.learn_graph(trace, layer=s["layer"], head=head, algorithm=algorithm, alpha=alpha,
                                           n_samples=n_samples, nodes=list(range(n_kept)), order=order)
                sk = skeleton_scores(learned, truth)
                out.append({"kind": "graph", "id": unit["id"], "dataset": "synthetic-rec", "user": unit["user"],
                            "history_len": len(history), "truncated": 0, "method": "graph", "head": str(head),
                            "algorithm": algorithm, "order": bool(order), "n_nodes": n_kept,
                            "n_edges": len(learned), "true_edges": sk["tp"] + sk["fn"], "tp": sk["tp"],
                            "fp": sk["fp"], "fn": sk["fn"], "shd": shd(learned, truth),
                            "chance_tp": len(learned) * (sk["tp"] + sk["fn"]) / pairs if pairs else 0.0,
                            "seconds": time.perf_counter() - t0, "truth_seconds": truth_seconds})
    for row in out:
        row["unit_seconds"] = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------- summaries
def _ci(values: Any, **kw: Any) -> tuple[float, float, float]:
    return bootstrap_ci(np.asarray(values, dtype=np.float64), **kw)


def _with_ci(row: dict, name: str, values: Any, seed: int, n_boot: int) -> None:
    est, lo, hi = _ci(values, seed=seed, n_boot=n_boot)
    row.update({name: est, f"{name}_low": lo, f"{name}_high": hi})


def _ratio_ci(row: dict, name: str, num: np.ndarray, den: np.ndarray, seed: int, n_boot: int) -> None:
    """sum(num) / sum(den) over users, with a bootstrap interval resampling users."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)

    def stat(i: np.ndarray) -> float:
        i = i.astype(int)
        d = den[i].sum()
        return float(num[i].sum() / d) if d else np.nan

    est, lo, hi = bootstrap_ci(np.arange(len(num)), stat, seed=seed, n_boot=n_boot)
    row.update({name: est, f"{name}_low": lo, f"{name}_high": hi})


def cause_table(df: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Per explainer: on users whose recommendation has planted causes, the share found, the
    precision and recall of the found sets (over found sets) and the share recovering a cause
    (censored users count as not recovering); the same for the held-out cause."""
    rows = []
    for (method, head), g in df.groupby(["method", "head"], sort=False):
        row: dict[str, Any] = {"explainer": explainer_label(method, head), "method": method, "head": head,
                               "n": len(g)}
        p = g[g["cause_n"] > 0]
        row["n_planted"] = len(p)
        row["n_planted_found"] = int(p["found"].astype(bool).sum())
        _with_ci(row, "found", p["found"].astype(float), seed, n_boot)
        for c in ("cause_precision", "cause_recall", "cause_recovered"):
            _with_ci(row, c, p[c], seed, n_boot)
        h = g[g["heldout_n"] > 0]
        row["n_heldout"] = len(h)
        row["n_heldout_found"] = int(h["found"].astype(bool).sum())
        for c in ("heldout_precision", "heldout_recovered"):
            _with_ci(row, c, h[c], seed, n_boot)
        rows.append(row)
    return pd.DataFrame(rows)


def rank_table(df: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Per explainer, over its found sets: the rank of the new top-1 in the original ranking
    (mean) and the share inside the original top-k."""
    rows = []
    for (method, head), g in df.groupby(["method", "head"], sort=False):
        row: dict[str, Any] = {"explainer": explainer_label(method, head), "method": method, "head": head,
                               "n": len(g), "n_found": int(g["found"].astype(bool).sum()),
                               "top_k": int(g["top_k"].iloc[0])}
        _with_ci(row, "new_rank", g["new_rank"], seed, n_boot)
        _with_ci(row, "new_in_top_k", g["new_in_top_k"].astype(float), seed, n_boot)
        rows.append(row)
    return pd.DataFrame(rows)


def user_table(df: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """One row: what the explained recommendations are (shares of users, bootstrap intervals)."""
    u = df.drop_duplicates("id")
    row: dict[str, Any] = {"n": len(u), "history_len_mean": float(u["history_len"].mean()),
                           "truncated": int((u["truncated"] > 0).sum())}
    _with_ci(row, "top1_is_target", u["top1_is_target"].astype(float), seed, n_boot)
    _with_ci(row, "top1_seen", u["top1_seen"].astype(float), seed, n_boot)
    _with_ci(row, "has_planted_causes", (u["cause_n"] > 0).astype(float), seed, n_boot)
    _with_ci(row, "target_is_followup", (u["target_cause"] >= 0).astype(float), seed, n_boot)
    _with_ci(row, "has_heldout_cause", (u["heldout_n"] > 0).astype(float), seed, n_boot)
    return pd.DataFrame([row])


def graph_table(df: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Per head x algorithm x time order: skeleton precision / recall / F1 micro-averaged over
    users (sums of tp, fp, fn; bootstrap over users), mean SHD, and a random graph's expected
    precision / recall with the same number of edges per user."""
    rows = []
    for (head, algorithm, order), g in df.groupby(["head", "algorithm", "order"], sort=False):
        tp, fp, fn = (g[c].to_numpy(dtype=float) for c in ("tp", "fp", "fn"))
        row: dict[str, Any] = {"head": head, "algorithm": algorithm, "order": bool(order), "n": len(g),
                               "edges_learned": float(g["n_edges"].mean()), "edges_true": float(g["true_edges"].mean())}
        _ratio_ci(row, "precision", tp, tp + fp, seed, n_boot)
        _ratio_ci(row, "recall", tp, tp + fn, seed, n_boot)
        _ratio_ci(row, "f1", 2 * tp, 2 * tp + fp + fn, seed, n_boot)
        _with_ci(row, "shd", g["shd"], seed, n_boot)
        chance = g["chance_tp"].to_numpy(dtype=float)
        row["chance_precision"] = float(chance.sum() / g["n_edges"].sum()) if g["n_edges"].sum() else np.nan
        row["chance_recall"] = float(chance.sum() / (tp + fn).sum()) if (tp + fn).sum() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table (censored rows kept; bootstrap 95% intervals): the faithfulness tables
    (``sizes``, ``curves``, ``paired``, ``exhaustive``, ``faithfulness``,
    ``exhaustive_subset_sizes``; see :func:`analysis.experiments.faithfulness.summarize`),
    ``causes`` (:func:`cause_table`), ``new_rank`` (:func:`rank_table`), ``users``
    (:func:`user_table`) and ``graphs`` (:func:`graph_table`)."""
    from analysis.experiments import faithfulness

    if df.empty or "kind" not in df.columns:
        raise ValueError("no recommendation results to summarise (rows of the 'recommendation' task have 'kind')")
    expl = df[df["kind"] == "explanation"].drop(columns=[c for c in _GRAPH_COLUMNS if c in df.columns])
    tables = faithfulness.summarize(expl) if len(expl) else {}
    if len(expl):
        tables.update(causes=cause_table(expl), new_rank=rank_table(expl), users=user_table(expl))
    graphs = df[df["kind"] == "graph"]
    if len(graphs):
        tables["graphs"] = graph_table(graphs)
    return tables


def recommendation_table(model: TracedModel, n: int, *, seed: int = 0, data: dict[str, Any] | None = None,
                         **settings: Any) -> pd.DataFrame:
    """:func:`run_unit` over ``n`` seeded test users in this process (notebooks, tests)."""
    return pd.DataFrame([row for unit in make_units(n=n, seed=seed, data=data, **settings)
                         for row in run_unit(model, unit)])
