"""Causal graphs over tokens with proper edge marks (DAG, CPDAG, PAG).

Marks are drawn at each end of an edge as in the causal-discovery literature: an
arrowhead, a small open circle, or nothing for a tail. Layouts: ``"arc"`` (nodes in token
order on a line, edges as arcs above it), ``"circle"`` (token order clockwise) or
``"spring"`` (networkx, seeded). Every edge line carries the gid ``edge:a-b`` and every mark
``mark:a-b:<at>:<kind>``, so tests and scripts can find them.
"""
from __future__ import annotations

from typing import Any, Hashable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Polygon

from analysis.causal import Graph, Mark, PDSTree, pds_tree
from analysis.figures.style import PALETTE, RC

LAYOUTS = ("arc", "circle", "spring")

NODE_RADIUS = 0.28       # data units; nodes are 1 apart on the arc layout
ARROW_LENGTH = 0.24
ARROW_WIDTH = 0.17
CIRCLE_RADIUS = 0.075

_BASE = "#555555"
_NODE = "#FFFFFF"
_SELECTED = PALETTE[3]    # vermillion
_NEIGHBOUR = PALETTE[1]   # orange
_TREE = PALETTE[0]        # blue


def graph_layout(graph: Graph, layout: str = "arc", *, seed: int = 0) -> dict[Hashable, np.ndarray]:
    """Node positions (data units): ``arc`` on a line in node order, ``circle`` clockwise from
    the top, ``spring`` a seeded networkx spring layout scaled to the node count."""
    nodes = list(graph.nodes)
    p = len(nodes)
    if layout == "arc":
        return {v: np.array([float(k), 0.0]) for k, v in enumerate(nodes)}
    if layout == "circle":
        radius = max(1.5, p / (2 * np.pi) * 1.3)
        angles = np.pi / 2 - 2 * np.pi * np.arange(p) / max(p, 1)
        return {v: radius * np.array([np.cos(a), np.sin(a)]) for v, a in zip(nodes, angles)}
    if layout == "spring":
        import networkx as nx

        pos = nx.spring_layout(graph.to_networkx(), seed=seed, scale=max(1.5, 0.45 * p))
        return {v: np.asarray(pos[v], dtype=float) for v in nodes}
    raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")


def _edge_points(pa: np.ndarray, pb: np.ndarray, layout: str, n: int = 48) -> np.ndarray:
    """Polyline [n, 2] from pa to pb: a half-ellipse above the line for ``arc``, else straight."""
    if layout != "arc" or abs(pb[0] - pa[0]) <= 1.0 + 1e-9:
        return np.linspace(pa, pb, n)
    t = np.linspace(0.0, np.pi, n)
    mid, half = (pa[0] + pb[0]) / 2, (pb[0] - pa[0]) / 2
    height = 0.35 + 0.42 * abs(half)
    return np.stack([mid - half * np.cos(t), height * np.sin(t)], axis=1)


def _trim(points: np.ndarray, radius: float) -> np.ndarray:
    """Cut the polyline where it leaves the node circles at both ends."""
    da = np.linalg.norm(points - points[0], axis=1)
    db = np.linalg.norm(points - points[-1], axis=1)
    keep = (da >= radius) & (db >= radius)
    return points[keep] if keep.sum() >= 2 else points[[0, -1]]


def _draw_mark(ax: Axes, tip: np.ndarray, inward: np.ndarray, mark: Mark, color: str, gid: str,
               zorder: float) -> None:
    """Arrowhead or open circle at ``tip`` (on the node's boundary), ``inward`` pointing to the node."""
    u = inward / (np.linalg.norm(inward) or 1.0)
    normal = np.array([-u[1], u[0]])
    if mark == Mark.ARROW:
        base = tip - ARROW_LENGTH * u
        tri = Polygon([tip, base + ARROW_WIDTH / 2 * normal, base - ARROW_WIDTH / 2 * normal], closed=True,
                      facecolor=color, edgecolor=color, linewidth=0.5, zorder=zorder)
        tri.set_gid(gid + ":arrow")
        ax.add_patch(tri)
    elif mark == Mark.CIRCLE:
        c = Circle(tip - CIRCLE_RADIUS * u, CIRCLE_RADIUS, facecolor="white", edgecolor=color, linewidth=1.0,
                   zorder=zorder)
        c.set_gid(gid + ":circle")
        ax.add_patch(c)


def _highlight_sets(graph: Graph, highlight: Hashable | PDSTree | None, max_depth: int | None
                    ) -> tuple[Hashable | None, set, set, set]:
    """(selected node, its neighbours, PDS-tree members, PDS-tree edges as frozensets)."""
    if highlight is None:
        return None, set(), set(), set()
    tree = highlight if isinstance(highlight, PDSTree) else pds_tree(graph, highlight, max_depth)
    root = tree.root
    tree_edges = {frozenset((tree.nodes[e], tree.nodes[tree.parent[e]])) for e in range(1, len(tree.nodes))}
    return root, set(graph.adjacent(root)), set(tree.members), tree_edges


