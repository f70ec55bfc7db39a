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

import dataclasses
import string
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence, get_args

import numpy as np

from analysis import causal
from analysis.causal import Graph, PDSTree, pds_tree
from analysis.models.trace import Trace
from analysis.types import Algorithm, AttentionKind, Basis, NodeSet, Removal

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

#: what ``n_samples=None`` means: the model's hidden size, as in the reference implementation
#: (768 for BERT-base). Other readings: the head dimension (the literal derivation), or 128.
DEFAULT_N_SAMPLES = "hidden"
NODE_SETS: tuple[NodeSet, ...] = get_args(NodeSet)
Head = int | str
#: a cooperative progress hook: called with the fraction done (0..1); returning False cancels
Progress = Callable[[float], bool]


#: what a graph is learned from: the raw attention ``A`` or the efficient attention ``A_eff = A P``
#: (``P`` the projection on col(T), T from ``analysis.efficient``'s ``basis``)
ATTENTIONS: tuple[AttentionKind, ...] = get_args(AttentionKind)


def graph_attention(trace: Trace, layer: int = -1, head: Head = 0, *, attention: AttentionKind = "raw",
                    basis: Basis = "value", model: TracedModel | None = None) -> tuple[np.ndarray, str]:
    """The matrices the covariance is built from, ``[1, n, n]`` (one head) or ``[H, n, n]``
    (``head="all"``), float64, and a description naming the attention, the basis and the nullity.

    ``attention="efficient"`` uses ``A_eff = A P`` (``analysis.efficient.decompose``, projection
    variant): every ``A'`` with ``A' T = A T`` gives the same ``A_eff``, so the graph is
    determined by the head's output. ``basis`` ("value", "value_output", "hidden", "jacobian")
    chooses T; "value_output" and "jacobian" need ``model``. The nullity is reported for
    ``"raw"`` too (in the same basis).
    """
    from analysis import efficient

    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {', '.join(map(repr, ATTENTIONS))}, not {attention!r}")
    layer, head = trace.check_head(layer, head)
    if isinstance(head, str):
        parts = efficient.decompose_layer(trace, layer, basis=basis, model=model)
    else:
        parts = (efficient.decompose(trace, layer, head, basis=basis, model=model),)
    which = "effective" if attention == "efficient" else "attention"
    mats = np.stack([getattr(p, which) for p in parts])              # [h, n, n]
    nullity = ",".join(str(p.nullity) for p in parts)
    name = "efficient attention A P" if attention == "efficient" else "raw attention A"
    where = f"layer {layer}, head {head}" if not isinstance(head, str) else f"layer {layer}, all heads"
    return mats, f"{name} ({where}; {basis} basis, nullity {nullity} of n = {trace.n_tokens})"


def _covariance(mats: np.ndarray) -> np.ndarray:
    """``sum_h M_h M_h^T`` (n, n) for ``mats`` [h, n, n]."""
    return mats[0] @ mats[0].T if len(mats) == 1 else np.einsum("hqk,hpk->qp", mats, mats)


def attention_covariance(trace: Trace, layer: int = -1, head: Head = 0, *, attention: AttentionKind = "raw",
                         basis: Basis = "value", model: TracedModel | None = None) -> np.ndarray:
    """``C = A A^T`` (n, n) of one head, or ``sum_h A_h A_h^T`` for ``head="all"``;
    ``attention="efficient"``: ``C = A_eff A_eff^T`` (see :func:`graph_attention`), which may be
    singular (rank <= rank T)."""
    if attention == "raw":
        layer, head = trace.check_head(layer, head)
        if head in ("all", "mean"):
            a = trace.attentions[layer].astype(np.float64)       # [H, n, n]
            return np.einsum("hqk,hpk->qp", a, a)
        a = trace.attentions[layer, head].astype(np.float64)     # [n, n]: only this head (a selective trace)
        return a @ a.T
    return _covariance(graph_attention(trace, layer, head, attention=attention, basis=basis, model=model)[0])


def attention_correlation(trace: Trace, layer: int = -1, head: Head = 0, *, attention: AttentionKind = "raw",
                          basis: Basis = "value", model: TracedModel | None = None) -> np.ndarray:
    """The correlation matrix (n, n) of :func:`attention_covariance`. A token whose row carries
    no variance (an efficient row ``a P = 0``: its head output is zero) gets unit variance and
    zero correlation with every other token, so it is independent of all (an isolated node)."""
    return causal.correlation_from_covariance(
        attention_covariance(trace, layer, head, attention=attention, basis=basis, model=model))


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


