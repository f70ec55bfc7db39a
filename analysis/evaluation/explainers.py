"""Every explainer behind one interface: ``run_method(name, model, text, budget, ...)``.

A method gets the model, one input and a :class:`~analysis.abcd.Budget` of model calls and
returns a :class:`MethodResult`: ranked candidate positions and/or flipping sets, the smallest
flipping set it found as a *censored* value ("found at k" or "not found within budget B"),
the model calls it spent and the seconds it took.

"Model calls" are candidate inputs checked (one forward pass of one perturbed input);
``calls`` counts those spent searching for a flipping set (what the budget bounds);
``ranking_calls`` counts passes spent building a ranking before that (leave-one-out's
removals; the forward+backward passes of gradient x input and integrated gradients).
Ranking methods search the prefixes of their ranking (top-1, top-2, ...) for the first that
flips the prediction, in batches of :data:`analysis.abcd.CHUNK`; ``calls`` counts the prefixes
up to the first flip, as if checked one by one.

Candidates are the tokens CLEANN may use: the node set (``nodes="content"``: no special tokens
or punctuation) without the target ([CLS] for encoders).

Recommenders (``model.abductive``, e.g. BERT4Rec) are explained as ``analysis.abcd.explain``
does: the input is a history (item ids), every trace-based method (CLEANN, the attention rows,
rollout) reads the abductive trace (the history with the recommended top-1 appended; the target
is that appended item), candidates are the history positions, and every check re-ranks the
history without a set. The gradient methods attribute p(recommended item) at the [MASK] query
to the item embeddings of the history (captum on ``module.get_input_embeddings()``; integrated
gradients from [PAD] items, whose embedding is the zero vector). :func:`methods_for` says which
methods a model offers.
"""
from __future__ import annotations

import itertools
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from analysis import abcd
from analysis.abcd import Budget
from analysis.types import NodeSet, Removal

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["METHODS", "RANKING_METHODS", "GRADIENT_METHODS", "MAX_EXHAUSTIVE", "MethodResult", "run_method",
           "candidates_of", "cleann_ranking", "seed_of", "input_trace", "methods_for"]

#: exhaustive search refuses inputs with more candidate tokens than this (2^14 - 1 subsets)
MAX_EXHAUSTIVE = 14
METHODS = ("cleann", "attention", "efficient_attention", "rollout", "grad_x_input", "integrated_gradients",
           "leave_one_out", "random", "exhaustive")
#: methods whose flipping set comes from a token ranking (prefix search)
RANKING_METHODS = ("attention", "efficient_attention", "rollout", "grad_x_input", "integrated_gradients",
                   "leave_one_out")
#: methods that read one head (or the pooled layer, ``head="all"``)
HEAD_METHODS = ("cleann", "attention", "efficient_attention", "random")
#: methods that need gradients through the model's input embeddings (captum)
GRADIENT_METHODS = ("grad_x_input", "integrated_gradients")


@dataclass(frozen=True)
class MethodResult:
    """One explainer on one input: its ranking and/or flipping sets, the censored smallest size."""

    method: str
    head: str                         # "0".."H-1", "all", or "" (methods that read no head)
    budget: Budget
    candidates: tuple[int, ...]       # positions the method may remove
    ranking: tuple[int, ...] | None   # candidates, most important first (None: the method does not rank)
    sets: tuple[tuple[int, ...], ...]  # flipping sets of the smallest size found (sorted positions)
    size: int | None                  # that size; None: not found within the budget
    stopped: str                      # analysis.abcd.STOP_REASONS
    searched_size: int                # every set this method proposes up to this size was checked
    calls: int                        # candidate inputs checked in the flipping-set search
    ranking_calls: int = 0            # passes spent building the ranking
    calls_by_size: dict = field(default_factory=dict)   # {k: checks of size k}
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.size is not None

    @property
    def censored_at(self) -> float:
        """The size below which this method showed nothing flips (inf: it can propose nothing more)."""
        return math.inf if self.stopped == "exhausted" else float(self.searched_size)

    @property
    def status(self) -> str:
        if self.found:
            return f"found at {self.size}"
        return f"not found within budget ({self.budget}; stopped: {self.stopped})"

    def __str__(self) -> str:
        h = f" head {self.head}" if self.head else ""
        return f"{self.method}{h}: {self.status}; {self.calls} calls + {self.ranking_calls} for the ranking"


