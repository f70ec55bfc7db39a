"""ABCD (Rohekar et al., NeurIPS 2023): attention -> correlation -> causal graph -> explanations.

One head maps values to outputs, ``Z = A V``; reading the value features as samples of the
token variables gives the covariance ``C = A A^T`` (per head) or ``sum_h A_h A_h^T`` (a
whole layer, ``head="all"``). Partial correlations of ``C`` test conditional independence
between tokens; PC / FCI / ICD (``analysis.causal``) learn a graph over them; CLEANN
searches the graph for the smallest token sets whose removal changes the model's output.

Recommenders (``analysis.zoo.bert4rec.Recommender``) are explained the same way through one
hook, ``model.explanation_trace(history, top1) -> (trace, target)``: the abductive step traces
the history with the recommended item appended, the graph's target is that item, and the
candidate sets (history positions) are checked by re-ranking the history without them.
"""
from __future__ import annotations

import string
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from analysis import causal
from analysis.causal import Graph, PDSTree, pds_tree
from analysis.models.trace import Trace

#: what ``n_samples=None`` means: the model's hidden size, as in the reference implementation
#: (768 for BERT-base). Other readings: the head dimension (the literal derivation), or 128.
DEFAULT_N_SAMPLES = "hidden"
NODE_SETS = ("all", "content")
Head = int | str


def attention_covariance(trace: Trace, layer: int = -1, head: Head = 0) -> np.ndarray:
    """``C = A A^T`` (n, n) of one head, or ``sum_h A_h A_h^T`` for ``head="all"``."""
    layer, head = trace.check_head(layer, head)
    a = trace.attentions[layer].astype(np.float64)           # [H, n, n]
    if head in ("all", "mean"):
        return np.einsum("hqk,hpk->qp", a, a)
    return a[head] @ a[head].T


def attention_correlation(trace: Trace, layer: int = -1, head: Head = 0) -> np.ndarray:
    """The correlation matrix (n, n) of :func:`attention_covariance`."""
    return causal.correlation_from_covariance(attention_covariance(trace, layer, head))


def resolve_n_samples(trace: Trace, n_samples: float | str | None) -> float:
    """Effective sample size: a number, or "hidden" (hidden size, the default) / "head" (d_head)."""
    choice = DEFAULT_N_SAMPLES if n_samples is None else n_samples
    if choice == "hidden":
        return float(trace.hidden_states.shape[-1])
    if choice == "head":
        return float(trace.values.shape[-1])
    if isinstance(choice, str) or not np.isfinite(choice) or choice <= 3:
        raise ValueError(f"n_samples must be a number > 3, 'hidden' or 'head', not {n_samples!r}")
    return float(choice)


def is_punctuation(token: str) -> bool:
    """A token made only of punctuation (word-piece markers ignored)."""
    core = token.removeprefix("##")
    return bool(core) and all(ch in string.punctuation for ch in core)


def select_nodes(trace: Trace, nodes: str | Sequence[int] = "all", *, keep: Sequence[int] = ()) -> list[int]:
    """Token positions forming the graph: "all", "content" (no special tokens or punctuation;
    the others act as latent variables), or explicit positions; ``keep`` is always included."""
    n = trace.n_tokens
    if isinstance(nodes, str):
        if nodes not in NODE_SETS:
            raise ValueError(f"nodes must be one of {', '.join(NODE_SETS)} or a list of positions, not {nodes!r}")
        chosen = range(n) if nodes == "all" else [
            i for i in range(n) if not trace.special[i] and not is_punctuation(trace.tokens[i])]
    else:
        chosen = [int(i) for i in nodes]
        bad = [i for i in chosen if not 0 <= i < n]
        if bad:
            raise IndexError(f"node positions {bad} are out of range: this input has {n} tokens (0..{n - 1})")
    out = sorted(set(chosen) | {int(k) % n for k in keep})
    if len(out) < 2:
        raise ValueError(f"a graph needs at least 2 nodes; the node set {nodes!r} gives {out}")
    return out


