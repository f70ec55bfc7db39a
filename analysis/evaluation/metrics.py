"""Per-input metrics of one explainer: ERASER faithfulness of its ranking, agreement with the
exhaustive minimum, and the tidy row that keeps censored results.

ERASER (DeYoung et al. 2020), for the top ``q`` share of the candidate tokens by the ranking
(``k = max(1, ceil(q * n_candidates))``), with ``p`` the probability of the original class:

- comprehensiveness(q) = p(x) - p(x without the top-k tokens);
- sufficiency(q) = p(x) - p(x keeping only the top-k tokens): every other non-special token
  (punctuation included) is removed, special tokens stay;
- AOPC = the mean of either over ``FRACTIONS`` (1, 5, 10, 20, 50%).

Removal is ``removal`` ("delete" by default); report it with every table. All 10 perturbed
inputs are checked in one batched ``model.predict``.

Against known causes (:func:`cause_scores`; the synthetic recommendation data plants them): the
first flipping set ``S`` a method returns against the set ``T`` of true cause positions,
precision ``|S & T| / |S|`` and recall ``|S & T| / |T|`` (NaN when the method found no set, or,
for recall, when ``T`` is empty), and ``cause_recovered`` (1 when the method found a set that
holds a true cause, 0 otherwise, censored inputs included; NaN when ``T`` is empty).
:func:`new_top1_ranks`: for a found set, the rank of the new top-1 in the original output.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from analysis.evaluation.explainers import MethodResult
from analysis.types import Removal

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["FRACTIONS", "eraser", "exhaustive_agreement", "result_row", "cause_scores", "new_top1_ranks"]

FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)


def _top(ranking: Sequence[int], q: float) -> list[int]:
    return sorted(ranking[: max(1, math.ceil(q * len(ranking)))])


def eraser(model: TracedModel, text: Any, ranking: Sequence[int], *, removable: Sequence[int], original: int | None = None,
           removal: Removal = "delete", fractions: Sequence[float] = FRACTIONS) -> dict[str, float]:
    """Comprehensiveness and sufficiency at each fraction and their AOPCs, for ``ranking`` (candidate
    positions, most important first); ``removable``: every non-special position (what sufficiency
    removes outside the top-k). Keys ``comp_<pct>``, ``suff_<pct>``, ``aopc_comp``, ``aopc_suff``."""
    if not len(ranking):
        raise ValueError("ERASER metrics need a non-empty ranking")
    if any(not 0 < q <= 1 for q in fractions):
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    p0 = model.predict([text])[0]
    y = int(np.argmax(p0)) if original is None else int(original)
    tops = [_top(ranking, q) for q in fractions]
    rest = [sorted(set(removable) - set(t)) for t in tops]
    removes = tops + rest
    keep = [i for i, r in enumerate(removes) if r]            # removing nothing is the original input
    probs = np.full(len(removes), float(p0[y]))
    if keep:
        out = model.predict([text] * len(keep), remove=[removes[i] for i in keep], removal=removal)
        probs[keep] = out[:, y]
    n = len(fractions)
    row: dict[str, float] = {}
    for j, q in enumerate(fractions):
        row[f"comp_{round(100 * q)}"] = float(p0[y] - probs[j])
        row[f"suff_{round(100 * q)}"] = float(p0[y] - probs[n + j])
    row["aopc_comp"] = float(np.mean([p0[y] - probs[j] for j in range(n)]))
    row["aopc_suff"] = float(np.mean([p0[y] - probs[n + j] for j in range(n)]))
    return row


def exhaustive_agreement(result: MethodResult, truth: MethodResult) -> dict[str, Any]:
    """Whether ``result`` reached the exhaustive minimum: ``exact_size`` (same smallest size;
    None when exhaustive search found none) and ``exact_set`` (one of its sets is a true minimal set)."""
    if truth.method != "exhaustive":
        raise ValueError(f"truth must be an exhaustive search result, not {truth.method!r}")
    if truth.size is None:
        return {"exhaustive_size": np.nan, "exact_size": None, "exact_set": None}
    minimal = set(truth.sets)
    return {"exhaustive_size": float(truth.size), "exact_size": result.size == truth.size,
            "exact_set": any(tuple(sorted(s)) in minimal for s in result.sets)}


def result_row(r: MethodResult, tokens: Sequence[str] | None = None) -> dict[str, Any]:
    """The tidy record of one result: censored size (``found``, ``size`` NaN when not found,
    ``censored_at`` = largest size fully searched, inf when the method can propose nothing
    more), why it stopped, its budget, calls and seconds."""
    first = r.sets[0] if r.sets else ()
    return {
        "method": r.method, "head": r.head, "found": r.found,
        "size": float(r.size) if r.found else np.nan, "censored_at": r.censored_at if not r.found else np.nan,
        "status": r.status, "stopped": r.stopped, "searched_size": r.searched_size,
        "n_sets": len(r.sets), "set": " ".join(map(str, first)),
        "words": " ".join(tokens[i] for i in first) if tokens is not None else "",
        "n_candidates": len(r.candidates), "calls": r.calls, "ranking_calls": r.ranking_calls,
        "total_calls": r.calls + r.ranking_calls, "seconds": r.seconds,
        "budget_calls": r.budget.max_calls if r.budget.max_calls is not None else np.nan,
        "budget_size": r.budget.max_set_size if r.budget.max_set_size is not None else np.nan,
        "budget": str(r.budget),
    }


def cause_scores(found_set: Sequence[int] | None, causes: Sequence[int], prefix: str = "cause") -> dict[str, Any]:
    """Precision / recall of a method's first flipping set ``found_set`` (None: it found none)
    against the true cause positions ``causes`` (see the module docstring): keys ``<prefix>_n``
    (|T|), ``<prefix>_precision``, ``<prefix>_recall``, ``<prefix>_recovered``."""
    truth = {int(c) for c in causes}
    out: dict[str, Any] = {f"{prefix}_n": len(truth), f"{prefix}_precision": np.nan,
                           f"{prefix}_recall": np.nan, f"{prefix}_recovered": np.nan if not truth else 0.0}
    if found_set is None:
        return out
    chosen = {int(c) for c in found_set}
    if not chosen:
        raise ValueError("a found flipping set is never empty; pass None for a method that found none")
    hit = len(chosen & truth)
    out[f"{prefix}_precision"] = hit / len(chosen)
    if truth:
        out[f"{prefix}_recall"] = hit / len(truth)
        out[f"{prefix}_recovered"] = float(hit > 0)
    return out


def new_top1_ranks(model: TracedModel, text: Any, sets: Sequence[Sequence[int] | None], *,
                   removal: Removal = "delete", original_probs: np.ndarray | None = None) -> list[float]:
    """Per set (None: the method found none): the rank (1 = top) of the new top-1 after removing
    it, in the original output's ranking (ties: lower index first); NaN for None. One batched
    ``model.predict`` for all sets."""
    p0 = model.predict([text])[0] if original_probs is None else np.asarray(original_probs)
    found = [i for i, s in enumerate(sets) if s is not None]
    ranks = [np.nan] * len(sets)
    if not found:
        return ranks
    probs = model.predict([text] * len(found), remove=[[int(v) for v in sets[i]] for i in found], removal=removal)
    for i, p in zip(found, probs):
        k = int(np.argmax(p))
        ranks[i] = float(1 + np.sum(p0 > p0[k]) + np.sum(p0[:k] == p0[k]))
    return ranks