def capture(model: TracedModel, layer: int = -1, head: Head = 0) -> dict[str, Any]:
    """The ``model.trace`` keyword arguments that capture only what one head (``heads=[(layer,
    head)]``) or one pooled layer (``layers=[layer]`` for ``head="all"`` / ``"mean"``) needs: what
    :func:`learn_graph`, :func:`attention_correlation` and :func:`explain` read of a trace.
    Checks the pair against the model's sizes (:func:`check_head`)."""
    layer, head = check_head(model.n_layers, model.n_heads, layer, head)
    return {"layers": [layer]} if isinstance(head, str) else {"heads": [(layer, head)]}


def check_head(n_layers: int, n_heads: int, layer: int, head: Head = 0) -> tuple[int, Head]:
    """``(layer, head)`` checked against ``n_layers`` x ``n_heads`` and made non-negative (head may
    be "all" or "mean"): ``Trace.check_head`` without asking whether a selective trace holds it."""
    L, H = n_layers, n_heads
    if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)) or not -L <= layer < L:
        raise IndexError(f"layer {layer!r} is out of range: this model has {L} layers (0..{L - 1}, or -1 for the last)")
    if isinstance(head, str):
        if head not in ("all", "mean"):
            raise ValueError(f"head must be an int in 0..{H - 1}, 'all' or 'mean', not {head!r}")
        return int(layer) % L, head
    if isinstance(head, (bool, np.bool_)) or not isinstance(head, (int, np.integer)) or not -H <= head < H:
        raise IndexError(f"head {head!r} is out of range: this model has {H} heads per layer (0..{H - 1})")
    return int(layer) % L, int(head) % H


def output_name(model: Any, k: int) -> str:
    """Output ``k`` of ``model`` for people: its class label (a recommender's item title), or for
    a language model the vocabulary token, decoded and quoted (``' film'``)."""
    k = int(k)
    labels = getattr(model, "labels", ()) or ()
    if labels:
        return str(labels[k]) if 0 <= k < len(labels) else f"class {k}"
    tokenizer = getattr(model, "tokenizer", None)
    if getattr(model, "task", "") in ("causal-lm", "masked-lm", "seq2seq-lm") and hasattr(tokenizer, "decode"):
        return repr(tokenizer.decode([k]))
    return f"class {k}"


def describe_output(model: Any, k: int) -> str:
    """Output ``k`` in a sentence: ``"the next token ' film' (id 2143)"`` (causal LM), ``"the
    masked token ..."`` (masked LM), else ``"prediction positive (class 1)"`` / ``"prediction
    <title> (item 3)"`` (recommender)."""
    name = output_name(model, k)
    if getattr(model, "input_kind", "text") == "items":
        return f"prediction {name} (item {int(k)})"
    if not (getattr(model, "labels", ()) or ()):
        what = {"causal-lm": "the next token", "seq2seq-lm": "the next decoder token",
                "masked-lm": "the masked token"}.get(getattr(model, "task", ""))
        if what:
            return f"{what} {name} (id {int(k)})"
    return f"prediction {name} (class {int(k)})"


class OutputNames(Sequence[str]):
    """Every output of a model by name (:func:`output_name`), computed on access: a language
    model's vocabulary without decoding all of it. Pass as ``labels=`` to the figures."""

    def __init__(self, model: Any, size: int | None = None) -> None:
        self.model = model
        labels = getattr(model, "labels", ()) or ()
        tokenizer = getattr(model, "tokenizer", None)
        self._size = int(size) if size is not None else len(labels) if labels else \
            len(tokenizer) if tokenizer is not None and hasattr(tokenizer, "__len__") else 0

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._size))]
        if not -self._size <= int(k) < self._size:
            raise IndexError(f"output {k} is out of range: there are {self._size}")
        return output_name(self.model, int(k) % self._size)


def output_names(model: Any) -> Sequence[str]:
    """``model.labels`` for a classifier or recommender; an :class:`OutputNames` over the
    vocabulary for a language model (figures' ``labels=`` then name tokens, not "class k")."""
    labels = getattr(model, "labels", ()) or ()
    return labels if labels else OutputNames(model)