def seed_of(*parts: Any) -> int:
    """A stable 32-bit seed from any values (e.g. a unit id and a method name)."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def _gradient_support(model: Any) -> str | None:
    """None when captum can attribute to ``model``'s input embeddings, else why not."""
    if getattr(model, "kind", None) == "recommender":
        module = getattr(model, "module", None)
        if module is None or not hasattr(module, "get_input_embeddings"):
            return "this recommender exposes no item-embedding layer (module.get_input_embeddings) to attribute to"
        return None
    if getattr(model, "kind", None) != "transformer" or getattr(model, "task", None) != "sequence-classification":
        return ("gradient x input and integrated gradients need a Hugging Face sequence classifier "
                "(analysis.load_model) or a recommender with item embeddings; this model is neither")
    return None


def methods_for(model: Any) -> tuple[str, ...]:
    """The methods of :data:`METHODS` that ``model`` offers: every one, except the gradient
    methods for models without differentiable input embeddings (fakes, attention-only models)."""
    return tuple(m for m in METHODS if m not in GRADIENT_METHODS or _gradient_support(model) is None)


def input_trace(model: TracedModel, text: Any, original: int | None = None) -> tuple[Any, int]:
    """The trace the explainers read and its target: for an abductive model (a recommender) the
    history traced with its top-1 ``original`` appended (default: the model's top-1) and the
    appended position; otherwise ``model.trace(text)`` and :func:`analysis.abcd.default_target`."""
    if getattr(model, "abductive", False):
        if original is None:
            original = int(np.argmax(model.predict([text])[0]))
        trace, target = model.explanation_trace(text, int(original))
        return trace, int(target)
    trace = model.trace(text)
    return trace, abcd.default_target(trace)


def candidates_of(trace: Any, target: int, nodes: NodeSet | Sequence[int] = "content") -> tuple[int, ...]:
    """The positions a method may remove: the node set without the target."""
    return tuple(i for i in abcd.select_nodes(trace, nodes, keep=[target]) if i != target)


# --------------------------------------------------------------------------- checking sets
class _Checker:
    """Batched removal checks against the original top-1, counting calls per size."""

    def __init__(self, model: TracedModel, text: Any, original: int, removal: Removal) -> None:
        self.model, self.text, self.original, self.removal = model, text, original, removal
        self.calls_by_size: dict[int, int] = {}

    def flips(self, sets: Sequence[tuple[int, ...]]) -> np.ndarray:
        """[len(sets)] bool: the top-1 changed without each set (one batched predict)."""
        if not sets:
            return np.zeros(0, dtype=bool)
        probs = self.model.predict([self.text] * len(sets), remove=[list(s) for s in sets], removal=self.removal)
        for s in sets:
            self.calls_by_size[len(s)] = self.calls_by_size.get(len(s), 0) + 1
        return probs.argmax(-1) != self.original

    @property
    def calls(self) -> int:
        return sum(self.calls_by_size.values())


def _prefix_search(check: _Checker, ranking: Sequence[int], budget: Budget
                   ) -> tuple[tuple[tuple[int, ...], ...], int | None, str, int, int]:
    """First prefix of ``ranking`` that flips: (sets, size, stopped, searched_size, calls)."""
    limit = len(ranking) if budget.max_set_size is None else min(budget.max_set_size, len(ranking))
    if budget.max_calls is not None:
        limit = min(limit, budget.max_calls)
    for s in range(0, limit, abcd.CHUNK):
        ks = range(s + 1, min(s + abcd.CHUNK, limit) + 1)
        flipped = check.flips([tuple(sorted(ranking[:k])) for k in ks])
        hit = np.flatnonzero(flipped)
        if hit.size:
            k = ks[int(hit[0])]
            return (tuple(sorted(ranking[:k])),), k, "found", k - 1, k
    if limit == len(ranking):
        stopped = "exhausted"
    elif budget.max_set_size is not None and limit == budget.max_set_size:
        stopped = "size"
    else:
        stopped = "calls"
    return (), None, stopped, limit, limit