def _node_colors(graph: Graph, selected: Any, neighbours: set, members: set) -> dict[Hashable, tuple[str, str]]:
    """(face, edge) colour of each node."""
    out = {}
    for v in graph.nodes:
        if v == selected:
            out[v] = (_SELECTED, _SELECTED)
        elif v in neighbours:
            out[v] = (_NEIGHBOUR, _NEIGHBOUR)
        elif v in members:
            out[v] = (_NODE, _TREE)
        else:
            out[v] = (_NODE, _BASE)
    return out


def draw_graph(graph: Graph, *, ax: Axes | None = None, layout: str = "arc",
               highlight: Hashable | PDSTree | None = None, max_depth: int | None = None,
               title: str | None = None, seed: int = 0) -> Figure:
    """Draw ``graph`` with its edge marks (arrowhead, open circle, tail = nothing).

    ``highlight``: a node id (its neighbours and its PDS-tree, up to ``max_depth``, are
    highlighted) or a ready ``PDSTree``. Node labels are ``graph.labels`` (else the node ids).
    """
    pos = graph_layout(graph, layout, seed=seed)
    selected, neighbours, members, tree_edges = _highlight_sets(graph, highlight, max_depth)
    with plt.rc_context(RC):
        if ax is None:
            p = graph.n_nodes
            size = (min(11.0, 1.2 + 0.55 * p), min(5.5, 1.5 + 0.22 * p)) if layout == "arc" else \
                (min(8.0, 2.5 + 0.3 * p),) * 2
            _, ax = plt.subplots(figsize=size)
        for e in graph.edges():
            on_tree = frozenset((e.a, e.b)) in tree_edges
            touches = selected is not None and selected in (e.a, e.b)
            color = _SELECTED if touches else _TREE if on_tree else _BASE
            width = 2.0 if (touches or on_tree) else 1.0
            z = 3 if (touches or on_tree) else 2
            pts = _trim(_edge_points(pos[e.a], pos[e.b], layout), NODE_RADIUS)
            line, = ax.plot(pts[:, 0], pts[:, 1], color=color, linewidth=width, zorder=z,
                            solid_capstyle="butt")
            line.set_gid(f"edge:{e.a}-{e.b}")
            gid = f"mark:{e.a}-{e.b}"
            _draw_mark(ax, pts[0], pts[0] - pts[min(3, len(pts) - 1)], e.mark_a, color, f"{gid}:{e.a}", z + 0.5)
            _draw_mark(ax, pts[-1], pts[-1] - pts[max(-4, -len(pts))], e.mark_b, color, f"{gid}:{e.b}", z + 0.5)
        _draw_nodes(ax, graph, pos, _node_colors(graph, selected, neighbours, members), layout)
        _finish_axes(ax, graph, pos, layout, title)
    return ax.figure


def _draw_nodes(ax: Axes, graph: Graph, pos: dict, colors: dict, layout: str) -> None:
    for k, v in enumerate(graph.nodes):
        face, edge = colors[v]
        c = Circle(pos[v], NODE_RADIUS, facecolor=face, edgecolor=edge, linewidth=1.3, zorder=5)
        c.set_gid(f"node:{v}")
        ax.add_patch(c)
        label = str(graph.labels[k]) if graph.labels is not None else str(v)
        if layout == "arc":
            ax.text(pos[v][0], -NODE_RADIUS - 0.12, label, rotation=55, ha="right", va="top",
                    fontsize=8, rotation_mode="anchor", zorder=6)
        else:
            out = pos[v] / (np.linalg.norm(pos[v]) or 1.0)
            ax.text(*(pos[v] + out * (NODE_RADIUS + 0.12)), label, fontsize=8, zorder=6,
                    ha="left" if out[0] >= 0 else "right", va="bottom" if out[1] >= 0 else "top")


def _finish_axes(ax: Axes, graph: Graph, pos: dict, layout: str, title: str | None) -> None:
    xy = np.array(list(pos.values())) if pos else np.zeros((1, 2))
    if layout == "arc":
        pad, bottom, top = 0.6, -1.0, 0.35 + 0.42 * np.ptp(xy[:, 0]) / 2 + 0.5
    else:
        pad = 1.2
        bottom, top = xy[:, 1].min() - pad, xy[:, 1].max() + pad
    ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title is None:
        title = f"{graph.kind.upper()}, {graph.n_nodes} nodes, {len(graph)} edges"
        if graph.algorithm:
            title += f" ({graph.algorithm}, {graph.n_tests} tests)"
    if title:
        ax.set_title(title)
