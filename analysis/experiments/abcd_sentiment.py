"""ABCD's sentiment experiment at dataset scale: CLEANN explanation sets vs the raw-attention
baseline, per layer and head, and how alpha and n_samples change the graph and the sets.

Every function takes a model and a list of texts and returns a tidy ``DataFrame``:

- :func:`explanation_table`: one row per (text, layer, head): CLEANN's set size (NaN: nothing
  within the budget flips the prediction; ``cleann_censored_at`` and ``cleann_stopped`` say
  how far it searched and which budget ran out), the baseline's (top-k by the target's raw
  attention, uncapped: ``baseline_size_any``; ``baseline_found`` within ``max_set_size``),
  model calls, seconds, the budget.
- :func:`summarize_explanations`: per (dataset, layer, head), over every sentence: flip rates
  with intervals, Kaplan-Meier median sizes, censoring-aware smaller / equal / larger /
  undecided counts and a sign test (the full protocol: :mod:`analysis.experiments.faithfulness`).
- :func:`graph_sweep`: one row per (text, alpha, n_samples): nodes, edges, density, and with
  ``explain=True`` the CLEANN set size and flip.

Heads are stored as strings ("0", "11", "all") so tables round-trip through CSV.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd

from analysis import abcd

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

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


def explanation_row(e: abcd.Explanation, *, max_set_size: int | None = None) -> dict[str, Any]:
    """The tidy record of one :class:`analysis.abcd.Explanation` (no text id).

    Nothing is censored away: ``cleann_censored_at`` / ``baseline_censored_at`` say up to which
    size a method showed nothing flips when it found no set (inf: it had nothing more to
    propose), ``cleann_stopped`` which budget ran out, ``budget`` the budget itself, and
    ``baseline_size_any`` the uncapped baseline's size. ``baseline_found`` / ``baseline_size``
    keep the baseline within CLEANN's ``max_set_size`` (the same cap, for size histograms)."""
    cap = e.budget.max_set_size if max_set_size is None else max_set_size
    b = e.baseline.size
    found_b = b is not None and (cap is None or b <= cap)
    base_all = len(e.baseline.checks) == len(e.baseline.ranking)
    return {
        "layer": int(e.settings["layer"]), "head": _head_key(e.settings["head"]),
        "n_tokens": len(e.tokens), "n_nodes": e.graph.n_nodes, "n_edges": len(e.graph),
        "prediction": e.prediction,
        "cleann_found": e.size is not None, "cleann_size": float(e.size) if e.size is not None else np.nan,
        "cleann_censored_at": np.nan if e.size is not None else (
            np.inf if e.stopped == "exhausted" else float(e.searched_size)),
        "cleann_stopped": e.stopped, "cleann_n_sets": len(e.sets),
        "cleann_set": " ".join(e.words[0]) if e.sets else "",
        "baseline_found": found_b, "baseline_size": float(b) if found_b else np.nan,
        "baseline_found_any": b is not None, "baseline_size_any": float(b) if b is not None else np.nan,
        "baseline_censored_at": np.nan if b is not None else (np.inf if base_all else float(len(e.baseline.checks))),
        "baseline_set": " ".join(e.tokens[i] for i in e.baseline.set) if b is not None else "",
        "cleann_calls": len(e.checks), "baseline_calls": len(e.baseline.checks),
        "seconds": e.seconds, "algorithm": e.settings["algorithm"], "alpha": e.settings["alpha"],
        "n_samples": float(e.settings["n_samples"]), "removal": e.settings["removal"],
        "max_set_size": cap if cap is not None else np.nan, "budget": str(e.budget),
    }


def explanation_table(model: TracedModel, texts: Sequence[str], *, layers: Iterable[int] = (-1,),
                      heads: Iterable[int | str] = (0, "all"), max_set_size: int = 3, removal: str = "delete",
                      algorithm: str = "icd", alpha: float = 0.01, n_samples: float | str | None = None,
                      nodes: str = "content", dataset: str = "", progress: bool = False, workers: int = 1,
                      scheduler: Any = None, out: Any = None) -> pd.DataFrame:
    """CLEANN vs the attention baseline for every text x layer x head (target: the model's
    default target, [CLS] for encoders). One row per explanation; see :func:`explanation_row`.
    One unit per text through the runner (``workers``, ``scheduler``, ``out``: see
    :func:`analysis.experiments.run`; the default runs in-process)."""
    texts = list(texts)
    if not texts:
        raise ValueError("explanation_table needs at least one text")
    settings = dict(layers=[int(lay) % model.n_layers for lay in layers], heads=[_head_value(h) for h in heads],
                    max_set_size=max_set_size, removal=removal, algorithm=algorithm, alpha=alpha,
                    n_samples=n_samples, nodes=nodes)
    return _through_runner("explanations", model, texts, dataset, settings, progress=progress, workers=workers,
                           scheduler=scheduler, out=out)


