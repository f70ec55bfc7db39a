"""ABCD's sentiment experiment at dataset scale: CLEANN explanation sets vs the raw-attention
baseline, per layer and head, and how alpha and n_samples change the graph and the sets.

Every function takes a model and a list of texts and returns a tidy ``DataFrame``:

- :func:`explanation_table`: one row per (text, layer, head): CLEANN's set size (NaN: nothing
  up to ``max_set_size`` flips the prediction), the baseline's (top-k by the target's raw
  attention; ``baseline_found`` only when k <= ``max_set_size``), model calls, seconds.
- :func:`summarize_explanations`: per (dataset, layer, head): how often each method found a
  flipping set ("flip rate"), mean sizes where both found one, smaller / equal / larger.
- :func:`graph_sweep`: one row per (text, alpha, n_samples): nodes, edges, density, and with
  ``explain=True`` the CLEANN set size and flip.

Heads are stored as strings ("0", "11", "all") so tables round-trip through CSV.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis import abcd

__all__ = ["explanation_row", "explanation_table", "summarize_explanations", "graph_sweep", "DEFAULT_ALPHAS",
           "DEFAULT_N_SAMPLES"]

DEFAULT_ALPHAS = (1e-5, 1e-3, 1e-2, 1e-1)
#: effective sample sizes of the sweep: head dimension, Intel's 128, hidden size (the default), 2 x hidden
DEFAULT_N_SAMPLES: tuple[float | str, ...] = ("head", 128, "hidden", 768)


def _head_key(head: int | str) -> str:
    return str(head)


def _head_value(head: int | str) -> int | str:
    """"all" stays a string; "3" or 3 becomes 3."""
    return head if head in ("all", "mean") else int(head)


def explanation_row(e: abcd.Explanation, *, max_set_size: int) -> dict[str, Any]:
    """The tidy record of one :class:`analysis.abcd.Explanation` (no text id)."""
    b = e.baseline.size
    found_b = b is not None and b <= max_set_size
    return {
        "layer": int(e.settings["layer"]), "head": _head_key(e.settings["head"]),
        "n_tokens": len(e.tokens), "n_nodes": e.graph.n_nodes, "n_edges": len(e.graph),
        "prediction": e.prediction,
        "cleann_found": e.size is not None, "cleann_size": float(e.size) if e.size is not None else np.nan,
        "cleann_n_sets": len(e.sets),
        "cleann_set": " ".join(e.words[0]) if e.sets else "",
        "baseline_found": found_b, "baseline_size": float(b) if found_b else np.nan,
        "baseline_size_any": float(b) if b is not None else np.nan,
        "baseline_set": " ".join(e.tokens[i] for i in e.baseline.set) if found_b else "",
        "cleann_calls": len(e.checks), "baseline_calls": len(e.baseline.checks),
        "seconds": e.seconds, "algorithm": e.settings["algorithm"], "alpha": e.settings["alpha"],
        "n_samples": float(e.settings["n_samples"]), "removal": e.settings["removal"],
        "max_set_size": max_set_size,
    }


def explanation_table(model: Any, texts: Sequence[str], *, layers: Iterable[int] = (-1,),
                      heads: Iterable[int | str] = (0, "all"), max_set_size: int = 3, removal: str = "delete",
                      algorithm: str = "icd", alpha: float = 0.01, n_samples: float | str | None = None,
                      nodes: str = "content", dataset: str = "", progress: bool = False) -> pd.DataFrame:
    """CLEANN vs the attention baseline for every text x layer x head (target: the model's
    default target, [CLS] for encoders). One row per explanation; see :func:`explanation_row`."""
    texts = list(texts)
    if not texts:
        raise ValueError("explanation_table needs at least one text")
    layers = [int(lay) % model.n_layers for lay in layers]
    heads = [_head_value(h) for h in heads]
    jobs = [(i, lay, h) for i in range(len(texts)) for lay in layers for h in heads]
    rows = []
    for i, lay, h in tqdm(jobs, disable=not progress, desc="explanations", leave=False):
        e = abcd.explain(model, texts[i], layer=lay, head=h, algorithm=algorithm, alpha=alpha,
                         n_samples=n_samples, nodes=nodes, max_set_size=max_set_size, removal=removal)
        rows.append({"dataset": dataset, "text_id": i, **explanation_row(e, max_set_size=max_set_size)})
    return pd.DataFrame(rows)


def summarize_explanations(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, layer, head): flip rates of both methods, mean sizes where both found a
    set, CLEANN smaller / equal / larger counts, model calls and seconds per sentence."""
    def one(g: pd.DataFrame) -> pd.Series:
        both = g[g.cleann_found & g.baseline_found]
        s, b = both.cleann_size.to_numpy(), both.baseline_size.to_numpy()
        return pd.Series({
            "sentences": len(g), "cleann_found": g.cleann_found.mean(), "baseline_found": g.baseline_found.mean(),
            "both_found": len(both), "cleann_size": s.mean() if len(s) else np.nan,
            "baseline_size": b.mean() if len(b) else np.nan, "smaller": int((s < b).sum()),
            "equal": int((s == b).sum()), "larger": int((s > b).sum()),
            "calls": float((g.cleann_calls + g.baseline_calls).mean()), "seconds": float(g.seconds.mean())})

    if df.empty:
        raise ValueError("no explanations to summarise")
    keys = [k for k in ("dataset", "layer", "head") if k in df.columns]
    out = df.groupby(keys, sort=False).apply(one).reset_index()
    return out.astype({"sentences": int, "both_found": int, "smaller": int, "equal": int, "larger": int})