def learn_graph(trace: Trace, *, layer: int = -1, head: Head = 0, algorithm: str = "icd",
                alpha: float = 0.01, n_samples: float | str | None = None,
                nodes: str | Sequence[int] = "all", max_r: int | None = None, keep: Sequence[int] = (),
                callback: Any = None, order: bool | None = None) -> Graph:
    """Causal graph over the tokens of one head (or a pooled layer) of a trace.

    Node ids are token positions, labels the token strings. ``n_samples`` defaults to the
    hidden size (the reference implementation's choice); the graph prints the value used.
    ``order``: use token (time) order as a known causal order; ``None`` does for decoder
    models only (``trace.is_causal``).
    """
    corr = attention_correlation(trace, layer, head)
    node_ids = select_nodes(trace, nodes, keep=keep)
    use_order = trace.is_causal if order is None else bool(order)
    return causal.learn_graph(
        corr, resolve_n_samples(trace, n_samples), alpha=alpha, algorithm=algorithm, nodes=node_ids,
        order=node_ids if use_order else None, max_r=max_r,
        labels=[f"{trace.tokens[i]}@{i}" for i in node_ids], callback=callback)


# --------------------------------------------------------------------------- explanations
@dataclass(frozen=True)
class Check:
    """One candidate set checked by re-running the model without it."""

    positions: tuple[int, ...]   # token positions removed (in the full input)
    depth_sum: int               # sum of tree depths (the search order within a size); -1 for the baseline
    probs: np.ndarray            # [classes] the model's output without them
    prediction: int
    changed: bool                # top-1 differs from the original
    rank: int = 1                # rank (1 = top) of ``prediction`` in the original output's ranking


@dataclass(frozen=True)
class Baseline:
    """Tokens ranked by raw attention from the target; the smallest top-k prefix that changes the output."""

    ranking: tuple[int, ...]     # content positions, most attended first
    size: int | None             # None: no prefix changed the output
    set: tuple[int, ...]
    checks: tuple[Check, ...]

    @property
    def new_rank(self) -> int | None:
        """Rank of the new top-1 in the original ranking, after removing ``set`` (None: no change)."""
        return self.checks[-1].rank if self.size is not None else None


@dataclass(frozen=True)
class Explanation:
    """Minimal explanation sets of one output and everything that was tested to find them."""

    sets: list[list[int]]        # minimal sets, each a list of token positions in the input
    size: int | None             # their size (None: nothing up to max_set_size changed the output)
    tokens: list[str]
    target: int
    prediction: int              # top-1 of ``probs``
    probs: np.ndarray            # [classes] or [vocab]: the model's output, as each check's ``probs``
    graph: Graph
    tree: PDSTree
    checks: tuple[Check, ...]    # every candidate tested, in order
    baseline: Baseline
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether some set up to ``max_set_size`` changed the top-1 output."""
        return bool(self.sets)

    @property
    def new_rank(self) -> int | None:
        """Rank (1 = top) of the new top-1 in the original ranking, for the first minimal set
        (None: nothing changed the output). For a recommender: is it in the original top-k?"""
        first = next((c for c in self.checks if c.changed), None)
        return None if first is None else first.rank

    @property
    def words(self) -> list[list[str]]:
        """The explanation sets as token strings."""
        return [[self.tokens[i] for i in s] for s in self.sets]

    def __str__(self) -> str:
        found = (f"{len(self.sets)} minimal set(s) of size {self.size}: "
                 + "; ".join(" ".join(w) for w in self.words)) if self.sets else "no explanation set found"
        base = f"size {self.baseline.size}" if self.baseline.size else "none found"
        return (f"Explanation of prediction {self.prediction} at target {self.tokens[self.target]}@{self.target}: "
                f"{found}; {len(self.checks)} candidates checked; attention baseline: {base}")


def _rank(reference: np.ndarray | None, k: int) -> int:
    """Rank (1 = top) of output ``k`` under the original probabilities (ties: lower index first)."""
    if reference is None:
        return 1
    return 1 + int(np.sum(reference > reference[k]) + np.sum(reference[:k] == reference[k]))


def _check_sets(model: Any, text: Any, sets: Sequence[tuple[int, ...]], depths: Sequence[int],
                removal: str, original: int, reference: np.ndarray | None = None) -> list[Check]:
    """Re-run the model without each set, all sets in one batched call; ``reference`` is the
    original output, for the rank of each new top-1 in it."""
    if not sets:
        return []
    probs = model.predict([text] * len(sets), remove=[list(s) for s in sets], removal=removal)
    preds = probs.argmax(-1)
    return [Check(tuple(s), d, p, int(k), int(k) != original, _rank(reference, int(k)))
            for s, d, p, k in zip(sets, depths, probs, preds)]


def attention_baseline(model: Any, trace: Trace, *, target: int, layer: int, head: Head, candidates: Sequence[int],
                       removal: str, original: int, max_size: int | None = None,
                       reference: np.ndarray | None = None) -> Baseline:
    """Remove the top-k tokens by the target's attention (k = 1, 2, ...) until the output changes."""
    layer, head = trace.check_head(layer, head)
    row = trace.attentions[layer].mean(0)[target] if isinstance(head, str) else trace.attentions[layer, head, target]
    ranking = tuple(sorted(candidates, key=lambda i: (-row[i], i)))
    limit = len(ranking) if max_size is None else min(max_size, len(ranking))
    checks = []
    for k in range(1, limit + 1):
        c = _check_sets(model, trace.text, [tuple(sorted(ranking[:k]))], [-1], removal, original, reference)[0]
        checks.append(c)
        if c.changed:
            return Baseline(ranking, k, c.positions, tuple(checks))
    return Baseline(ranking, None, (), tuple(checks))


