"""The faithfulness experiment (issue 11): every explainer on the same inputs with an explicit
budget, censored sizes kept, exhaustive ground truth on short inputs, ERASER metrics, and
summaries with bootstrap 95% intervals.

A task for the parallel runner (``analysis.experiments.runner``): ``make_units`` lists the
inputs, ``run_unit`` explains one (deterministic given the unit: seeds derive from its id),
``summarize`` turns the rows into tables. :func:`faithfulness_table` runs it in-process.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd
from tqdm.auto import tqdm

from analysis.abcd import DEFAULT_MAX_CALLS, Budget
from analysis.evaluation import (
    METHODS,
    check_methods,
    evaluate_input,
    per_head_table,
    seed_of,
    summarize_results,
)
from analysis.evaluation.explainers import MAX_EXHAUSTIVE

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["NAME", "DEFAULT_MODEL", "DEFAULT_SETTINGS", "make_units", "run_unit", "summarize",
           "faithfulness_table"]

NAME = "faithfulness"
DEFAULT_MODEL = None  # the embedded default sentiment model (analysis.load_model(None))
#: what a unit runs unless ``make_units`` is told otherwise: the last layer, head 0 and the pooled
#: layer, every method, CLEANN's default call budget and no size cap, removal by deletion
DEFAULT_SETTINGS: dict[str, Any] = {
    "methods": list(METHODS), "heads": [0, "all"], "layer": -1, "max_calls": DEFAULT_MAX_CALLS,
    "max_set_size": None, "removal": "delete", "nodes": "content", "max_exhaustive": MAX_EXHAUSTIVE,
    "max_words": 100, "ig_steps": 32, "metrics": True, "cleann_options": {},
}


def make_units(*, dataset: str = "rotten_tomatoes", n: int = 300, seed: int = 0, split: str = "test",
               **settings: Any) -> list[dict]:
    """``n`` seeded texts of ``dataset`` as JSON-serialisable units (``id``, ``text``, ``settings``).

    ``settings`` override :data:`DEFAULT_SETTINGS` (methods, heads, layer, max_calls,
    max_set_size, removal, nodes, max_exhaustive, max_words, ig_steps, metrics,
    cleann_options: keyword arguments of ``analysis.abcd.explain`` such as algorithm or alpha).
    Texts longer than ``max_words`` whitespace words keep their first ``max_words`` (IMDB excerpts)."""
    from analysis.data import load_dataset

    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; valid: {', '.join(DEFAULT_SETTINGS)}")
    merged = {**DEFAULT_SETTINGS, **settings}
    merged["methods"] = check_methods(merged["methods"])
    merged["heads"] = [h if h in ("all", "mean") else int(h) for h in merged["heads"]]
    Budget(merged["max_calls"], merged["max_set_size"])          # validate early, not inside a worker
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    data = load_dataset(dataset, split).sample(n, seed=seed)
    limit = int(merged["max_words"])
    units = []
    for i, (text, label) in enumerate(zip(data.texts, data.labels)):
        words = str(text).split()
        units.append({"id": f"{dataset}-{split}-s{seed}-{i:05d}", "dataset": dataset, "index": i,
                      "text": " ".join(words[:limit]) if len(words) > limit else str(text),
                      "label": int(label), "settings": merged})
    return units


def run_unit(model: TracedModel, unit: dict) -> list[dict]:
    """Tidy rows (one per method x head) for one unit; random search is seeded from the unit's id."""
    s = {**DEFAULT_SETTINGS, **unit.get("settings", {})}
    rows = evaluate_input(model, unit["text"], methods=s["methods"], budget=Budget(s["max_calls"], s["max_set_size"]),
                          heads=s["heads"], layer=s["layer"], removal=s["removal"], nodes=s["nodes"],
                          seed=seed_of(unit["id"]), max_exhaustive=s["max_exhaustive"], metrics=s["metrics"],
                          ig_steps=s["ig_steps"], **s["cleann_options"])
    base = {"id": unit["id"], "dataset": unit.get("dataset", ""), "text_index": unit.get("index", -1),
            "label": unit.get("label", -1)}
    return [{**base, **r} for r in rows]


def summarize(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Summary tables (name -> tidy DataFrame) with bootstrap 95% intervals; censored rows kept.
    See :func:`analysis.evaluation.summarize_results`; ``exhaustive_subset`` restates the size
    summary on the inputs where exhaustive search ran; ``per_head`` has one row per CLEANN head
    (:func:`analysis.evaluation.per_head_table`). Rows of several runs on the same inputs may be
    concatenated first (other heads or methods); the same input, method and head twice is refused."""
    twice = df.duplicated(["id", "method", "head"], keep=False)
    if twice.any():
        first = df.loc[twice].iloc[0]
        raise ValueError(f"{int(twice.sum())} rows repeat an input, method and head (first: {first['id']}, "
                         f"{first['method']}, head {first['head']!r}): summarise overlapping runs separately")
    tables = summarize_results(df)
    if (df.method == "cleann").any():
        tables["per_head"] = per_head_table(df)
    if "exhaustive_size" in df.columns and df["exhaustive_size"].notna().any():
        sub = df[df["id"].isin(df.loc[df.method == "exhaustive", "id"])]
        tables["exhaustive_subset_sizes"] = summarize_results(sub)["sizes"]
    return tables


def faithfulness_table(model: TracedModel, texts: Sequence[str], *, dataset: str = "", progress: bool = False,
                       **settings: Any) -> pd.DataFrame:
    """:func:`run_unit` over ``texts`` in this process (notebooks, tests); settings as in
    :func:`make_units`."""
    texts = list(texts)
    if not texts:
        raise ValueError("faithfulness_table needs at least one text")
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; valid: {', '.join(DEFAULT_SETTINGS)}")
    merged = {**DEFAULT_SETTINGS, **settings}
    merged["methods"] = check_methods(merged["methods"])
    rows = []
    for i, text in enumerate(tqdm(texts, disable=not progress, desc="faithfulness", leave=False)):
        unit = {"id": f"{dataset or 'text'}-{i:05d}", "dataset": dataset, "index": i, "text": text,
                "settings": merged}
        rows += run_unit(model, unit)
    return pd.DataFrame(rows)