def is_punctuation(token: str) -> bool:
    """A token made only of punctuation (word-piece markers ignored)."""
    core = token.removeprefix("##")
    return bool(core) and all(ch in string.punctuation for ch in core)


def select_nodes(trace: Trace, nodes: NodeSet | Sequence[int] = "all", *, keep: Sequence[int] = ()) -> list[int]:
    """Token positions forming the graph: "all", "content" (no special tokens or punctuation;
    the others act as latent variables), or explicit positions; ``keep`` is always included."""
    n = trace.n_tokens
    if isinstance(nodes, str):
        if nodes not in NODE_SETS:
            raise ValueError(f"nodes must be one of {', '.join(NODE_SETS)} or a list of positions, not {nodes!r}")
        chosen = range(n) if nodes == "all" else [
            i for i in range(n) if not trace.special[i] and not is_punctuation(trace.tokens[i])]
    else:
        if nodes is None or not hasattr(nodes, "__iter__"):
            raise TypeError(f"nodes must be one of {', '.join(map(repr, NODE_SETS))} or a list of token "
                            f"positions (0..{n - 1}), not {nodes!r}")
        bad_type = [i for i in nodes if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer))]
        if bad_type:
            raise TypeError(f"nodes lists token positions (integers 0..{n - 1}); got {bad_type[0]!r}")
        chosen = [int(i) for i in nodes]
        bad = [i for i in chosen if not 0 <= i < n]
        if bad:
            raise IndexError(f"node positions {bad} are out of range: this input has {n} tokens (0..{n - 1})")
    out = sorted(set(chosen) | {int(k) % n for k in keep})
    if len(out) < 2:
        raise ValueError(f"a graph needs at least 2 nodes; the node set {nodes!r} gives {out}")
    return out


def learn_graph(trace: Trace, *, layer: int = -1, head: Head = 0, algorithm: Algorithm = "icd",
                alpha: float = 0.01, n_samples: float | str | None = None,
                nodes: NodeSet | Sequence[int] = "all", max_r: int | None = None, keep: Sequence[int] = (),
                callback: Any = None, order: bool | None = None, stable: bool = False,
                attention: AttentionKind = "raw", basis: Basis = "value", model: TracedModel | None = None,
                time_budget: float | None = None) -> Graph:
    """Causal graph over the tokens of one head (or a pooled layer) of a trace.

    Node ids are token positions, labels the token strings. ``n_samples`` defaults to the
    hidden size (the reference implementation's choice); the graph prints the value used.
    ``order``: use token (time) order as a known causal order; ``None`` does for decoder
    models only (``trace.is_causal``). ``stable``: ICD's order-independent skeleton search
    (see :func:`analysis.causal.learn_graph`). ``attention="efficient"`` learns from
    ``C = A_eff A_eff^T`` (``basis``, ``model``: see :func:`graph_attention`); the graph's
    ``attention`` field (shown in its repr) names the attention used and the head's nullity.
    ``time_budget`` (seconds, ICD only): ICD's anytime property: past the budget it returns the
    r-representing PAG of the last finished level r (exactly what ``max_r=r`` gives) with a
    warning naming r; ``graph.cut`` says whether it stopped early.
    """
    mats, described = graph_attention(trace, layer, head, attention=attention, basis=basis, model=model)
    corr = causal.correlation_from_covariance(_covariance(mats))
    node_ids = select_nodes(trace, nodes, keep=keep)
    use_order = trace.is_causal if order is None else bool(order)
    graph = causal.learn_graph(
        corr, resolve_n_samples(trace, n_samples), alpha=alpha, algorithm=algorithm, nodes=node_ids,
        order=node_ids if use_order else None, max_r=max_r,
        labels=[f"{trace.tokens[i]}@{i}" for i in node_ids], callback=callback, stable=stable,
        time_budget=time_budget)
    return dataclasses.replace(graph, attention=described)


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


#: the call budget of :func:`explain` when none is given: enough for every set of up to 2 of
#: ~40 candidate tokens (most Rotten Tomatoes sentences), about 1-5 s on the default model.
DEFAULT_MAX_CALLS = 1000
#: why a search stopped: "found" (a flipping set), "calls" (the call budget ran out), "size"
#: (the set-size cap was reached), "exhausted" (no candidate left: nothing the method can
#: propose flips the output), "cancelled" (the progress hook returned False).
STOP_REASONS = ("found", "calls", "size", "exhausted", "cancelled")