def _n_samples_label(choice: float | str) -> str:
    return choice if isinstance(choice, str) else f"{choice:g}"


def graph_sweep(model: Any, texts: Sequence[str], *, alphas: Sequence[float] = DEFAULT_ALPHAS,
                n_samples: Sequence[float | str] = DEFAULT_N_SAMPLES, layer: int = -1, head: int | str = 0,
                algorithm: str = "icd", nodes: str = "content", explain: bool = False, max_set_size: int = 2,
                removal: str = "delete", dataset: str = "", progress: bool = False) -> pd.DataFrame:
    """Graph density (edges / possible pairs over the node set) for every text x alpha x
    n_samples; with ``explain`` also CLEANN's set size and whether it flips (one ``explain``
    per setting, so much slower). ``n_samples`` entries: numbers, "head" or "hidden"."""
    texts = list(texts)
    if not texts or not alphas or not n_samples:
        raise ValueError("graph_sweep needs texts, alphas and n_samples")
    rows = []
    jobs = [(i, a, ns) for i in range(len(texts)) for a in alphas for ns in n_samples]
    traces: dict[int, Any] = {}
    for i, a, ns in tqdm(jobs, disable=not progress, desc="alpha x n_samples", leave=False):
        trace = traces.setdefault(i, model.trace(texts[i]))
        start = time.perf_counter()
        g = abcd.learn_graph(trace, layer=layer, head=head, algorithm=algorithm, alpha=a, n_samples=ns,
                             nodes=nodes)
        p = g.n_nodes
        row = {"dataset": dataset, "text_id": i, "alpha": float(a), "n_samples_label": _n_samples_label(ns),
               "n_samples": float(g.n_samples), "n_tokens": trace.n_tokens, "n_nodes": p, "n_edges": len(g),
               "density": len(g) / (p * (p - 1) / 2), "n_tests": g.n_tests,
               "graph_seconds": time.perf_counter() - start}
        if explain:
            e = abcd.explain(model, texts[i], layer=layer, head=head, algorithm=algorithm, alpha=a, n_samples=ns,
                             nodes=nodes, max_set_size=max_set_size, removal=removal)
            row.update(cleann_found=e.size is not None, cleann_size=float(e.size) if e.size else np.nan,
                       cleann_calls=len(e.checks))
        rows.append(row)
    return pd.DataFrame(rows)
