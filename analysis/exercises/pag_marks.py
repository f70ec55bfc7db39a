"""Exercise 3, PC / FCI and PAG marks: skeleton, sepsets, v-structures (against a d-separation
oracle), marks, edges and the mark matrix of a learned graph."""
from __future__ import annotations

import itertools
import re
from typing import Any, Sequence

import numpy as np

from ._common import Feedback, _as_matrix, _BadAnswer, _checker, _collection, _dag, _Names, _pair, _parse_edge
from .dseparation import d_separated, explain_paths


def _observed(adj: np.ndarray, observed: Sequence[int] | None) -> list[int]:
    return list(range(adj.shape[0])) if observed is None else [int(v) for v in observed]


def _first_sepset(adj: np.ndarray, x: int, y: int, observed: list[int]) -> frozenset[int] | None:
    """The smallest (first by size, then lexicographic) subset of observed nodes separating x, y."""
    others = [v for v in observed if v not in (x, y)]
    for size in range(len(others) + 1):
        for s in itertools.combinations(others, size):
            if d_separated(adj, x, y, s):
                return frozenset(s)
    return None


def _true_skeleton(adj: np.ndarray, observed: list[int]) -> dict[frozenset[int], frozenset[int] | None]:
    """Each observed pair -> its first sepset (None: adjacent in the skeleton)."""
    return {frozenset({a, b}): _first_sepset(adj, a, b, observed) for a, b in itertools.combinations(observed, 2)}


@_checker("skeleton", "a list of pairs such as [('A', 'B'), 'B - C']")
def check_skeleton(answer: Any, dag: np.ndarray, names: Sequence[str] | None = None,
                   observed: Sequence[int] | None = None) -> Feedback:
    """The skeleton PC/FCI find with a d-separation oracle over the ``observed`` nodes of
    ``dag``: a pair stays adjacent iff no set of other observed nodes separates it."""
    task = "skeleton"
    adj = _dag(dag)
    nm = _Names(names, adj.shape[0])
    obs = _observed(adj, observed)
    given = {_pair(p, nm) for p in _collection(answer)}
    truth = _true_skeleton(adj, obs)
    want = {p for p, s in truth.items() if s is None}
    details = []
    for p in sorted(given - want, key=sorted):
        a, b = sorted(p)
        if p not in truth:
            details.append(f"{nm(a)} - {nm(b)}: {nm.set(set(p) - set(obs))} is not observed, so it is not in the graph.")
        else:
            details.append(f"{nm(a)} - {nm(b)} should be removed: the set {nm.set(truth[p])} d-separates them "
                           f"(that is the sepset the search finds first).")
    for p in sorted(want - given, key=sorted):
        a, b = sorted(p)
        why = ("they are adjacent in the DAG" if adj[a, b] or adj[b, a]
               else "no set of observed nodes separates them (an inducing path through hidden nodes)")
        details.append(f"{nm(a)} - {nm(b)} is missing: {why}, so no CI test can remove the edge.")
    if not details:
        return Feedback(task, True, f"{len(want)} edges: each pair without a separating set stays adjacent.")
    return Feedback(task, False, f"{len(details)} edge(s) wrong.", tuple(details))