def _subset_search(check: _Checker, by_size: Callable[[int, int | None], list[tuple[int, ...]] | None],
                   budget: Budget, n_candidates: int, quotas: dict[int, int] | None = None
                   ) -> tuple[tuple[tuple[int, ...], ...], int | None, str, int]:
    """Check sets size by size (``by_size(k, quota)`` lists them; None: none left) until some
    flip: (sets, size, stopped, searched_size). Without ``quotas`` an incomplete size (the call
    budget ran out) ends the search; with ``quotas`` ({k: sets of size k}, random search's
    share of CLEANN's calls) every size gets its quota.

    ``searched_size`` follows CLEANN's rule (:class:`analysis.abcd.Explanation`): every set this
    search proposes up to that size was checked. Without quotas a size is complete when all its
    subsets were checked; with quotas the search proposes exactly its quota at each size, so a
    size whose quota was checked is complete. (Counting only sizes whose every subset was checked
    made random search's "not found" censored below any size CLEANN found a set at, so a paired
    comparison could never call CLEANN smaller.)"""
    left = budget.max_calls
    limit = n_candidates if budget.max_set_size is None else min(budget.max_set_size, n_candidates)
    if quotas is not None:
        limit = min(limit, max((k for k, q in quotas.items() if q > 0), default=0))
    searched = 0
    for k in range(1, limit + 1):
        quota = None if quotas is None else quotas.get(k, 0)
        if left is not None:
            quota = left if quota is None else min(quota, left)
        if quota is not None and quota <= 0:
            if quotas is None or left is not None and left <= 0:
                return (), None, "calls", searched
            searched = k if searched == k - 1 else searched      # a quota of 0 proposes nothing here
            continue
        sets = by_size(k, quota)
        if sets is None:
            return (), None, "exhausted", searched
        complete = len(sets) == math.comb(n_candidates, k) or (quotas is not None and len(sets) >= quotas.get(k, 0))
        searched = k if complete and searched == k - 1 else searched
        hits: list[tuple[int, ...]] = []
        for s in range(0, len(sets), abcd.CHUNK):
            part = sets[s: s + abcd.CHUNK]
            hits += [z for z, f in zip(part, check.flips(part)) if f]
        if left is not None:
            left -= len(sets)
        if hits:
            return tuple(hits), k, "found", searched
        if not complete and quotas is None:
            return (), None, "calls", searched
    if searched >= n_candidates:
        return (), None, "exhausted", searched
    size_cap = budget.max_set_size is not None and limit == budget.max_set_size and searched == limit
    return (), None, ("size" if size_cap else "calls"), searched


# --------------------------------------------------------------------------- rankings
def _rank(scores: np.ndarray, cands: Sequence[int]) -> tuple[int, ...]:
    """Candidates by decreasing score (ties: lower position first)."""
    return tuple(sorted(cands, key=lambda i: (-float(scores[i]), i)))


def attention_row(trace: Any, layer: int, head: int | str, target: int, *, efficient: bool = False,
                  model: TracedModel | None = None) -> np.ndarray:
    """The target's attention row [n] (head mean for ``head="all"``), raw or efficient
    (``analysis.efficient.decompose``, value basis)."""
    from analysis import efficient as eff

    layer, head = trace.check_head(layer, head)
    if not efficient:
        a = trace.attentions[layer]
        return (a.mean(0) if isinstance(head, str) else a[head])[target].astype(np.float64)
    if isinstance(head, str):
        return np.mean([d.effective[target] for d in eff.decompose_layer(trace, layer, model=model)], axis=0)
    return eff.decompose(trace, layer, head, model=model).effective[target]


def rollout_row(trace: Any, target: int) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): the product over layers of 0.5 (head-mean
    attention) + 0.5 I, rows renormalised; the target's row [n]."""
    n = trace.n_tokens
    r = np.eye(n)
    for a in trace.attentions.astype(np.float64):
        m = 0.5 * a.mean(0) + 0.5 * np.eye(n)
        m /= m.sum(-1, keepdims=True)
        r = m @ r
    return r[target]


