"""PDS-trees: the possible-d-separating neighbourhood of a node, as a tree.

The tree rooted at x is built breadth first over the skeleton, each skeleton edge used
once: the root's neighbours are at depth 1; from a tree node b reached from a, go on to
each neighbour c of b when b is a possible collider on a *-* b *-* c (a and c adjacent, or
both edges have an arrowhead at b). Nodes at ``max_depth`` are kept but not expanded. A
graph node may appear more than once (reached along different edges).

ICD draws its conditioning sets from these trees, and the CLEANN explanation search draws
its candidate explanation sets from the tree rooted at the explained node: subsets closed
along tree paths, by size, then by the sum of tree depths (``PDSTree.closed_subsets``).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Hashable, Iterable, Sequence

import numpy as np

from .graph import Graph, Mark

__all__ = ["PDSTree", "pds_tree"]

_ARROW = int(Mark.ARROW)


def masks_from(adj: Sequence[set[int]], M) -> tuple[list[int], list[int]]:
    """Bitmask rows: adjacency and arrowheads (bit c of ``arrow[b]``: M[b][c] is ARROW)."""
    adjm = [sum(1 << c for c in nb) for nb in adj]
    arrowm = [sum(1 << c for c in nb if M[b][c] == _ARROW) for b, nb in enumerate(adj)]
    return adjm, arrowm


def _root_level(adjm: Sequence[int], root: int
                ) -> tuple[list[int], list[int], list[int], list[int], list[tuple[int, int]]]:
    """The tree's root and its neighbours (depth 1): entries (nodes, parent, depth), the unused
    edges left (``remaining`` bitmask rows) and the ``(root, entry)`` pairs to expand next."""
    nodes, parent, depth = [root], [-1], [0]
    remaining = list(adjm)
    first: list[tuple[int, int]] = []
    m = remaining[root]
    remaining[root] = 0
    while m:
        low = m & -m
        nb = low.bit_length() - 1
        m ^= low
        remaining[nb] &= ~(1 << root)
        nodes.append(nb)
        parent.append(0)
        depth.append(1)
        first.append((root, len(nodes) - 1))
    return nodes, parent, depth, remaining, first


def _tree_entries(adjm: Sequence[int], arrowm: Sequence[int], root: int,
                  max_depth: int | None, stable: bool = False) -> tuple[list[int], list[int], list[int]]:
    """Entries (node, parent entry, depth) of the PDS-tree over positions; entry 0 = root.

    ``adjm``/``arrowm`` are bitmask rows (see ``masks_from``). Breadth first; every
    skeleton edge is used once; an entry reached from n1 at node n2 goes on to each unused
    neighbour n3 with n1, n3 adjacent or arrowheads at n2 on both edges. Which entry gets
    an edge that several entries of one depth could use depends on the node numbering;
    ``stable`` lets all of them use it (edges are marked used after each depth), so the
    tree does not depend on the numbering.
    """
    if stable:
        return _tree_entries_stable(adjm, arrowm, root, max_depth)
    nodes, parent, depth, remaining, first = _root_level(adjm, root)
    queue: deque[tuple[int, int]] = deque(first)  # (node_1, entry of node_2)
    limit = np.inf if max_depth is None else max_depth
    while queue:
        n1, e2 = queue.popleft()
        d2 = depth[e2]
        if d2 >= limit:
            continue
        n2 = nodes[e2]
        ok = adjm[n1]
        if (arrowm[n2] >> n1) & 1:
            ok |= arrowm[n2]
        m = remaining[n2] & ok & ~(1 << n1)
        if not m:
            continue
        remaining[n2] &= ~m
        bit2 = ~(1 << n2)
        while m:
            low = m & -m
            n3 = low.bit_length() - 1
            m ^= low
            remaining[n3] &= bit2
            nodes.append(n3)
            parent.append(e2)
            depth.append(d2 + 1)
            queue.append((n2, len(nodes) - 1))
    return nodes, parent, depth


def _tree_entries_stable(adjm: Sequence[int], arrowm: Sequence[int], root: int,
                         max_depth: int | None) -> tuple[list[int], list[int], list[int]]:
    """``_tree_entries`` with the edges frozen per depth (order-independent)."""
    nodes, parent, depth, remaining, level = _root_level(adjm, root)   # level: (node_1, entry of node_2)
    limit = np.inf if max_depth is None else max_depth
    d = 1
    while level and d < limit:
        used: list[tuple[int, int]] = []
        nxt: list[tuple[int, int]] = []
        for n1, e2 in level:
            n2 = nodes[e2]
            ok = adjm[n1]
            if (arrowm[n2] >> n1) & 1:
                ok |= arrowm[n2]
            m = remaining[n2] & ok & ~(1 << n1)
            while m:
                low = m & -m
                n3 = low.bit_length() - 1
                m ^= low
                used.append((n2, n3))
                nodes.append(n3)
                parent.append(e2)
                depth.append(d + 1)
                nxt.append((n2, len(nodes) - 1))
        for n2, n3 in used:
            remaining[n2] &= ~(1 << n3)
            remaining[n3] &= ~(1 << n2)
        level = nxt
        d += 1
    return nodes, parent, depth


def closed_subsets(nodes: Sequence[int], parent: Sequence[int], size: int,
                   allowed: Iterable[int] | None = None) -> list[tuple[tuple[int, ...], int]]:
    """All ``size``-subsets Z of the tree's non-root nodes (restricted to ``allowed``) such
    that every z in Z is reachable from the root along tree paths whose nodes all lie in Z.

    Returns (sorted tuple, sum over z of its smallest depth) pairs, in lexicographic order
    and then stably sorted by that sum.
    """
    if size <= 0:
        return [((), 0)]
    n_entries = len(nodes)
    children: list[list[int]] = [[] for _ in range(n_entries)]
    depth = [0] * n_entries
    min_depth: dict[int, int] = {}
    for e in range(1, n_entries):
        children[parent[e]].append(e)
        depth[e] = depth[parent[e]] + 1
        v = nodes[e]
        if v not in min_depth or depth[e] < min_depth[v]:
            min_depth[v] = depth[e]
    ok = set(min_depth) - {nodes[0]}
    if allowed is not None:
        ok &= set(allowed)
    if len(ok) < size:
        return []
    okm = sum(1 << v for v in ok)
    bits = [1 << v for v in nodes]

    def frontier(z: int) -> int:
        out, stack = 0, [0]
        while stack:
            e = stack.pop()
            for ch in children[e]:
                b = bits[ch]
                if z & b:
                    stack.append(ch)
                else:
                    out |= b
        return out & okm

    level = {bits[ch] for ch in children[0] if bits[ch] & okm}
    for _ in range(size - 1):
        nxt = set()
        for z in level:
            f = frontier(z)
            while f:
                low = f & -f
                f ^= low
                nxt.add(z | low)
        level = nxt
    result = sorted(tuple(v for v in sorted(ok) if (z >> v) & 1) for z in level)
    result_d = [(z, sum(min_depth[v] for v in z)) for z in result]
    result_d.sort(key=lambda t: t[1])
    return result_d


@dataclass(frozen=True)
class PDSTree:
    """A PDS-tree: entry k holds graph node ``nodes[k]`` (a node id), its parent entry
    ``parent[k]`` (-1 for the root, entry 0) and its ``depth[k]`` (root 0)."""

    root: Hashable
    nodes: tuple
    parent: tuple[int, ...]
    depth: tuple[int, ...]
    max_depth: int | None = None
    _graph_nodes: tuple = field(default=(), repr=False, compare=False)

    @property
    def members(self) -> frozenset:
        """Distinct graph nodes in the tree, root excluded."""
        return frozenset(self.nodes[1:]) - {self.root}

    def min_depth(self, node: Hashable) -> int:
        """Smallest depth at which ``node`` appears (KeyError if absent)."""
        depths = [d for v, d in zip(self.nodes, self.depth) if v == node]
        if not depths:
            raise KeyError(f"{node!r} is not in the PDS-tree rooted at {self.root!r}")
        return min(depths)

    def path_to_root(self, entry: int) -> list:
        """Graph nodes from entry ``entry`` up to the root (inclusive)."""
        out = []
        while entry >= 0:
            out.append(self.nodes[entry])
            entry = self.parent[entry]
        return out

    def is_closed(self, subset: Iterable[Hashable]) -> bool:
        """Whether every node of ``subset`` is reachable from the root along tree paths
        whose nodes all lie in ``subset``."""
        zset = set(subset)
        reached, stack = set(), [0]
        children = self._children()
        while stack:
            e = stack.pop()
            for ch in children[e]:
                if self.nodes[ch] in zset:
                    reached.add(self.nodes[ch])
                    stack.append(ch)
        return zset <= reached

    def closed_subsets(self, size: int, exclude: Iterable[Hashable] = ()
                       ) -> list[tuple[tuple, int]]:
        """Closed subsets of ``size`` nodes (see ``is_closed``) without ``exclude``, as
        (node ids, sum of smallest depths), by node order then stably by that sum."""
        pos = {v: k for k, v in enumerate(self._graph_nodes)}
        ent_pos = [pos[v] for v in self.nodes]
        allowed = set(ent_pos) - {pos[v] for v in exclude if v in pos}
        subs = closed_subsets(ent_pos, list(self.parent), size, allowed)
        return [(tuple(self._graph_nodes[k] for k in z), d) for z, d in subs]

    def _children(self) -> list[list[int]]:
        children: list[list[int]] = [[] for _ in self.nodes]
        for e in range(1, len(self.nodes)):
            children[self.parent[e]].append(e)
        return children


def pds_tree(graph: Graph, root: Hashable, max_depth: int | None = None) -> PDSTree:
    """The PDS-tree of ``graph`` rooted at node ``root``, at most ``max_depth`` deep
    (None: unlimited). Node ids as in ``graph.nodes``."""
    if max_depth is not None and (not isinstance(max_depth, (int, np.integer)) or max_depth < 0):
        raise ValueError(f"max_depth must be a non-negative integer or None, got {max_depth!r}")
    r = graph.position(root)
    marks = graph.marks
    adj = [set(np.flatnonzero(marks[k]).tolist()) for k in range(graph.n_nodes)]
    adjm, arrowm = masks_from(adj, marks.tolist())
    nodes, parent, depth = _tree_entries(adjm, arrowm, r, max_depth)
    ids = graph.nodes
    return PDSTree(root=root, nodes=tuple(ids[k] for k in nodes), parent=tuple(parent),
                   depth=tuple(depth), max_depth=max_depth, _graph_nodes=tuple(ids))