@dataclass(frozen=True)
class Budget:
    """What a search may spend: ``max_calls`` model calls (candidate inputs checked; None: no
    limit) and sets of at most ``max_set_size`` tokens (None: no limit)."""

    max_calls: int | None = DEFAULT_MAX_CALLS
    max_set_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_calls", "max_set_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{name} must be a positive integer or None (no limit), not {v!r}")

    def __str__(self) -> str:
        calls = "unlimited calls" if self.max_calls is None else f"<= {self.max_calls} calls"
        size = "any size" if self.max_set_size is None else f"sets of <= {self.max_set_size} tokens"
        return f"{calls}, {size}"


@dataclass(frozen=True)
class Explanation:
    """Minimal explanation sets of one output and everything that was tested to find them."""

    sets: list[list[int]]        # minimal sets, each a list of token positions in the input
    size: int | None             # their size (None: nothing within the budget changed the output)
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
    budget: Budget = field(default_factory=Budget)
    stopped: str = "found"       # one of STOP_REASONS
    searched_size: int = 0       # every candidate set of this size or smaller was checked
    #: the prediction for people (:func:`describe_output`), e.g. "the next token ' film' (id 2143)"
    output: str = ""

    @property
    def changed(self) -> bool:
        """Whether some set within the budget changed the top-1 output."""
        return bool(self.sets)

    @property
    def status(self) -> str:
        """"found at k" or why nothing was found ("not found within budget: ...")."""
        if self.sets:
            return f"found at {self.size}"
        why = {"calls": f"call budget of {self.budget.max_calls} ran out",
               "size": f"size cap of {self.budget.max_set_size} reached",
               "exhausted": "no candidate set from the PDS-tree flips the output",
               "cancelled": "cancelled"}.get(self.stopped, self.stopped)
        return f"not found within budget ({why}; all sets up to size {self.searched_size} checked)"

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
                 + "; ".join(" ".join(w) for w in self.words)) if self.sets else self.status
        base = f"size {self.baseline.size}" if self.baseline.size else "none found"
        what = self.output or f"prediction {self.prediction}"
        return (f"Explanation of {what} at target {self.tokens[self.target]}@{self.target}: "
                f"{found}; {len(self.checks)} candidates checked (budget: {self.budget}); "
                f"attention baseline: {base}")


def _rank(reference: np.ndarray | None, k: int) -> int:
    """Rank (1 = top) of output ``k`` under the original probabilities (ties: lower index first)."""
    if reference is None:
        return 1
    return 1 + int(np.sum(reference > reference[k]) + np.sum(reference[:k] == reference[k]))


def _check_sets(model: TracedModel, text: Any, sets: Sequence[tuple[int, ...]], depths: Sequence[int],
                removal: Removal, original: int, reference: np.ndarray | None = None) -> list[Check]:
    """Re-run the model without each set, all sets in one batched call; ``reference`` is the
    original output, for the rank of each new top-1 in it."""
    if not sets:
        return []
    probs = model.predict([text] * len(sets), remove=[list(s) for s in sets], removal=removal)
    preds = probs.argmax(-1)
    return [Check(tuple(s), d, p, int(k), int(k) != original, _rank(reference, int(k)))
            for s, d, p, k in zip(sets, depths, probs, preds)]


def attention_baseline(model: TracedModel, trace: Trace, *, target: int, layer: int, head: Head, candidates: Sequence[int],
                       removal: Removal, original: int, max_size: int | None = None,
                       reference: np.ndarray | None = None, progress: Progress | None = None) -> Baseline:
    """Remove the top-k tokens by the target's attention (k = 1, 2, ...) until the output changes
    (``max_size``: at most k tokens; ``progress(fraction)`` returning False stops early)."""
    layer, head = trace.check_head(layer, head)
    row = trace.attentions[layer].mean(0)[target] if isinstance(head, str) else trace.attentions[layer, head, target]
    ranking = tuple(sorted(candidates, key=lambda i: (-row[i], i)))
    limit = len(ranking) if max_size is None else min(max_size, len(ranking))
    checks = []
    for k in range(1, limit + 1):
        if progress is not None and not progress(k / max(limit, 1)):
            break
        c = _check_sets(model, trace.text, [tuple(sorted(ranking[:k]))], [-1], removal, original, reference)[0]
        checks.append(c)
        if c.changed:
            return Baseline(ranking, k, c.positions, tuple(checks))
    return Baseline(ranking, None, (), tuple(checks))