def gradient_scores(model: TracedModel, text: Any, original: int, *, integrated: bool, n_steps: int = 32
                    ) -> tuple[np.ndarray, int, float]:
    """Per-token attributions [n] to p(original class) through captum on the input embeddings:
    gradient x input (``LayerGradientXActivation``) or integrated gradients
    (``LayerIntegratedGradients``, baseline: [PAD] at every non-special position, ``n_steps``).
    For a recommender: p(original item) at the [MASK] query, attributed to the item embeddings
    of the history (positions as in the history; the query's score is meaningless, never a
    candidate). Returns (scores summed over the embedding dimension, passes spent, IG's
    convergence delta)."""
    import torch
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    from analysis.models.base import ForwardOutput

    why = _gradient_support(model)
    if why is not None:
        raise ValueError(why)
    recommender = model.kind == "recommender"
    enc = model.encode(text)
    batch = model.batch([enc])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    extra = (mask, batch["position_ids"]) if recommender else (mask,)
    layer = model.module.get_input_embeddings()

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: Any = None) -> torch.Tensor:
        if not recommender:
            return torch.softmax(model.module(input_ids=input_ids, attention_mask=attention_mask).logits.float(), -1)
        out = model.module(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        logits = model.output_logits(ForwardOutput(out.logits), {"input_ids": input_ids,
                                                                 "attention_mask": attention_mask})
        return torch.softmax(logits.float(), -1)

    if integrated:
        special = set(model.tokenizer.all_special_ids)
        base = torch.tensor([[i if i in special else model._pad_id for i in enc.input_ids]], device=ids.device)
        lig = LayerIntegratedGradients(forward, layer)
        attr, delta = lig.attribute(ids, baselines=base, target=original, additional_forward_args=extra,
                                    n_steps=n_steps, internal_batch_size=n_steps, return_convergence_delta=True)
        return attr.sum(-1)[0].detach().double().cpu().numpy(), n_steps + 2, float(delta.abs().max())
    attr = LayerGradientXActivation(forward, layer).attribute(ids, target=original, additional_forward_args=extra)
    return attr.sum(-1)[0].detach().double().cpu().numpy(), 1, 0.0   # .double(): numpy has no bfloat16


def leave_one_out_scores(model: TracedModel, text: str, original: int, cands: Sequence[int], removal: Removal) -> np.ndarray:
    """Drop in p(original class) when each candidate alone is removed [n] (0 elsewhere)."""
    p0 = model.predict([text])[0][original]
    probs = model.predict([text] * len(cands), remove=[[i] for i in cands], removal=removal)
    scores = np.zeros(max(cands, default=0) + 1)
    scores[list(cands)] = p0 - probs[:, original]
    return scores


def cleann_ranking(e: abcd.Explanation, cands: Sequence[int]) -> tuple[int, ...]:
    """CLEANN's sets as a ranking (for ERASER metrics): tokens of its minimal flipping sets
    first (by how many minimal sets contain them, then tree depth), then the other tokens of
    the target's PDS-tree by depth (shallow first), then the remaining candidates by position."""
    depth: dict[int, int] = {}
    for v, d in zip(e.tree.nodes, e.tree.depth):
        depth[v] = min(depth.get(v, d), d)
    count: dict[int, int] = {}
    for s in e.sets:
        for v in s:
            count[v] = count.get(v, 0) + 1
    big = len(cands) + 1
    return tuple(sorted(cands, key=lambda v: (-count.get(v, 0), depth.get(v, big), v)))


# --------------------------------------------------------------------------- the interface
def run_method(method: str, model: TracedModel, text: Any, budget: Budget, *, layer: int = -1, head: int | str = 0,
               removal: Removal = "delete", nodes: NodeSet | Sequence[int] = "content", seed: int = 0,
               calls_by_size: dict[int, int] | None = None, trace: Any = None, target: int | None = None,
               ig_steps: int = 32, max_exhaustive: int = MAX_EXHAUSTIVE, **cleann_options: Any) -> MethodResult:
    """Run one explainer on one input within ``budget``.

    ``head`` is used by CLEANN, the (efficient) attention baselines and random search (only for
    the result's label); ``calls_by_size`` gives random search CLEANN's calls per set size on
    this input (without it random search spends the budget size by size); ``seed`` seeds it.
    ``cleann_options`` pass through to :func:`analysis.abcd.explain` (algorithm, alpha,
    n_samples, max_range, order, and any graph option it offers). Exhaustive search refuses
    inputs with more than ``max_exhaustive`` candidates and ignores ``budget.max_calls``.
    ``trace``/``target`` default to :func:`input_trace` (for a recommender: the abductive
    trace, the appended recommendation as target).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method in GRADIENT_METHODS and _gradient_support(model) is not None:
        raise ValueError(f"{method} is not offered for this model: {_gradient_support(model)}; "
                         f"choose from {', '.join(methods_for(model))}")
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be an analysis.abcd.Budget, not {type(budget).__name__}")
    start = time.perf_counter()
    probs = model.predict([text])[0]
    original = int(np.argmax(probs))
    if trace is None:
        trace, auto_target = input_trace(model, text, original)
    else:
        auto_target = trace.n_tokens - 1 if getattr(model, "abductive", False) else abcd.default_target(trace)
    target = auto_target if target is None else int(target) % trace.n_tokens
    text = trace.text
    cands = candidates_of(trace, target, nodes)
    label = str(head) if method in HEAD_METHODS else ""
    check = _Checker(model, text, original, removal)
    extra: dict[str, Any] = {}
    ranking: tuple[int, ...] | None = None
    ranking_calls = 0
    if method == "cleann":
        e = abcd.explain(model, text, layer=layer, head=head, nodes=nodes, removal=removal, target=target,
                         max_calls=budget.max_calls, max_set_size=budget.max_set_size, baseline_max_size=0,
                         **cleann_options)
        by_size: dict[int, int] = {}
        for c in e.checks:
            by_size[len(c.positions)] = by_size.get(len(c.positions), 0) + 1
        extra = {"n_edges": len(e.graph), "tree_size": len(set(e.tree.nodes)) - 1}
        return MethodResult(method, label, budget, cands, cleann_ranking(e, cands),
                            tuple(tuple(s) for s in e.sets), e.size, e.stopped, e.searched_size, len(e.checks),
                            0, by_size, time.perf_counter() - start, extra)
    if method == "random":
        rng = np.random.default_rng(seed)
        sets, size, stopped, searched = _subset_search(
            check, lambda k, quota: _random_subsets(rng, cands, k, quota), budget, len(cands), calls_by_size)
        extra = {"seed": seed}
    elif method == "exhaustive":
        if len(cands) > max_exhaustive:
            raise ValueError(f"exhaustive search is limited to {max_exhaustive} candidate tokens; this input has "
                             f"{len(cands)} (use a shorter input or raise max_exhaustive)")
        full = Budget(None, budget.max_set_size)
        sets, size, stopped, searched = _subset_search(
            check, lambda k, quota: list(itertools.combinations(cands, k)), full, len(cands))
    else:
        if method in ("attention", "efficient_attention"):
            scores = attention_row(trace, layer, head, target, efficient=method == "efficient_attention", model=model)
        elif method == "rollout":
            scores = rollout_row(trace, target)
        elif method == "leave_one_out":
            scores = leave_one_out_scores(model, text, original, cands, removal)
            ranking_calls = len(cands)
        else:
            scores, ranking_calls, delta = gradient_scores(model, text, original,
                                                           integrated=method == "integrated_gradients",
                                                           n_steps=ig_steps)
            if method == "integrated_gradients":
                extra = {"convergence_delta": delta}
        ranking = _rank(scores, cands)
        sets, size, stopped, searched, calls = _prefix_search(check, ranking, budget)
        return MethodResult(method, label, budget, cands, ranking, sets, size, stopped, searched, calls,
                            ranking_calls, {k: 1 for k in range(1, calls + 1)}, time.perf_counter() - start, extra)
    return MethodResult(method, label, budget, cands, ranking, sets, size, stopped, searched, check.calls,
                        ranking_calls, dict(check.calls_by_size), time.perf_counter() - start, extra)


def _random_subsets(rng: np.random.Generator, cands: Sequence[int], k: int, quota: int | None
                    ) -> list[tuple[int, ...]] | None:
    """``quota`` distinct random k-subsets of ``cands`` (all of them, shuffled, when there are
    no more than ``quota``); None when k exceeds the candidates."""
    n = len(cands)
    if k > n:
        return None
    total = math.comb(n, k)
    if quota is None or quota >= total:
        every = list(itertools.combinations(cands, k))
        return [every[i] for i in rng.permutation(total)]
    seen: set[tuple[int, ...]] = set()
    out: list[tuple[int, ...]] = []
    while len(out) < quota:
        z = tuple(sorted(int(cands[i]) for i in rng.choice(n, size=k, replace=False)))
        if z not in seen:
            seen.add(z)
            out.append(z)
    return out
