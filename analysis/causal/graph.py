"""Causal graphs with edge marks: DAG, CPDAG (PC) and PAG (FCI, ICD).

A :class:`Graph` is immutable. Its marks live in one int matrix in causal-learn's
GeneralGraph encoding: ``M[a, b]`` is the mark at a's end of the edge a-b (0 no edge,
-1 tail, 1 arrowhead, 2 circle), so ``a -> b`` is ``M[a, b] = -1, M[b, a] = 1``. Rows and
columns follow ``graph.nodes`` (the caller's node ids, e.g. token positions); methods take
node ids, not positions.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Hashable, Iterator, Mapping, Sequence, get_args

import numpy as np

from analysis.types import Algorithm, GraphKind

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

    from .citest import CITestResult

__all__ = ["Mark", "Edge", "Graph", "GRAPH_KINDS"]

GRAPH_KINDS: tuple[GraphKind, ...] = get_args(GraphKind)


class Mark(enum.IntEnum):
    """Edge mark at one end of an edge (causal-learn's GeneralGraph encoding)."""

    NONE = 0
    TAIL = -1
    ARROW = 1
    CIRCLE = 2


_LEFT = {Mark.TAIL: "-", Mark.ARROW: "<", Mark.CIRCLE: "o"}
_RIGHT = {Mark.TAIL: "-", Mark.ARROW: ">", Mark.CIRCLE: "o"}
_VALID_MARKS = {int(m) for m in Mark}


@dataclass(frozen=True)
class Edge:
    """One edge ``a ?-? b`` with the mark at each end (``mark_a`` at a, ``mark_b`` at b)."""

    a: Hashable
    b: Hashable
    mark_a: Mark
    mark_b: Mark

    @property
    def symbol(self) -> str:
        """The edge drawn as three characters, e.g. ``o->``, ``-->``, ``<->``, ``o-o``."""
        return _LEFT[self.mark_a] + "-" + _RIGHT[self.mark_b]

    def __str__(self) -> str:
        return f"{self.a} {self.symbol} {self.b}"


@dataclass(frozen=True, eq=False)
class Graph:
    """A DAG, CPDAG or PAG over ``nodes`` with metadata about how it was learned.

    ``marks`` (p, p) int8 read-only, indexed by position in ``nodes``; ``labels`` optional
    display names (e.g. token strings) used when printing. ``sepsets`` maps a removed
    pair (a, b) of node ids, a before b in ``nodes``, to the separating set (node ids).
    ``n_tests`` counts the CI tests the learner asked for; ``tests`` is the test log.
    ``r`` is the level reached by ICD (the graph is r-representing), else None;
    ``time_budget`` the budget (seconds) it ran under, ``cut`` whether the budget stopped
    it before it concluded (the graph is then the r-representing PAG of the last level).
    """

    nodes: tuple
    marks: np.ndarray
    kind: str = "pag"
    labels: tuple | None = None
    sepsets: Mapping[tuple, tuple] = field(default_factory=dict)
    n_tests: int = 0
    algorithm: Algorithm | None = None
    alpha: float | None = None
    n_samples: float | None = None
    seconds: float | None = None
    r: int | None = None
    _tests: Any = field(default=(), repr=False)
    #: what the graph was learned from, e.g. "efficient attention (value basis), nullity 12 of n = 44"
    attention: str | None = None
    time_budget: float | None = None
    cut: bool = False

    def __post_init__(self) -> None:
        nodes = tuple(self.nodes)
        if len(set(nodes)) != len(nodes):
            raise ValueError(f"nodes must be distinct, got {list(nodes)}")
        m = np.array(self.marks, dtype=np.int8, copy=True)
        p = len(nodes)
        if m.shape != (p, p):
            raise ValueError(f"marks must be a ({p}, {p}) matrix for {p} nodes, got {m.shape}")
        if not set(np.unique(m).tolist()) <= _VALID_MARKS:
            raise ValueError(f"marks may only hold {sorted(_VALID_MARKS)} (Mark values), "
                             f"got {sorted(set(np.unique(m).tolist()) - _VALID_MARKS)}")
        if np.any(np.diag(m) != 0):
            raise ValueError("marks must have a zero diagonal (no self-loops)")
        if np.any((m == 0) != (m.T == 0)):
            raise ValueError("marks must be zero on both ends or neither: M[a,b]==0 iff M[b,a]==0")
        if self.kind not in GRAPH_KINDS:
            raise ValueError(f"kind must be one of {GRAPH_KINDS}, got {self.kind!r}")
        if self.labels is not None and len(self.labels) != p:
            raise ValueError(f"labels must have one entry per node ({p}), got {len(self.labels)}")
        m.setflags(write=False)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "marks", m)
        object.__setattr__(self, "sepsets", MappingProxyType(dict(self.sepsets)))
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "_index", {v: k for k, v in enumerate(nodes)})

    # -- construction and conversion ------------------------------------------------------

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, nodes: Sequence[Hashable] | None = None, *,
                    kind: str = "pag", labels: Sequence[str] | None = None,
                    **metadata: Any) -> "Graph":
        """Build a graph from a (p, p) mark matrix (causal-learn encoding); nodes default 0..p-1."""
        m = np.asarray(matrix)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"matrix must be square, got shape {m.shape}")
        nodes = tuple(range(m.shape[0])) if nodes is None else tuple(nodes)
        return cls(nodes=nodes, marks=m, kind=kind,
                   labels=None if labels is None else tuple(labels), **metadata)

    def to_matrix(self) -> np.ndarray:
        """The (p, p) int mark matrix: M[a, b] is the mark at a's end (a writable copy)."""
        return self.marks.astype(int)

    def to_networkx(self) -> "nx.Graph":
        """An undirected ``networkx.Graph``; each edge carries ``marks`` {node: Mark} and
        ``symbol`` (as printed from the lower-position node); nodes carry ``label``."""
        import networkx as nx

        g = nx.Graph(kind=self.kind, algorithm=self.algorithm)
        for k, v in enumerate(self.nodes):
            g.add_node(v, label=self._label(k), position=k)
        for e in self.edges():
            g.add_edge(e.a, e.b, marks={e.a: e.mark_a, e.b: e.mark_b}, symbol=e.symbol)
        return g

    # -- queries --------------------------------------------------------------------------

    @property
    def n_nodes(self) -> int:
        """Number of nodes p."""
        return len(self.nodes)

    @property
    def tests(self) -> tuple["CITestResult", ...]:
        """The CI-test log of the learner run that produced this graph (may be empty)."""
        src = self._tests
        if callable(src):  # materialise the learner's log once, on first access
            src = tuple(src())
            object.__setattr__(self, "_tests", src)
        return tuple(src)

    def position(self, node: Hashable) -> int:
        """Row/column of ``node`` in the mark matrix."""
        try:
            return self._index[node]
        except (KeyError, TypeError):
            raise KeyError(f"{node!r} is not a node of this graph; nodes are "
                           f"{list(self.nodes)}") from None

    def mark(self, a: Hashable, b: Hashable) -> Mark:
        """The mark at a's end of the edge a-b (``Mark.NONE`` if not adjacent)."""
        return Mark(int(self.marks[self.position(a), self.position(b)]))

    def is_adjacent(self, a: Hashable, b: Hashable) -> bool:
        """Whether a and b share an edge."""
        return bool(self.marks[self.position(a), self.position(b)] != 0)

    def adjacent(self, a: Hashable) -> list:
        """Node ids adjacent to ``a``, in node order."""
        row = self.marks[self.position(a)]
        return [self.nodes[k] for k in np.flatnonzero(row)]

    def edges(self) -> list[Edge]:
        """All edges, each once, as (a, b) with a before b in ``nodes``."""
        rows, cols = np.nonzero(np.triu(self.marks != 0, 1))
        return [Edge(self.nodes[a], self.nodes[b], Mark(int(self.marks[a, b])),
                     Mark(int(self.marks[b, a]))) for a, b in zip(rows.tolist(), cols.tolist())]

    def __iter__(self) -> Iterator[Edge]:
        return iter(self.edges())

    def __len__(self) -> int:
        return int(np.count_nonzero(np.triu(self.marks != 0, 1)))

    def _may_step(self, a: int, b: int) -> bool:
        """Whether the edge a-b (positions) may be traversed a => b on a possibly directed path."""
        near, far = int(self.marks[a, b]), int(self.marks[b, a])
        if near == 0:
            return False
        if self.kind == "pag":
            return near != Mark.ARROW and far != Mark.TAIL
        # DAG / CPDAG: a -> b or a --- b (undirected: either way)
        return near == Mark.TAIL and far in (Mark.ARROW, Mark.TAIL)

    def possible_descendants(self, a: Hashable) -> list:
        """Nodes reachable from ``a`` along possibly directed paths (excluding a)."""
        start = self.position(a)
        seen = {start}
        queue = deque([start])
        while queue:
            u = queue.popleft()
            for w in np.flatnonzero(self.marks[u]).tolist():
                if w not in seen and self._may_step(u, w):
                    seen.add(w)
                    queue.append(w)
        seen.discard(start)
        return [self.nodes[k] for k in sorted(seen)]

    def is_possible_ancestor(self, a: Hashable, b: Hashable) -> bool:
        """Whether a possibly directed path a => b exists (each edge: no arrowhead at its
        near end, no tail at its far end; in a CPDAG an undirected edge counts)."""
        if self.position(a) == self.position(b):
            return True
        return b in set(self.possible_descendants(a))

    # -- printing -------------------------------------------------------------------------

    def _label(self, k: int) -> str:
        return str(self.labels[k]) if self.labels is not None else str(self.nodes[k])

    def edge_strings(self) -> list[str]:
        """Edges as text lines such as ``a o-> b`` with node labels."""
        out = []
        for a, b in zip(*np.nonzero(np.triu(self.marks != 0, 1))):
            sym = _LEFT[Mark(int(self.marks[a, b]))] + "-" + _RIGHT[Mark(int(self.marks[b, a]))]
            out.append(f"{self._label(int(a))} {sym} {self._label(int(b))}")
        return out

    def __str__(self) -> str:
        head = f"{self.kind.upper()} over {self.n_nodes} nodes, {len(self)} edges"
        if self.algorithm:
            head += f" ({self.algorithm}"
            head += f", alpha={self.alpha:g}" if self.alpha is not None else ""
            head += f", n_samples={self.n_samples:g}" if self.n_samples is not None else ""
            head += f", {self.n_tests} tests)"
        head += f"; from {self.attention}" if self.attention else ""
        head += self._cut_note()
        return "\n".join([head, *("  " + s for s in self.edge_strings())])

    def __repr__(self) -> str:
        return (f"Graph(kind={self.kind!r}, n_nodes={self.n_nodes}, n_edges={len(self)}, "
                f"algorithm={self.algorithm!r}" + (f", r={self.r}" if self.r is not None else "")
                + (f", cut=True, time_budget={self.time_budget:g}" if self.cut else "")
                + (f", attention={self.attention!r})" if self.attention else ")"))

    def _cut_note(self) -> str:
        if not self.cut:
            return ""
        return (f"; stopped by the {self.time_budget:g} s time budget after r={self.r} "
                f"(the PAG is {self.r}-representing)")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (self.nodes == other.nodes and self.kind == other.kind
                and np.array_equal(self.marks, other.marks))

    def __hash__(self) -> int:
        return hash((self.nodes, self.kind, self.marks.tobytes()))