def default_target(trace: Trace) -> int:
    """The node whose output is explained: [CLS] (position 0) for encoders, the last token for decoders."""
    return trace.n_tokens - 1 if trace.is_causal else 0


def explain(model: TracedModel, text: Any, *, target: int | None = None, layer: int = -1, head: Head = 0,
            algorithm: Algorithm = "icd", alpha: float = 0.01, n_samples: float | str | None = None,
            nodes: NodeSet | Sequence[int] = "content", max_set_size: int | None = None,
            max_calls: int | None = DEFAULT_MAX_CALLS, max_range: int | None = None,
            removal: Removal = "delete", baseline_max_size: int | None = None,
            order: bool | None = None, progress: Progress | None = None,
            attention: AttentionKind = "raw", basis: Basis = "value",
            time_budget: float | None = None) -> Explanation:
    """CLEANN: the smallest token sets, drawn from the PDS-tree of the target in the learned
    PAG, whose removal changes the model's top-1 output.

    Candidates are subsets of the tree closed along tree paths, by size, then by the sum of
    tree depths; each is checked by re-running the model (``remove=``, ``removal``). The
    graph only orders and prunes the search; the model decides. ``max_range`` bounds the
    tree depth; ``order``, ``attention`` ("raw" or "efficient") and ``basis`` as in
    :func:`learn_graph` (the settings record them and the head's nullity). Returns every candidate tested (each
    with the rank of its new top-1 in the original output), and the attention baseline.

    The budget is explicit and kept in the result (``.budget``, ``.stopped``, ``.status``):
    at most ``max_calls`` candidate checks (default :data:`DEFAULT_MAX_CALLS`; None: no limit)
    and sets of at most ``max_set_size`` tokens (default None: no cap, as the reference
    implementation). When the calls run out inside a size, the first candidates of that size
    (by depth sum) are checked. With ``max_calls=None`` and a ``max_set_size`` the search is the
    same as before the budget existed. "Not found" says which budget ran out (``stopped``).
    ``progress(fraction)`` is called between batches of checks (at most 32, fewer for long inputs:
    :data:`TOKENS_PER_REPORT`); returning False
    cancels (``stopped="cancelled"``); while ICD learns the graph it is called after every
    iteration, and returning False there raises :class:`Cancelled` (no graph, no result).
    The baseline's calls are not part of CLEANN's budget
    (``baseline_max_size=0`` skips it). ``time_budget``: seconds for learning the graph (ICD's
    anytime cut, see :func:`learn_graph`); the explanation's graph records whether it was cut.

    A decoder (``trace.is_causal``: GPT-2, Llama, ... with task "causal-lm") explains its
    next-token prediction: the target defaults to the last token, where ``model.predict`` reads
    the next token, the sets are the tokens whose removal changes the top-1 next token, and
    token order is background knowledge (``order=None``; ``order=False`` drops it). The input
    is traced once, capturing only ``layer``/``head`` (:func:`capture`); ``output`` and the
    repr name the prediction (:func:`describe_output`: the next token's string for a language model).

    An abductive model (``model.abductive``: a recommender, with ``explanation_trace(text, top1) ->
    (trace, target)``) is
    traced through it: the abductive step appends the recommended item, which becomes the
    default target; sets are positions of the input (the history) and are checked on it.
    """
    start = time.perf_counter()
    budget = Budget(max_calls, max_set_size)
    probs = model.predict([text])[0]        # the output the checks compare against: [classes] or [vocab]
    original = int(np.argmax(probs))
    abduce = model.explanation_trace if model.abductive else None
    if abduce is not None:
        trace, auto_target = abduce(text, original)
    else:                                   # only the head (or layer) the graph is learned from
        trace = model.trace(text, **capture(model, layer, head))
        auto_target = default_target(trace)
    target = auto_target if target is None else int(target)
    if not -trace.n_tokens <= target < trace.n_tokens:
        raise IndexError(f"target {target} is out of range: the input has {trace.n_tokens} tokens")
    target %= trace.n_tokens
    text = trace.text                       # the input as the model kept it (a truncated history)
    graph = learn_graph(trace, layer=layer, head=head, algorithm=algorithm, alpha=alpha, n_samples=n_samples,
                        nodes=nodes, keep=[target], order=order, attention=attention, basis=basis, model=model,
                        callback=None if progress is None else _cancel_graph(progress), time_budget=time_budget)
    tree = pds_tree(graph, target, max_depth=max_range)
    candidates = [v for v in graph.nodes if v != target]
    checks, sets, size, stopped, searched = _search_tree(model, text, tree, target, budget, removal, original,
                                                         probs, progress, len(candidates), trace.n_tokens)
    baseline = attention_baseline(model, trace, target=target, layer=layer, head=head, candidates=candidates,
                                  removal=removal, original=original, max_size=baseline_max_size, reference=probs,
                                  progress=None if stopped == "cancelled" or progress is None else
                                  (lambda f: progress(1.0)))
    if stopped == "cancelled":
        baseline = Baseline(baseline.ranking, None, (), ())
    settings = dict(layer=trace.check_head(layer, head)[0], head=head, algorithm=algorithm, alpha=alpha,
                    n_samples=graph.n_samples, nodes=nodes if isinstance(nodes, str) else list(nodes),
                    max_set_size=max_set_size, max_calls=max_calls, max_range=max_range, removal=removal,
                    order=trace.is_causal if order is None else bool(order), attention=attention, basis=basis,
                    graph_attention=graph.attention)
    return Explanation(sets=sets, size=size, tokens=list(trace.tokens), target=target, prediction=original,
                       probs=probs, graph=graph, tree=tree, checks=tuple(checks), baseline=baseline,
                       settings=settings, seconds=time.perf_counter() - start, budget=budget, stopped=stopped,
                       searched_size=searched, output=describe_output(model, original))


