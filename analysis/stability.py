"""Stability of ABCD graphs under attention changes that leave the head's output unchanged.

For one head with ``T`` the matrix its attention multiplies (``analysis.efficient``'s bases),
every ``A' = A + N`` with ``N T = 0``, rows non-negative and summing to 1, gives the same head
output ``A' T = A T``: the model cannot tell ``A`` from ``A'``. Per row ``q`` the feasible set
is the polytope ``{x : x B = a_q B, x >= 0}`` with ``B`` an orthonormal basis of col([T, 1])
(so ``x T = a_q T`` and ``sum x = 1``). :func:`output_preserving` solves linear programs over
it (``scipy.optimize.linprog``, HiGHS) and returns

- extreme points: per row, the vertex that moves the most mass onto the keys the row attends
  to least (``max x(S)``, S the keys below the row's mean weight: the TVD from ``a_q`` is at
  least ``x(S) - a_q(S)``), then vertices for seeded random directions; one matrix per direction;
- mixtures: seeded random convex combinations (Dirichlet weights) of ``A`` and the extremes.

Nothing is clipped and renormalised: LP solutions with entries below ``-1e-9`` are refused,
entries in ``[-1e-9, 0)`` are set to 0 (each row's sum and ``x T`` move by at most ``1e-9 n``).

:func:`graph_stability` learns the ABCD graph of ``A`` and of every generated ``A'`` from the
raw attention (``C = A A^T``) and from the efficient attention (``C = A_eff A_eff^T``), and
reports per ``A'``: skeleton SHD, mark SHD (PAG marks), the change in the target's
neighbours (CLEANN's first candidates), the row TVD of ``A'`` from ``A``, and (``verify``) the
largest logit change when the model runs with ``A'`` in place of ``A``. Efficient ABCD is
invariant by construction: ``A' P = A P`` for ``P`` the projection on col(T).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from scipy.optimize import linprog

from analysis import abcd, causal
from analysis.efficient import BASES, _column_bases, _with_ones, basis_matrix
from analysis.types import Algorithm, Basis, NodeSet, Removal

if TYPE_CHECKING:
    from analysis.models.base import TracedModel

__all__ = ["OutputPreserving", "output_preserving", "output_preserving_matrix", "StabilityResult",
           "graph_stability", "NEG_TOL"]

#: LP entries in [-NEG_TOL, 0) are set to 0; anything more negative is an error, never clipped
NEG_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class OutputPreserving:
    """Attention matrices with the same head output as ``attention`` (all ``[n, n]`` float64)."""

    attention: np.ndarray        # [n, n] A (rows renormalised to sum 1 in float64)
    extremes: np.ndarray         # [k, n, n] one LP vertex per row, per direction
    mixtures: np.ndarray         # [m, n, n] random convex combinations of A and the extremes
    t: np.ndarray                # [n, d] what the attention multiplies
    rank: int                    # rank of [T, 1]
    basis: str
    seed: int
    layer: int | None = None
    head: int | None = None

    @property
    def n(self) -> int:
        return self.attention.shape[0]

    @property
    def nullity(self) -> int:
        """Dimension of the per-row feasible directions: ``n - rank([T, 1])``."""
        return self.n - self.rank

    @property
    def samples(self) -> np.ndarray:
        """``[k + m, n, n]``: the extremes, then the mixtures."""
        return np.concatenate([self.extremes, self.mixtures])

    @property
    def kinds(self) -> tuple[str, ...]:
        """"extreme" or "mixture" for each of :attr:`samples`."""
        return ("extreme",) * len(self.extremes) + ("mixture",) * len(self.mixtures)

    @property
    def tvd(self) -> np.ndarray:
        """``[k + m]``: the largest row TVD ``0.5 |a'_q - a_q|_1`` of each sample from ``A``."""
        return 0.5 * np.abs(self.samples - self.attention).sum(-1).max(-1)

    @property
    def residual(self) -> np.ndarray:
        """``[k + m]``: ``max |A' T - A T|`` relative to ``max |A T|`` (0 up to LP tolerance)."""
        ref = self.attention @ self.t
        scale = max(float(np.abs(ref).max()), 1e-300)
        return np.abs(self.samples @ self.t - ref).reshape(len(self.samples), -1).max(-1) / scale

    def __repr__(self) -> str:
        where = "" if self.layer is None else f"layer {self.layer}, head {self.head}, "
        return (f"OutputPreserving({where}{self.basis} basis, n={self.n}, nullity {self.nullity}; "
                f"{len(self.extremes)} extremes, {len(self.mixtures)} mixtures, max row TVD "
                f"{self.tvd.max() if len(self.samples) else 0:.3g})")