@_checker("sepset", "a set of nodes, e.g. {'C'} or set() for the empty set")
def check_sepset(answer: Any, dag: np.ndarray, x: Any, y: Any, names: Sequence[str] | None = None,
                 observed: Sequence[int] | None = None) -> Feedback:
    """A set of observed nodes (not x, y) that d-separates x and y; any such set is right."""
    task = "sepset"
    adj = _dag(dag)
    nm = _Names(names, adj.shape[0])
    obs = _observed(adj, observed)
    xi, yi = nm.index(x), nm.index(y)
    task = f"sepset of {nm(xi)}, {nm(yi)}"
    cond = nm.node_set(answer)
    if {xi, yi} & cond:
        return Feedback(task, False, "a separating set never contains the two nodes themselves.")
    hidden = cond - set(obs)
    if hidden:
        return Feedback(task, False, f"{nm.set(hidden)} is hidden: the learner cannot condition on it.")
    if d_separated(adj, xi, yi, cond):
        first = _first_sepset(adj, xi, yi, obs)
        note = "" if first == cond else f" (the search, smallest sets first, records {nm.set(first)})"
        return Feedback(task, True, f"{nm.set(cond)} blocks every path between {nm(xi)} and {nm(yi)}{note}.")
    if _first_sepset(adj, xi, yi, obs) is None:
        return Feedback(task, False, f"{nm(xi)} and {nm(yi)} cannot be separated by any set of observed nodes, "
                                     "so the edge stays and there is no sepset.")
    open_paths = [why for ok, why in explain_paths(adj, xi, yi, cond, nm.names) if ok]
    return Feedback(task, False, f"{nm.set(cond)} leaves a path open: {open_paths[0]}.")


def _triple(x: Any, names: _Names) -> tuple[int, int, int]:
    if isinstance(x, str):
        parts = [p for p in re.split(r"\s*(?:<-+|-+>|o->|<-o|[\s,])\s*", x) if p]
    else:
        parts = _collection(x)
    if len(parts) != 3:
        raise _BadAnswer(f"{x!r} is not a triple (a, c, b) or 'A -> C <- B'.")
    a, c, b = (names.index(p) for p in parts)
    return a, c, b


@_checker("colliders", "a list of triples such as [('A', 'C', 'B')] or ['A -> C <- B']")
def check_colliders(answer: Any, dag: np.ndarray, names: Sequence[str] | None = None) -> Feedback:
    """The unshielded colliders (v-structures) a -> c <- b, a and b not adjacent, of ``dag``:
    what PC orients when c is not in sepset(a, b). Either order of a and b is fine."""
    task = "colliders"
    adj = _dag(dag)
    nm = _Names(names, adj.shape[0])
    obs = list(range(adj.shape[0]))
    given = {(frozenset({a, b}), c) for a, c, b in (_triple(t, nm) for t in _collection(answer))}
    n = adj.shape[0]
    linked = adj | adj.T
    want = {(frozenset({a, b}), c) for c in range(n) for a, b in itertools.combinations(range(n), 2)
            if adj[a, c] and adj[b, c] and not linked[a, b]}
    details = []
    for ends, c in sorted(given - want, key=lambda t: (t[1], sorted(t[0]))):
        a, b = sorted(ends)
        label = f"{nm(a)} - {nm(c)} - {nm(b)}"
        if c in ends:
            details.append(f"{label} repeats a node.")
        elif linked[a, b]:
            details.append(f"{label}: {nm(a)} and {nm(b)} are adjacent, so the triple is shielded; PC only "
                           "orients unshielded triples as v-structures.")
        elif not (linked[a, c] and linked[b, c]):
            details.append(f"{label}: {nm(c)} is not adjacent to both {nm(a)} and {nm(b)}.")
        else:
            sep = _first_sepset(adj, a, b, obs)
            details.append(f"{label} is not a collider: {nm(c)} is in sepset({nm(a)}, {nm(b)}) = {nm.set(sep)}, "
                           "so the path through it is a chain or a fork, not a -> c <- b.")
    for ends, c in sorted(want - given, key=lambda t: (t[1], sorted(t[0]))):
        a, b = sorted(ends)
        sep = _first_sepset(adj, a, b, obs)
        details.append(f"missing {nm(a)} -> {nm(c)} <- {nm(b)}: {nm(a)} and {nm(b)} are not adjacent and "
                       f"{nm(c)} is not in their sepset {nm.set(sep)}.")
    if not details:
        return Feedback(task, True, f"{len(want)} v-structure(s); PC orients them first, then Meek's rules follow.")
    return Feedback(task, False, f"{len(details)} triple(s) wrong.", tuple(details))


# ----------------------------------------------------------------------- PAG marks
_MARK_WORDS = {0: ("none", "no edge", "0", ""), -1: ("tail", "-", "-1"), 1: ("arrow", "arrowhead", ">", "<", "1"),
               2: ("circle", "o", "2")}