def default_target(trace: Trace) -> int:
    """The node whose output is explained: [CLS] (position 0) for encoders, the last token for decoders."""
    return trace.n_tokens - 1 if trace.is_causal else 0


def explain(model: Any, text: Any, *, target: int | None = None, layer: int = -1, head: Head = 0,
            algorithm: str = "icd", alpha: float = 0.01, n_samples: float | str | None = None,
            nodes: str | Sequence[int] = "content", max_set_size: int = 3, max_range: int | None = None,
            removal: str = "delete", baseline_max_size: int | None = None,
            order: bool | None = None) -> Explanation:
    """CLEANN: the smallest token sets, drawn from the PDS-tree of the target in the learned
    PAG, whose removal changes the model's top-1 output.

    Candidates are subsets of the tree closed along tree paths, by size, then by the sum of
    tree depths; each is checked by re-running the model (``remove=``, ``removal``). The
    graph only orders and prunes the search; the model decides. ``max_range`` bounds the
    tree depth; ``order`` as in :func:`learn_graph`. Returns every candidate tested (each
    with the rank of its new top-1 in the original output), and the attention baseline.

    A model with ``explanation_trace(text, top1) -> (trace, target)`` (a recommender) is
    traced through it: the abductive step appends the recommended item, which becomes the
    default target; sets are positions of the input (the history) and are checked on it.
    """
    start = time.perf_counter()
    if not isinstance(max_set_size, int) or max_set_size < 1:
        raise ValueError(f"max_set_size must be a positive integer, not {max_set_size!r}")
    probs = model.predict([text])[0]        # the output the checks compare against: [classes] or [vocab]
    original = int(np.argmax(probs))
    abduce = getattr(model, "explanation_trace", None)
    if abduce is not None:
        trace, auto_target = abduce(text, original)
    else:
        trace = model.trace(text)
        auto_target = default_target(trace)
    target = auto_target if target is None else int(target)
    if not -trace.n_tokens <= target < trace.n_tokens:
        raise IndexError(f"target {target} is out of range: the input has {trace.n_tokens} tokens")
    target %= trace.n_tokens
    text = trace.text                       # the input as the model kept it (a truncated history)
    graph = learn_graph(trace, layer=layer, head=head, algorithm=algorithm, alpha=alpha, n_samples=n_samples,
                        nodes=nodes, keep=[target], order=order)
    tree = pds_tree(graph, target, max_depth=max_range)
    candidates = [v for v in graph.nodes if v != target]
    checks: list[Check] = []
    sets: list[list[int]] = []
    size = None
    for k in range(1, max_set_size + 1):
        subsets = tree.closed_subsets(k, exclude=[target])
        if not subsets:
            break
        found = _check_sets(model, text, [s for s, _ in subsets], [d for _, d in subsets], removal, original, probs)
        checks += found
        sets = [list(c.positions) for c in found if c.changed]
        if sets:
            size = k
            break
    baseline = attention_baseline(model, trace, target=target, layer=layer, head=head, candidates=candidates,
                                  removal=removal, original=original, max_size=baseline_max_size, reference=probs)
    settings = dict(layer=trace.check_head(layer, head)[0], head=head, algorithm=algorithm, alpha=alpha,
                    n_samples=graph.n_samples, nodes=nodes if isinstance(nodes, str) else list(nodes),
                    max_set_size=max_set_size, max_range=max_range, removal=removal,
                    order=trace.is_causal if order is None else bool(order))
    return Explanation(sets=sets, size=size, tokens=list(trace.tokens), target=target, prediction=original,
                       probs=probs, graph=graph, tree=tree, checks=tuple(checks), baseline=baseline,
                       settings=settings, seconds=time.perf_counter() - start)