def _through_runner(task: str, model: TracedModel, texts: list[str], dataset: str, settings: dict, *, progress: bool,
                    workers: int, scheduler: Any, out: Any) -> pd.DataFrame:
    """One unit per (already cut) text of ``task``; the runner's table without its bookkeeping
    columns; an error if a unit failed (finished units stay in ``out``)."""
    from analysis.experiments.runner import completed_rows, run
    from analysis.experiments.tasks import get_task

    units = [{"id": str(i), "dataset": dataset, "text_id": i, "text": t, "cut": False, **settings}
             for i, t in enumerate(texts)]
    df = run(get_task(task), units, workers=workers, scheduler=scheduler, out=out, model=model, progress=progress,
             settings={"texts": "given", "n": len(texts), "dataset": dataset, **settings})
    return completed_rows(df)


def summarize_explanations(df: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Per (dataset, layer, head), over every sentence (censored ones kept): flip rates of CLEANN
    (within its budget) and of the uncapped attention baseline with bootstrap 95% intervals,
    Kaplan-Meier median sizes (inf: more than half never flipped within the budget), CLEANN
    smaller / equal / larger / undecided than the baseline (censoring-aware,
    :func:`analysis.evaluation.compare_censored`) with the sign-test p-value, calls and seconds."""
    from scipy.stats import binomtest

    from analysis.evaluation import bootstrap_ci, compare_censored, km_median

    def one(g: pd.DataFrame) -> pd.Series:
        cs, cc = g.cleann_size.to_numpy(float), g.cleann_censored_at.to_numpy(float)
        bs, bc = g.baseline_size_any.to_numpy(float), g.baseline_censored_at.to_numpy(float)
        out = [compare_censored(*v) for v in zip(cs, cc, bs, bc)]
        n = {k: out.count(k) for k in ("smaller", "equal", "larger", "undecided")}
        decided = n["smaller"] + n["larger"]
        cf, cf_lo, cf_hi = bootstrap_ci(g.cleann_found.astype(float), seed=seed)
        bf, bf_lo, bf_hi = bootstrap_ci(g.baseline_found_any.astype(float), seed=seed)
        return pd.Series({
            "sentences": len(g), "cleann_found": cf, "cleann_found_low": cf_lo, "cleann_found_high": cf_hi,
            "baseline_found": bf, "baseline_found_low": bf_lo, "baseline_found_high": bf_hi,
            "cleann_median": km_median(cs, cc), "baseline_median": km_median(bs, bc), **n,
            "sign_test_p": binomtest(n["smaller"], decided, 0.5).pvalue if decided else np.nan,
            "calls": float((g.cleann_calls + g.baseline_calls).mean()), "seconds": float(g.seconds.mean()),
            "budget": "; ".join(sorted(g.budget.astype(str).unique()))})

    if df.empty:
        raise ValueError("no explanations to summarise")
    keys = [k for k in ("dataset", "layer", "head") if k in df.columns]
    out = df.groupby(keys, sort=False).apply(one, include_groups=False).reset_index()
    return out.astype({"sentences": int, "smaller": int, "equal": int, "larger": int, "undecided": int})


def _n_samples_label(choice: float | str) -> str:
    return choice if isinstance(choice, str) else f"{choice:g}"


def graph_sweep(model: TracedModel, texts: Sequence[str], *, alphas: Sequence[float] = DEFAULT_ALPHAS,
                n_samples: Sequence[float | str] = DEFAULT_N_SAMPLES, layer: int = -1, head: int | str = 0,
                algorithm: str = "icd", nodes: str = "content", explain: bool = False, max_set_size: int = 2,
                removal: str = "delete", dataset: str = "", progress: bool = False, workers: int = 1,
                scheduler: Any = None, out: Any = None) -> pd.DataFrame:
    """Graph density (edges / possible pairs over the node set) for every text x alpha x
    n_samples; with ``explain`` also CLEANN's set size and whether it flips (one ``explain``
    per setting, so much slower). ``n_samples`` entries: numbers, "head" or "hidden".
    One unit per text through the runner (``workers``, ``scheduler``, ``out``)."""
    texts = list(texts)
    if not texts or not alphas or not n_samples:
        raise ValueError("graph_sweep needs texts, alphas and n_samples")
    settings = dict(alphas=[float(a) for a in alphas], n_samples=list(n_samples), layer=layer, head=head,
                    algorithm=algorithm, nodes=nodes, explain=bool(explain), max_set_size=max_set_size,
                    removal=removal)
    return _through_runner("graph_sweep", model, texts, dataset, settings, progress=progress, workers=workers,
                           scheduler=scheduler, out=out)
