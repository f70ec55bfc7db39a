"""The task registry: name -> a :class:`Task` (make_units, run_unit, summarize, default model),
loaded lazily by module path so ``import analysis.experiments`` stays light.

A task module follows this contract (``analysis.experiments.faithfulness`` does)::

    NAME = "..."
    DEFAULT_MODEL = None   # None = the embedded default (analysis.load_model()); or a name / folder
    def make_units(*, dataset: str, n: int, seed: int = 0, **settings) -> list[dict]  # JSON, unique str "id"
    def run_unit(model, unit: dict) -> list[dict]                                       # tidy rows of one unit
    def summarize(df: pd.DataFrame) -> dict[str, pd.DataFrame]

Registry entries are ``"package.module"`` (a module with that contract) or
``"package.module:attribute"`` (a :class:`Task` object). The built-in tasks below wrap the
existing experiments: "explanations" (CLEANN vs attention per sentence, layer and head),
"graph_sweep" (graph density over alpha x n_samples), "efficient" (nullity and the outputs
under efficient / null-space edits) and "adversarial" (adversaries vs efficient attention).
Task modules: "faithfulness", "recommendation", "stability", "sensitivity" (head ablations per
sentence) and "sensitivity_adversarial" (adversaries on chosen heads, in the sensitivity module).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["Task", "TASKS", "get_task", "task_names", "task_from_module"]


@dataclass(frozen=True)
class Task:
    """One dataset-scale experiment: units from settings, rows from one unit, summary tables."""

    name: str
    make_units: Callable[..., list[dict]]
    run_unit: Callable[[Any, dict], list[dict]]
    summarize: Callable[[pd.DataFrame], dict[str, pd.DataFrame]] | None = None
    default_model: str | None = None
    description: str = ""


#: task name -> "module" or "module:attribute" (read it; register new tasks here)
TASKS: dict[str, str] = {
    "explanations": "analysis.experiments.tasks:EXPLANATIONS",
    "graph_sweep": "analysis.experiments.tasks:GRAPH_SWEEP",
    "efficient": "analysis.experiments.tasks:EFFICIENT",
    "adversarial": "analysis.experiments.tasks:ADVERSARIAL",
    "faithfulness": "analysis.experiments.faithfulness",
    "recommendation": "analysis.experiments.recommendation",
    "stability": "analysis.experiments.stability",
    "sensitivity": "analysis.experiments.sensitivity",
    "sensitivity_adversarial": "analysis.experiments.sensitivity:ADVERSARIAL",
}


def task_names() -> list[str]:
    """The registered task names."""
    return list(TASKS)


def task_from_module(module: ModuleType) -> Task:
    """A :class:`Task` from a module that follows the contract (NAME, make_units, run_unit, ...)."""
    missing = [a for a in ("NAME", "make_units", "run_unit") if not hasattr(module, a)]
    if missing:
        raise TypeError(f"task module {module.__name__} lacks {', '.join(missing)} (see analysis.experiments.tasks)")
    doc = (module.__doc__ or "").strip().split("\n")[0]
    return Task(module.NAME, module.make_units, module.run_unit, getattr(module, "summarize", None),
                getattr(module, "DEFAULT_MODEL", None), doc)


def get_task(name: str) -> Task:
    """The registered task ``name`` (KeyError listing the known ones)."""
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    path, _, attr = TASKS[name].partition(":")
    try:
        module = import_module(path)
    except ModuleNotFoundError as e:
        raise KeyError(f"task {name!r} is registered but its module {path} is not available ({e})") from e
    return getattr(module, attr) if attr else task_from_module(module)


# --------------------------------------------------------------------------- shared helpers
def _dataset_texts(dataset: str, n: int, seed: int) -> list[str]:
    """``n`` seeded test texts of ``dataset`` (uncut: the unit cuts them for its model)."""
    from analysis.data import load_dataset

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return list(load_dataset(dataset, "test").sample(n, seed=seed).texts)


def _text_units(dataset: str, n: int, seed: int, max_tokens: int | None, settings: dict) -> list[dict]:
    return [{"id": f"{dataset}:{i}", "dataset": dataset, "text_id": i, "text": t, "max_tokens": max_tokens,
             "cut": True, **settings} for i, t in enumerate(_dataset_texts(dataset, n, seed))]


def _unit_text(model: TracedModel, unit: dict) -> str:
    """The unit's text, cut to ``max_tokens`` (default: the model's limit) unless already cut."""
    from analysis.experiments.common import capped

    if not unit.get("cut", True):
        return unit["text"]
    return capped(model, unit["text"], min(unit.get("max_tokens") or model.max_length, model.max_length))


# --------------------------------------------------------------------------- explanations
def _explanation_units(*, dataset: str, n: int, seed: int = 0, max_tokens: int | None = None,
                       layers: Any = (-1,), heads: Any = (0, "all"), max_set_size: int = 3, removal: str = "delete",
                       algorithm: str = "icd", alpha: float = 0.01, n_samples: Any = None,
                       nodes: str = "content") -> list[dict]:
    return _text_units(dataset, n, seed, max_tokens, dict(
        layers=list(layers) if isinstance(layers, (list, tuple)) else [layers],
        heads=list(heads) if isinstance(heads, (list, tuple)) else [heads], max_set_size=int(max_set_size),
        removal=removal, algorithm=algorithm, alpha=float(alpha), n_samples=n_samples, nodes=nodes))


def _explanation_rows(model: TracedModel, unit: dict) -> list[dict]:
    """Rows of one text: every layer x head of ``unit`` (see ``abcd_sentiment.explanation_row``)."""
    from analysis import abcd
    from analysis.experiments.abcd_sentiment import _head_value, explanation_row

    text = _unit_text(model, unit)
    rows = []
    for lay in unit["layers"]:
        for h in unit["heads"]:
            e = abcd.explain(model, text, layer=int(lay) % model.n_layers, head=_head_value(h),
                             algorithm=unit["algorithm"], alpha=unit["alpha"], n_samples=unit["n_samples"],
                             nodes=unit["nodes"], max_set_size=unit["max_set_size"], removal=unit["removal"])
            rows.append({"dataset": unit["dataset"], "text_id": unit["text_id"],
                         **explanation_row(e, max_set_size=unit["max_set_size"])})
    return rows


def _explanation_summary(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    from analysis.experiments.abcd_sentiment import summarize_explanations

    return {"summary": summarize_explanations(df)}


EXPLANATIONS = Task("explanations", _explanation_units, _explanation_rows, _explanation_summary, None,
                    "CLEANN explanation sets vs the raw-attention baseline, per sentence x layer x head")


# --------------------------------------------------------------------------- graph sweep
def _sweep_units(*, dataset: str, n: int, seed: int = 0, max_tokens: int | None = None, alphas: Any = None,
                 n_samples: Any = None, layer: int = -1, head: Any = 0, algorithm: str = "icd",
                 nodes: str = "content", explain: bool = False, max_set_size: int = 2,
                 removal: str = "delete") -> list[dict]:
    from analysis.experiments.abcd_sentiment import DEFAULT_ALPHAS, DEFAULT_N_SAMPLES

    return _text_units(dataset, n, seed, max_tokens, dict(
        alphas=[float(a) for a in (alphas or DEFAULT_ALPHAS)], n_samples=list(n_samples or DEFAULT_N_SAMPLES),
        layer=int(layer), head=head, algorithm=algorithm, nodes=nodes, explain=bool(explain),
        max_set_size=int(max_set_size), removal=removal))


def _sweep_rows(model: TracedModel, unit: dict) -> list[dict]:
    """Rows of one text: every alpha x n_samples (graph density; CLEANN sets with ``explain``)."""
    import time

    import numpy as np

    from analysis import abcd
    from analysis.experiments.abcd_sentiment import _n_samples_label

    text = _unit_text(model, unit)
    trace = model.trace(text)
    layer, head = unit["layer"], unit["head"]
    rows = []
    for a in unit["alphas"]:
        for ns in unit["n_samples"]:
            start = time.perf_counter()
            g = abcd.learn_graph(trace, layer=layer, head=head, algorithm=unit["algorithm"], alpha=a, n_samples=ns,
                                 nodes=unit["nodes"])
            p = g.n_nodes
            row = {"dataset": unit["dataset"], "text_id": unit["text_id"], "alpha": float(a),
                   "n_samples_label": _n_samples_label(ns), "n_samples": float(g.n_samples),
                   "n_tokens": trace.n_tokens, "n_nodes": p, "n_edges": len(g), "density": len(g) / (p * (p - 1) / 2),
                   "n_tests": g.n_tests, "graph_seconds": time.perf_counter() - start}
            if unit["explain"]:
                e = abcd.explain(model, text, layer=layer, head=head, algorithm=unit["algorithm"], alpha=a,
                                 n_samples=ns, nodes=unit["nodes"], max_set_size=unit["max_set_size"],
                                 removal=unit["removal"])
                row.update(cleann_found=e.size is not None, cleann_size=float(e.size) if e.size else np.nan,
                           cleann_calls=len(e.checks))
            rows.append(row)
    return rows


def _sweep_summary(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    cols = {"density": "mean", "n_edges": "mean"}
    if "cleann_found" in df.columns:
        cols.update(cleann_found="mean", cleann_size="mean")
    return {"summary": df.groupby(["dataset", "alpha", "n_samples_label"], sort=False).agg(cols).reset_index()}


GRAPH_SWEEP = Task("graph_sweep", _sweep_units, _sweep_rows, _sweep_summary, None,
                   "graph density (and CLEANN sets) over alpha x n_samples, per sentence")


# --------------------------------------------------------------------------- efficient attention
def _efficient_units(*, dataset: str, n: int, seed: int = 0, max_tokens: int | None = None, layer: int = -1,
                     basis: str = "value", outputs: bool = True) -> list[dict]:
    units = _text_units(dataset, n, seed, max_tokens, dict(layer=int(layer), basis=basis, outputs=bool(outputs)))
    for u in units:
        u["seed"] = seed + u["text_id"]
    return units


def _efficient_rows(model: TracedModel, unit: dict) -> list[dict]:
    """One record of one text: ``efficient_claims.measure`` as lists (see ``measure_record``)."""
    from analysis.experiments.efficient_claims import measure, measure_record

    run = measure(model, _unit_text(model, unit), layer=unit["layer"], seed=unit["seed"], basis=unit["basis"],
                  outputs=unit["outputs"])
    return [{"dataset": unit["dataset"], "text_id": unit["text_id"], "basis": unit["basis"], **measure_record(run)}]


def _efficient_summary(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    from analysis.experiments import efficient_claims as ec

    out = {}
    for (dataset, basis), g in df.groupby(["dataset", "basis"], sort=False):
        runs = ec.records_to_runs(g)
        out.setdefault("nullity", []).append(ec.nullity_table(runs, dataset=dataset, basis=basis))
        if "original" in g.columns and g["original"].notna().all():
            out.setdefault("outputs", []).append(ec.output_table(runs, dataset=dataset, basis=basis))
    tables = {k: pd.concat(v, ignore_index=True) for k, v in out.items()}
    summary = {"nullity_summary": ec.nullity_summary(tables["nullity"])}
    if "outputs" in tables:
        summary["wasserstein"] = ec.wasserstein_table(tables["outputs"])
    return summary


EFFICIENT = Task("efficient", _efficient_units, _efficient_rows, _efficient_summary, None,
                 "nullity of every head; outputs under efficient / null-space edits (Wasserstein table)")


def _adversarial_units(*, dataset: str, n: int, seed: int = 0, max_tokens: int | None = 64, layer: int = -1,
                       head: int = 0, k: int = 5, eps: float = 0.01, steps: int = 500,
                       basis: str = "value") -> list[dict]:
    units = _text_units(dataset, n, seed, max_tokens, dict(layer=int(layer), head=int(head), k=int(k),
                                                           eps=float(eps), steps=int(steps), basis=basis))
    for u in units:
        u["seed"] = seed + u["text_id"]
    return units


def _adversarial_rows(model: TracedModel, unit: dict) -> list[dict]:
    from analysis.experiments.efficient_claims import adversary_rows

    return adversary_rows(model, _unit_text(model, unit), unit["text_id"], layer=unit["layer"] % model.n_layers,
                          head=unit["head"], k=unit["k"], eps=unit["eps"], steps=unit["steps"], seed=unit["seed"],
                          basis=unit["basis"], dataset=unit["dataset"], model_name=unit.get("model_name", ""))


def _adversarial_summary(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    from analysis.experiments.efficient_claims import adversarial_ci, adversarial_summary

    return {"summary": adversarial_summary(df), "ci": adversarial_ci(df)}


ADVERSARIAL = Task("adversarial", _adversarial_units, _adversarial_rows, _adversarial_summary, None,
                   "Jain & Wallace adversaries vs efficient attention, per text")