_MARK_NAMES = {0: "no edge (0)", -1: "a tail (-1)", 1: "an arrowhead (1)", 2: "a circle (2)"}


def _as_mark(x: Any) -> int:
    if isinstance(x, (bool, np.bool_)):
        raise _BadAnswer(f"{x!r} is not a mark.")
    if isinstance(x, (int, np.integer)):         # ints and Mark (an IntEnum)
        if int(x) in _MARK_NAMES:
            return int(x)
        raise _BadAnswer(f"{int(x)} is not a mark; marks are 0 none, -1 tail, 1 arrowhead, 2 circle.")
    if isinstance(x, str):
        word = x.strip().lower().removeprefix("mark.")
        for value, words in _MARK_WORDS.items():
            if word in words:
                return value
    raise _BadAnswer(f"{x!r} is not a mark; use 0/-1/1/2, Mark.TAIL, 'arrowhead', 'circle', ...")


def _graph_names(graph: Any) -> _Names:
    names = graph.labels if graph.labels is not None else graph.nodes
    return _Names([str(v) for v in names], graph.n_nodes)


def _edge_symbol(m: np.ndarray, a: int, b: int, nm: _Names) -> str:
    left = {-1: "-", 1: "<", 2: "o"}
    right = {-1: "-", 1: ">", 2: "o"}
    if m[a, b] == 0:
        return f"{nm(a)} and {nm(b)} not adjacent"
    return f"{nm(a)} {left[int(m[a, b])]}-{right[int(m[b, a])]} {nm(b)}"


_MEANING = {(-1, 1): "{a} causes {b} (an ancestor of it)", (1, 1): "neither causes the other: a hidden common cause",
            (2, 1): "{b} is not an ancestor of {a}; {a} may or may not cause {b}",
            (2, 2): "the data decide nothing about this edge's direction", (-1, -1): "an undirected (selection) edge",
            (2, -1): "{b} is an ancestor of {a}, or there is selection", (-1, 2): "{a} is an ancestor of {b}, or there is selection"}


@_checker("mark", "a mark: 0 none, -1 tail, 1 arrowhead, 2 circle (or Mark.TAIL, 'arrowhead', ...)")
def check_mark(answer: Any, graph: Any, a: Any, b: Any) -> Feedback:
    """``M[a, b]`` of ``graph.to_matrix()``: the mark at a's end of the edge a-b."""
    nm = _graph_names(graph)
    ai, bi = nm.index(a), nm.index(b)
    task = f"M[{nm(ai)}, {nm(bi)}]"
    m = graph.to_matrix()
    value, want, other = _as_mark(answer), int(m[ai, bi]), int(m[bi, ai])
    edge = _edge_symbol(m, ai, bi, nm)
    if value == want:
        return Feedback(task, True, f"{_MARK_NAMES[want]}: the edge is {edge}.")
    if value == other and want != 0:
        return Feedback(task, False, f"{_MARK_NAMES[value]} is the mark at {nm(bi)}'s end. M[a, b] is the mark at "
                                     f"a's end (the end touching {nm(ai)}): the edge is {edge} read from {nm(ai)}.")
    if want == 0:
        return Feedback(task, False, f"{nm(ai)} and {nm(bi)} are not adjacent, so M[a, b] = 0.")
    return Feedback(task, False, f"the mark at {nm(ai)}'s end is not {_MARK_NAMES[value]}; the edge is printed "
                                 f"{nm(ai)} ?-? {nm(bi)} with {nm(ai)}'s mark on the left ('<', '-' or 'o').")


_LEFT_MARK = {"<": 1, "-": -1, "o": 2}
_RIGHT_MARK = {">": 1, "-": -1, "o": 2}


