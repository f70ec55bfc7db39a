"""Dataset-scale experiments: each returns a tidy ``pandas.DataFrame`` (one row per unit
measured), which ``save_table`` writes atomically and ``analysis.figures.paper`` draws.

Every one runs through one runner, :func:`run` (:mod:`analysis.experiments.runner`):
in-process, joblib processes (``workers=N``) or Dask (``scheduler=``), results streamed to
resumable Parquet chunks (``out=``). Tasks are registered by name in
:mod:`analysis.experiments.tasks`; ``python -m analysis.experiments --help`` lists them.

- :mod:`analysis.experiments.abcd_sentiment`: CLEANN explanations vs the attention baseline,
  per layer and head; the alpha x n_samples sweep (graph density, explanation size).
- :mod:`analysis.experiments.efficient_claims`: nullity vs length, efficient / null-shifted
  outputs and the Wasserstein table, adversarial attention vs efficient attention.
- :mod:`analysis.experiments.paper`: the paper-figure registry (``FIGURES``) shared by
  ``python -m analysis.figures`` and ``notebooks/05_paper_figures.ipynb``.

Submodules load on first use (``import analysis.experiments`` stays light).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from analysis.experiments.common import capped, fast_mode, sample_texts, save_table

__all__ = ["save_table", "sample_texts", "capped", "fast_mode", "run", "load_results", "status", "summarize",
           "get_task", "task_names", "Task", "abcd_sentiment", "efficient_claims", "paper", "runner", "tasks"]

_LAZY = {"run": "runner", "load_results": "runner", "status": "runner", "summarize": "runner",
         "get_task": "tasks", "task_names": "tasks", "Task": "tasks"}


def __getattr__(name: str) -> Any:
    if name in ("abcd_sentiment", "efficient_claims", "paper", "runner", "tasks"):
        return import_module(f"analysis.experiments.{name}")
    if name in _LAZY:
        return getattr(import_module(f"analysis.experiments.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'analysis.experiments' has no attribute {name!r}")