#: how far a traced attention row may sum from 1 by the model's precision: one rounding of each
#: weight to 8 (bfloat16) or 11 (float16) significant bits moves the sum by at most 2^-8 / 2^-11
ROW_TOL = {"bfloat16": 2.0 ** -8 + 1e-4, "float16": 2.0 ** -11 + 1e-4}


def _check_counts(n_extreme: int, n_mix: int) -> None:
    for name, v in (("n_extreme", n_extreme), ("n_mix", n_mix)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {v!r}")
    if n_extreme == 0 and n_mix > 0:
        raise ValueError("mixtures combine extreme points: n_mix > 0 needs n_extreme >= 1")


def _vertex(c: np.ndarray, b: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """``argmin c.x`` s.t. ``B^T x = rhs``, ``x >= 0`` (HiGHS), or None when the LP fails."""
    res = linprog(c, A_eq=b.T, b_eq=rhs, bounds=(0, None), method="highs")
    if res.status != 0 or res.x is None:
        return None
    x = np.asarray(res.x, dtype=np.float64)
    if x.min() < -NEG_TOL:
        return None
    return np.maximum(x, 0.0)


def output_preserving_matrix(attention: np.ndarray, t: np.ndarray, *, n_extreme: int = 4, n_mix: int = 4,
                             seed: int = 0, rtol: float | None = None, basis: str = "custom",
                             layer: int | None = None, head: int | None = None,
                             row_tol: float = 1e-4) -> OutputPreserving:
    """Extreme points and mixtures of ``{A' : A' T = A T, A' >= 0, A' 1 = 1}`` for ``A`` [n, n]
    (rows distributions, summing to 1 within ``row_tol``; then renormalised) and ``T`` [n, d];
    ``n_extreme`` LP directions, ``n_mix`` mixtures."""
    _check_counts(n_extreme, n_mix)
    a = np.asarray(attention, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or t.ndim != 2 or t.shape[0] != a.shape[0]:
        raise ValueError(f"attention must be [n, n] and T [n, d] with the same n; got {a.shape} and {t.shape}")
    if not (np.isfinite(a).all() and np.isfinite(t).all()):
        raise ValueError("attention and T must be finite")
    sums = a.sum(1)
    if a.min() < -NEG_TOL or np.abs(sums - 1).max() > row_tol:
        raise ValueError(f"attention rows must be distributions (non-negative, summing to 1 within {row_tol:g}); "
                         f"got min {a.min():.3g}, row sums {sums.min():.6g}..{sums.max():.6g}")
    a = np.maximum(a, 0.0) / np.maximum(a, 0.0).sum(1, keepdims=True)   # float32: sums 1 +- 1e-7; bf16: 4e-3
    n = a.shape[0]
    (b,), _ = _column_bases(_with_ones(t)[None], rtol)                   # [n, rank], orthonormal
    rng = np.random.default_rng(seed)
    extremes = np.repeat(a[None], n_extreme, axis=0)
    for q in range(n):
        row = a[q]
        rhs = b.T @ row
        directions = []
        if n_extreme:
            low = (row < row.mean()).astype(np.float64)
            directions.append(-low if low.any() else rng.normal(size=n))
        directions += [rng.normal(size=n) for _ in range(n_extreme - 1)]
        for j, c in enumerate(directions):
            x = _vertex(c, b, rhs)
            extremes[j, q] = row if x is None else x                     # LP failure: keep the row
    if n_mix:
        w = rng.dirichlet(np.ones(n_extreme + 1), size=n_mix)             # [m, k + 1]
        mixtures = np.einsum("mk,kqp->mqp", w, np.concatenate([a[None], extremes]))
    else:
        mixtures = np.zeros((0, n, n))
    return OutputPreserving(attention=a, extremes=extremes, mixtures=mixtures, t=t, rank=b.shape[1],
                            basis=basis, seed=seed, layer=layer, head=head)


def output_preserving(trace: Any, layer: int = -1, head: int = 0, *, basis: Basis = "value", model: TracedModel | None = None,
                      n_extreme: int = 4, n_mix: int = 4, seed: int = 0, rtol: float | None = None
                      ) -> OutputPreserving:
    """:func:`output_preserving_matrix` for one head of a trace, T from ``basis`` (see
    ``analysis.efficient``: "value" keeps the head output exactly, so the model's logits)."""
    if isinstance(head, str):
        raise ValueError(f"output_preserving takes one head (0..{trace.n_heads - 1}), not {head!r}")
    if isinstance(basis, str) and basis not in BASES:
        raise ValueError(f"basis must be one of {', '.join(BASES)}, not {basis!r}")
    layer, head = trace.check_head(layer, head)
    t = basis_matrix(trace, layer, head, basis, model)
    return output_preserving_matrix(trace.attentions[layer, head], t, n_extreme=n_extreme, n_mix=n_mix, seed=seed,
                                    rtol=rtol, basis=basis if isinstance(basis, str) else "custom",
                                    layer=layer, head=head, row_tol=ROW_TOL.get(getattr(trace, "precision", ""), 1e-4))


# --------------------------------------------------------------------------- graph stability
@dataclass(frozen=True, eq=False)
class StabilityResult:
    """How much the ABCD graph of one head changes over output-preserving attentions.

    Arrays are ``[samples]``, one entry per generated ``A'`` (``generated.samples``)."""

    generated: OutputPreserving
    target: int
    raw_graph: causal.Graph
    efficient_graph: causal.Graph
    raw_skeleton_shd: np.ndarray        # pairs adjacent in exactly one of graph(A), graph(A')
    raw_shd: np.ndarray                 # pairs whose edge or either mark differs
    raw_target_changed: np.ndarray      # size of the symmetric difference of the target's neighbours
    efficient_skeleton_shd: np.ndarray
    efficient_shd: np.ndarray
    efficient_target_changed: np.ndarray
    logit_change: np.ndarray            # max |logits(A') - logits(A)| (NaN without verify)
    settings: dict
    cleann: dict | None = None          # with cleann=True: see :func:`graph_stability`
    graphs: dict | None = None          # "raw" / "efficient": the graph of each A' (``generated.samples`` order)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per attention kind ("raw", "efficient"): how many A' change the skeleton, the marks and
        the target's neighbours, the mean skeleton SHD / edges of the graph of ``A``, and the
        largest logit change (NaN without verify)."""
        out = {}
        for kind in ("raw", "efficient"):
            shd = getattr(self, f"{kind}_skeleton_shd")
            edges = max(len(getattr(self, f"{kind}_graph")), 1)
            out[kind] = dict(samples=int(len(shd)), skeleton_changed=int((shd > 0).sum()),
                             marks_changed=int((getattr(self, f"{kind}_shd") > 0).sum()),
                             target_changed=int((getattr(self, f"{kind}_target_changed") > 0).sum()),
                             shd_per_edge=float(shd.mean() / edges) if len(shd) else float("nan"),
                             edges=len(getattr(self, f"{kind}_graph")),
                             max_logit_change=float(np.max(self.logit_change)) if len(self.logit_change)
                             else float("nan"))
        return out

    @property
    def n_edges(self) -> int:
        """Edges of the raw graph of ``A`` (the scale for the skeleton SHD)."""
        return len(self.raw_graph)

    def rows(self) -> list[dict]:
        """A tidy table: one dict per generated ``A'``."""
        g = self.generated
        return [dict(sample=i, kind=g.kinds[i], layer=g.layer, head=g.head, n=g.n, nullity=g.nullity,
                     basis=g.basis, tvd=float(g.tvd[i]), residual=float(g.residual[i]),
                     logit_change=float(self.logit_change[i]), raw_edges=len(self.raw_graph),
                     raw_skeleton_shd=int(self.raw_skeleton_shd[i]), raw_shd=int(self.raw_shd[i]),
                     raw_target_changed=int(self.raw_target_changed[i]),
                     efficient_edges=len(self.efficient_graph),
                     efficient_skeleton_shd=int(self.efficient_skeleton_shd[i]),
                     efficient_shd=int(self.efficient_shd[i]),
                     efficient_target_changed=int(self.efficient_target_changed[i]),
                     **({} if self.cleann is None else
                        {f"{k}_cleann_{what}": self.cleann[k][what][i] for k in ("raw", "efficient")
                         for what in ("size", "changed")}))
                for i in range(len(g.samples))]

    def __repr__(self) -> str:
        g = self.generated
        return (f"StabilityResult(layer {g.layer}, head {g.head}, n={g.n}, nullity {g.nullity}, {len(g.samples)} "
                f"output-preserving A' (max row TVD {g.tvd.max() if len(g.samples) else 0:.3g}); raw skeleton SHD "
                f"max {self.raw_skeleton_shd.max(initial=0)} of {len(self.raw_graph)} edges, efficient "
                f"max {self.efficient_skeleton_shd.max(initial=0)})")


def _with_head(trace: Any, layer: int, head: int, a: np.ndarray) -> Any:
    """A copy of ``trace`` whose ``attentions[layer, head]`` is ``a`` (float64, others unchanged)."""
    att = np.array(trace.attentions, dtype=np.float64)
    att[layer, head] = a
    return dataclasses.replace(trace, attentions=att)


def _neighbours(graph: causal.Graph, target: int) -> set:
    i = graph.nodes.index(target)
    return {graph.nodes[j] for j in np.flatnonzero(graph.marks[i])}


def _cleann(model: TracedModel, text: str, graph: causal.Graph, target: int, budget: abcd.Budget, removal: Removal,
            probs: np.ndarray) -> tuple[int | None, frozenset, str]:
    """CLEANN's search over ``graph`` (as :func:`analysis.abcd.explain` runs it): (size, sets, stopped)."""
    tree = causal.pds_tree(graph, target)
    n_candidates = sum(1 for v in graph.nodes if v != target)
    _, sets, size, stopped, _ = abcd._search_tree(model, text, tree, target, budget, removal, int(np.argmax(probs)),
                                                  probs, None, n_candidates)
    return size, frozenset(tuple(sorted(x)) for x in sets), stopped


def graph_stability(model: TracedModel, text: str, *, layer: int = -1, head: int = 0, basis: Basis = "value",
                    n_extreme: int = 4, n_mix: int = 4, seed: int = 0, target: int | None = None,
                    algorithm: Algorithm = "icd", alpha: float = 0.01, n_samples: float | str | None = None,
                    nodes: NodeSet | Sequence[int] = "content", verify: bool = True, trace: Any = None,
                    cleann: bool = False, max_calls: int | None = 200, max_set_size: int | None = 2,
                    removal: Removal = "delete") -> StabilityResult:
    """Raw vs efficient ABCD graphs of one head for ``A`` and for output-preserving ``A'``.

    ``A'`` come from :func:`output_preserving` (``basis``, ``n_extreme``, ``n_mix``, ``seed``); both
    graphs use the same ``basis`` for the efficient attention. ``verify`` re-runs the model with
    each ``A'`` in place (``attention_override``) and records the largest logit change.
    ``trace``: a full trace of ``text`` to reuse (else one is taken). With ``basis="value"``
    (default) the head output, so the logits, are kept exactly; with ``"jacobian"`` only to first
    order, and the basis itself is re-taken at each ``A'``, so efficient ABCD is invariant only to
    first order there.

    ``cleann=True`` also runs CLEANN's search (the model decides, as in ``abcd.explain``) over
    the graph of ``A`` and of each ``A'``, within ``max_calls`` checks and sets of at most
    ``max_set_size`` tokens, ``removal`` as in ``explain``; ``.cleann[kind]`` ("raw",
    "efficient") holds ``size`` (None: not found within the budget), ``changed`` (the minimal
    sets, or found / not found, differ from those of ``A``) per ``A'``, and the ``A`` result.
    Classifiers only (recommenders explain through their own abductive trace).
    """
    trace = model.trace(text) if trace is None else trace
    layer, head = trace.check_head(layer, head)
    gen = output_preserving(trace, layer, head, basis=basis, model=model, n_extreme=n_extreme, n_mix=n_mix,
                            seed=seed)
    target = abcd.default_target(trace) if target is None else int(target)
    if not -trace.n_tokens <= target < trace.n_tokens:
        raise IndexError(f"target {target} is out of range: the input has {trace.n_tokens} tokens")
    target %= trace.n_tokens
    opts = dict(layer=layer, head=head, algorithm=algorithm, alpha=alpha, n_samples=n_samples, nodes=nodes,
                keep=[target], basis=basis, model=model)
    base = _with_head(trace, layer, head, gen.attention)
    raw0 = abcd.learn_graph(base, attention="raw", **opts)
    eff0 = abcd.learn_graph(base, attention="efficient", **opts)
    out: dict[str, list] = {k: [] for k in ("rs", "rm", "rt", "es", "em", "et", "lc")}
    reference = np.asarray(trace.logits, dtype=np.float64)
    graphs: dict[str, list[causal.Graph]] = {"raw": [], "efficient": []}
    for a2 in gen.samples:
        t2 = _with_head(trace, layer, head, a2)
        for key, g0 in (("r", raw0), ("e", eff0)):
            g = abcd.learn_graph(t2, attention="raw" if key == "r" else "efficient", **opts)
            graphs["raw" if key == "r" else "efficient"].append(g)
            out[key + "s"].append(causal.skeleton_shd(g, g0))
            out[key + "m"].append(causal.shd(g, g0))
            out[key + "t"].append(len(_neighbours(g, target) ^ _neighbours(g0, target)))
        if verify:
            logits = model.trace(text, attention_override={(layer, head): a2}, heads=[(layer, head)]).logits
            out["lc"].append(float(np.abs(np.asarray(logits, dtype=np.float64) - reference).max()))
        else:
            out["lc"].append(float("nan"))
    arr = {k: np.asarray(v, dtype=np.float64 if k == "lc" else np.int64) for k, v in out.items()}
    explained = None
    if cleann:
        budget = abcd.Budget(max_calls, max_set_size)
        probs = model.predict([text])[0]
        explained = {}
        for kind, g0 in (("raw", raw0), ("efficient", eff0)):
            ref = _cleann(model, text, g0, target, budget, removal, probs)
            sizes, changed = [], []
            for g in graphs[kind]:
                got = ref if g == g0 else _cleann(model, text, g, target, budget, removal, probs)
                sizes.append(got[0])
                changed.append(got[:2] != ref[:2])
            explained[kind] = dict(size=sizes, changed=changed, reference_size=ref[0],
                                   reference_sets=sorted(ref[1]), reference_stopped=ref[2])
    settings = dict(layer=layer, head=head, basis=basis, n_extreme=n_extreme, n_mix=n_mix, seed=seed,
                    target=target, algorithm=algorithm, alpha=alpha, n_samples=raw0.n_samples,
                    nodes=nodes if isinstance(nodes, str) else list(nodes), verify=verify, cleann=cleann,
                    **({"max_calls": max_calls, "max_set_size": max_set_size, "removal": removal} if cleann else {}))
    return StabilityResult(generated=gen, target=target, raw_graph=raw0, efficient_graph=eff0,
                           raw_skeleton_shd=arr["rs"], raw_shd=arr["rm"], raw_target_changed=arr["rt"],
                           efficient_skeleton_shd=arr["es"], efficient_shd=arr["em"],
                           efficient_target_changed=arr["et"], logit_change=arr["lc"], settings=settings,
                           cleann=explained, graphs={k: tuple(v) for k, v in graphs.items()})
