"""All requested explainers on one input, with their metrics, as tidy rows."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from analysis.abcd import Budget
from analysis.evaluation.explainers import (
    HEAD_METHODS,
    MAX_EXHAUSTIVE,
    METHODS,
    candidates_of,
    input_trace,
    methods_for,
    run_method,
    seed_of,
)
from analysis.evaluation.memo import RememberingModel
from analysis.evaluation.metrics import eraser, exhaustive_agreement, result_row
from analysis.types import NodeSet, Removal

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["evaluate_input", "check_methods"]


def check_methods(methods: Sequence[str], model: Any = None) -> list[str]:
    """The method names, validated (non-empty, known, no duplicates; with ``model``: offered
    for it, see :func:`analysis.evaluation.methods_for`)."""
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    if not methods:
        raise ValueError(f"give at least one method; choose from {', '.join(METHODS)}")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    if model is not None:
        offered = methods_for(model)
        missing = [m for m in methods if m not in offered]
        if missing:
            what = "recommender" if getattr(model, "kind", None) == "recommender" else "model"
            raise ValueError(f"method(s) {missing} are not offered for this {what} (no differentiable input "
                             f"embeddings to attribute to); choose from {', '.join(offered)}")
    return list(dict.fromkeys(methods))


def evaluate_input(model: TracedModel, text: Any, *, methods: Sequence[str] = METHODS, budget: Budget | None = None,
                   heads: Sequence[int | str] = (0, "all"), layer: int = -1, removal: Removal = "delete",
                   nodes: NodeSet = "content", seed: int = 0, max_exhaustive: int = MAX_EXHAUSTIVE,
                   metrics: bool = True, ig_steps: int = 32, remember: bool = True, **cleann_options: Any
                   ) -> list[dict[str, Any]]:
    """One row per method x head on ``text`` (see :func:`analysis.evaluation.metrics.result_row`),
    plus ERASER metrics for every method that ranks tokens (``metrics``), and agreement with the
    exhaustive minimum when exhaustive search ran (inputs with at most ``max_exhaustive``
    candidates; on longer inputs exhaustive search is skipped, not an error). Random search gets
    CLEANN's calls per size for the same head (the budget alone when CLEANN is not run), seeded
    from ``seed`` and the head. For a recommender ``text`` is a history; every method reads the
    abductive trace (:func:`analysis.evaluation.input_trace`) and ERASER removes history items.

    With ``remember`` (the default) the methods share one memory of removal checks on this input
    (:class:`analysis.evaluation.memo.RememberingModel`): a set one method checked is not run
    through the model again for another. Each method's ``calls`` still count every set it
    checked; ``input_forward_passes`` on every row counts the perturbed inputs actually run."""
    methods = check_methods(methods, model)
    budget = Budget() if budget is None else budget
    if not heads and any(m in HEAD_METHODS for m in methods):
        raise ValueError("give at least one head (an int or 'all') for the head methods")
    start = time.perf_counter()
    if remember and not isinstance(model, RememberingModel):
        model = RememberingModel(model)
    trace, target = input_trace(model, text)
    # the output explained: the class, or the recommended item (appended in the abductive trace)
    original = trace.appended if getattr(trace, "appended", None) is not None else trace.prediction
    cands = candidates_of(trace, target, nodes)
    common = dict(layer=layer, removal=removal, nodes=nodes, trace=trace, target=target)
    results = []
    for head in heads:
        cleann = None
        if "cleann" in methods:
            cleann = run_method("cleann", model, text, budget, head=head, **common, **cleann_options)
            results.append(cleann)
        for m in ("attention", "efficient_attention"):
            if m in methods:
                results.append(run_method(m, model, text, budget, head=head, **common))
        if "random" in methods:
            results.append(run_method("random", model, text, budget, head=head, seed=seed_of(seed, head),
                                      calls_by_size=None if cleann is None else cleann.calls_by_size, **common))
    for m in ("rollout", "grad_x_input", "integrated_gradients", "leave_one_out"):
        if m in methods:
            results.append(run_method(m, model, text, budget, ig_steps=ig_steps, **common))
    truth = None
    if "exhaustive" in methods and len(cands) <= max_exhaustive:
        truth = run_method("exhaustive", model, text, budget, max_exhaustive=max_exhaustive, **common)
        results.append(truth)
    # what ERASER may remove: every non-special token (a recommender: every history item)
    removable = (list(range(len(trace.text))) if getattr(model, "abductive", False)
                 else [i for i in range(trace.n_tokens) if not trace.special[i]])
    rows = []
    for r in results:
        row = result_row(r, trace.tokens)
        row.update(n_tokens=trace.n_tokens, layer=trace.check_head(layer, 0)[0], removal=removal,
                   prediction=original)
        if truth is not None:
            row.update(exhaustive_agreement(r, truth))
        if metrics and r.ranking:
            row.update(eraser(model, trace.text, r.ranking, removable=removable, original=original,
                              removal=removal))
        row.update({f"extra_{k}": v for k, v in r.extra.items()})
        rows.append(row)
    for row in rows:
        row["input_seconds"] = time.perf_counter() - start
        if isinstance(model, RememberingModel):
            row["input_forward_passes"] = model.misses
    return rows