class Cancelled(Exception):
    """The progress hook of :func:`explain` asked to stop while the graph was being learned."""


def _cancel_graph(progress: Progress) -> Any:
    """An ICD iteration callback that raises :class:`Cancelled` once ``progress`` returns False."""
    def callback(r: int, _: Any) -> None:
        if not progress(0.0):
            raise Cancelled(f"explanation cancelled while learning the graph (ICD iteration {r})")
    return callback


#: candidate checks per batch between two progress reports (``Model.predict``'s batch size, so
#: results are the same as one call per size)
CHUNK = 32
#: with a progress hook, batches hold at most this many tokens in all (at least one check), so a
#: cancel is seen within about a second on CPU even for a 170-token review
TOKENS_PER_REPORT = 512


def _search_tree(model: TracedModel, text: Any, tree: PDSTree, target: int, budget: Budget, removal: Removal, original: int,
                 probs: np.ndarray, progress: Progress | None, n_candidates: int, n_tokens: int = 1
                 ) -> tuple[list[Check], list[list[int]], int | None, str, int]:
    """CLEANN's search by size within ``budget``: (checks, sets, size, stopped, searched_size)."""
    checks: list[Check] = []
    left = budget.max_calls
    limit = budget.max_set_size if budget.max_set_size is not None else max(n_candidates, 1)
    chunk = CHUNK if progress is None else max(1, min(CHUNK, TOKENS_PER_REPORT // max(n_tokens, 1)))
    for k in range(1, limit + 1):
        subsets = tree.closed_subsets(k, exclude=[target])
        if not subsets:
            return checks, [], None, "exhausted", k - 1
        if left is not None and left <= 0:
            return checks, [], None, "calls", k - 1
        todo = subsets if left is None else subsets[:left]
        found: list[Check] = []
        for s in range(0, len(todo), chunk):
            if progress is not None and not progress(_fraction(budget, len(checks), k, limit)):
                sets = [list(c.positions) for c in found if c.changed]
                return checks, sets, (k if sets else None), ("found" if sets else "cancelled"), k - 1
            part = todo[s: s + chunk]
            got = _check_sets(model, text, [z for z, _ in part], [d for _, d in part], removal, original, probs)
            found += got
            checks += got
        if left is not None:
            left -= len(todo)
        sets = [list(c.positions) for c in found if c.changed]
        if sets:
            return checks, sets, k, "found", k - 1 if len(todo) < len(subsets) else k
        if len(todo) < len(subsets):
            return checks, [], None, "calls", k - 1
    return checks, [], None, ("size" if budget.max_set_size is not None else "exhausted"), limit


def _fraction(budget: Budget, calls: int, k: int, limit: int) -> float:
    """Progress of a search: spent calls over the call budget, else sizes over the size cap."""
    if budget.max_calls is not None:
        return min(calls / budget.max_calls, 1.0)
    return min((k - 1) / max(limit, 1), 1.0)
