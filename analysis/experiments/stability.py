"""Graph stability at dataset scale: raw vs efficient ABCD graphs over output-preserving attentions.

For each sentence and head, the raw and the efficient ABCD graphs over attention matrices that
leave the head's output unchanged (:func:`analysis.stability.graph_stability`), as a task for the
parallel runner.

A unit is one sentence; it yields one row per generated ``A'`` and head (``StabilityResult.rows()``
plus ``text_id``, ``text``, ``dataset``). A sentence whose heads have no null space (``n <= d_head
+ 1``: ``[V, 1]`` has full rank, so every ``A'`` equals ``A``) yields no rows; the runner records it
as done. ``summarize`` gives one row per attention kind with bootstrap 95% intervals over
sentences. The paper figure ``abcd_stability`` runs this task (``PaperRun.stability``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["NAME", "DEFAULT_MODEL", "DEFAULT_SETTINGS", "make_units", "units_for_texts", "run_unit", "has_null_space",
           "summary_table", "summarize"]

NAME = "stability"
DEFAULT_MODEL = None  # the embedded default sentiment model
#: every head of the last layer (``heads=None``), one LP extreme point and one mixture per head,
#: the value basis (exact output preservation), ICD on content tokens, seed 0 for every sentence
DEFAULT_SETTINGS: dict[str, Any] = {"heads": None, "layer": -1, "n_extreme": 1, "n_mix": 1, "basis": "value",
                                    "seed": 0, "algorithm": "icd", "alpha": 0.01, "nodes": "content",
                                    "verify": True}


def _merge(settings: dict) -> dict:
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; valid: {', '.join(DEFAULT_SETTINGS)}")
    merged = {**DEFAULT_SETTINGS, **settings}
    if merged["heads"] is not None:
        merged["heads"] = [int(h) for h in merged["heads"]]
    for key in ("n_extreme", "n_mix"):
        if int(merged[key]) < 0:
            raise ValueError(f"{key} must be >= 0, got {merged[key]}")
    if int(merged["n_extreme"]) + int(merged["n_mix"]) < 1:
        raise ValueError("n_extreme + n_mix must be at least 1: no output-preserving attention would be generated")
    return merged


def units_for_texts(texts: Sequence[str], *, dataset: str = "", prefix: str | None = None, **settings: Any) -> list[dict]:
    """Units for the given texts (``text_id`` = position in ``texts``); settings as in :func:`make_units`."""
    merged = _merge(settings)
    prefix = prefix if prefix is not None else (dataset or "text")
    return [{"id": f"{prefix}-{i:05d}", "dataset": dataset, "index": i, "text": str(t), "settings": merged}
            for i, t in enumerate(texts)]


def make_units(*, dataset: str = "rotten_tomatoes", n: int = 20, seed: int = 0, split: str = "test",
               **settings: Any) -> list[dict]:
    """``n`` seeded sentences of ``dataset`` as units. ``settings`` override :data:`DEFAULT_SETTINGS`:
    ``heads`` (None = every head), ``layer``, ``n_extreme``/``n_mix`` (LP extreme points and convex
    mixtures per head), ``basis``, ``seed`` (of the LP objectives, the same for every sentence),
    ``algorithm``, ``alpha``, ``nodes``, ``verify`` (re-run the model with each ``A'`` in place)."""
    from analysis.data import load_dataset

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    data = load_dataset(dataset, split).sample(n, seed=seed)
    return units_for_texts(list(data.texts), dataset=dataset, prefix=f"{dataset}-{split}-s{seed}", **settings)


def has_null_space(model: TracedModel, text: str, d_head: int) -> bool:
    """Whether the heads of ``text`` have a null space to move in: more tokens than ``d_head + 1``."""
    return len(model.encode(text, truncate=True).input_ids) > d_head + 1


def run_unit(model: TracedModel, unit: dict) -> list[dict]:
    """One row per generated ``A'`` and head of one sentence (none without a null space)."""
    from analysis.stability import graph_stability

    s = {**DEFAULT_SETTINGS, **unit.get("settings", {})}
    trace = model.trace(unit["text"])
    if trace.n_tokens <= trace.values.shape[-1] + 1:
        return []
    heads = range(model.n_heads) if s["heads"] is None else [h for h in s["heads"] if -model.n_heads <= h < model.n_heads]
    rows: list[dict] = []
    for h in heads:
        r = graph_stability(model, unit["text"], layer=s["layer"], head=h, basis=s["basis"], n_extreme=s["n_extreme"],
                            n_mix=s["n_mix"], seed=s["seed"], algorithm=s["algorithm"], alpha=s["alpha"],
                            nodes=s["nodes"], verify=s["verify"], trace=trace)
        rows += [dict(text_id=unit.get("index", -1), text=unit["text"], dataset=unit.get("dataset", ""), **row)
                 for row in r.rows()]
    return rows


def summary_table(df: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """One row per attention kind (raw, efficient) over every ``A'`` of ``df``: the share whose
    skeleton / marks / target's neighbours changed, the skeleton SHD over the edges of graph(A)
    (mean with a bootstrap 95% interval over sentences: per-sentence means resampled), medians,
    and the largest logit change and LP residual."""
    from analysis.evaluation import bootstrap_ci

    if df.empty:
        raise ValueError("no stability rows to summarise (no sentence had a null space?)")
    key = df["text_id"] if "text_id" in df.columns else df["text"]
    out = []
    for kind in ("raw", "efficient"):
        frac = df[f"{kind}_skeleton_shd"] / df[f"{kind}_edges"].clip(lower=1)
        mean, lo, hi = bootstrap_ci(frac.groupby(key).mean().to_numpy(), seed=seed, n_boot=n_boot)
        out.append(dict(attention=kind, sentences=int(key.nunique()), heads=int(df["head"].nunique()), a_prime=len(df),
                        skeleton_changed=float((df[f"{kind}_skeleton_shd"] > 0).mean()),
                        marks_changed=float((df[f"{kind}_shd"] > 0).mean()),
                        shd_per_edge_mean=float(frac.mean()), shd_per_edge_ci_lo=lo, shd_per_edge_ci_hi=hi,
                        skeleton_shd_median=float(df[f"{kind}_skeleton_shd"].median()),
                        edges_median=float(df[f"{kind}_edges"].median()),
                        cls_neighbours_changed=float((df[f"{kind}_target_changed"] > 0).mean()),
                        logit_change_max=float(np.nanmax(df.logit_change)) if df.logit_change.notna().any()
                        else float("nan"),
                        residual_max=float(df.residual.max())))
    return pd.DataFrame(out)


def summarize(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{"summary": summary_table(df)}`` (see :func:`summary_table`)."""
    return {"summary": summary_table(df)}