@_checker("edge", "a string such as 'A o-> B', 'B <-> C' or 'E <-- B'")
def check_edge(answer: Any, graph: Any, a: Any, b: Any) -> Feedback:
    """The edge between a and b as drawn in the PAG/CPDAG (either direction of writing)."""
    nm = _graph_names(graph)
    ai, bi = nm.index(a), nm.index(b)
    task = f"edge {nm(ai)} - {nm(bi)}"
    if not isinstance(answer, str):
        raise _BadAnswer(f"{answer!r} is not a string.")
    left_node, left, right, right_node = _parse_edge(answer)
    x, y = nm.index(left_node), nm.index(right_node)
    if {x, y} != {ai, bi}:
        raise _BadAnswer(f"{answer!r} is not about {nm(ai)} and {nm(bi)}.")
    mark = {x: _LEFT_MARK[left], y: _RIGHT_MARK[right]}
    m = graph.to_matrix()
    want = {ai: int(m[ai, bi]), bi: int(m[bi, ai])}
    edge = _edge_symbol(m, ai, bi, nm)
    if want[ai] == 0:
        return Feedback(task, False, f"{nm(ai)} and {nm(bi)} are not adjacent in this graph.")
    if mark == want:
        meaning = _MEANING.get((want[ai], want[bi]), "").format(a=nm(ai), b=nm(bi))
        if getattr(graph, "kind", "pag") != "pag" and want[ai] == want[bi] == -1:
            meaning = "undirected: both directions fit the same independences (Markov equivalent)"
        return Feedback(task, True, f"{edge}" + (f": {meaning}." if meaning else "."))
    if mark[ai] == want[bi] and mark[bi] == want[ai]:
        return Feedback(task, False, "you have the marks at swapped ends: each mark sits at the node it touches.")
    wrong = [v for v in (ai, bi) if mark[v] != want[v]]
    lines = [f"at {nm(v)}'s end you wrote {_MARK_NAMES[mark[v]]}, but the graph has {_MARK_NAMES[want[v]]}"
             for v in wrong]
    msg = "; ".join(lines) + "."
    if mark[ai] == -1 and mark[bi] == 1 and want[ai] == want[bi] == 1:
        msg += f" '<->' means neither causes the other: a hidden confounder of {nm(ai)} and {nm(bi)}."
    elif 2 in want.values() and 2 not in mark.values():
        msg += " A circle means the data cannot decide the mark: it could be a tail or an arrowhead."
    return Feedback(task, False, msg)


@_checker("mark matrix", "a [p, p] integer array in the causal-learn encoding")
def check_mark_matrix(answer: Any, graph: Any) -> Feedback:
    """The whole ``graph.to_matrix()`` (M[a, b] = mark at a's end: 0, -1 tail, 1 arrow, 2 circle)."""
    task = "mark matrix"
    want = graph.to_matrix()
    arr = _as_matrix(answer, want.shape)
    nm = _graph_names(graph)
    if np.array_equal(arr, want):
        return Feedback(task, True, "every entry M[a, b] holds the mark at a's end of the edge a-b.")
    if np.array_equal(arr, want.T):
        return Feedback(task, False, "your matrix has every mark at the wrong end (it is the transpose): "
                                     "M[a, b] is the mark at a's end, so a -> b is M[a, b] = -1, M[b, a] = 1.")
    wrong = [(int(i), int(j)) for i, j in zip(*np.nonzero(arr != want))]
    details = []
    for i, j in wrong:
        edge = _edge_symbol(want, i, j, nm) if want[i, j] or want[j, i] else f"{nm(i)} and {nm(j)} not adjacent"
        details.append(f"M[{nm(i)}, {nm(j)}] = {int(arr[i, j])}, expected the mark at {nm(i)}'s end of: {edge}.")
    asym = [(i, j) for i, j in wrong if (arr[i, j] == 0) != (arr[j, i] == 0)]
    msg = f"{len(wrong)} entr{'y' if len(wrong) == 1 else 'ies'} wrong."
    if asym:
        msg += " An edge has a mark at both ends: M[a, b] and M[b, a] are both 0 or both nonzero."
    return Feedback(task, False, msg, tuple(details))
